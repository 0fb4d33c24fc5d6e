#!/usr/bin/env bash
# Node SDK suite: installs the pinned npm tooling, builds the native addon with napi-rs into
# the shared cargo target dir, fails when the generated loader or type definitions differ from
# the committed ones, then runs `node --test` (API behaviour, bad input, exit timing, and an
# end-to-end test through real agent and collector processes) and the Express example's smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "== node: installing nodejs and npm (Debian packages)"
  apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "node >= 18 is required, found $(node --version)" >&2
  exit 1
fi

# `npm ci` wipes node_modules; skip it when the installed tree already matches the lockfile.
npm_ci() {
  local dir=$1 stamp
  stamp=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$dir/node_modules/.neurocloak-lock" 2>/dev/null || true)" != "$stamp" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$stamp" >"$dir/node_modules/.neurocloak-lock"
  fi
}

echo "== node: npm ci"
npm_ci sdk-node

echo "== node: agent and collector binaries for the end-to-end test"
cargo build --locked -p neurocloak-agent -p neurocloak-collector --bins
export NEUROCLOAK_BIN_DIR="$CARGO_TARGET_DIR/debug"

echo "== node: napi build"
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
(cd sdk-node && npx napi build --platform -o "$gen" --js native.js --dts native.d.ts)
cp "$gen"/neurocloak.*.node sdk-node/

echo "== node: generated loader and types match the committed ones"
for f in native.js native.d.ts; do
  if ! diff -u "sdk-node/$f" "$gen/$f"; then
    echo "sdk-node/$f differs from a fresh napi build: run 'npm run build' in sdk-node and commit it" >&2
    exit 1
  fi
done

echo "== node: index.d.ts type-checks against its usage (tsc --strict)"
(cd sdk-node && npx tsc -p tsconfig.json)

echo "== node: node --test"
(cd sdk-node && node --test --test-concurrency=2 test/*.test.js)


echo "== node: express example smoke test"
npm_ci examples/node-express
(cd examples/node-express && node --test test/*.test.js)
