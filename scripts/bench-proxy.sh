#!/usr/bin/env bash
# Proxy overhead benchmark: requests/s and latency through sagellm-gateway, through
# vllm-router (vLLM's Rust router, round_robin) and direct, all in front of the same two
# nginx upstreams that return a fixed chat completion. A bare Pingora proxy
# (gateway/examples/bare_pingora.rs: round robin, nothing else) shows the floor Pingora
# itself sets. Runs are alternated in one go and the
# same-run ratios printed (absolute numbers swing with machine load; ratios are the result).
#
#   ./scripts/bench-proxy.sh            # ROUNDS=3 DURATION=10 CONNECTIONS=32 by default
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
UP1=18001 UP2=18002 GW=18080 VR=18090 BARE=18085 BASE=18081
BASELINE_BIN=${BASELINE_BIN:-}
[ -z "$BASELINE_BIN" ] || [ -x "$BASELINE_BIN" ] || die "BASELINE_BIN=$BASELINE_BIN is not an executable"

ensure_build_deps
ensure_apt wrk nginx-light curl python3-venv
ensure_vllm_router
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
wait_http "http://127.0.0.1:$GW/health" 30 || { cat "$WORK/gw.log"; die "gateway did not become ready"; }
[ -z "$BASELINE_BIN" ] || wait_http "http://127.0.0.1:$BASE/health" 30 || { cat "$WORK/base.log"; die "baseline gateway did not become ready"; }
BODY='{"model":"bench-model","messages":[{"role":"user","content":"Say hello in five words."}],"max_tokens":16}'
for i in $(seq 300); do
  curl -fsS -o /dev/null "http://127.0.0.1:$VR/v1/chat/completions" -H 'content-type: application/json' -d "$BODY" 2>/dev/null && break
  [ "$i" -eq 300 ] && { cat "$WORK/vr.log"; die "vllm-router did not become ready"; }
  sleep 0.1
done

cat > "$WORK/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$BODY'
wrk.headers["Content-Type"] = "application/json"
LUA

# run NAME PORT -> appends "rps p50_ms p99_ms" to $WORK/NAME
run() {
  local name=$1 port=$2 out
  out=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/post.lua" \
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
to_ms() { # wrk prints 123.45us / 1.23ms / 1.01s
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}

log "warm-up"; DURATION=2 run warmup $GW >/dev/null; DURATION=2 run warmup $VR >/dev/null
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS (${DURATION}s each, $CONNECTIONS connections)"
  run direct $UP1; run gateway $GW; run vllm-router $VR; run bare-pingora $BARE
  [ -z "$BASELINE_BIN" ] || run baseline $BASE
done

# Per-request overhead without queueing: one connection, latency only.
log "latency at 1 connection (${DURATION}s each)"
CONNECTIONS_SAVED=$CONNECTIONS; CONNECTIONS=1; WRK_THREADS_SAVED=$WRK_THREADS; WRK_THREADS=1
run direct1 $UP1; run gateway1 $GW; run vllm-router1 $VR
[ -z "$BASELINE_BIN" ] || run baseline1 $BASE
CONNECTIONS=$CONNECTIONS_SAVED; WRK_THREADS=$WRK_THREADS_SAVED

median() { sort -n | awk '{a[NR]=$1} END { print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
d_rps=$(col direct 1); g_rps=$(col gateway 1); v_rps=$(col vllm-router 1)
d_p50=$(col direct 2); g_p50=$(col gateway 2); v_p50=$(col vllm-router 2)
d_p99=$(col direct 3); g_p99=$(col gateway 3); v_p99=$(col vllm-router 3)
b_rps=$(col bare-pingora 1); b_p50=$(col bare-pingora 2); b_p99=$(col bare-pingora 3)
echo
echo "| target | req/s (median of $ROUNDS) | p50 ms | p99 ms |"
echo "|---|---|---|---|"
echo "| direct (nginx) | $d_rps | $d_p50 | $d_p99 |"
echo "| sagellm-gateway | $g_rps | $g_p50 | $g_p99 |"
echo "| vllm-router $("$VENV/bin/pip" show vllm-router 2>/dev/null | awk '/^Version/ {print $2}') | $v_rps | $v_p50 | $v_p99 |"
echo "| bare Pingora (floor) | $b_rps | $b_p50 | $b_p99 |"
[ -z "$BASELINE_BIN" ] || echo "| baseline ($BASELINE_BIN) | $(col baseline 1) | $(col baseline 2) | $(col baseline 3) |"
echo
echo "| at 1 connection | req/s | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for t in direct1 gateway1 vllm-router1 ${BASELINE_BIN:+baseline1}; do
  echo "| ${t%1} | $(col "$t" 1) | $(col "$t" 2) | $(col "$t" 3) |"
done
echo
awk -v g1="$(col gateway1 2)" -v d1="$(col direct1 2)" -v v1="$(col vllm-router1 2)" \
  'BEGIN { printf "added p50 at 1 connection: gateway %.3f ms, vllm-router %.3f ms\n", g1-d1, v1-d1 }'
awk -v g="$g_rps" -v v="$v_rps" -v b="$b_rps" -v gp="$g_p50" -v dp="$d_p50" \
  'BEGIN { printf "gateway / vllm-router throughput: %.2fx (bare Pingora / vllm-router: %.2fx; gateway / bare Pingora: %.2f)\ngateway added p50 over direct: %.3f ms\n", g/v, b/v, g/b, gp-dp }'
if [ -n "$BASELINE_BIN" ]; then
  awk -v g="$g_rps" -v b="$(col baseline 1)" -v g1="$(col gateway1 2)" -v b1="$(col baseline1 2)" \
    'BEGIN { printf "gateway / baseline throughput: %.2fx; p50 at 1 connection: gateway %.3f ms, baseline %.3f ms\n", g/b, g1, b1 }'
fi
