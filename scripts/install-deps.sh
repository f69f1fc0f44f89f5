#!/usr/bin/env bash
# Install the Debian 12 packages that building, testing and the demo need.
#
# Idempotent and quiet when everything is present: `apt-get update` and `apt-get install` run
# only when a package is missing. Services that Debian packages would start (nginx, redis,
# etcd, named) are kept from starting during the install (policy-rc.d) and, on a systemd
# machine, disabled afterwards: the tests start their own instances on free loopback ports.
set -euo pipefail

PACKAGES=(
  nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache
  libluajit2-5.1-dev pebble redis-server etcd-server lua-nginx-redis lua-cjson
  bind9 bind9-utils bind9-dnsutils nghttp2-client wrk luarocks
  python3-pytest python3-pytest-xdist python3-cryptography python3-pip lua-check libssl-dev
  pkg-config
  build-essential libpcre3-dev zlib1g-dev publicsuffix python3-prometheus-client
)
SERVICES=(nginx redis-server etcd named bind9)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: missing: ${missing[*]}"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "install-deps: not root and no password-less sudo; install these packages:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Keep package scripts from starting services while we install (standard Debian hook:
# exit 101 = action forbidden). Only a policy-rc.d we created is removed again.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\n# temporary: lua-resty-acme-rs scripts/install-deps.sh\nexit 101\n' |
    "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 0755 "$POLICY"
  created_policy=1
fi
cleanup() {
  if [[ $created_policy -eq 1 ]]; then "${SUDO[@]}" rm -f "$POLICY"; fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
          -o Dpkg::Options::=--force-confold)
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" -q update </dev/null
"${SUDO[@]}" apt-get "${APT_OPTS[@]}" -q install -y "${missing[@]}" </dev/null

# On a systemd machine the units may have been enabled (and, without policy-rc.d honoured,
# started): stop and disable them so they never hold ports or files the tests use.
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  for s in "${SERVICES[@]}"; do
    if systemctl list-unit-files "$s.service" >/dev/null 2>&1; then
      "${SUDO[@]}" systemctl disable --now "$s.service" >/dev/null 2>&1 || true
    fi
  done
fi

echo "install-deps: done"
