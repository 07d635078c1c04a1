#!/usr/bin/env bash
# graphgate against the nginx anchor, on the same machine, back to back.
#   bench/run.sh            # the full run (about 7 minutes, plus the dist-profile build)
#   DURATION=5 bench/run.sh # shorter wrk runs; ROUNDS=1 for one round per comparison
#   SCENARIOS=cold,startup,policy bench/run.sh   # only some scenarios (results in the temp dir)
# Starts a fake Graph (nginx, TLS, 204), the emulator (tokens only), graphgate (dist profile,
# full path: API key, policy, token broker, durable audit) and the nginx anchor, drives each
# with the same wrk request, and writes bench/results.md and bench/latency.svg.
# Scenarios (SCENARIOS, comma-separated; default all):
#   main     graphgate vs the nginx anchor at 1 and 64 connections, and graphgate without audit
#   idle     memory with 1,000 and 10,000 idle keep-alive connections
#   cold     cold start: fresh graphgate, COLD_CONNECTIONS (1,000) requests released at once,
#            with the first token already fetched and with it held back COLD_TOKEN_DELAY_MS
#            (2000); fails the run unless graphgate made exactly one token request in each
#   startup  exec to the first 200 from /readyz, and idle RSS right after (STARTUP_RUNS starts)
#   policy   requests/s at 64 connections with POLICY_SIZES (10 1000 10000) rules, and with
#            the largest size with every rule naming the bench caller (POLICY_WALK=1)
#   state    --state memory against --state redis:// (a local redis-server, no persistence)
#            at 1 and 64 connections, alternating rounds, every request with its own
#            Idempotency-Key under a caller rate limit (bench/post-keyed.lua,
#            bench/policy-state.yaml): the latency the shared state store adds
#   rate     every path at a constant RATE (1000) requests/s over RATE_CONNECTIONS (16)
#            connections for RATE_DURATION (15) s, latency corrected for coordinated omission
#            (examples/rate.rs): the nginx anchor; graphgate with state in memory, on Redis,
#            on Redis with Idempotency-Key + rate limit + budget, in memory with a budget,
#            with mTLS callers, with a JWT caller (RATE_ROWS picks rows; RATE_WARMUP (2) s of
#            warm-up, RATE_ROUNDS (3) rounds); p50, p99, achieved rate, CPU per 1,000
#            requests, RSS, the machine's load (bench/rate.sh, bench/rate_report.py)
# Ports: each one not set in the environment is a free port picked at the start. Set them to
# run on fixed ones: GRAPH_PORT EMULATOR_PORT GG_PORT ADMIN_PORT ANCHOR_PORT REDIS_PORT
# STATE_PORT STATE_ADMIN_PORT.
# Binaries: GRAPHGATE_BIN, the one measured (default: built here with `cargo build --profile
# dist`, plus GRAPHGATE_BUILD_ARGS, e.g. --no-default-features); EMULATOR_BIN, the one running
# `emulate` (default: GRAPHGATE_BIN if it has the emulator, else a release build with
# `--features emulator`); LOADGEN_BIN, the rate scenario's load generator (default: built
# from examples/rate.rs).
# A run without 'main' writes its results.md to the temp dir, not bench/; the rate scenario
# always writes its own section of bench/results.md (other runs keep that section).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}             # alternating graphgate/nginx rounds in the main comparison
PROXY_CPU=${PROXY_CPU:-1}       # the proxy under test (graphgate or the anchor) runs here
LOAD_CPUS=${LOAD_CPUS:-0}       # wrk, the fake Graph and the emulator run here
URL_PATH=/v1.0/deviceManagement/managedDevices/0b6f2f1e-1a2b-4c3d-8e9f-00112233aabb/updateWindowsDeviceAccount
KEY=bench-key-0123456789abcdef
SCENARIOS=${SCENARIOS:-main,idle,cold,startup,policy,state,rate}
need() { command -v "$1" >/dev/null 2>&1; }
for tool in python3 openssl curl taskset; do
  need "$tool" || { echo "bench/run.sh needs $tool on PATH (Debian: apt-get install python3 openssl curl util-linux)" >&2; exit 1; }
