#!/usr/bin/env bash
# Engine benchmark: prompt (prefill) tok/s, single-stream decode tok/s and aggregate decode
# tok/s at 1, 4 and 8 concurrent streams, for sagellm-engine and for llama.cpp's server
# (llama-cpp-python, a real peer) on the same GGUF and the same cores, in one run; prints the
# ratios. A third column runs the same cores as a fleet: THREADS single-threaded engines
# behind sagellm-gateway (least_queue). Everything runs on 127.0.0.1 and stops by itself.
#
#   ./scripts/bench-engine.sh                      # default model, 2 threads each
#   THREADS=2 ROUNDS=2 DECODE_TOKENS=128 ./scripts/bench-engine.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-2}
DECODE_TOKENS=${DECODE_TOKENS:-128}
MODEL=${SAGELLM_MODEL:-$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf}
EP=18501 LP=18502 GP=18503 FLEET_BASE=18510
ENGINE_ARGS=${ENGINE_ARGS:-}

ensure_build_deps
ensure_apt curl python3-venv
[ -n "${SAGELLM_MODEL:-}" ] || "$ROOT/scripts/fetch-model.sh"
VENV="$HOME/.cache/sagellm-bench-venv"
# llama.cpp is built for this CPU (GGML_NATIVE). Its AMX tile kernels fault on CPUs whose
# hypervisor advertises AMX but does not run it (a general protection fault at `ldtilecfg` on
# the first request, seen on the 2-core Xeon VM), so where AMX is advertised it is built for
# the same CPU's AVX-512/VNNI level without AMX (-march=native would enable AMX whatever the
# GGML_AMX_* options say); LLAMA_CMAKE_ARGS overrides.
AMX_OFF="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
AMX_OFF+=" -DGGML_AVX_VNNI=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON"
AMX_OFF+=" -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
if [ -z "${LLAMA_CMAKE_ARGS+x}" ]; then
  LLAMA_CMAKE_ARGS=""
  grep -qw amx_tile /proc/cpuinfo && LLAMA_CMAKE_ARGS="$AMX_OFF"
fi
STAMP="$VENV/.sagellm-cmake-args"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import llama_cpp.server' 2>/dev/null \
   || [ "$(cat "$STAMP" 2>/dev/null)" != "$LLAMA_CMAKE_ARGS" ]; then
  log "installing llama-cpp-python[server] into $VENV (compiles llama.cpp: several minutes)"
  python3 -m venv "$VENV"
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" install -q 'llama-cpp-python[server]'
  # Already installed with other build flags: build it again with these.
  CMAKE_ARGS="$LLAMA_CMAKE_ARGS" "$VENV/bin/pip" install -q --force-reinstall --no-deps \
    --no-cache-dir llama-cpp-python
  printf '%s' "$LLAMA_CMAKE_ARGS" >"$STAMP"
fi
build_release

