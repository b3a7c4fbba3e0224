#!/usr/bin/env bash
# Routing quality benchmark: every routing strategy of sagellm-gateway and vllm-router's
# cache_aware and round_robin, in front of the same four prefix-caching sagellm-sim workers
# (one at 0.4x speed), on three kinds of traffic: shared-prefix (a few long system contexts),
# multi-turn (conversations resending their history) and plain (no shared prefix). Poisson
# arrivals with the same seed for every router; workers restarted for every run, so every
# router starts from cold caches, then WARMUP seconds of the same traffic (not measured: the
# steady state is what an operator runs in), then DURATION seconds measured. Prints TTFT/e2e
# percentiles and the fleet's prefix-cache hit rate (over the measured window) per router and
# workload, and the same-run ratios against vllm-router.
#
#   ./scripts/bench-routing.sh        # WARMUP=5 DURATION=15 RATE=16 by default
#   STRATEGIES="p2c_kv cache_aware" WORKLOADS=shared-prefix ./scripts/bench-routing.sh
#
# Everything listens on 127.0.0.1 only and stops by itself.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

WARMUP=${WARMUP:-5}
DURATION=${DURATION:-15}
RATE=${RATE:-16}
SEED=${SEED:-7}
STRATEGIES=${STRATEGIES:-"round_robin weighted_round_robin least_queue least_connections p2c_kv consistent_hash adaptive cache_aware"}
VLLM_POLICIES=${VLLM_POLICIES:-"cache_aware round_robin"}
WORKLOADS=${WORKLOADS:-"shared-prefix multi-turn plain"}
SIM_PORTS=(18101 18102 18103 18104)
GW=18180 VR=18190
# The simulated GPU: prefill 0.1 ms per uncached prompt token, 4 ms per output token growing
# 5 % per extra running sequence, 8 sequences at once; each cache holds 384 blocks (6,144
# tokens): three of the eight 2,048-token contexts, not all of them.
SIM_FLAGS=(--model bench-model --ttft-ms 5 --tpot-ms 4 --prefill-ms-per-1k-tokens 100
  --batch-penalty 0.05 --max-running 8 --cache-blocks 384 --output-tokens 1000)
SLOW_SPEED=0.4

ensure_build_deps
ensure_apt curl python3-venv
ensure_vllm_router
(cd "$ROOT" && cargo build --release --locked -p sagellm-gateway -p sagellm-tests --bins)

WORK=$(mktemp -d)
PIDS=()
stop_all() {
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() { stop_all; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

workers_csv() { local IFS=,; echo "${SIM_PORTS[*]/#/http://127.0.0.1:}"; }

start_sims() {
  local i=0
  for port in "${SIM_PORTS[@]}"; do
    local speed=1.0
    [ "$i" -eq 0 ] && speed=$SLOW_SPEED
    "$BIN/sagellm-sim" --port "$port" --name "w$i" --speed "$speed" --seed "$i" "${SIM_FLAGS[@]}" \
      >"$WORK/sim-$port.log" 2>&1 &
    PIDS+=($!)
    i=$((i + 1))
  done
  for port in "${SIM_PORTS[@]}"; do
    wait_http "http://127.0.0.1:$port/health" 20 || die "sagellm-sim :$port did not start"
  done
}

BODY='{"model":"bench-model","messages":[{"role":"user","content":"warm up"}],"max_tokens":1}'
wait_router() { # PORT LOG
  for _ in $(seq 300); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/v1/chat/completions" \
      -H 'content-type: application/json' -d "$BODY" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$2"; die "the router on :$1 did not become ready"
}

# The fleet's counters now: "hits queries completed_w0 completed_w1 …" summed over the sims.
fleet_counters() {
  for port in "${SIM_PORTS[@]}"; do curl -fsS "http://127.0.0.1:$port/sim/stats"; echo; done |
    python3 -c '
import json, sys
s = [json.loads(l) for l in sys.stdin if l.strip()]
print(sum(x["prefix_cache_hits_total"] for x in s), sum(x["prefix_cache_queries_total"] for x in s),
      *[x["completed_total"] for x in s])'
}

# The measured window from two fleet_counters lines: "hit_rate" and "requests per worker".
window() { # BEFORE AFTER
  python3 -c '
import sys
b, a = [list(map(float, x.split())) for x in sys.argv[1:3]]
d = [y - x for x, y in zip(b, a)]
print(f"{d[0] / d[1]:.3f}" if d[1] > 0 else "0.000")
print(" ".join(str(int(x)) for x in d[2:]))' "$1" "$2"
}

bench_args() { # WORKLOAD
  case $1 in
    shared-prefix) echo "--workload shared-prefix --contexts 8 --context-tokens 2048 --prompt-len 32" ;;
    multi-turn) echo "--workload multi-turn --conversations 16 --turns 4 --prompt-len 64" ;;
    plain) echo "--workload plain --prompt-len 512" ;;
  esac
}

