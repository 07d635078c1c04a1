#!/usr/bin/env bash
# graphgate against the nginx anchor, on the same machine, back to back.
#   bench/run.sh            # the full run (about 4 minutes)
#   DURATION=5 bench/run.sh # shorter wrk runs
# Starts a fake Graph (nginx, TLS, 204), the emulator (tokens only), graphgate (release,
# full path: API key, policy, token broker, durable audit) and the nginx anchor, drives each
# with the same wrk request, and writes bench/results.md and bench/latency.svg.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
DURATION=${DURATION:-10}
PROXY_CPU=${PROXY_CPU:-1}       # the proxy under test (graphgate or the anchor) runs here
LOAD_CPUS=${LOAD_CPUS:-0}       # wrk, the fake Graph and the emulator run here
URL_PATH=/v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount
KEY=bench-key-0123456789abcdef

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx-light and wrk" >&2
  apt-get update -qq && apt-get install -y -qq nginx-light wrk >/dev/null
fi
ulimit -n 65536 2>/dev/null || true

cargo build --release --quiet --manifest-path "$repo/Cargo.toml"
BIN="$repo/target/release/graphgate"
DIR=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

"$here/make-certs.sh" "$DIR" >/dev/null
mkdir -p "$DIR/logs"
taskset -c "$LOAD_CPUS" nginx -p "$DIR" -c "$DIR/fake-graph.conf" & pids+=($!)
taskset -c "$LOAD_CPUS" "$BIN" emulate --listen 127.0.0.1:18444 --ca-out "$DIR/emulator-ca.pem" \
  --token-lifetime-secs 86400 2>"$DIR/logs/emulator.err" >/dev/null & pids+=($!)
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
wait_port 18443; wait_port 18444
cat "$DIR/ca.pem" "$DIR/emulator-ca.pem" > "$DIR/cas.pem"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/hmac.key"

# Starts graphgate with the given audit log; sets GG_PID.
start_graphgate() {
  local audit=$1 policy=${2:-$here/policy.yaml}
  AZURE_TENANT_ID=6babcaad-604b-40ac-a9d7-9fd97c0b779f \
  AZURE_CLIENT_ID=3f0c1d8e-5a4b-4c2d-9e8f-7a6b5c4d3e2f \
  AZURE_CLIENT_SECRET=demo-client-secret-not-for-production \
  GRAPHGATE_CONNECT_TO="graph.microsoft.com:443=127.0.0.1:18443,login.microsoftonline.com:443=127.0.0.1:18444" \
  GRAPHGATE_EXTRA_CA_FILE="$DIR/cas.pem" RUST_LOG=warn \
  taskset -c "$PROXY_CPU" "$BIN" serve --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:19090 --max-connections 20000 \
    --policy "$policy" --audit-log "$audit" --audit-hmac-key-file "$DIR/hmac.key" \
    >"$DIR/logs/graphgate.out" 2>"$DIR/logs/graphgate.err" &
  GG_PID=$!
  pids+=("$GG_PID")
  wait_port 18080
}
stop_graphgate() { kill "$GG_PID"; wait "$GG_PID" 2>/dev/null || true; }

# cpu_ticks PID...: utime+stime of the processes, in clock ticks.
cpu_ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
peak_rss_kib() { local m=0; for p in "$@"; do local r; r=$(awk '/VmHWM/{print $2}' "/proc/$p/status"); [ "$r" -gt "$m" ] && m=$r; done; echo "$m"; }
TICKS=$(getconf CLK_TCK)

# run NAME URL CONNS PIDS...: one wrk run; appends a line to results.tsv.
run() {
  local name=$1 url=$2 conns=$3; shift 3
  local before after out
  before=$(cpu_ticks "$@")
  if [ -n "${PROFILE:-}" ] && [ "$name" = "$PROFILE" ] && [ "$conns" = 64 ]; then
    perf record -e cpu-clock -F 499 -g -o "$DIR/perf.data" -p "$1" -- sleep $((DURATION - 2)) >/dev/null 2>&1 &
  fi
  out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"$conns" -d"${DURATION}s" -s "$here/post.lua" --latency "$url")
  after=$(cpu_ticks "$@")
  python3 "$here/report.py" parse "$name" "$conns" "$((after - before))" "$TICKS" "$(peak_rss_kib "$@")" <<<"$out" >> "$DIR/results.tsv"
  echo "$out" > "$DIR/logs/wrk-$name-c$conns.txt"
}

# Warm up: the first token, TLS sessions and pools, so the steady state is measured.
start_graphgate "$DIR/audit.jsonl"
curl -s -o /dev/null -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  --data-binary @<(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$here/post.lua") "http://127.0.0.1:18080$URL_PATH"
taskset -c "$PROXY_CPU" nginx -p "$DIR" -c "$DIR/nginx-anchor.conf" & pids+=($!)
wait_port 18082
NGINX_PIDS=$(pgrep -f "nginx.*$DIR/nginx-anchor.conf" | tr '\n' ' ')
# The worker is nginx's child; count master and worker.
NGINX_PIDS="$NGINX_PIDS $(pgrep -P "${NGINX_PIDS%% *}" | tr '\n' ' ')"

run direct "https://127.0.0.1:18443$URL_PATH" 1 $(pgrep -f "nginx.*$DIR/fake-graph.conf" | head -1)
for c in 1 64; do
  run nginx "http://127.0.0.1:18082$URL_PATH" "$c" $NGINX_PIDS
  run graphgate "http://127.0.0.1:18080$URL_PATH" "$c" "$GG_PID"
done
stop_graphgate
records=$(cat "$DIR"/audit.jsonl* | wc -l)
"$BIN" audit verify "$DIR"/audit.jsonl* > "$DIR/logs/verify.txt" 2>&1 || { echo "audit verify failed" >&2; cat "$DIR/logs/verify.txt" >&2; exit 1; }

# The same load with audit off, to show what durable audit costs.
start_graphgate none
run graphgate-noaudit "http://127.0.0.1:18080$URL_PATH" 64 "$GG_PID"
stop_graphgate

# Idle keep-alive connections: memory with 1,000 and 10,000 open (after one request each).
sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$here/post.lua" > "$DIR/body.json"
start_graphgate "$DIR/audit-idle.jsonl"
idle_rss=""
for n in 1000 10000; do
  idle_rss+="$(python3 "$here/idle.py" 127.0.0.1 18080 "$n" "$GG_PID" "$URL_PATH" "$KEY" "$DIR/body.json")"$'\n'
done
stop_graphgate
printf '%s' "$idle_rss" > "$DIR/idle.tsv"

python3 "$here/report.py" render "$DIR/results.tsv" "$here/results.md" "$here/latency.svg" "$records"
cat "$here/results.md"
if [ -n "${PROFILE:-}" ] && [ -f "$DIR/perf.data" ]; then
  perf report -i "$DIR/perf.data" --no-children --sort comm,sym --percent-limit 1 --stdio -g none > "$DIR/logs/profile.txt" 2>/dev/null || true
  echo "profile of $PROFILE at 64 connections: $DIR/logs/profile.txt"
fi
echo "raw wrk output and logs: $DIR/logs"
