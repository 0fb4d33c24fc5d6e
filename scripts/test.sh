#!/usr/bin/env bash
# The project's one test command (README "Run every test"; .ci/run calls it).
# Installs what it needs (scripts/setup.sh), then: rustfmt, clippy -D warnings, every Rust
# test (FerretDB-backed ones included), the Python and Node suites and the examples' smoke tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
start=$(date +%s)

scripts/check-size.sh
scripts/setup.sh

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== cargo test"
# Binaries first, so integration tests that spawn them find fresh ones.
cargo build --workspace --bins
cargo test --workspace -- --test-threads=2

for suite in scripts/test-*.sh; do
  [ -e "$suite" ] || continue
  echo "== $suite"
  "$suite"
done

echo "== all tests passed in $(( $(date +%s) - start )) s"
