# The rate scenario of bench/run.sh (sourced by it; run `SCENARIOS=rate bench/run.sh`):
# every path at one constant rate with latency corrected for coordinated omission, the way
# issue 26 measures the production path. For each row: start the proxy fresh, check one
# request is answered 204, warm up for RATE_WARMUP seconds at the rate, then RATE_DURATION
# seconds at RATE (requests/s) over RATE_CONNECTIONS keep-alive connections with the load
# generator (examples/rate.rs), reading the proxy's CPU time from /proc/<pid>/stat before and
# after, and its RSS at the end. bench/rate_report.py writes the section of bench/results.md.
# Uses run.sh's setup: the fake Graph, the emulator, GG_ENV, start_graphgate, cpu_ticks...

RATE=${RATE:-1000}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-16}
RATE_DURATION=${RATE_DURATION:-15}
RATE_WARMUP=${RATE_WARMUP:-2}
RATE_ROUNDS=${RATE_ROUNDS:-3}
# The load generator: examples/rate.rs, or oha (`cargo install oha --locked` if missing) to
# cross-check it on every row but redis-keyed (oha sends the same headers on every request,
# so it cannot give each request an Idempotency-Key of its own).
LOADGEN=${LOADGEN:-rate}
case $LOADGEN in
  rate) RATE_ROWS=${RATE_ROWS:-nginx,memory,redis,redis-keyed,memory-budget,mtls,jwt} ;;
  oha) RATE_ROWS=${RATE_ROWS:-nginx,memory,redis,memory-budget,mtls,jwt} ;;
  *) echo "LOADGEN must be rate (examples/rate.rs) or oha, not '$LOADGEN'" >&2; exit 2 ;;
esac
for row in ${RATE_ROWS//,/ }; do
  case $row in nginx|memory|redis|redis-keyed|memory-budget|mtls|jwt) ;;
    *) echo "unknown RATE_ROWS entry '$row' (nginx, memory, redis, redis-keyed, memory-budget, mtls, jwt)" >&2; exit 2 ;;
  esac
  if [ "$LOADGEN" = oha ] && [ "$row" = redis-keyed ]; then
    echo "LOADGEN=oha cannot drive redis-keyed (no Idempotency-Key of its own per request): leave it out of RATE_ROWS" >&2
    exit 2
  fi
done

# rate_loadgen SECONDS ARGS... URL: one run of the load generator at RATE over
# RATE_CONNECTIONS connections, printing examples/rate.rs's JSON (oha's is converted).
rate_loadgen() {
  local secs=$1; shift
  if [ "$LOADGEN" = oha ]; then
    # -w: answers due at the deadline are waited for, not counted as errors.
    taskset -c "$LOAD_CPUS" "$LOADGEN_BIN" --no-tui --output-format json -q "$RATE" --latency-correction -w \
      -c "$RATE_CONNECTIONS" -z "${secs}s" -m POST -D "$DIR/body.json" -T application/json "$@" |
      python3 "$here/rate_report.py" from-oha "$RATE" "$RATE_CONNECTIONS" "$secs"
  else
    taskset -c "$LOAD_CPUS" "$LOADGEN_BIN" -q "$RATE" -c "$RATE_CONNECTIONS" -z "$secs" -m POST -D "$DIR/body.json" "$@"
  fi
}

# graphgate's TLS listener (mTLS row): a server certificate for 127.0.0.1 from the bench CA,
# and a client CA of its own issuing the caller's certificate (URI SAN, as a SPIFFE workload).
rate_certs() {
  local d=$DIR/mtls
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=bench client CA" \
      -keyout client-ca.key -out client-ca.pem
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > server.cnf
    openssl x509 -req -in server.csr -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 30 \
      -extfile server.cnf -out server.pem
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench-rate-caller" -keyout client.key -out client.csr
    printf 'subjectAltName=URI:spiffe://bench.example/ns/bench/sa/caller\nbasicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' > client.cnf
    openssl x509 -req -in client.csr -CA client-ca.pem -CAkey client-ca.key -CAcreateserial -days 30 \
      -extfile client.cnf -out client.pem
    chmod 600 server.key client.key
  ) >/dev/null 2>&1 || { echo "openssl could not make the mTLS certificates" >&2; exit 1; }
}

# A Kubernetes service-account token for the JWT row's caller, from the emulator's cluster
# issuer (its TokenRequest endpoint, as kube-apiserver answers it).
rate_sa_token() {
  curl -sf --cacert "$DIR/emulator-ca.pem" \
    --connect-to "kubernetes.default.svc.cluster.local:443:127.0.0.1:$EMULATOR_PORT" \
    -H 'Content-Type: application/json' \
    -d '{"spec": {"audiences": ["graphgate"], "expirationSeconds": 3600}}' \
    https://kubernetes.default.svc.cluster.local/_emulator/kubernetes/serviceaccounts/bench/rate-caller/token |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["status"]["token"])'
}

