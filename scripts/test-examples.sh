#!/usr/bin/env bash
# Examples' smoke tests: each starts a real collector (SQLite in a temp dir) and agent on random
# loopback ports, runs the example against them and checks through the collector's read API that
# everything arrived; the sidecar test validates the Kubernetes manifest against the binaries'
# real flags and lints the collector Dockerfile. Every test tears its processes down itself.
# Runs after scripts/test-python.sh (which installs the neurocloak wheel into the venv).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
start=$(date +%s)

py="$NEUROCLOAK_VENV/bin/python"
if [ ! -x "$py" ]; then
  python3 -m venv "$NEUROCLOAK_VENV"
fi
pip_install() {
  "$py" -m pip install --quiet --disable-pip-version-check "$@"
}
pip_install -r examples/fastapi-gunicorn/requirements.txt -r examples/batch-scoring/requirements.txt \
  -r examples/sidecar/requirements.txt

if ! (cd "$NEUROCLOAK_CACHE" && "$py" -c 'import neurocloak') 2>/dev/null; then
  echo "== examples: neurocloak wheel missing, building it (scripts/test-python.sh normally does)"
  pip_install maturin==1.8.1
  wheels="$NEUROCLOAK_CACHE/wheels"
  rm -rf "$wheels"
  "$NEUROCLOAK_VENV/bin/maturin" build --locked --quiet -m sdk-python/Cargo.toml --interpreter "$py" --out "$wheels"
  pip_install --force-reinstall --no-deps "$wheels"/neurocloak-*.whl
fi

# A no-op after scripts/test.sh's `cargo build --workspace --bins`; needed when run alone.
cargo build --quiet -p neurocloak-collector -p neurocloak-agent -p neurocloak-example-rust-service --bins

root=$(pwd)
failed=()
for test in examples/fastapi-gunicorn/smoke_test.py examples/batch-scoring/smoke_test.py \
            examples/rust-service/smoke_test.py examples/sidecar/smoke_test.py; do
  echo "== $test"
  t0=$(date +%s)
  # Run from the cache dir so the installed wheel is imported, not the source tree.
  if (cd "$NEUROCLOAK_CACHE" && NEUROCLOAK_LOG=warn "$py" "$root/$test"); then
    echo "   passed in $(( $(date +%s) - t0 )) s"
  else
    echo "   FAILED: $test"
    failed+=("$test")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "== examples: ${#failed[@]} failed: ${failed[*]}"
  exit 1
fi
echo "== examples: all passed in $(( $(date +%s) - start )) s"
