#!/usr/bin/env bash
# The main job: build, then start the gateway in front of a fleet.
#   ./scripts/run.sh                                  # demo fleet on this machine
#   LLM_WORKER_URLS=http://a:8000,http://b:8000 ./scripts/run.sh   # your vLLM / LMDeploy fleet
# Environment: LLM_PORT (9000), LLM_HOST (0.0.0.0), any other LLM_* setting of conf/README.md.
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

if [ -z "${LLM_WORKER_URLS:-}" ]; then
  # No fleet given: two simulated vLLM workers stand in for GPUs.
  urls=()
  for port in 8001 8002; do
    "$BIN/sagellm-sim" --port "$port" --name "sim-$port" --model sagellm-sim \
      --ttft-ms 150 --tpot-ms 40 --output-tokens 64 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$port/health" 30 || die "sagellm-sim on :$port did not start"
    urls+=("http://127.0.0.1:$port")
  done
  LLM_WORKER_URLS=$(IFS=,; echo "${urls[*]}")
  export LLM_WORKER_URLS
  log "no LLM_WORKER_URLS given: fronting two simulated vLLM workers ($LLM_WORKER_URLS)"
fi

port="${LLM_PORT:-9000}"
"$BIN/sagellm-gateway" &
PIDS+=($!)
wait_http "http://127.0.0.1:$port/health" 60 || log "the gateway is up but no worker is ready yet (see its log)"
cat >&2 <<MSG

  sageLLM Gateway is running on http://127.0.0.1:$port  (workers: $LLM_WORKER_URLS)

    curl http://127.0.0.1:$port/v1/models
    curl http://127.0.0.1:$port/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"$(curl -fsS "http://127.0.0.1:$port/v1/models" 2>/dev/null | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -n1)","messages":[{"role":"user","content":"Hello!"}]}'
    OpenAI SDK:  OpenAI(base_url="http://127.0.0.1:$port/v1", api_key="none")

  Ctrl-C stops everything.
MSG
wait -n "${PIDS[@]}"