done
# Free ports, picked together (so they differ) for every port not set in the environment.
read -r -a free < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
GRAPH_PORT=${GRAPH_PORT:-${free[0]}}       # the fake Graph
EMULATOR_PORT=${EMULATOR_PORT:-${free[1]}} # the emulator (Entra tokens, caller-token issuers)
GG_PORT=${GG_PORT:-${free[2]}}             # graphgate
ADMIN_PORT=${ADMIN_PORT:-${free[3]}}       # graphgate's admin listener
ANCHOR_PORT=${ANCHOR_PORT:-${free[4]}}     # the nginx anchor
REDIS_PORT=${REDIS_PORT:-${free[5]}}       # the state and rate scenarios' redis-server
STATE_PORT=${STATE_PORT:-${free[6]}}       # the state scenario's second graphgate (Redis)
STATE_ADMIN_PORT=${STATE_ADMIN_PORT:-${free[7]}}
COLD_CONNECTIONS=${COLD_CONNECTIONS:-1000}
COLD_TOKEN_DELAY_MS=${COLD_TOKEN_DELAY_MS:-2000}
STARTUP_RUNS=${STARTUP_RUNS:-5}
POLICY_SIZES=${POLICY_SIZES:-10 1000 10000}
POLICY_WALK=${POLICY_WALK:-1}
has() { [[ ",$SCENARIOS," == *",$1,"* ]]; }
for s in ${SCENARIOS//,/ }; do
  case $s in main|idle|cold|startup|policy|state|rate) ;; *) echo "unknown scenario '$s' (main, idle, cold, startup, policy, state, rate)" >&2; exit 2 ;; esac
done
if has rate; then source "$here/rate.sh"; fi

# install TOOL PACKAGE...: the Debian packages, unless TOOL is already on PATH.
install() {
  local tool=$1; shift
  need "$tool" && return 0
  echo "installing $* (for $tool)" >&2
  { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; } || true
  need "$tool" || { echo "bench/run.sh needs $tool: install the Debian package(s) $* (apt-get install $*)" >&2; exit 1; }
}
install nginx nginx-light
if has main || has policy || has state; then install wrk wrk; fi
# Only the program: the state and rate scenarios start their own, without persistence.
if has state || has rate; then install redis-server redis-server; fi
ulimit -n 65536 2>/dev/null || true

# Another run (or a leftover fake) on these ports would be measured instead: refuse.
for port in "$GRAPH_PORT" "$EMULATOR_PORT" "$GG_PORT" "$ADMIN_PORT" "$ANCHOR_PORT" "$REDIS_PORT" "$STATE_PORT" "$STATE_ADMIN_PORT"; do
  if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    echo "port $port is already in use; stop what listens there or choose other ports (see the header)" >&2
    exit 1
  fi
done

# The binary measured, the emulator's (different builds: what ships, the dist profile
# without the `emulator` feature, is what is measured; the emulator that issues the tokens
# runs from a build with it), and the rate scenario's generator.
if [ -z "${GRAPHGATE_BIN:-}" ]; then
  need cargo || { echo "bench/run.sh builds graphgate with cargo (or set GRAPHGATE_BIN)" >&2; exit 1; }
  # shellcheck disable=SC2086
  cargo build --profile dist --no-default-features --locked --quiet --manifest-path "$repo/Cargo.toml" -p graphgate --bin graphgate ${GRAPHGATE_BUILD_ARGS:-}
  GRAPHGATE_BIN=$repo/target/dist/graphgate
fi
if [ -z "${EMULATOR_BIN:-}" ]; then
  if "$GRAPHGATE_BIN" emulate --help >/dev/null 2>&1; then
    EMULATOR_BIN=$GRAPHGATE_BIN
  else
    echo "$GRAPHGATE_BIN has no emulator; building one (cargo build --release --features emulator)" >&2
    cargo build --release --locked --quiet --manifest-path "$repo/Cargo.toml" -p graphgate --bin graphgate --features emulator
    EMULATOR_BIN=$repo/target/release/graphgate
  fi
fi
if has rate && [ -z "${LOADGEN_BIN:-}" ]; then
  if [ "$LOADGEN" = oha ]; then
    if ! need oha; then
      echo "installing oha (cargo install oha --locked)" >&2
      cargo install oha --locked --quiet || { echo "LOADGEN=oha needs oha: cargo install oha --locked" >&2; exit 1; }
    fi
    LOADGEN_BIN=$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")
  else
    cargo build --profile dist --locked --quiet --manifest-path "$repo/Cargo.toml" --example rate
    LOADGEN_BIN=$repo/target/dist/examples/rate
  fi
fi
for b in "$GRAPHGATE_BIN" "$EMULATOR_BIN" ${LOADGEN_BIN:+"$LOADGEN_BIN"}; do
  [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 1; }