# run NAME WORKLOAD PORT: warm-up, then one measured bench run against a started router;
# appends a result row.
run() {
  local name=$1 workload=$2 port=$3 out="$WORK/$1-$2.json"
  # shellcheck disable=SC2046
  "$BIN/sagellm" bench "http://127.0.0.1:$port" --model bench-model --stream --max-tokens 64 \
    --rate "$RATE" -c 128 -d "${WARMUP}s" --seed "$SEED" --no-progress $(bench_args "$workload") \
    >/dev/null
  local before; before=$(fleet_counters)
  # The measured run continues the warm-up's traffic: the same contexts, new questions and
  # new conversations (plain: new prompts).
  # shellcheck disable=SC2046
  "$BIN/sagellm" bench "http://127.0.0.1:$port" --model bench-model --stream --max-tokens 64 \
    --rate "$RATE" -c 128 -d "${DURATION}s" --seed "$SEED" --request-offset 1000000 --no-progress \
    $(bench_args "$workload") -o "$out" >/dev/null
  local measured; measured=$(window "$before" "$(fleet_counters)")
  local hit share
  hit=$(echo "$measured" | sed -n 1p)
  share=$(echo "$measured" | sed -n 2p)
  python3 - "$out" "$name" "$workload" "$hit" "$share" >>"$WORK/rows" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t, e = r["ttft_ms"] or {}, r["latency_ms"] or {}
print("\t".join([sys.argv[3], sys.argv[2], str(r["ok"]), str(r["errors"]),
    f'{t.get("p50", 0):.1f}', f'{t.get("p99", 0):.1f}', f'{e.get("p50", 0):.1f}', f'{e.get("p99", 0):.1f}',
    sys.argv[4], sys.argv[5]]))
PY
  printf '  %-26s %-14s %s\n' "$name" "$workload" "$(tail -1 "$WORK/rows" | cut -f3-)" >&2
}

for workload in $WORKLOADS; do
  log "workload $workload (${DURATION}s, Poisson $RATE req/s, seed $SEED)"
  for s in $STRATEGIES; do
    start_sims
    LLM_RATE_LIMIT_ENABLED=false LLM_LOG=warn "$BIN/sagellm-gateway" --host 127.0.0.1 --port $GW \
      --worker-urls "$(workers_csv)" --routing-strategy "$s" >"$WORK/gw.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$GW/health" 30 || { cat "$WORK/gw.log"; die "gateway did not start"; }
    wait_router $GW "$WORK/gw.log"
    run "sagellm $s" "$workload" $GW
    stop_all
  done
  for p in $VLLM_POLICIES; do
    start_sims
    # shellcheck disable=SC2046
    "$VENV/bin/vllm-router" --host 127.0.0.1 --port $VR --policy "$p" --log-level warning \
      --worker-urls $(workers_csv | tr , ' ') >"$WORK/vr.log" 2>&1 &
    PIDS+=($!)
    wait_router $VR "$WORK/vr.log"
    run "vllm-router $p" "$workload" $VR
    stop_all
  done
done

echo
echo "vllm-router $("$VENV/bin/pip" show vllm-router 2>/dev/null | awk '/^Version/ {print $2}'); \
sims: 4 workers (w0 at ${SLOW_SPEED}x speed), ${SIM_FLAGS[*]}; per run ${WARMUP}s warm-up, then ${DURATION}s measured at $RATE req/s"
echo
echo "| workload | router | ok | errors | TTFT p50 ms | TTFT p99 ms | e2e p50 ms | e2e p99 ms | fleet hit rate | requests per worker (w0 slow) |"
echo "|---|---|---|---|---|---|---|---|---|---|"
awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$WORK/rows"
echo
# Same-run ratios against vllm-router cache_aware: TTFT p99, e2e p99 (lower is better).
awk -F'\t' '
  $2 == "vllm-router cache_aware" { vt[$1] = $6; ve[$1] = $8; vh[$1] = $9 }
  { t[$1, $2] = $6; e[$1, $2] = $8; h[$1, $2] = $9; if (!seen[$1]++) order[++n] = $1; if (!seenr[$2]++) routers[++m] = $2 }
  END {
    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++) {
      w = order[i]; r = routers[j]
      if (r ~ /^sagellm/ && vt[w] > 0 && ve[w] > 0)
        printf "%-14s %-28s TTFT p99 %.2fx, e2e p99 %.2fx of vllm-router cache_aware; hit rate %s vs %s\n", w, r, t[w, r] / vt[w], e[w, r] / ve[w], h[w, r], vh[w]
    }
  }' "$WORK/rows"
