#!/usr/bin/env bash
# Cost of limits and per-key quotas shared through Redis: the same gateway build five times in
# front of one nginx upstream that returns a fixed chat completion — rate limits off, limits in
# memory, limits in a local redis-server (LLM_REDIS_URL), and limits plus per-key quotas
# (KEYS keys with requests/min, tokens/min and max_concurrent, none of them reached) in memory
# and in Redis — closed loop at CONNECTIONS connections (wrk), each request from one of USERS
# users (the body's `user` field) with one of KEYS API keys, alternated inside every round.
# Prints the medians and what Redis adds over memory (same rounds).
#
#   ./scripts/bench-shared.sh        # ROUNDS=3 DURATION=10 CONNECTIONS=32 USERS=1000 KEYS=32
#
# Everything listens on 127.0.0.1 only and stops by itself.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
USERS=${USERS:-1000}
KEYS=${KEYS:-32}
GW_THREADS=${GW_THREADS:-2}
UP=18201 OFF=18280 MEM=18281 RED=18282 MEMQ=18283 REDQ=18284 REDIS_PORT=18279

ensure_build_deps
ensure_apt wrk nginx-light curl redis-server
(cd "$ROOT" && cargo build --release --locked -p sagellm-gateway --bins)

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
mkdir -p "$WORK/nginx"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $WORK/nginx/error.log warn;
pid $WORK/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP;
    default_type application/json;
    location = /health { return 200 ''; }
    location = /v1/models { return 200 '$MODELS'; }
    location = /v1/chat/completions { return 200 '$COMPLETION'; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)
redis-server --port $REDIS_PORT --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP/health" 20 || die "nginx did not start"

# Limits far above what the machine can send: every request is checked, none refused.
start_gateway() { # PORT LOG ENV...
  local port=$1 logf=$2; shift 2
  env LLM_LOG=warn "$@" "$BIN/sagellm-gateway" --host 127.0.0.1 --port "$port" --threads "$GW_THREADS" \
    --worker-urls "http://127.0.0.1:$UP" --routing-strategy round_robin >"$logf" 2>&1 &
  PIDS+=($!)
}
cat > "$WORK/limits.toml" <<TOML
[rate_limit]
enabled = true
global_rps = 10000000
global_burst = 10000000
per_user_rpm = 100000000
per_worker_qps = 0
TOML
# The same limits plus KEYS quota keys (each also a valid API key; key checking on).
cp "$WORK/limits.toml" "$WORK/quotas.toml"
for k in $(seq 0 $((KEYS - 1))); do
  cat >> "$WORK/quotas.toml" <<TOML
[[quotas]]
name = "key-$k"
api_key = "sk-bench-$k"
requests_per_minute = 100000000
tokens_per_minute = 1000000000
max_concurrent = 100000
TOML
done
start_gateway $OFF "$WORK/off.log" LLM_RATE_LIMIT_ENABLED=false
start_gateway $MEM "$WORK/mem.log" LLM_CONFIG="$WORK/limits.toml"
start_gateway $RED "$WORK/red.log" LLM_CONFIG="$WORK/limits.toml" LLM_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
start_gateway $MEMQ "$WORK/memq.log" LLM_CONFIG="$WORK/quotas.toml"
start_gateway $REDQ "$WORK/redq.log" LLM_CONFIG="$WORK/quotas.toml" LLM_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
for p in $OFF $MEM $RED $MEMQ $REDQ; do wait_http "http://127.0.0.1:$p/health" 30 || die "gateway :$p did not become ready"; done
for p in $RED $REDQ; do
  for i in $(seq 100); do
    curl -fsS "http://127.0.0.1:$p/api/status" | grep -q '"backend":"redis"' && break
    [ "$i" = 100 ] && die "the Redis gateway :$p never reached Redis"
    sleep 0.1
  done
done

cat > "$WORK/post.lua" <<LUA
local n = 0
request = function()
  n = n + 1
  local body = '{"model":"bench-model","user":"u' .. (n % $USERS) .. '","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
  local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer sk-bench-" .. (n % $KEYS)}
  return wrk.format("POST", "/v1/chat/completions", headers, body)
end
LUA

to_ms() { awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'; }
run() { # NAME PORT
  local out non2xx
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/post.lua" "http://127.0.0.1:$2")
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -n "$non2xx" ] && die "$1: $non2xx non-2xx responses"$'\n'"$out"
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  echo "$rps $(to_ms "$p50") $(to_ms "$p99")" >> "$WORK/$1"
  printf '  %-10s %10s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99" >&2
}

log "warm-up"; for p in $OFF $MEM $RED $MEMQ $REDQ; do DURATION=2 run warmup $p; done
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS (${DURATION}s each, $CONNECTIONS connections, $USERS users, $KEYS keys)"
  run off $OFF; run memory $MEM; run redis $RED; run memory+quotas $MEMQ; run redis+quotas $REDQ
done
calls=$(for p in $RED $REDQ; do curl -fsS "http://127.0.0.1:$p/metrics" | awk -v p=":$p" '/^llm_gateway_redis_calls_total/ {printf "%s %s=%s ", p, $1, $2}'; done)
# Every quota request was counted: the fleet-wide usage equals what the quota gateway served.
usage=$(curl -fsS "http://127.0.0.1:$REDQ/api/usage" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(k["requests"] for k in d["keys"]))' 2>/dev/null || echo "?")

median() { sort -n | awk '{a[NR]=$1} END { print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2) }'; }
col() { awk -v c="$2" '{print $c}' "$WORK/$1" | median; }
echo
echo "Medians of $ROUNDS rounds, $CONNECTIONS connections, $USERS users, $KEYS keys; added = over the same"
echo "limits in memory (limits: over memory; limits + quotas: over memory+quotas), same rounds."
echo
echo "| limits | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms |"
echo "|---|---|---|---|---|---|"
for n in off memory redis memory+quotas redis+quotas; do
  case $n in *quotas) base=memory+quotas ;; *) base=memory ;; esac
  awk -v l="$n" -v r="$(col $n 1)" -v p50="$(col $n 2)" -v p99="$(col $n 3)" -v d50="$(col $base 2)" -v d99="$(col $base 3)" \
    'BEGIN { printf "| %s | %s | %.3f | %.3f | %+.3f | %+.3f |\n", l, r, p50, p99, p50-d50, p99-d99 }'
done
echo
awk -v m="$(col memory 1)" -v r="$(col redis 1)" 'BEGIN { printf "throughput: redis / memory %.2fx\n", r/m }'
awk -v m="$(col memory+quotas 1)" -v r="$(col redis+quotas 1)" 'BEGIN { printf "throughput: redis+quotas / memory+quotas %.2fx\n", r/m }'
echo "Redis calls: $calls"
echo "Requests in the fleet-wide usage of the quota keys (Redis): $usage"
