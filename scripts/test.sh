#!/usr/bin/env bash
# Every test of the workspace: installs what it needs, builds once (release), runs the suite.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

ensure_build_deps
ensure_apt curl prometheus redis-server dnsmasq-base   # promtool checks /metrics; replica tests start redis-server, discovery tests dnsmasq
ensure_browser_test_deps     # Chromium + playwright-core for the dashboard's browser test
ensure_python_test_deps      # the official anthropic SDK for the /v1/messages tests
"$ROOT/scripts/fetch-model.sh"     # the engine's tests run the real default model
log "checking deploy/ (systemd units, Kubernetes manifests, Dockerfile)"
"$ROOT/scripts/check-deploy.sh"
log "checking formatting (cargo fmt --all --check)"
cargo fmt --all --check
build_release
log "linting (cargo clippy --release --workspace --all-targets -- -D warnings)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
log "running the test suite"
cargo test --release --workspace --locked
log "all tests passed"
