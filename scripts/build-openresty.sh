#!/usr/bin/env bash
# Build OpenResty 1.29.2.3 from ../shared/openresty (its build.sh: static lua + stream-lua
# modules) into a cache directory keyed by the checksums of build.sh and the tarballs, and print
# the prefix (the value for OPENRESTY=). A second call with unchanged sources only prints it.
#
# usage: scripts/build-openresty.sh          (stdout: the prefix; progress on stderr)
# env:   OPENRESTY_SRC  the directory holding build.sh and src/ (default: ../shared/openresty
#                       beside the repository)
#        ACME_RS_CACHE  cache directory (default: ${XDG_CACHE_HOME:-$HOME/.cache}/lua-resty-acme-rs)
# exit:  0 built or cached, 3 no OpenResty sources here, 1 the build failed (its log's tail shown)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=${OPENRESTY_SRC:-$repo/../shared/openresty}
if [[ ! -x $src/build.sh || ! -d $src/src ]]; then
  echo "build-openresty: no OpenResty sources at $src (build.sh and src/)" >&2
  exit 3
fi
src=$(cd "$src" && pwd)
key=$(cd "$src" && sha256sum build.sh src/*.tar.gz | sha256sum | cut -c1-12)
cache=${ACME_RS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lua-resty-acme-rs}
prefix=$cache/openresty-$key
mkdir -p "$cache"

# one build at a time per cache (two suites started together wait for the first)
exec 9>"$cache/openresty.lock"
flock 9
if [[ -f $prefix/.built && -x $prefix/nginx/sbin/nginx ]]; then
  echo "$prefix"
  exit 0
fi
echo "build-openresty: building $src into $prefix (about 2 minutes)" >&2
rm -rf "$prefix"
log=$cache/openresty-$key.build.log
if ! "$src/build.sh" "$src/src" "$prefix" >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  echo "build-openresty: build failed, log $log" >&2
  rm -rf "$prefix"
  exit 1
fi
# the marker last: an interrupted build is never taken for a finished one
touch "$prefix/.built"
echo "build-openresty: done ($("$prefix/nginx/sbin/nginx" -v 2>&1))" >&2
echo "$prefix"
