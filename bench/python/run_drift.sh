#!/usr/bin/env bash
# Drift benchmark: NeuroCloak (release wheel + release agent and collector) against Evidently
# 0.7.23 on the same 1 M × 10 data, in the benchmark's own venv (the peers' pinned versions,
# shared with bench/python/run.sh). Arguments go to bench_drift.py (--rows, --skip-evidently, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh

venv="$NEUROCLOAK_CACHE/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  whylogs==1.6.4 numpy==1.26.4 pandas==2.2.3 evidently==0.7.23 pyarrow==18.1.0 maturin==1.8.1

# The evaluation runs inside the collector, so it is timed in a release build like the SDK.
cargo build --release --locked -p neurocloak-collector -p neurocloak-agent --bins
export NEUROCLOAK_BIN_DIR="$CARGO_TARGET_DIR/release"

# Own wheel folder: run.sh empties its folder, and the two may run at the same time.
wheels="$NEUROCLOAK_CACHE/bench-drift-wheels"
rm -rf "$wheels"
"$venv/bin/maturin" build --release --locked --quiet -m sdk-python/Cargo.toml \
  --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/neurocloak-*.whl

# Run from outside the repo so the installed wheel, not the source tree, is imported.
(cd "$NEUROCLOAK_CACHE" && "$venv/bin/python" "$OLDPWD/bench/python/bench_drift.py" "$@")
