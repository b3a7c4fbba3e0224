# Shared helpers for the scripts in this folder. Source it; do not run it.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One target dir outside the clone, shared by every checkout on this machine
# (CI exports the same path, so a fresh clone reuses the build instead of a cold 35 min one).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sagellm-target}"
BIN="$CARGO_TARGET_DIR/release"
# The engine's quantized CPU kernels (candle) have AVX2 paths selected at compile time only;
# without these target features every matrix product runs the scalar fallback (~4x slower).
# Binaries are built on the machine that runs them, so use its AVX2/FMA when it has them.
if [ -z "${RUSTFLAGS+x}" ] && [ "$(uname -m)" = x86_64 ] \
   && grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && grep -qw f16c /proc/cpuinfo; then
  export RUSTFLAGS="-C target-cpu=x86-64-v3"
fi

log() { printf '\033[1;34m[sagellm]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[sagellm] error:\033[0m %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $* (install it by hand or run as root)"; fi
}

# Install Debian packages that are missing (idempotent; apt-get update at most once).
APT_UPDATED=0
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
  log "installing system packages: ${missing[*]}"
  if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# What any build of the workspace needs: a C/C++ toolchain and cmake (pingora's zlib-ng).
ensure_build_deps() {
  ensure_apt build-essential cmake pkg-config
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"
}

# The dashboard's browser test: Debian's Chromium and playwright-core (npm) to drive it.
ensure_browser_test_deps() {
  ensure_apt chromium
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then ensure_apt nodejs npm; fi
  local e2e="$ROOT/dashboard/e2e"
  if [ ! -d "$e2e/node_modules/playwright-core" ] \
     || [ "$e2e/package-lock.json" -nt "$e2e/node_modules/.package-lock.json" ]; then
    log "installing the dashboard test's npm packages (playwright-core, no browser download)"
    (cd "$e2e" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# The Anthropic SDK test: the official `anthropic` package in a virtualenv outside the clone
# (shared by every checkout on this machine, like the build cache; the tests look there too).
export SAGELLM_VENV="${SAGELLM_VENV:-$HOME/.cache/sagellm-venv}"
ensure_python_test_deps() {
  local venv="$SAGELLM_VENV" req="$ROOT/tests/python/requirements.txt"
  command -v python3 >/dev/null || ensure_apt python3 python3-venv
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" 2>/dev/null || { ensure_apt python3-venv; python3 -m venv "$venv"; }
  fi
  # The stamp holds the requirements last installed: reinstall only when they changed.
  cmp -s "$req" "$venv/.installed-requirements" && return 0
  log "installing the Python test packages: $(tr '\n' ' ' < "$req")"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.installed-requirements"
}

build_release() {
  log "building (release, whole workspace; the first build compiles mistral.rs and takes a while)"
  (cd "$ROOT" && cargo build --release --workspace --locked)
}

# vllm-router from PyPI, the benchmarks' peer, in its own virtualenv ($VENV).
VENV="$HOME/.cache/sagellm-bench-venv"
ensure_vllm_router() {
  if [ ! -x "$VENV/bin/vllm-router" ]; then
    log "installing vllm-router (pip) into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q vllm-router
  fi
}

# SGLang's Rust model gateway (`smg` on PyPI), another benchmark reference, in its own
# virtualenv so its dependencies never meet vllm-router's.
SMG_VENV="$HOME/.cache/sagellm-smg-venv"
ensure_smg() {
  if [ ! -x "$SMG_VENV/bin/smg" ]; then
    log "installing smg (pip) into $SMG_VENV"
    python3 -m venv "$SMG_VENV"
    "$SMG_VENV/bin/pip" install -q smg
  fi
}

# Wait until URL answers 2xx, up to $2 seconds.
wait_http() {
  local url=$1 secs=${2:-60} i=0
  # -k: readiness only (a gateway with its own HTTPS certificate is checked by its clients).
  until curl -kfsS -o /dev/null "$url" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -gt $((secs * 10)) ] && return 1; sleep 0.1
  done
}