PIDS=()
cleanup() { [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# shellcheck disable=SC2086
"$BIN/sagellm-engine" --model "$MODEL" --port $EP --threads "$THREADS" --max-seqs 8 $ENGINE_ARGS \
  >/tmp/sagellm-bench-engine.log 2>&1 &
PIDS+=($!)
# --interrupt_requests False: queue concurrent requests instead of aborting the running one.
"$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port $LP \
  --n_threads "$THREADS" --n_ctx 4096 --interrupt_requests False >/tmp/sagellm-bench-llamacpp.log 2>&1 &
PIDS+=($!)
fleet=()
for i in $(seq 1 "$THREADS"); do
  port=$((FLEET_BASE + i))
  # shellcheck disable=SC2086
  "$BIN/sagellm-engine" --model "$MODEL" --port "$port" --threads 1 --max-seqs 8 $ENGINE_ARGS \
    >"/tmp/sagellm-bench-fleet-$i.log" 2>&1 &
  PIDS+=($!)
  fleet+=("http://127.0.0.1:$port")
done
LLM_LOG=warn "$BIN/sagellm-gateway" --host 127.0.0.1 --port $GP --routing-strategy least_queue \
  --worker-urls "$(IFS=,; echo "${fleet[*]}")" >/tmp/sagellm-bench-gateway.log 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$EP/health" 300 || die "sagellm-engine did not start (see /tmp/sagellm-bench-engine.log)"
wait_http "http://127.0.0.1:$LP/v1/models" 300 || die "llama.cpp server did not start (see /tmp/sagellm-bench-llamacpp.log)"
for u in "${fleet[@]}"; do wait_http "$u/health" 300 || die "fleet engine $u did not start"; done
wait_http "http://127.0.0.1:$GP/health" 60 || die "the gateway did not become ready"

python3 - "$EP" "$LP" "$GP" "$ROUNDS" "$DECODE_TOKENS" "$THREADS" <<'PY'
import http.client, json, statistics, sys, threading, time

EP, LP, GP, ROUNDS, DECODE, THREADS = (int(a) for a in sys.argv[1:7])
FLEET = f"{THREADS}x1-thread fleet"
TARGETS = [("sagellm-engine", EP), ("llama.cpp", LP), (FLEET, GP)]
STORY = "Write a long, detailed story about a dragon who lives in a mountain and the village below it."
LONG = ("The history of the city is long and full of events. " * 40).strip()
LONG_1K = ("The history of the city is long and full of events. " * 80).strip()  # ~1,000 tokens

MODELS = {}

def model(port):
    """The model id the target serves (the gateway needs it to route)."""
    if port not in MODELS:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/v1/models")
        MODELS[port] = json.loads(c.getresponse().read())["data"][0]["id"]
    return MODELS[port]

def stream(port, content, max_tokens):
    """One streaming chat request -> (ttft, decode tok/s, content tokens, wall)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    body = json.dumps({"model": model(port), "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
                       "temperature": 0, "stream": True})
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, (r.status, r.read()[:300])
    first = last = None
    n = 0
    while True:
        line = r.readline()
        if not line:
            break
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        ch = json.loads(line[6:]).get("choices") or []
        if ch and (ch[0].get("delta") or {}).get("content"):
            now = time.perf_counter()
            first = first or now
            last = now
            n += 1
    wall = time.perf_counter() - t0
    decode = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return (first - t0 if first else wall), decode, n, wall

def prefill(port, r):
    """Prompt tokens per second: a ~500-token prompt (new each round: no prefix-cache hit),
    one output token."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=900)
    body = json.dumps({"model": model(port), "messages": [{"role": "user", "content": f"Round {r}, prefill. {LONG}"}], "max_tokens": 1,
                       "temperature": 0})
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
    r = c.getresponse()
    v = json.loads(r.read())
    return v["usage"]["prompt_tokens"] / (time.perf_counter() - t0)

def concurrent(port, n):
    out = [None] * n
    def run(i):
        out[i] = stream(port, f"{STORY} (variant {i})", 64)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return sum(o[2] for o in out) / (time.perf_counter() - t0)

results = {name: {"prefill": [], "decode": [], "ttft": [], "ttft_1k": [], 1: [], 4: [], 8: []} for name, _ in TARGETS}
for _, port in TARGETS:
    stream(port, "Hi", 4)  # warm-up
for r in range(ROUNDS):
    for name, port in TARGETS:
        res = results[name]
        res["prefill"].append(prefill(port, r))
        ttft, dec, n, _ = stream(port, STORY, DECODE)
        res["decode"].append(dec); res["ttft"].append(ttft)
        # A unique head per round and target: neither engine may answer from a prefix cache.
        res["ttft_1k"].append(stream(port, f"Round {r}, long prompt. {LONG_1K}", 2)[0])
        for k in (1, 4, 8):
            res[k].append(concurrent(port, k))
        print(f"round {r + 1} {name:15s} prefill {res['prefill'][-1]:7.1f}  decode {dec:6.1f} ({n} tok)  "
              f"ttft {ttft:.3f}s  ttft_1k {res['ttft_1k'][-1]:.3f}s  agg1 {res[1][-1]:6.1f}  agg4 {res[4][-1]:6.1f}  agg8 {res[8][-1]:6.1f}",
              file=sys.stderr, flush=True)

med = lambda xs: statistics.median(xs)
e, l, f = results["sagellm-engine"], results["llama.cpp"], results[FLEET]
print()
print(f"| tok/s (median of {ROUNDS}) | sagellm-engine | llama.cpp server | engine / llama.cpp | {FLEET} + gateway | fleet / llama.cpp |")
print("|---|---|---|---|---|---|")
for label, key in [("prompt (prefill, ~500-token prompt)", "prefill"), ("decode, single stream", "decode"),
                   ("aggregate, 1 stream", 1), ("aggregate, 4 streams", 4), ("aggregate, 8 streams", 8)]:
    a, b, c = med(e[key]), med(l[key]), med(f[key])
    print(f"| {label} | {a:.1f} | {b:.1f} | {a / b:.2f}x | {c:.1f} | {c / b:.2f}x |")
for label, key in [("time to first token, ~40-token prompt (s)", "ttft"),
                   ("time to first token, ~1,000-token prompt (s)", "ttft_1k")]:
    a, b, c = med(e[key]), med(l[key]), med(f[key])
    print(f"| {label} | {a:.3f} | {b:.3f} | {a / b:.2f}x | {c:.3f} | {c / b:.2f}x |")
PY
