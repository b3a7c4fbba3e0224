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
#   LLM_TLS_CERT_FILE / LLM_TLS_KEY_FILE (PEM) serve HTTPS instead of HTTP.
# Secure by default: listening beyond loopback without LLM_ADMIN_KEY, the script generates an
# admin key for management writes and prints it (LLM_ALLOW_INSECURE_ADMIN=true opts out).
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
host="${LLM_HOST:-0.0.0.0}"
scheme=http
[ -n "${LLM_TLS_CERT_FILE:-}" ] && scheme=https
base="$scheme://127.0.0.1:$port"

# Management writes on a non-loopback listener need an admin key (else they get 403).
security=""
config_file="${LLM_CONFIG:-$ROOT/conf/gateway.toml}"
case "$host" in
  127.*|localhost|::1|"[::1]") ;;
  *)
    if [ -z "${LLM_ADMIN_KEY:-}" ] && [ "${LLM_ALLOW_INSECURE_ADMIN:-false}" != true ] \
      && ! grep -Eq '^[[:space:]]*admin_key[[:space:]]*=' "$config_file" 2>/dev/null; then
      LLM_ADMIN_KEY="sk-admin-$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
      export LLM_ADMIN_KEY
      security+="    Admin key (generated; management writes from the API, CLI and dashboard need it):
      $LLM_ADMIN_KEY
      SAGELLM_ADMIN_KEY=$LLM_ADMIN_KEY $BIN/sagellm --url $base drain WORKER
"
    fi
    if [ -z "${LLM_API_KEYS:-}" ] && ! grep -Eq '^[[:space:]]*api_keys[[:space:]]*=[[:space:]]*\[[[:space:]]*"' "$config_file" 2>/dev/null; then
      security+="    WARNING: listening on $host:$port with no API keys: anyone who can reach this
    port can use the models. Set LLM_API_KEYS=key1,key2 (or LLM_HOST=127.0.0.1).
"
    fi
    ;;
esac

"$BIN/sagellm-gateway" &
PIDS+=($!)
wait_http "$base/health" 60 || log "the gateway is up but no worker is ready yet (see its log)"
model_id=$(curl -kfsS "$base/v1/models" ${LLM_API_KEYS:+-H "authorization: Bearer ${LLM_API_KEYS%%,*}"} 2>/dev/null | sed -n 's/^{"object":"list","data":\[{"id":"\([^"]*\)".*/\1/p')
cat >&2 <<MSG

  sageLLM Gateway is running on $scheme://$host:$port  (workers: $LLM_WORKER_URLS)

    Dashboard:   open $base/ in a browser

    curl $base/v1/models
    curl $base/v1/chat/completions -H 'content-type: application/json' \\
      -d '{"model":"${model_id:-MODEL}","messages":[{"role":"user","content":"Hello!"}]}'
    OpenAI SDK:  OpenAI(base_url="$base/v1", api_key="none")

$security
    $BIN/sagellm --url $base watch     # live worker table
    curl $base/metrics                 # Prometheus (conf/prometheus.yml)
    conf/gateway.toml is watched: edits apply live.

  Ctrl-C stops everything.
MSG
wait -n "${PIDS[@]}"
