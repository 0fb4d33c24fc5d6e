#!/usr/bin/env bash
# The main command: the whole pipeline on one machine, as a newcomer first sees it.
#   collector (embedded SQLite store) ← agent (durable queue) ← a credit-scoring model service
#   logging through the real Python SDK from several forked workers.
# Partway through, the service receives drifted applicants and a bad model update that
# penalises one group; the demo prints each window's trust score with its reasons, the alerts
# that fire, and the signed webhooks a local receiver gets, then a summary.
#
#   ./scripts/demo.sh                 # about 3 minutes once built
#   DEMO_KEEP=1 ./scripts/demo.sh     # leave collector and agent running to explore the API
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

duration="${DEMO_DURATION:-150}"
drift_at="${DEMO_DRIFT_AT:-70}"
window="${DEMO_WINDOW_SECONDS:-10}"
workers="${DEMO_WORKERS:-4}"

echo "== setting up (first run on a fresh machine compiles everything: expect several minutes)"
NEUROCLOAK_SETUP_SKIP_FERRETDB=1 scripts/setup.sh
cargo build --quiet -p neurocloak-collector -p neurocloak-agent --bins
scripts/install-python-sdk.sh
py="$NEUROCLOAK_VENV/bin/python"
bin="$CARGO_TARGET_DIR/debug"

work="$(mktemp -d "${TMPDIR:-/tmp}/neurocloak-demo.XXXXXX")"
pids=()
cleanup() {
  if [ "${DEMO_KEEP:-0}" = 1 ]; then
    echo "services left running (pids ${pids[*]}); data in $work"
    return
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
. scripts/stack.sh

echo "== collector (SQLite store in $work/collector)"
NEUROCLOAK_PIPELINE_GRACE_MS=2000 start_collector demo read,admin
echo "   gRPC ingest $grpc, HTTP API http://$http"

echo "== agent (durable queue in $work/agent)"
start_agent --merge-grace-ms 1500 --linger-ms 200
echo "   socket $work/agent.sock"

echo "== webhook receiver (verifies HMAC-SHA256 signatures)"
secret="demo-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
"$py" examples/credit-scoring/webhook_receiver.py --secret "$secret" --out "$work/webhooks.jsonl" \
  --port-file "$work/webhook.port" > "$work/webhook.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/webhook.port" ] && break; sleep 0.1; done

echo "== model service: $workers workers, ${window}s windows, drift + fairness regression at +${drift_at}s"
"$py" examples/credit-scoring/simulate.py --agent "unix://$work/agent.sock" --workers "$workers" \
  --window-seconds "$window" --duration "$duration" --drift-at "$drift_at" --timeline "$work/timeline.json" > "$work/service.log" 2>&1 &
service=$!
pids+=($service)

status=0
"$py" examples/credit-scoring/watch.py --api "http://$http" --key "$read_key" --project demo \
  --webhook "http://127.0.0.1:$(cat "$work/webhook.port")/" --secret "$secret" \
  --received "$work/webhooks.jsonl" --service-pid "$service" --timeline "$work/timeline.json" \
  --window-seconds "$window" --settle "$(( ${window%.*} + 10 ))" || status=$?
if ! wait "$service"; then
  echo "model service failed:"; cat "$work/service.log"; exit 1
fi
echo; cat "$work/service.log"
echo
echo "explore the API: curl -H 'x-api-key: $read_key' http://$http/api/v1/projects/demo/models/credit-scoring/trust/latest"
echo "(DEMO_KEEP=1 ./scripts/demo.sh leaves the collector and agent running)"
exit $status