# rate_check URL CURL_ARGS...: one request; fails the run unless it is answered 204.
rate_check() {
  local url=$1 code; shift
  code=$(curl -s -o "$DIR/logs/rate-check.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    --data-binary @"$DIR/body.json" "$@" "$url") || true
  [ "$code" = 204 ] || {
    echo "rate: $url answered $code to the check request: $(head -c 400 "$DIR/logs/rate-check.out") (logs: $DIR/logs)" >&2
    exit 1
  }
}

# rate_run ROUND ROW LABEL URL PROCS -- GENERATOR_ARGS...: warm-up, then the measured run;
# writes $DIR/rate/ROUND-ROW.json. PROCS is a space-separated list (the proxy's processes).
# (Not named pids: a local of that name would hide run.sh's list from the exit trap.)
rate_run() {
  local round=$1 row=$2 label=$3 url=$4 procs=$5; shift 6
  if [ "$RATE_WARMUP" != 0 ]; then
    rate_loadgen "$RATE_WARMUP" "$@" "$url" > "$DIR/logs/rate-$round-$row-warmup.json" \
      || { echo "rate: the load generator failed on $row (warm-up)" >&2; exit 1; }
  fi
  local before redis_before load_before out metrics=()
  load_before=$(cut -d' ' -f1 /proc/loadavg)
  # graphgate's state store operations during the run, by kind (its admin listener's /metrics).
  if [ "$row" != nginx ]; then
    curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" > "$DIR/logs/rate-$round-$row-metrics-before.txt"
    metrics=(--metrics-before "$DIR/logs/rate-$round-$row-metrics-before.txt" --metrics-after "$DIR/logs/rate-$round-$row-metrics-after.txt")
  fi
  # shellcheck disable=SC2086
  before=$(cpu_ticks $procs)
  redis_before=$( [ -n "${RATE_REDIS_PID:-}" ] && cpu_ticks "$RATE_REDIS_PID" || echo 0)
  out=$(rate_loadgen "$RATE_DURATION" "$@" "$url") \
    || { echo "rate: the load generator failed on $row" >&2; exit 1; }
  # shellcheck disable=SC2086
  local after=$(cpu_ticks $procs)
  local redis_after=$( [ -n "${RATE_REDIS_PID:-}" ] && cpu_ticks "$RATE_REDIS_PID" || echo 0)
  if [ "$row" != nginx ]; then
    curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" > "$DIR/logs/rate-$round-$row-metrics-after.txt"
  fi
  local rss=0 hwm=0 p
  for p in $procs; do
    rss=$((rss + $(awk '/VmRSS/{print $2}' "/proc/$p/status")))
    hwm=$((hwm + $(awk '/VmHWM/{print $2}' "/proc/$p/status")))
  done
  python3 "$here/rate_report.py" row --round "$round" --row "$row" --label "$label" \
    --cpu-ticks $((after - before)) --ticks-per-sec "$TICKS" --rss-kib "$rss" --hwm-kib "$hwm" \
    --redis-cpu-ticks $((redis_after - redis_before)) --load-before "$load_before" \
    --load-after "$(cut -d' ' -f1 /proc/loadavg)" "${metrics[@]}" <<<"$out" > "$DIR/rate/$round-$row.json"
  echo "rate: round $round, $row: $(python3 "$here/rate_report.py" brief "$DIR/rate/$round-$row.json")" >&2
}

# rate_graphgate POLICY AUDIT [ARGS...]: a fresh graphgate on GG_PORT with the bench
# environment; sets GG_PID.
rate_graphgate() {
  local policy=$1 audit=$2; shift 2
  gg_args "$audit" "$policy"
  GG_ARGS+=("$@")
  env "${GG_ENV[@]}" taskset -c "$PROXY_CPU" "$GRAPHGATE_BIN" "${GG_ARGS[@]}" \
    >>"$DIR/logs/graphgate-rate.out" 2>>"$DIR/logs/graphgate-rate.err" &
  GG_PID=$!
  pids+=("$GG_PID")
  wait_port "$GG_PORT"; wait_port "$ADMIN_PORT"
}

rate_scenario() {
  mkdir -p "$DIR/rate"
  rate_certs
  local http=http://127.0.0.1:$GG_PORT$URL_PATH https=https://127.0.0.1:$GG_PORT$URL_PATH
  local key=(-H "Authorization: Bearer $KEY")
  local keyed=(-H "Authorization: Bearer $KEY" --unique-header Idempotency-Key)
  local mtls=(--cacert "$DIR/ca.pem" --cert "$DIR/mtls/client.pem" --key "$DIR/mtls/client.key")
  local redis_url=redis://127.0.0.1:$REDIS_PORT
  if [[ ",$RATE_ROWS," == *,redis* ]]; then
    # No persistence: the store's own latency, not the disk's. Beside the load generator.
    taskset -c "$LOAD_CPUS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --dir "$DIR" --logfile "$DIR/logs/redis-rate.log" & RATE_REDIS_SERVER=$!
    pids+=("$RATE_REDIS_SERVER")
    wait_port "$REDIS_PORT"
  fi
  local round row
  for round in $(seq 1 "$RATE_ROUNDS"); do
    for row in ${RATE_ROWS//,/ }; do
      local audit=$DIR/audit-rate-$round-$row.jsonl
      RATE_REDIS_PID=""
      case $row in
        nginx)
          start_anchor
          rate_check "http://127.0.0.1:$ANCHOR_PORT$URL_PATH" "${key[@]}"
          rate_run "$round" nginx "nginx anchor (key check, path allow-list, static token, TLS upstream)" \
            "http://127.0.0.1:$ANCHOR_PORT$URL_PATH" "$NGINX_PIDS" -- "${key[@]}"
          continue ;;
        memory)
          rate_graphgate "$here/policy.yaml" "$audit"
          rate_check "$http" "${key[@]}"
          rate_run "$round" "$row" "graphgate, state in memory" "$http" "$GG_PID" -- "${key[@]}" ;;
        redis)
          rate_graphgate "$here/policy.yaml" "$audit" --state "$redis_url"
          RATE_REDIS_PID=$RATE_REDIS_SERVER
          rate_check "$http" "${key[@]}"
          rate_run "$round" "$row" "graphgate, state on Redis" "$http" "$GG_PID" -- "${key[@]}" ;;
        redis-keyed)
          rate_graphgate "$here/policy-rate-keyed.yaml" "$audit" --state "$redis_url"
          RATE_REDIS_PID=$RATE_REDIS_SERVER
          rate_check "$http" "${key[@]}" -H "Idempotency-Key: rate-check-$round-$RANDOM$RANDOM"
          rate_run "$round" "$row" "graphgate, Redis + Idempotency-Key + rate limit + budget" "$http" "$GG_PID" -- "${keyed[@]}" ;;
        memory-budget)
          rate_graphgate "$here/policy-rate-budget.yaml" "$audit"
          rate_check "$http" "${key[@]}"
          rate_run "$round" "$row" "graphgate, state in memory + budget" "$http" "$GG_PID" -- "${key[@]}" ;;
        mtls)
          rate_graphgate "$here/policy-rate-mtls.yaml" "$audit" --tls-cert "$DIR/mtls/server.pem" \
            --tls-key "$DIR/mtls/server.key" --client-ca "$DIR/mtls/client-ca.pem"
          rate_check "$https" "${mtls[@]}"
          rate_run "$round" "$row" "graphgate, mTLS callers (state in memory)" "$https" "$GG_PID" -- "${mtls[@]}" ;;
        jwt)
          rate_graphgate "$here/policy-rate-jwt.yaml" "$audit"
          local token
          token=$(rate_sa_token) || { echo "rate: the emulator gave no service-account token" >&2; exit 1; }
          rate_check "$http" -H "Authorization: Bearer $token"
          rate_run "$round" "$row" "graphgate, JWT caller (Kubernetes service-account token; state in memory)" \
            "$http" "$GG_PID" -- -H "Authorization: Bearer $token" ;;
      esac
      stop_graphgate
      # Every admitted request left its intent and outcome in the hash chain (the log and any
      # rotated files; not the budget counts kept beside it).
      local logs=("$audit") f
      for f in "$audit".[0-9]*; do [ -e "$f" ] && logs+=("$f"); done
      "$GRAPHGATE_BIN" audit verify --hmac-key-file "$DIR/hmac.key" "${logs[@]}" > "$DIR/logs/verify-rate-$round-$row.txt" 2>&1 \
        || { echo "rate: audit verify failed for $row" >&2; cat "$DIR/logs/verify-rate-$round-$row.txt" >&2; exit 1; }
    done
  done
  if [ -n "${RATE_REDIS_SERVER:-}" ]; then kill "$RATE_REDIS_SERVER"; wait "$RATE_REDIS_SERVER" 2>/dev/null || true; fi
}
