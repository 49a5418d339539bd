#!/usr/bin/env bash
# Installs the tools `cargo xtask ci` needs beyond the Rust toolchain, each only when missing:
# CI runs on a clean clone, but often on a machine that already has them.
#
# - cargo-deny (checks `deny.toml`): built from crates.io, about 3 minutes on two cores. The
#   version is pinned so that `deny.toml` is read the same way everywhere; an already installed
#   cargo-deny of another version is used as it is.
# - Chromium (Debian's `chromium`), for the dashboard's browser test
#   (`crates/llm-auto-optimizer/tests/it/dashboard.rs`), which drives it headless over the Chrome
#   DevTools Protocol. That test fails, rather than skips, when no browser is found.
# - protoc (Debian's `protobuf-compiler`), for the gateway's optional `grpc` feature, which
#   `cargo xtask ci` builds and tests too.
set -euo pipefail

CARGO_DENY_VERSION="0.20.2"

if cargo deny --version >/dev/null 2>&1; then
    echo "cargo-deny present: $(cargo deny --version)" >&2
else
    echo "installing cargo-deny $CARGO_DENY_VERSION from crates.io (a few minutes)" >&2
    cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi

if command -v chromium >/dev/null 2>&1; then
    echo "chromium present: $(chromium --version 2>/dev/null || echo unknown version)" >&2
else
    echo "installing Debian's chromium (for the dashboard's browser test)" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends chromium
fi

if command -v protoc >/dev/null 2>&1 || [ -n "${PROTOC:-}" ]; then
    echo "protoc present: $(${PROTOC:-protoc} --version)" >&2
else
    echo "installing Debian's protobuf-compiler (for the gateway's grpc feature)" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends protobuf-compiler
fi
