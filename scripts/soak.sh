#!/usr/bin/env bash
# Soak: DURATION seconds (default 600) of mixed traffic through the gateway in front of three
# simulated vLLM workers, one of which is killed (SIGKILL) and restarted every RESTART_EVERY
# seconds (default 60), in turn. Traffic, all at once: streams (sagellm bench --stream), plain
# requests, large bodies (~120 KB prompts), and clients that disconnect mid-stream (curl with
# a 0.3 s limit). Every SAMPLE seconds (default 10) the gateway's resident memory (VmRSS), open
# file descriptors and tasks alive on its runtime (`llm_gateway_runtime_tasks`) are recorded.
#
# Pass: after the warm-up (the first WARMUP seconds, default 60), no sample exceeds
#   RSS   ≤ 1.5 × the warm-up peak + 32 MB
#   fds   ≤ the warm-up peak + 256
#   tasks ≤ 1.5 × the warm-up peak + 256
# (traffic is steady, so a leak shows as growth past these; the slack absorbs the restarts'
# reconnects and allocator noise), and the last sample is back near idle once traffic stops.
#
#   ./scripts/soak.sh                   # 10 minutes; DURATION=120 ./scripts/soak.sh for a short one
#
# Not part of test.sh. Everything listens on 127.0.0.1 only and stops by itself.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

DURATION=${DURATION:-600}
RESTART_EVERY=${RESTART_EVERY:-60}
SAMPLE=${SAMPLE:-10}
WARMUP=${WARMUP:-60}
GW=18480 SIMS=(18401 18402 18403)

ensure_build_deps
ensure_apt curl python3
(cd "$ROOT" && cargo build --release --locked -p sagellm-gateway --bins -p sagellm-tests --bin sagellm-sim)

WORK=$(mktemp -d)
PIDS=()
declare -A SIM_PID
cleanup() {
  local all=("${PIDS[@]}" "${SIM_PID[@]}")
  [ ${#all[@]} -gt 0 ] && kill "${all[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

start_sim() { # PORT
  "$BIN/sagellm-sim" --port "$1" --name "w$1" --model soak-model --max-running 64 \
    --output-tokens 64 --tpot-ms 5 --ttft-ms 20 >>"$WORK/sim-$1.log" 2>&1 &
  SIM_PID[$1]=$!
  wait_http "http://127.0.0.1:$1/health" 20 || die "sim :$1 did not start"
}
for p in "${SIMS[@]}"; do start_sim "$p"; done
urls=$(printf 'http://127.0.0.1:%s,' "${SIMS[@]}"); urls=${urls%,}

LLM_RATE_LIMIT_ENABLED=false LLM_LOG=warn "$BIN/sagellm-gateway" --host 127.0.0.1 --port $GW \
  --threads 2 --worker-urls "$urls" >"$WORK/gw.log" 2>&1 &
GW_PID=$!
PIDS+=($GW_PID)
wait_http "http://127.0.0.1:$GW/health" 30 || { cat "$WORK/gw.log"; die "gateway did not become ready"; }
URL="http://127.0.0.1:$GW"

sample() { # -> "seconds rss_kb fds tasks"
  local rss fds tasks
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status")
  fds=$(ls "/proc/$GW_PID/fd" | wc -l)
  tasks=$(curl -fsS "$URL/metrics" | awk '$1 == "llm_gateway_runtime_tasks" {print $2}')
  echo "$SECONDS $rss $fds ${tasks:-0}"
}
sample >"$WORK/idle"

SECONDS=0
bench() { # NAME ARGS...
  local name=$1; shift
  "$BIN/sagellm" bench "$URL" -d "${DURATION}s" --no-progress --timeout 60s \
    --output "$WORK/$name.json" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
}
bench streams --stream -c 8 --max-tokens 64
bench plain -c 4 --max-tokens 16
bench large -c 2 --max-tokens 8 --prompt-len 20000
# Clients that give up mid-stream.
(
  body='{"model":"soak-model","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"leave early"}]}'
  while [ $SECONDS -lt "$DURATION" ]; do
    curl -sS -o /dev/null --max-time 0.3 "$URL/v1/chat/completions" \
      -H 'content-type: application/json' -d "$body" 2>/dev/null || true
  done
) &
PIDS+=($!)

log "soak: ${DURATION}s of traffic, a worker restarted every ${RESTART_EVERY}s, samples every ${SAMPLE}s"
next_restart=$RESTART_EVERY victim=0
while [ $SECONDS -lt "$DURATION" ]; do
  sleep "$SAMPLE"
  sample | tee -a "$WORK/samples"
  if [ $SECONDS -ge $next_restart ] && [ $SECONDS -lt "$DURATION" ]; then
    port=${SIMS[$victim]}
    kill -9 "${SIM_PID[$port]}" 2>/dev/null || true
    wait "${SIM_PID[$port]}" 2>/dev/null || true
    start_sim "$port"
    log "restarted the worker on :$port"
    victim=$(( (victim + 1) % ${#SIMS[@]} ))
    next_restart=$(( next_restart + RESTART_EVERY ))
  fi
done
for pid in "${PIDS[@]:1}"; do wait "$pid" 2>/dev/null || true; done
sleep 3
sample >"$WORK/after"

python3 - "$WORK" "$WARMUP" <<'PY'
import json, sys, pathlib
work, warmup = pathlib.Path(sys.argv[1]), int(sys.argv[2])
rows = [list(map(int, l.split())) for l in (work / "samples").read_text().split("\n") if l.strip()]
idle = list(map(int, (work / "idle").read_text().split()))
after = list(map(int, (work / "after").read_text().split()))
warm = [r for r in rows if r[0] <= warmup] or rows[:1]
rest = [r for r in rows if r[0] > warmup]
peak = lambda i, rs: max(r[i] for r in rs)
bounds = {
    "rss_kb": (1, 1.5 * peak(1, warm) + 32 * 1024),
    "fds": (2, peak(2, warm) + 256),
    "tasks": (3, 1.5 * peak(3, warm) + 256),
}
print(f"\nidle: rss {idle[1] / 1024:.1f} MB, fds {idle[2]}, tasks {idle[3]}")
print(f"{'t s':>5} {'rss MB':>8} {'fds':>6} {'tasks':>6}")
for r in rows:
    print(f"{r[0]:>5} {r[1] / 1024:>8.1f} {r[2]:>6} {r[3]:>6}")
print(f"after: rss {after[1] / 1024:.1f} MB, fds {after[2]}, tasks {after[3]}")
failed = False
for name, (i, bound) in bounds.items():
    worst = peak(i, rest) if rest else 0
    ok = worst <= bound
    failed |= not ok
    print(f"{name}: warm-up peak {peak(i, warm)}, later peak {worst}, bound {bound:.0f}: {'ok' if ok else 'EXCEEDED'}")
if after[2] > idle[2] + 64:
    print(f"fds after traffic {after[2]} vs idle {idle[2]}: connections leaked")
    failed = True
for name in ("streams", "plain", "large"):
    r = json.loads((work / f"{name}.json").read_text())
    print(f"{name}: {r['requests']} requests, {r['ok']} ok, {r['errors']} errors {r.get('errors_by_status', {}) and {k: v['count'] for k, v in r['errors_by_status'].items()}}")
sys.exit(1 if failed else 0)
PY
