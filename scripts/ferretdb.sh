#!/usr/bin/env bash
# FerretDB 1.24.2 (MongoDB wire protocol on SQLite) for the collector's MongoDB tests (DESIGN §4).
#
#   scripts/ferretdb.sh build            build into $NEUROCLOAK_CACHE/bin/ferretdb (idempotent)
#   scripts/ferretdb.sh start DIR PORT   run it in the foreground on 127.0.0.1:PORT, data in DIR
#
# Why not a plain `go install ...@v1.24.2`: the module embeds build/version/version.txt, which
# only FerretDB's own release tooling generates, so that binary panics at start
# ("Invalid build/version/version.txt file content"). We therefore `go install` first (it
# downloads the module and all dependencies into the module cache), then copy the module source,
# write the version file and `go build` from that copy.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

VERSION=v1.24.2
MODULE=github.com/FerretDB/FerretDB
BIN_DIR="$NEUROCLOAK_CACHE/bin"
BIN="$BIN_DIR/ferretdb"

# True when $BIN exists and actually starts (answers --version without panicking).
runs() {
  [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "${VERSION#v}"
}

build() {
  if runs; then
    echo "ferretdb: $BIN already present and runs"
    return 0
  fi
  command -v go >/dev/null || { echo "ferretdb: Go toolchain not found (need go >= 1.22)" >&2; exit 1; }
  mkdir -p "$BIN_DIR"
  local gobin
  gobin="$(mktemp -d)"
  # Fetches the module and its dependencies; the resulting binary is discarded (see above).
  GOBIN="$gobin" GOFLAGS=-mod=mod go install "$MODULE/cmd/ferretdb@$VERSION"
  local src
  src="$(go env GOMODCACHE)/github.com/!ferret!d!b/!ferret!d!b@$VERSION"
  [ -d "$src" ] || { echo "ferretdb: module source not found at $src" >&2; exit 1; }
  local work
  work="$(mktemp -d)"
  cp -r "$src/." "$work/"
  chmod -R u+w "$work"
  echo "$VERSION" >"$work/build/version/version.txt"
  # Package name the binary reports; "unknown" would also work but this is honest.
  echo "neurocloak-tests" >"$work/build/version/package.txt"
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -o "$BIN.tmp" ./cmd/ferretdb)
  mv "$BIN.tmp" "$BIN"
  rm -rf "$work" "$gobin"
  runs || { echo "ferretdb: built $BIN but it does not start" >&2; "$BIN" --version >&2 || true; exit 1; }
  echo "ferretdb: built $BIN"
}

start() {
  local dir="$1" port="$2"
  runs || build
  mkdir -p "$dir"
  exec "$BIN" --handler=sqlite --sqlite-url="file:$dir/" --listen-addr="127.0.0.1:$port" \
    --telemetry=disable --debug-addr=- --log-level=warn --state-dir="$dir"
}

case "${1:-}" in
  build) build ;;
  start)
    [ $# -eq 3 ] || { echo "usage: $0 start DIR PORT" >&2; exit 2; }
    start "$2" "$3"
    ;;
  *)
    echo "usage: $0 build | start DIR PORT" >&2
    exit 2
    ;;
esac
