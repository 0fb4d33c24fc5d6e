#!/usr/bin/env bash
# Agent resource use under a realistic load: a collector (SQLite) and an agent (fsync = always,
# the default) on loopback, and 8 SDK processes logging ~100 k predictions/s in total through the
# real Python SDK (release wheel). load.py drives the load, samples the agent's CPU and RSS every
# second, and checks through the collector's REST API that every logged row arrived; it exits
# non-zero if any row was lost.
#
#   bench/agent/run.sh                                   # 75 s of load, 8 processes, 100 k rows/s
#   BENCH_DURATION=90 BENCH_RATE=50000 bench/agent/run.sh
#   bench/agent/run.sh --out /tmp/agent-bench.json       # extra arguments go to load.py
#   BENCH_AGENT_WRAPPER="heaptrack -o /tmp/agent-heap" bench/agent/run.sh
#       runs the agent under a profiler (any command that takes the agent's command line); the
#       CPU and RSS samples then describe the wrapper process, so read the profiler's numbers
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/env.sh

duration="${BENCH_DURATION:-75}"
rate="${BENCH_RATE:-100000}"
processes="${BENCH_PROCESSES:-8}"
window="${BENCH_WINDOW_SECONDS:-10}"

echo "== building (release binaries and a release wheel in the benchmark's own venv)"
cargo build --release --quiet -p neurocloak-agent -p neurocloak-collector --bins
bin="$CARGO_TARGET_DIR/release"
venv="$NEUROCLOAK_CACHE/agent-bench-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check numpy==1.26.4 maturin==1.8.1
wheels="$NEUROCLOAK_CACHE/agent-bench-wheels"
rm -rf "$wheels"
"$venv/bin/maturin" build --release --locked --quiet -m sdk-python/Cargo.toml \
  --interpreter "$venv/bin/python" --out "$wheels"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/neurocloak-*.whl
py="$venv/bin/python"

# On the cache's disk rather than /tmp, so that fsync = always pays for a real disk even where
# /tmp is a tmpfs.
work="$(mktemp -d "$NEUROCLOAK_CACHE/agent-bench.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    # Under BENCH_AGENT_WRAPPER the agent may be the wrapper's child (heaptrack's is): stop it
    # too, or it outlives the run.
    pkill -TERM -P "$p" -f neurocloak-agent 2>/dev/null || true
    kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${BENCH_AGENT_WRAPPER:-}" ]; then
  mkdir "$work/bin"
  ln -s "$bin/neurocloak-collector" "$work/bin/neurocloak-collector"
  printf '#!/usr/bin/env bash\nexec %s %q "$@"\n' "$BENCH_AGENT_WRAPPER" "$bin/neurocloak-agent" \
    > "$work/bin/neurocloak-agent"
  chmod +x "$work/bin/neurocloak-agent"
  bin="$work/bin"
fi
. scripts/stack.sh

echo "== collector (SQLite store in $work/collector)"
start_collector bench read

echo "== agent (fsync = always, queue in $work/agent)"
start_agent
agent=$agent_pid

echo "== load: $processes SDK processes, $rate rows/s in total, ${duration}s, ${window}s windows"
status=0
"$py" bench/agent/load.py --agent "unix://$work/agent.sock" --agent-pid "$agent" \
  --agent-metrics "http://$agent_http/metrics" --api "http://$http" --read-key "$read_key" \
  --project bench --processes "$processes" --rate "$rate" --duration "$duration" \
  --window-seconds "$window" --work "$work" "$@" || status=$?
if [ "$status" != 0 ]; then
  echo "== agent log (tail)"; tail -n 20 "$work/agent.log"
  echo "== collector log (tail)"; tail -n 20 "$work/collector.log"
fi
exit $status
