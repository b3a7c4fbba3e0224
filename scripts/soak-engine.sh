#!/usr/bin/env bash
# Engine soak: DURATION seconds (default 60) of 8 concurrent greedy streams, back to back,
# against one sagellm-engine (default model, all cores, the default pinned engine thread),
# with its resident memory (VmRSS) sampled every SAMPLE seconds (default 5). It checks what
# the engine speed work must not break: no deadlock (every stream ends with [DONE] and a
# `length` finish within its time limit, and the engine keeps answering) and memory flat:
# after the first WARMUP seconds (default 15) no sample exceeds the warm-up peak + 32 MB.
# (Greedy text is not compared across rounds: mistral.rs batches whichever sequences are at
# the same step, and a different batch changes the last bits of the attention, so a stream
# may pick another token where two were nearly tied. engine/tests/real_model.rs compares
# greedy outputs one request at a time.)
#
#   ./scripts/soak-engine.sh                  # one minute
#   DURATION=300 ENGINE_ARGS="--pin-engine-thread false" ./scripts/soak-engine.sh
#
# Not part of test.sh. Everything listens on 127.0.0.1 only and stops by itself.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

DURATION=${DURATION:-60}
SAMPLE=${SAMPLE:-5}
WARMUP=${WARMUP:-15}
PORT=18521
MODEL=${SAGELLM_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
ENGINE_ARGS=${ENGINE_ARGS:-}

ensure_build_deps
ensure_apt curl python3
[ -n "${SAGELLM_MODEL:-}" ] || "$ROOT/scripts/fetch-model.sh"
build_release

LOG=$(mktemp)
# shellcheck disable=SC2086
"$BIN/sagellm-engine" --model "$MODEL" --port $PORT --max-seqs 8 --served-model-name soak $ENGINE_ARGS \
  >"$LOG" 2>&1 &
ENGINE=$!
cleanup() { kill "$ENGINE" 2>/dev/null || true; wait 2>/dev/null || true; rm -f "$LOG"; }
trap cleanup EXIT INT TERM
wait_http "http://127.0.0.1:$PORT/health" 300 || die "sagellm-engine did not start (see $LOG)"

python3 - "$PORT" "$ENGINE" "$DURATION" "$SAMPLE" "$WARMUP" <<'PY'
import http.client, json, sys, threading, time

PORT, PID, DURATION, SAMPLE, WARMUP = (int(a) for a in sys.argv[1:6])
STREAMS, TOKENS, LIMIT_S = 8, 48, 120
PROMPTS = [f"Tell me a story about a lighthouse keeper, part {i}." for i in range(STREAMS)]

def rss_mb():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit("the engine is gone")

def stream(prompt):
    """One greedy stream -> its text; raises if it does not end whole within LIMIT_S."""
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=LIMIT_S)
    body = {"model": "soak", "messages": [{"role": "user", "content": prompt}],
            "max_tokens": TOKENS, "temperature": 0, "stream": True}
    c.request("POST", "/v1/chat/completions", json.dumps(body), {"content-type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read()[:300])
    text, finish, done = [], None, False
    for line in r:
        line = line.strip()
        if line == b"data: [DONE]":
            done = True
        elif line.startswith(b"data: "):
            ch = (json.loads(line[6:]).get("choices") or [{}])[0]
            text.append((ch.get("delta") or {}).get("content") or "")
            finish = ch.get("finish_reason") or finish
    assert done and finish == "length", (done, finish)
    return "".join(text)

stop = time.monotonic() + DURATION
errors, counts = [], [0] * STREAMS
def worker(i):
    while time.monotonic() < stop:
        try:
            text = stream(PROMPTS[i])
        except Exception as e:  # noqa: BLE001 - every failure is reported below
            errors.append(f"stream {i}: {e!r}")
            return
        if not text:
            errors.append(f"stream {i}: no text")
            return
        counts[i] += 1

threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(STREAMS)]
t0 = time.monotonic()
for t in threads:
    t.start()
samples = []
while any(t.is_alive() for t in threads):
    samples.append((time.monotonic() - t0, rss_mb()))
    print(f"t={samples[-1][0]:5.0f}s  rss {samples[-1][1]:7.1f} MB  streams done {sum(counts)}", flush=True)
    for t in threads:
        t.join(timeout=SAMPLE / len(threads))
    if time.monotonic() > stop + LIMIT_S:
        errors.append("streams still running long after the end: a hang")
        break
elapsed = time.monotonic() - t0
warm = [m for t, m in samples if t <= WARMUP] or [samples[0][1]]
late = [m for t, m in samples if t > WARMUP]
bound = max(warm) + 32
tokens = sum(counts) * TOKENS
print(f"\n{sum(counts)} streams ({tokens} tokens) in {elapsed:.0f} s: {tokens / elapsed:.1f} tok/s aggregate; "
      f"RSS warm-up peak {max(warm):.1f} MB, later peak {max(late or warm):.1f} MB (bound {bound:.1f} MB)")
if late and max(late) > bound:
    errors.append(f"memory grew: {max(late):.1f} MB > {bound:.1f} MB")
if errors:
    print("FAILED:\n  " + "\n  ".join(errors))
    sys.exit(1)
print("ok: no hang, no error, memory flat")
PY
