# Starts a collector (embedded SQLite store) and an agent on random loopback ports for the
# demo and the benchmarks. Source it; do not run it. The caller sets:
#   bin   folder with neurocloak-collector and neurocloak-agent
#   py    a Python interpreter (reads the admin commands' JSON)
#   work  a scratch folder
#   pids  an array the started processes are appended to (the caller's trap stops them)

# Waits until a process printed its "listening" line and echoes that line.
wait_listening() {
  local log=$1 pattern=$2
  for _ in $(seq 1 300); do
    if grep -q "$pattern" "$log" 2>/dev/null; then grep -m1 "$pattern" "$log"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $pattern; log:" >&2; cat "$log" >&2; return 1
}

# start_collector PROJECT READER_SCOPES — bootstraps PROJECT (printing nothing), creates a
# reader key with READER_SCOPES, starts `serve`. Sets ingest_key, read_key, grpc, http.
# The collector's environment (e.g. NEUROCLOAK_PIPELINE_GRACE_MS) passes through.
start_collector() {
  local project=$1 scopes=$2 line
  local store=(--data-dir "$work/collector")
  "$bin/neurocloak-collector" admin bootstrap --org "$project" --project "$project" "${store[@]}" > "$work/bootstrap.json"
  ingest_key=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$work/bootstrap.json")
  "$bin/neurocloak-collector" admin create-key --project "$project" --name "$project-reader" --scopes "$scopes" "${store[@]}" > "$work/reader.json"
  read_key=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$work/reader.json")
  NEUROCLOAK_LOG=warn "$bin/neurocloak-collector" serve "${store[@]}" \
    --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 > "$work/collector.log" 2>&1 &
  pids+=($!)
  line=$(wait_listening "$work/collector.log" "neurocloak-collector listening")
  grpc=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line")
  http=$(sed -E 's/.*http=([^ ]+).*/\1/' <<<"$line")
}

# start_agent [EXTRA FLAGS...] — an agent on $work/agent.sock forwarding to $grpc with
# $ingest_key. Sets agent_pid and agent_http.
start_agent() {
  local line
  NEUROCLOAK_LOG=warn "$bin/neurocloak-agent" --data-dir "$work/agent" --uds-path "$work/agent.sock" \
    --tcp-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --collector "http://$grpc" --api-key "$ingest_key" \
    "$@" > "$work/agent.log" 2>&1 &
  agent_pid=$!
  pids+=($agent_pid)
  line=$(wait_listening "$work/agent.log" "neurocloak-agent listening")
  agent_http=$(sed -E 's/.*http=([^ ]+).*/\1/' <<<"$line")
}
