#!/usr/bin/env bash
# Build Pebble 2.10.1 (ARI, profiles) from ../shared/pebble once and reuse it.
#
# usage: scripts/build-pebble.sh [SHARED_PEBBLE_DIR]   (default: <repo>/../shared/pebble)
# Prints the bin directory (holding pebble and pebble-challtestsrv) on stdout. The build goes
# to ${XDG_CACHE_HOME:-$HOME/.cache}/lua-resty-acme-rs/pebble-<first 12 hex of the tarball's
# sha256>, so a new tarball gets a new build and an unchanged one is never rebuilt.
# Exits 3 (and prints nothing) when the shared Pebble source is absent.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${1:-$REPO/../shared/pebble}
TARBALL=$(ls "$SHARED"/src/pebble-*.tar.gz 2>/dev/null | head -n 1 || true)
if [ ! -x "$SHARED/build.sh" ] || [ -z "$TARBALL" ]; then
  echo "build-pebble.sh: no Pebble source at $SHARED" >&2
  exit 3
fi
SHA=$(sha256sum "$TARBALL" | cut -c1-12)
DEST=${XDG_CACHE_HOME:-$HOME/.cache}/lua-resty-acme-rs/pebble-$SHA
if [ ! -x "$DEST/bin/pebble" ] || [ ! -x "$DEST/bin/pebble-challtestsrv" ]; then
  mkdir -p "$(dirname "$DEST")"
  # one build at a time (parallel test sessions); a finished build is moved in whole
  exec 9>"$DEST.lock"
  flock 9
  if [ ! -x "$DEST/bin/pebble" ] || [ ! -x "$DEST/bin/pebble-challtestsrv" ]; then
    TMP=$(mktemp -d "$DEST.tmp.XXXXXX")
    "$SHARED/build.sh" "$SHARED/src" "$TMP" >&2
    rm -rf "$DEST"
    mv "$TMP" "$DEST"
  fi
fi
echo "$DEST/bin"
