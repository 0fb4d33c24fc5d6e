#!/usr/bin/env bash
# The evaluation crate's oracle vectors (scipy / scikit-learn / fairlearn) must regenerate
# byte-identically from the committed script, so the Rust oracle tests compare against what
# the script really computes.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
"$NEUROCLOAK_VENV/bin/python" -m pytest -q -p no:cacheprovider collector/evaluate/oracle