done
BIN=$GRAPHGATE_BIN
DIR=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
# Every process started here is stopped however the run ends (an interrupt too).
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

"$here/make-certs.sh" "$DIR" >/dev/null
# The configs carry the default ports; move them to the ones asked for.
sed -i "s/127\.0\.0\.1:18443/127.0.0.1:$GRAPH_PORT/" "$DIR/fake-graph.conf" "$DIR/nginx-anchor.conf"
sed -i "s/127\.0\.0\.1:18082/127.0.0.1:$ANCHOR_PORT/" "$DIR/nginx-anchor.conf"
mkdir -p "$DIR/logs"
taskset -c "$LOAD_CPUS" nginx -p "$DIR" -c "$DIR/fake-graph.conf" & pids+=($!)
taskset -c "$LOAD_CPUS" "$EMULATOR_BIN" emulate --listen 127.0.0.1:"$EMULATOR_PORT" --ca-out "$DIR/emulator-ca.pem" \
  --token-lifetime-secs 86400 2>"$DIR/logs/emulator.err" >/dev/null & pids+=($!)
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
wait_port "$GRAPH_PORT"; wait_port "$EMULATOR_PORT"
cat "$DIR/ca.pem" "$DIR/emulator-ca.pem" > "$DIR/cas.pem"
# The key must be private to graphgate's user (graphgate refuses it otherwise).
(umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/hmac.key")
sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$here/post.lua" > "$DIR/body.json"

# graphgate's environment, and its command line for an audit log and a policy (sets GG_ARGS).
GG_ENV=(
  AZURE_TENANT_ID=6babcaad-604b-40ac-a9d7-9fd97c0b779f
  AZURE_CLIENT_ID=3f0c1d8e-5a4b-4c2d-9e8f-7a6b5c4d3e2f
  AZURE_CLIENT_SECRET=demo-client-secret-not-for-production
  GRAPHGATE_CONNECT_TO="graph.microsoft.com:443=127.0.0.1:$GRAPH_PORT,login.microsoftonline.com:443=127.0.0.1:$EMULATOR_PORT,kubernetes.default.svc.cluster.local:443=127.0.0.1:$EMULATOR_PORT"
  GRAPHGATE_EXTRA_CA_FILE="$DIR/cas.pem" RUST_LOG=warn
)
# The bench caller stands for many services (the cold start sends 1,000 requests at once), so
# the per-caller and per-source bounds are raised out of the way.
gg_args() {
  local audit=$1 policy=${2:-$here/policy.yaml}
  GG_ARGS=(serve --listen 127.0.0.1:"$GG_PORT" --admin-listen 127.0.0.1:"$ADMIN_PORT" --max-connections 20000
    --max-connections-per-source 20000 --max-in-flight-per-caller 20000
    --policy "$policy" --audit-log "$audit" --audit-hmac-key-file "$DIR/hmac.key")
}
# Starts graphgate with the given audit log (and policy); sets GG_PID. Waits for the ports
# only: a /readyz probe would fetch the first token.
start_graphgate() {
  gg_args "$@"
  env "${GG_ENV[@]}" taskset -c "$PROXY_CPU" "$BIN" "${GG_ARGS[@]}" \
    >>"$DIR/logs/graphgate.out" 2>>"$DIR/logs/graphgate.err" &
  GG_PID=$!
  pids+=("$GG_PID")
  wait_port "$GG_PORT"; wait_port "$ADMIN_PORT"
}
stop_graphgate() { kill "$GG_PID"; wait "$GG_PID" 2>/dev/null || true; }
# The nginx anchor on the proxy's core (once); sets NGINX_PIDS (master and worker).
start_anchor() {
  [ -n "${NGINX_PIDS:-}" ] && return 0
  taskset -c "$PROXY_CPU" nginx -p "$DIR" -c "$DIR/nginx-anchor.conf" & pids+=($!)
  wait_port "$ANCHOR_PORT"
  NGINX_PIDS=$(pgrep -f "nginx.*$DIR/nginx-anchor.conf" | tr '\n' ' ')
  # The worker is nginx's child; count master and worker.
  NGINX_PIDS="$NGINX_PIDS $(pgrep -P "${NGINX_PIDS%% *}" | tr '\n' ' ')"
}
# One allowed request through graphgate; fails the run unless it is answered 204.
one_request() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    --data-binary @"$DIR/body.json" "http://127.0.0.1:$GG_PORT$URL_PATH")
  [ "$code" = 204 ] || { echo "graphgate answered $code to the warm-up request (logs: $DIR/logs)" >&2; exit 1; }
}

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
  out=$(taskset -c "$LOAD_CPUS" wrk -t1 -c"$conns" -d"${DURATION}s" -s "${WRK_SCRIPT:-$here/post.lua}" --latency "$url")
  after=$(cpu_ticks "$@")
  python3 "$here/report.py" parse "$name" "$conns" "$((after - before))" "$TICKS" "$(peak_rss_kib "$@")" <<<"$out" >> "$DIR/results.tsv"
  echo "$out" > "$DIR/logs/wrk-$name-c$conns.txt"
}

