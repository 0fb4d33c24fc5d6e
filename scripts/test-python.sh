#!/usr/bin/env bash
# Python SDK suite: builds the `neurocloak` wheel with maturin from the project venv,
# installs it there, then checks the native stub (stubtest), types (mypy --strict)
# and behaviour (pytest, including fork tests and gunicorn → agent → collector with real processes).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

py="$NEUROCLOAK_VENV/bin/python"
if [ ! -x "$py" ]; then
  python3 -m venv "$NEUROCLOAK_VENV"
fi
# Pinned here rather than in requirements-test.txt: only this suite needs it.
"$py" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt gunicorn==23.0.0

echo "== python: agent and collector binaries (the gunicorn test runs them)"
cargo build --locked -p neurocloak-agent -p neurocloak-collector --bins
export NEUROCLOAK_BIN_DIR="$CARGO_TARGET_DIR/debug"

echo "== python: build wheel"
wheels="$NEUROCLOAK_CACHE/wheels"
rm -rf "$wheels"
# Python interpreter pinned so the abi3 wheel is tagged for the venv's platform.
"$NEUROCLOAK_VENV/bin/maturin" build --locked --quiet -m sdk-python/Cargo.toml \
  --interpreter "$py" --out "$wheels"
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/neurocloak-*.whl

echo "== python: stubtest"
# Run from outside the repo so the installed wheel, not the source tree, is imported.
(cd "$NEUROCLOAK_CACHE" && "$py" -m mypy.stubtest neurocloak._native)

echo "== python: mypy --strict"
"$py" -m mypy --strict --config-file sdk-python/pyproject.toml sdk-python/python/neurocloak

echo "== python: pytest"
"$py" -m pytest -q -p no:cacheprovider sdk-python/tests
