#!/usr/bin/env bash
# One-command demo on a fresh Debian 12 machine: install packages, build the native module,
# start Pebble + nginx with resty.acme.autossl on 127.0.0.1, get a certificate issued, and print
# the served certificate's issuer. Extra arguments go to scripts/demo.py (--keep, --timeout N).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
make --no-print-directory lua-build
exec /usr/bin/python3 scripts/demo.py "$@"