records=0
if has main; then
  # Warm up: the first token, TLS sessions and pools, so the steady state is measured.
  start_graphgate "$DIR/audit.jsonl"
  one_request
  start_anchor

  run direct "https://127.0.0.1:$GRAPH_PORT$URL_PATH" 1 $(pgrep -f "nginx.*$DIR/fake-graph.conf" | head -1)
  # ROUNDS alternating rounds per connection count; the report shows each proxy's median
  # round (a shared VM drifts by tens of percent over minutes).
  for c in 1 64; do
    for _ in $(seq 1 "$ROUNDS"); do
      run nginx "http://127.0.0.1:$ANCHOR_PORT$URL_PATH" "$c" $NGINX_PIDS
      run graphgate "http://127.0.0.1:$GG_PORT$URL_PATH" "$c" "$GG_PID"
    done
  done
  # graphgate's memory once the load is over, wrk's connections are closed and graphgate has
  # gone quiet (it returns its allocator's free memory 2 s after the last request).
  python3 "$here/startup.py" idle-rss "$GG_PID" "$GG_PORT" "$ADMIN_PORT" > "$DIR/idle-after-load.tsv"
  stop_graphgate
  records=$(cat "$DIR"/audit.jsonl "$DIR"/audit.jsonl.[0-9]* 2>/dev/null | wc -l)
  "$BIN" audit verify --hmac-key-file "$DIR/hmac.key" "$DIR"/audit.jsonl* > "$DIR/logs/verify.txt" 2>&1 || { echo "audit verify failed" >&2; cat "$DIR/logs/verify.txt" >&2; exit 1; }

  # What one fdatasync costs on this disk, next to the audit log.
  python3 - "$DIR/fsync-probe" > "$DIR/fsync.tsv" <<'PY'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
took = []
for _ in range(300):
    os.write(fd, b"x" * 1023 + b"\n")
    t = time.perf_counter(); os.fdatasync(fd); took.append((time.perf_counter() - t) * 1e6)
