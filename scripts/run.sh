#!/usr/bin/env bash
# The main job: build, then start the gateway in front of a fleet.
#   ./scripts/run.sh                      # the bundled engine (SmolLM2-135M, CPU) behind the gateway
#   LLM_WORKER_URLS=http://a:8000,http://b:8000 ./scripts/run.sh   # your vLLM / LMDeploy fleet
# Options (environment):
#   SAGELLM_ENGINE=1          also start the bundled engine when LLM_WORKER_URLS is set
#   SAGELLM_MODEL=PATH.gguf   the engine's model (default: models/SmolLM2-135M-Instruct.Q4_1.gguf,
#                             fetched by scripts/fetch-model.sh)
#   SAGELLM_ENGINE_PORT=8001  SAGELLM_ENGINE_ARGS="--max-seqs 8"
#   SAGELLM_SIM_WORKERS=N     add N simulated vLLM workers (sagellm-sim) on ports 8101...
#   LLM_PORT (9000), LLM_HOST (0.0.0.0), and every other LLM_* setting of conf/README.md.
# Ctrl-C stops everything this script started.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

ensure_build_deps
ensure_apt curl
build_release

PIDS=()
cleanup() {
  trap - INT TERM EXIT
  [ ${#PIDS[@]} -gt 0 ] && kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

urls=()
[ -n "${LLM_WORKER_URLS:-}" ] && urls+=("$LLM_WORKER_URLS")

if [ -z "${LLM_WORKER_URLS:-}" ] || [ "${SAGELLM_ENGINE:-0}" = 1 ]; then
  model="${SAGELLM_MODEL:-}"
  if [ -z "$model" ]; then
    "$ROOT/scripts/fetch-model.sh"
    model="$ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  fi
  eport="${SAGELLM_ENGINE_PORT:-8001}"
  # shellcheck disable=SC2086
  "$BIN/sagellm-engine" --model "$model" --host 127.0.0.1 --port "$eport" ${SAGELLM_ENGINE_ARGS:-} &
  PIDS+=($!)
  log "loading $(basename "$model") into sagellm-engine on :$eport"
  wait_http "http://127.0.0.1:$eport/health" 300 || die "sagellm-engine on :$eport did not become ready"
  urls+=("http://127.0.0.1:$eport")
fi

for i in $(seq 1 "${SAGELLM_SIM_WORKERS:-0}"); do
  sport=$((8100 + i))
  "$BIN/sagellm-sim" --port "$sport" --name "sim-$sport" --model sagellm-sim \
    --ttft-ms 150 --tpot-ms 40 --output-tokens 64 >/dev/null &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$sport/health" 30 || die "sagellm-sim on :$sport did not start"
  urls+=("http://127.0.0.1:$sport")
done

LLM_WORKER_URLS=$(IFS=,; echo "${urls[*]}")
export LLM_WORKER_URLS

port="${LLM_PORT:-9000}"
"$BIN/sagellm-gateway" &
PIDS+=($!)
wait_http "http://127.0.0.1:$port/health" 60 || log "the gateway is up but no worker is ready yet (see its log)"
model_id=$(curl -fsS "http://127.0.0.1:$port/v1/models" 2>/dev/null | sed -n 's/^{"object":"list","data":\[{"id":"\([^"]*\)".*/\1/p')
cat >&2 <<MSG

  sageLLM Gateway is running on http://127.0.0.1:$port  (workers: $LLM_WORKER_URLS)

    Dashboard:   open http://127.0.0.1:$port/ in a browser

    curl http://127.0.0.1:$port/v1/models
    curl http://127.0.0.1:$port/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"${model_id:-MODEL}","messages":[{"role":"user","content":"Hello!"}]}'
    OpenAI SDK:  OpenAI(base_url="http://127.0.0.1:$port/v1", api_key="none")

    $BIN/sagellm --url http://127.0.0.1:$port watch     # live worker table
    curl http://127.0.0.1:$port/metrics                 # Prometheus (conf/prometheus.yml)
    conf/gateway.toml is watched: edits apply live.

  Ctrl-C stops everything.
MSG
wait -n "${PIDS[@]}"
