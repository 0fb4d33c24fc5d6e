#!/usr/bin/env bash
# Builds a release wheel and runs bench_log.py in the benchmark's own venv, where the
# peers' pinned versions live (whylogs 1.6.4 breaks on numpy 2; Evidently 0.7.23 on pandas >= 2.3).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh

venv="$NEUROCLOAK_CACHE/bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  whylogs==1.6.4 numpy==1.26.4 pandas==2.2.3 evidently==0.7.23 pyarrow==18.1.0 maturin==1.8.1

wheels="$NEUROCLOAK_CACHE/bench-wheels"
rm -rf "$wheels"
"$venv/bin/maturin" build --release --locked --quiet -m sdk-python/Cargo.toml \
  --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/neurocloak-*.whl

(cd "$NEUROCLOAK_CACHE" && "$venv/bin/python" "$OLDPWD/bench/python/bench_log.py" "$@")
