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
# - PostgreSQL and Redis servers: the PostgreSQL stores and the gateway's shared cache are
#   tested against the real engines, which the tests start themselves on loopback
#   (crates/llmopt-storage/src/test_engines.rs). Debian keeps the PostgreSQL server binaries
#   in /usr/lib/postgresql/<version>/bin, off the PATH. Set LLMOPT_SKIP_ENGINES=1 to skip
#   those tests on a machine without them (CI never does).
# - The official `openai` and `anthropic` Python SDKs, in a venv under the target directory
#   (`target/sdk-venv`), for scripts/sdk/check_sdks.py, which `cargo xtask ci` runs against a
#   gateway and a local mock. From PyPI, unpinned: the check is that the SDKs people install
#   today work by base URL alone. Python's venv module comes from apt when missing.
set -euo pipefail

CARGO_DENY_VERSION="0.20.2"

if cargo deny --version >/dev/null 2>&1; then
    echo "cargo-deny present: $(cargo deny --version)" >&2
else
    echo "installing cargo-deny $CARGO_DENY_VERSION from crates.io (a few minutes)" >&2
    cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION"
fi

have_postgres() {
    command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
command -v protoc >/dev/null 2>&1 || [ -n "${PROTOC:-}" ] || missing+=(protobuf-compiler)
if [ "${LLMOPT_SKIP_ENGINES:-}" = "1" ]; then
    echo "LLMOPT_SKIP_ENGINES=1: not installing postgresql and redis-server" >&2
else
    have_postgres || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]} (apt)" >&2
    if [ "$(id -u)" -eq 0 ]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
else
    echo "chromium, protoc, postgresql and redis-server present" >&2
fi

SDK_VENV="${CARGO_TARGET_DIR:-target}/sdk-venv"
if "$SDK_VENV/bin/python" -c "import openai, anthropic" >/dev/null 2>&1; then
    echo "openai and anthropic SDKs present in $SDK_VENV" >&2
else
    echo "installing the openai and anthropic Python SDKs into $SDK_VENV (PyPI)" >&2
    python3 -m venv "$SDK_VENV"
    "$SDK_VENV/bin/pip" install --quiet --disable-pip-version-check openai anthropic
fi
