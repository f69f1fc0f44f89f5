#!/bin/sh
# An `exec` dns provider hook for the tests: TXT records at a BIND server through nsupdate.
#   nsupdate-hook.sh SERVER KEYFILE CALLLOG MODE add|remove FQDN VALUE
# SERVER is host:port, KEYFILE a BIND key clause, CALLLOG gets one line per call.
# MODE: ok; fail (adds, then fails with a message); slow (sleeps 30 s); late (exits at once,
# the record is added 3 s later); never (exits 0 without adding).
server=$1 keyfile=$2 calllog=$3 mode=$4 action=$5 fqdn=$6 value=$7
echo "$action $fqdn $value" >>"$calllog"
case $mode in
  slow) echo "sleeping"; sleep 30 ;;
esac
case $action in
  add) cmd="update add $fqdn. 60 TXT \"$value\"" ;;
  remove)
    if [ -n "$value" ]; then cmd="update delete $fqdn. TXT \"$value\""; else cmd="update delete $fqdn. TXT"; fi ;;
  *) echo "unknown action $action" >&2; exit 2 ;;
esac
send() {
  printf 'server %s %s\n%s\nsend\n' "${server%:*}" "${server##*:}" "$cmd" | nsupdate -k "$keyfile"
}
if [ "$action" = add ]; then
  case $mode in
    never) exit 0 ;;
    late) (sleep 3; send) >/dev/null 2>&1 & exit 0 ;;
  esac
fi
send || exit 1
if [ "$mode" = fail ] && [ "$action" = add ]; then
  echo "the zone is frozen for $fqdn" >&2
  exit 4
fi
exit 0
