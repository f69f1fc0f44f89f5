#!/bin/sh
# Installs moto's server (PyPI `moto[server]`, a local implementation of the AWS APIs) into a
# virtualenv under the cache directory once, and prints the path of its `moto_server`.
# Exit status 1 (and nothing on stdout) when it cannot be installed (no network, no venv).
set -e
cache=${XDG_CACHE_HOME:-$HOME/.cache}/lua-resty-acme-rs
venv=$cache/moto-venv
if [ ! -x "$venv/bin/moto_server" ]; then
  mkdir -p "$cache"
  rm -rf "$venv.tmp"
  /usr/bin/python3 -m venv "$venv.tmp" >&2
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5,<6" >&2
  rm -rf "$venv"
  mv "$venv.tmp" "$venv"
  # the venv's scripts name the interpreter by the path they were installed under
  sed -i "1s|$venv.tmp|$venv|" "$venv/bin/moto_server" "$venv/bin/pip" 2>/dev/null || true
fi
echo "$venv/bin/moto_server"
