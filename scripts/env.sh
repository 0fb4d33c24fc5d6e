# Shared environment for the project's scripts. Source it; do not run it.
# Everything heavy (cargo target dir, FerretDB binary, venvs) lives under one cache folder
# that persists between runs on the same machine, so a second run is fast.
export NEUROCLOAK_CACHE="${NEUROCLOAK_CACHE:-$HOME/.cache/neurocloak}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NEUROCLOAK_CACHE/target}"
export NEUROCLOAK_VENV="${NEUROCLOAK_VENV:-$NEUROCLOAK_CACHE/venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
export PATH="$HOME/.cargo/bin:$HOME/go/bin:/usr/local/go/bin:$PATH"
mkdir -p "$NEUROCLOAK_CACHE"
