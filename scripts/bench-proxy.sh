#!/usr/bin/env bash
# Proxy overhead benchmark: sagellm-gateway, vllm-router (vLLM's Rust router) and smg
# (SGLang's Rust model gateway), all round robin in front of the same two nginx upstreams that
# return a fixed chat completion, and direct to one upstream. A bare Pingora proxy
# (gateway/examples/bare_pingora.rs: round robin, nothing else) shows the floor Pingora itself
# sets. Four measurements, each alternated between the targets inside every round, and the
# same-run ratios printed (absolute numbers swing with machine load; ratios are the result):
#
#   1. throughput: closed loop at CONNECTIONS connections (wrk), req/s and p50/p99;
#   2. latency at 1 connection (wrk), added p50 over direct;
#   3. open loop: Poisson arrivals at RATE req/s (`sagellm bench --rate`, well under
#      saturation), added p50/p99 over direct;
#   4. large bodies: BIG_KB KB chat requests at BIG_CONNECTIONS connections (wrk), added
#      p50/p99 over direct.
#
#   ./scripts/bench-proxy.sh            # ROUNDS=3 DURATION=10 CONNECTIONS=32 RATE=500
#                                       # BIG_KB=220 BIG_CONNECTIONS=20 by default
#   BASELINE_BIN=/path/to/old/sagellm-gateway ./scripts/bench-proxy.sh
#                                       # also runs an older gateway build, alternated in the
#                                       # same rounds, for a before/after comparison
#
# Everything listens on 127.0.0.1 only and stops by itself.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
WRK_THREADS=${WRK_THREADS:-2}
GW_THREADS=${GW_THREADS:-2}
RATE=${RATE:-500}
BIG_KB=${BIG_KB:-220}
BIG_CONNECTIONS=${BIG_CONNECTIONS:-20}
UP1=18001 UP2=18002 GW=18080 VR=18090 BARE=18085 BASE=18081 SMG=18095 SMG_METRICS=18096
BASELINE_BIN=${BASELINE_BIN:-}
[ -z "$BASELINE_BIN" ] || [ -x "$BASELINE_BIN" ] || die "BASELINE_BIN=$BASELINE_BIN is not an executable"

ensure_build_deps
ensure_apt wrk nginx-light curl python3-venv
ensure_vllm_router
ensure_smg
(cd "$ROOT" && cargo build --release --locked -p sagellm-gateway --bins --example bare_pingora)

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

COMPLETION='{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the benchmark upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}'
MODELS='{"object":"list","data":[{"id":"bench-model","object":"model","created":1700000000,"owned_by":"vllm"}]}'
for port in $UP1 $UP2; do
  mkdir -p "$WORK/nginx-$port"
  cat > "$WORK/nginx-$port/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/nginx-$port/error.log warn;
pid $WORK/nginx-$port/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx-$port;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:$port;
    default_type application/json;
    location = /health { return 200 ''; }
    location = /v1/models { return 200 '$MODELS'; }
    location = /v1/chat/completions { return 200 '$COMPLETION'; }
    location / { return 404 '{"error":"not found"}'; }
  }
}
CONF
  nginx -c "$WORK/nginx-$port/nginx.conf" -e "$WORK/nginx-$port/error.log" &
  PIDS+=($!)
done
for port in $UP1 $UP2; do wait_http "http://127.0.0.1:$port/health" 20 || die "nginx :$port did not start"; done

# Rate limits off: the comparison is proxy overhead (vllm-router has none by default).
start_gateway() { # BINARY PORT LOG
  LLM_RATE_LIMIT_ENABLED=false LLM_LOG=warn "$1" --host 127.0.0.1 --port "$2" --threads "$GW_THREADS" \
    --worker-urls "http://127.0.0.1:$UP1,http://127.0.0.1:$UP2" --routing-strategy round_robin >"$3" 2>&1 &
  PIDS+=($!)
}
start_gateway "$BIN/sagellm-gateway" $GW "$WORK/gw.log"
[ -z "$BASELINE_BIN" ] || start_gateway "$BASELINE_BIN" $BASE "$WORK/base.log"
"$BIN/examples/bare_pingora" 127.0.0.1:$BARE 127.0.0.1:$UP1 127.0.0.1:$UP2 >"$WORK/bare.log" 2>&1 &
PIDS+=($!)
"$VENV/bin/vllm-router" --host 127.0.0.1 --port $VR --policy round_robin --log-level warning \
  --worker-urls "http://127.0.0.1:$UP1" "http://127.0.0.1:$UP2" >"$WORK/vr.log" 2>&1 &
