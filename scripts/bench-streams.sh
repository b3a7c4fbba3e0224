#!/usr/bin/env bash
# Memory per open stream: STREAMS concurrent streamed chat completions held open through the
# gateway (and, same run, through vllm-router) in front of one simulated vLLM worker whose
# streams last ~TOKENS × TPOT_MS. The proxy's resident memory (VmRSS) and open file
# descriptors are sampled once every stream is open, and compared with the idle proxy:
#   per stream = (RSS with STREAMS open − RSS idle) / STREAMS
#
#   ./scripts/bench-streams.sh          # STREAMS=2000 TOKENS=300 TPOT_MS=100 by default
#
# Everything listens on 127.0.0.1 only and stops by itself.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

STREAMS=${STREAMS:-2000}
TOKENS=${TOKENS:-300}
TPOT_MS=${TPOT_MS:-100}
SIM=18301 GW=18380 VR=18390

ensure_build_deps
ensure_apt curl python3-venv
ensure_vllm_router
(cd "$ROOT" && cargo build --release --locked -p sagellm-gateway --bins -p sagellm-tests --bin sagellm-sim)
# Two sockets per stream in the proxy, one in the client: well over the usual 1024.
need=$(( STREAMS * 2 + 512 ))
[ "$(ulimit -Sn)" -ge "$need" ] || ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -Sn)" -ge "$need" ] || die "$need open files needed, the hard limit is $(ulimit -Hn)"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$BIN/sagellm-sim" --port $SIM --name w1 --model bench-model --max-running 100000 \
  --output-tokens "$TOKENS" --tpot-ms "$TPOT_MS" --ttft-ms 20 >"$WORK/sim.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$SIM/health" 20 || die "sim did not start"

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
running() { curl -fsS "http://127.0.0.1:$SIM/sim/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["running"])'; }

# measure NAME PID PORT -> prints "idle_kb open_kb fds_open per_stream_kb"
measure() {
  local name=$1 pid=$2 port=$3
  # Warm up: a few plain requests and streams, so lazily built state exists.
  "$BIN/sagellm" bench "http://127.0.0.1:$port" --stream -c 4 --requests 8 --max-tokens 4 \
    --no-progress >/dev/null
  sleep 1
  local idle; idle=$(rss_kb "$pid")
  "$BIN/sagellm" bench "http://127.0.0.1:$port" --stream -c "$STREAMS" --requests "$STREAMS" \
    --max-tokens "$TOKENS" --timeout 300s --no-progress --output "$WORK/$name.json" >"$WORK/$name.bench" 2>&1 &
  local bench=$!
  local i=0
  until [ "$(running)" -ge "$STREAMS" ]; do
    i=$((i + 1)); [ $i -gt 600 ] && die "$name: only $(running) of $STREAMS streams opened"
    sleep 0.1
  done
  sleep 2 # every stream is past its first tokens
  local open fd; open=$(rss_kb "$pid"); fd=$(fds "$pid")
  wait $bench || { cat "$WORK/$name.bench"; die "$name: bench failed"; }
  python3 - "$WORK/$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["errors"]:
    sys.exit(f"{sys.argv[2]}: {r['errors']} failed streams")
PY
  echo "$idle $open $fd $(( (open - idle) / STREAMS ))"
}

# gateway CONFIG_TOML -> prints what `measure` prints
gateway() {
  printf '%s\n' "$1" > "$WORK/gw.toml"
  LLM_RATE_LIMIT_ENABLED=false LLM_LOG=warn "$BIN/sagellm-gateway" --config "$WORK/gw.toml" \
    --host 127.0.0.1 --port $GW --threads 2 --worker-urls "http://127.0.0.1:$SIM" >"$WORK/gw.log" 2>&1 &
  local pid=$!
  PIDS+=($pid)
  wait_http "http://127.0.0.1:$GW/health" 30 || { cat "$WORK/gw.log"; die "gateway did not become ready"; }
  measure gateway $pid $GW
  kill $pid; wait $pid 2>/dev/null || true
}
# Streams take the gateway's own forwarding path (mid-stream failover), or Pingora's.
read -r g_idle g_open g_fd g_per <<<"$(gateway '[failover]')"
read -r p_idle p_open p_fd p_per <<<"$(gateway $'[failover]\nenabled = false')"

"$VENV/bin/vllm-router" --host 127.0.0.1 --port $VR --policy round_robin --log-level warning \
  --worker-urls "http://127.0.0.1:$SIM" >"$WORK/vr.log" 2>&1 &
VR_PID=$!
PIDS+=($VR_PID)
BODY='{"model":"bench-model","messages":[{"role":"user","content":"hi"}],"max_tokens":2}'
for i in $(seq 300); do
  curl -fsS -o /dev/null "http://127.0.0.1:$VR/v1/chat/completions" -H 'content-type: application/json' -d "$BODY" 2>/dev/null && break
  sleep 0.1
done
read -r v_idle v_open v_fd v_per <<<"$(measure vllm-router $VR_PID $VR)"

echo
echo "$STREAMS concurrent streams (~$(( TOKENS * TPOT_MS / 1000 )) s each), one simulated worker"
printf '%-16s %10s %12s %10s %14s\n' proxy "idle MB" "open MB" "open fds" "KB per stream"
row() { awk -v n="$1" -v i="$2" -v o="$3" -v f="$4" -v p="$5" \
  'BEGIN { printf "%-16s %10.1f %12.1f %10d %14d\n", n, i / 1024, o / 1024, f, p }'; }
row gateway "$g_idle" "$g_open" "$g_fd" "$g_per"
row "gw failover-off" "$p_idle" "$p_open" "$p_fd" "$p_per"
row vllm-router "$v_idle" "$v_open" "$v_fd" "$v_per"
awk -v g="$g_per" -v v="$v_per" 'BEGIN { if (g > 0) printf "vllm-router / gateway memory per stream: %.2fx\n", v / g }'