took.sort()
print(took[len(took) // 2], took[int(len(took) * 0.99)])
PY

  # The same load with audit off, to show what durable audit costs.
  start_graphgate none
  for c in 1 64; do
    run graphgate-noaudit "http://127.0.0.1:$GG_PORT$URL_PATH" "$c" "$GG_PID"
  done
  stop_graphgate
fi

if has idle; then
  # Idle keep-alive connections: memory with 1,000 and 10,000 open (after one request each),
  # read once graphgate has parked them all (its gauge, polled on the admin port).
  start_graphgate "$DIR/audit-idle.jsonl"
  idle_rss=""
  for n in 1000 10000; do
    idle_rss+="$(python3 "$here/idle.py" 127.0.0.1 "$GG_PORT" "$n" "$GG_PID" "$URL_PATH" "$KEY" "$DIR/body.json" "$ADMIN_PORT")"$'\n'
  done
  stop_graphgate
  printf '%s' "$idle_rss" > "$DIR/idle.tsv"
fi

cold_failed=""
if has cold; then
  # Cold start: a fresh graphgate (empty token cache), COLD_CONNECTIONS connections opened
  # first, then one request on each released together. Goal: exactly one token request.
  # graphgate fetches its first token as it starts, so it is usually cached before the burst
  # ('primed'); in the 'inflight' run the emulator holds that first token answer back for
  # COLD_TOKEN_DELAY_MS, so the burst meets an empty cache with the fetch still in flight.
  for variant in primed:0 inflight:"$COLD_TOKEN_DELAY_MS"; do
    name=${variant%%:*} delay=${variant#*:}
    baseline=$(python3 "$here/coldstart.py" prepare 127.0.0.1:"$EMULATOR_PORT" "$DIR/emulator-ca.pem" "$delay")
    start_graphgate "$DIR/audit-cold-$name.jsonl"
    python3 "$here/coldstart.py" burst 127.0.0.1 "$GG_PORT" "$COLD_CONNECTIONS" "$URL_PATH" "$KEY" "$DIR/body.json" \
      127.0.0.1:"$EMULATOR_PORT" "$DIR/emulator-ca.pem" 127.0.0.1:"$ADMIN_PORT" "$baseline" "$GRAPH_PORT" > "$DIR/coldstart-$name.json"
    stop_graphgate
    python3 "$here/coldstart.py" prepare 127.0.0.1:"$EMULATOR_PORT" "$DIR/emulator-ca.pem" 0 >/dev/null  # clears the fault
    read -r tokens metric < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["token_requests_emulator"], d["token_fetches_metric"])' "$DIR/coldstart-$name.json")
    if [ "$tokens" = 1 ] && [ "$metric" = 1 ]; then
      echo "COLD START ($name): graphgate made exactly 1 token request for $COLD_CONNECTIONS concurrent requests (goal met)" >&2
    else
      msg="COLD START ($name) FAILED: graphgate made $tokens token request(s) (emulator count; graphgate_token_fetches_total: $metric) for $COLD_CONNECTIONS concurrent requests; the goal is exactly 1"
      echo "$msg" >&2
      cold_failed+="$msg"$'\n'
    fi
  done
fi

if has startup; then
  # Start-up: exec of 'graphgate serve' to the first 200 from /readyz, polled every 2 ms,
  # and the RSS idle right after; STARTUP_RUNS fresh starts (each with a fresh audit log).
  gg_args "$DIR/audit-startup-{run}.jsonl"
  env "${GG_ENV[@]}" python3 "$here/startup.py" launch 127.0.0.1:"$ADMIN_PORT" "$STARTUP_RUNS" "$PROXY_CPU" "$DIR/logs" \
    -- "$BIN" "${GG_ARGS[@]}" > "$DIR/startup.json"
fi

if has policy; then
  # Requests/s as the policy grows; the bench caller's allowing rule is the last one.
  : > "$DIR/policy.tsv"
  # The policies get a directory of their own: graphgate watches its policy file's directory
  # and recompiles the policy on any change there (an audit log written beside it would make
  # it recompile every 200 ms under load).
  mkdir -p "$DIR/policies"
  sizes=()
  for n in $POLICY_SIZES; do sizes+=("$n:"); done
  if [ "$POLICY_WALK" = 1 ] && [ "${#sizes[@]}" -gt 0 ]; then sizes+=("${sizes[-1]%:}:walk"); fi
  for size in "${sizes[@]}"; do
    n=${size%%:*} walk=${size#*:}
    label=$n${walk:+-$walk}
    python3 "$here/gen-policy.py" "$n" "$DIR/policies/$label.yaml" ${walk:+"$walk"}
    t0=${EPOCHREALTIME/,/.}
    "$BIN" policy check "$DIR/policies/$label.yaml" > "$DIR/logs/policy-check-$label.txt" 2>&1 \
      || { echo "generated policy $DIR/policies/$label.yaml does not check:" >&2; cat "$DIR/logs/policy-check-$label.txt" >&2; exit 1; }
    t1=${EPOCHREALTIME/,/.}
    check_ms=$(python3 -c 'import sys; print(round((float(sys.argv[2]) - float(sys.argv[1])) * 1000))' "$t0" "$t1")
    start_graphgate "$DIR/audit-policy-$label.jsonl" "$DIR/policies/$label.yaml"
    one_request
    rss_before=$(awk '/VmRSS/{print $2}' "/proc/$GG_PID/status")
    run "policy-$label" "http://127.0.0.1:$GG_PORT$URL_PATH" 64 "$GG_PID"
    read -r rss_after _ < <(python3 "$here/startup.py" idle-rss "$GG_PID" "$GG_PORT")
    # Policy reloads during the run (there should be none: the file did not change).
    reloads=$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^graphgate_policy_reloads_total/{n+=$2} END{print n+0}')
    stop_graphgate
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$n" "${walk:-0}" "$check_ms" "$rss_before" "$rss_after" "$reloads" >> "$DIR/policy.tsv"
  done
fi

if has state; then
  # The same graphgate twice, side by side: state in memory (GG_PORT) and in a local Redis
  # (STATE_PORT), loaded in alternating rounds; Redis runs beside wrk, not on the proxy's core.
  taskset -c "$LOAD_CPUS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$DIR" --logfile "$DIR/logs/redis.log" & STATE_REDIS_SERVER=$!
  pids+=("$STATE_REDIS_SERVER")
  wait_port "$REDIS_PORT"
  start_graphgate "$DIR/audit-state-memory.jsonl" "$here/policy-state.yaml"
  MEMORY_PID=$GG_PID
  one_request
  # The second one on the state scenario's ports (gg_args and one_request use GG_PORT/ADMIN_PORT).
  saved_ports=("$GG_PORT" "$ADMIN_PORT")
  GG_PORT=$STATE_PORT ADMIN_PORT=$STATE_ADMIN_PORT
  gg_args "$DIR/audit-state-redis.jsonl" "$here/policy-state.yaml"
  GG_ARGS+=(--state redis://127.0.0.1:"$REDIS_PORT")
  env "${GG_ENV[@]}" taskset -c "$PROXY_CPU" "$BIN" "${GG_ARGS[@]}" \
    >>"$DIR/logs/graphgate-redis.out" 2>>"$DIR/logs/graphgate-redis.err" &
  REDIS_GG_PID=$!
  pids+=("$REDIS_GG_PID")
  wait_port "$GG_PORT"; wait_port "$ADMIN_PORT"
  one_request
  GG_PORT=${saved_ports[0]} ADMIN_PORT=${saved_ports[1]}
  for c in 1 64; do
    for _ in $(seq 1 "$ROUNDS"); do
      WRK_SCRIPT=$here/post-keyed.lua run state-memory "http://127.0.0.1:$GG_PORT$URL_PATH" "$c" "$MEMORY_PID"
      WRK_SCRIPT=$here/post-keyed.lua run state-redis "http://127.0.0.1:$STATE_PORT$URL_PATH" "$c" "$REDIS_GG_PID"
    done
  done
  curl -s "http://127.0.0.1:$STATE_ADMIN_PORT/metrics" > "$DIR/logs/state-redis-metrics.txt"
  kill "$MEMORY_PID" "$REDIS_GG_PID"; wait "$MEMORY_PID" "$REDIS_GG_PID" 2>/dev/null || true
  # The rate scenario starts its own redis-server on the same port.
  kill "$STATE_REDIS_SERVER"; wait "$STATE_REDIS_SERVER" 2>/dev/null || true
fi

rate_failed=""
if has rate; then
  mkdir -p "$DIR/rate"
  PROXY_CPU=$PROXY_CPU LOAD_CPUS=$LOAD_CPUS RATE_WARMUP=$RATE_WARMUP RATE_NOTE=${RATE_NOTE:-} \
    LOADGEN=$LOADGEN LOADGEN_VERSION="$("$LOADGEN_BIN" --version 2>/dev/null | head -1)" \
    GRAPHGATE_VERSION="$("$GRAPHGATE_BIN" --version 2>/dev/null | head -1)" \
    python3 "$here/rate_report.py" meta "$DIR/rate" "$repo" start
  rate_scenario
  python3 "$here/rate_report.py" meta "$DIR/rate" "$repo" end
fi

# A full run (with the main comparison) updates bench/; a partial one writes to the temp dir.
if has main; then out_md=$here/results.md out_svg=$here/latency.svg; else out_md=$DIR/results.md out_svg=$DIR/latency.svg; fi
if [ "$SCENARIOS" != rate ]; then
  touch "$DIR/results.tsv"
  python3 "$here/report.py" render "$DIR/results.tsv" "$out_md" "$out_svg" "$records"
  cat "$out_md"
fi
# The rate scenario's section of bench/results.md, whichever other scenarios ran.
if has rate; then
  python3 "$here/rate_report.py" render "$DIR/rate" "${RATE_RESULTS:-$here/results.md}" || rate_failed=1
fi
# A full run also refreshes the headline figures in docs/performance.md (between its markers).
if has main; then
  python3 "$here/report.py" docs "$out_md" "$repo/docs/performance.md"
  echo "docs/performance.md: headline figures refreshed from $out_md"
fi
if [ -n "${PROFILE:-}" ] && [ -f "$DIR/perf.data" ]; then
  perf report -i "$DIR/perf.data" --no-children --sort comm,sym --percent-limit 1 --stdio -g none > "$DIR/logs/profile.txt" 2>/dev/null || true
  echo "profile of $PROFILE at 64 connections: $DIR/logs/profile.txt"
fi
echo "raw wrk output and logs: $DIR/logs"
if [ -n "$cold_failed" ]; then printf '%s' "$cold_failed" >&2; exit 1; fi
if [ -n "$rate_failed" ]; then exit 1; fi
