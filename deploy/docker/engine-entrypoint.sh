#!/bin/bash
# Entry point of the engine image: serve $SAGELLM_MODEL (a GGUF under the /models mount)
# on 0.0.0.0:$SAGELLM_ENGINE_PORT. Extra arguments go to sagellm-engine as they are, e.g.
#   docker run ... sagellm-engine:0.1.0 --max-seqs 16 --threads 8
# The default model comes from scripts/fetch-model.sh on the host (models/ mounted at
# /models), or is built in (the Dockerfile's engine-smollm2 target).
set -euo pipefail
model=${SAGELLM_MODEL:-/models/SmolLM2-135M-Instruct.Q4_1.gguf}
if [ ! -f "$model" ]; then
  echo "sagellm-engine: no model at $model. Mount a folder of GGUF files at /models" \
       "(e.g. -v \"\$PWD/models:/models:ro\" after ./scripts/fetch-model.sh) and set" \
       "SAGELLM_MODEL=/models/NAME.gguf, or use the engine-smollm2 image." >&2
  exit 2
fi
# shellcheck disable=SC2086  # SAGELLM_ENGINE_ARGS is a list of flags
exec sagellm-engine --model "$model" --host 0.0.0.0 --port "${SAGELLM_ENGINE_PORT:-8001}" \
  ${SAGELLM_ENGINE_ARGS:-} "$@"