PIDS+=($!)
"$SMG_VENV/bin/smg" launch --host 127.0.0.1 --port $SMG --policy round_robin --log-level warn \
  --prometheus-host 127.0.0.1 --prometheus-port $SMG_METRICS \
  --worker-urls "http://127.0.0.1:$UP1" "http://127.0.0.1:$UP2" >"$WORK/smg.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$GW/health" 30 || { cat "$WORK/gw.log"; die "gateway did not become ready"; }
[ -z "$BASELINE_BIN" ] || wait_http "http://127.0.0.1:$BASE/health" 30 || { cat "$WORK/base.log"; die "baseline gateway did not become ready"; }
BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16}'
# The routers answer /health before their workers are in: wait for a proxied completion.
wait_chat() { # NAME PORT LOG
  for i in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$2/v1/chat/completions" -H 'content-type: application/json' -d "$BODY" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$3"; die "$1 did not become ready"
}
wait_chat vllm-router $VR "$WORK/vr.log"
wait_chat smg $SMG "$WORK/smg.log"

# A chat request of BIG_KB KB (one long user message), as a file for wrk to send.
python3 - "$BIG_KB" > "$WORK/big.json" <<'PY'
import json, sys
words = "the gateway routes long documents to the worker that holds their prefix".split()
text, n, target = [], 0, int(sys.argv[1]) * 1000 - 120
while n < target:
    w = words[len(text) % len(words)]; text.append(w); n += len(w) + 1
print(json.dumps({"model": "bench-model", "max_tokens": 16,
                  "messages": [{"role": "user", "content": " ".join(text)}]}), end="")
