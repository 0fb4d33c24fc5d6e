#!/usr/bin/env bash
# Builds the `neurocloak` wheel (maturin, abi3) and installs it into the project venv.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
py="$NEUROCLOAK_VENV/bin/python"
[ -x "$py" ] || python3 -m venv "$NEUROCLOAK_VENV"
"$py" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
wheels="$NEUROCLOAK_CACHE/wheels"
rm -rf "$wheels"
# The interpreter is pinned so the abi3 wheel is tagged for the venv's platform.
"$NEUROCLOAK_VENV/bin/maturin" build --locked --quiet -m sdk-python/Cargo.toml --interpreter "$py" --out "$wheels"
"$py" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/neurocloak-*.whl
