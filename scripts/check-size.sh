#!/usr/bin/env bash
# Fails when a tracked file is larger than 1 MiB: build output, binaries and data sets do not
# belong in the repository (a submission over the host's size limit is refused whole).
set -euo pipefail
cd "$(dirname "$0")/.."
big=$(git ls-files -z | xargs -0 -r stat -c '%s %n' 2>/dev/null | awk '$1 > 1048576 {print}')
if [ -n "$big" ]; then
  echo "tracked files over 1 MiB:"; echo "$big"; exit 1
fi