PY
cat > "$WORK/big.lua" <<LUA
wrk.method = "POST"
local f = assert(io.open("$WORK/big.json", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
LUA

cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA

# run NAME PORT [LUA] -> appends "rps p50_ms p99_ms" to $WORK/NAME
run() {
  local name=$1 port=$2 script=${3:-$WORK/post.lua} out
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$script" \
        "http://127.0.0.1:$port/v1/chat/completions")
  local non2xx; non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -n "$non2xx" ] && die "$name: $non2xx non-2xx responses"$'\n'"$out"
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")" >> "$WORK/$name"
  printf '  %-14s %10s req/s   p50 %8s   p99 %8s\n' "$name" "$rps" "$p50" "$p99" >&2
}
# open NAME PORT -> appends "achieved_rps p50_ms p99_ms" of Poisson arrivals at RATE req/s
open_loop() {
  local name=$1 port=$2 json="$WORK/open-$1.json"
  "$BIN/sagellm" bench "http://127.0.0.1:$port" --rate "$RATE" -c 256 -d "${DURATION}s" \
    --model bench-model --prompt-len 8 --max-tokens 16 --no-progress -o "$json" >/dev/null
  python3 - "$json" "$name" >> "$WORK/$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["errors"] or r["arrivals_unsent"]:
    sys.exit(f'{sys.argv[2]}: {r["errors"]} errors {r["errors_by_status"]}, {r["arrivals_unsent"]} unsent')
lat = r["latency_ms"]
print(f'{r["ok_per_s"]:.1f} {lat["p50"]:.3f} {lat["p99"]:.3f}')
PY
  printf '  %-14s %s\n' "$name" "$(tail -1 "$WORK/$name" | awk '{printf "%s req/s   p50 %s ms   p99 %s ms", $1, $2, $3}')" >&2
}
to_ms() { # wrk prints 123.45us / 1.23ms / 1.01s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

# The proxies compared in every measurement (name:port); direct is the reference.
PROXIES=(gateway:$GW vllm-router:$VR smg:$SMG)
[ -z "$BASELINE_BIN" ] || PROXIES+=(baseline:$BASE)

log "warm-up"; for t in "${PROXIES[@]}"; do DURATION=2 run warmup "${t#*:}" >/dev/null; done
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS: throughput (${DURATION}s each, $CONNECTIONS connections)"
  run direct $UP1; for t in "${PROXIES[@]}"; do run "${t%%:*}" "${t#*:}"; done; run bare-pingora $BARE
  log "round $r/$ROUNDS: open loop (${DURATION}s each, Poisson arrivals at $RATE req/s)"
  open_loop open-direct $UP1; for t in "${PROXIES[@]}"; do open_loop "open-${t%%:*}" "${t#*:}"; done
  log "round $r/$ROUNDS: ${BIG_KB} KB bodies (${DURATION}s each, $BIG_CONNECTIONS connections)"
  CONNECTIONS=$BIG_CONNECTIONS run big-direct $UP1 "$WORK/big.lua"
  for t in "${PROXIES[@]}"; do CONNECTIONS=$BIG_CONNECTIONS run "big-${t%%:*}" "${t#*:}" "$WORK/big.lua"; done
done

# Per-request overhead without queueing: one connection, latency only.
log "latency at 1 connection (${DURATION}s each)"
CONNECTIONS=1 WRK_THREADS=1 run one-direct $UP1
for t in "${PROXIES[@]}"; do CONNECTIONS=1 WRK_THREADS=1 run "one-${t%%:*}" "${t#*:}"; done

median() { sort -n | awk '{a[NR]=$1} END { print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
label() {
  case $1 in
    direct) echo "direct (nginx)" ;;
    gateway) echo "sagellm-gateway" ;;
    vllm-router) echo "vllm-router $("$VENV/bin/pip" show vllm-router 2>/dev/null | awk '/^Version/ {print $2}')" ;;
    smg) echo "smg $("$SMG_VENV/bin/pip" show smg 2>/dev/null | awk '/^Version/ {print $2}')" ;;
    bare-pingora) echo "bare Pingora (floor)" ;;
    baseline) echo "baseline ($BASELINE_BIN)" ;;
  esac
}
NAMES=(direct); for t in "${PROXIES[@]}"; do NAMES+=("${t%%:*}"); done
# table PREFIX TITLE: medians, and p50/p99 added over direct
table() {
  local prefix=$1 dp50 dp99
  dp50=$(col "${prefix}direct" 2); dp99=$(col "${prefix}direct" 3)
  echo
  echo "| $2 | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |"
  echo "|---|---|---|---|---|---|"
  for n in "${NAMES[@]}" ${3:-}; do
    awk -v l="$(label "$n")" -v r="$(col "$prefix$n" 1)" -v p50="$(col "$prefix$n" 2)" -v p99="$(col "$prefix$n" 3)" \
      -v d50="$dp50" -v d99="$dp99" \
      'BEGIN { printf "| %s | %s | %.3f | %.3f | %.3f | %.3f |\n", l, r, p50, p99, p50-d50, p99-d99 }'
  done
}
echo
echo "Medians of $ROUNDS rounds; added = the proxy's median minus direct's, same rounds."
table "" "throughput, $CONNECTIONS connections" bare-pingora
table one- "1 connection"
table open- "open loop, $RATE req/s Poisson"
table big- "${BIG_KB} KB bodies, $BIG_CONNECTIONS connections"
echo
g=$(col gateway 1); v=$(col vllm-router 1); m=$(col smg 1); b=$(col bare-pingora 1)
awk -v g="$g" -v v="$v" -v m="$m" -v b="$b" \
  'BEGIN { printf "throughput: gateway / vllm-router %.2fx, gateway / smg %.2fx, gateway / bare Pingora %.2f\n", g/v, g/m, g/b }'
[ -z "$BASELINE_BIN" ] || awk -v g="$g" -v b="$(col baseline 1)" 'BEGIN { printf "gateway / baseline throughput: %.2fx\n", g/b }'
