#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

echo "== setup: rust components"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

echo "== setup: FerretDB (MongoDB wire protocol server for tests)"
if [ "${NEUROCLOAK_SETUP_SKIP_FERRETDB:-0}" != 1 ]; then scripts/ferretdb.sh build; fi

echo "== setup: python venv at $NEUROCLOAK_VENV"
if [ ! -x "$NEUROCLOAK_VENV/bin/python" ]; then
  python3 -m venv "$NEUROCLOAK_VENV"
fi
"$NEUROCLOAK_VENV/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
