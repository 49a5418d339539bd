#!/usr/bin/env bash
# Installs the competitor the gateway bench measures in the same run, when present:
# Portkey's open-source AI gateway (Node.js, from npm), pinned, into target/competitors/portkey.
# Optional: `cargo xtask bench` runs without it and says so. Needs node and npm (Debian:
# `apt-get install nodejs npm`). The registry is the only network access.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="$root/target/competitors/portkey"
mkdir -p "$dir"
cd "$dir"
[ -f package.json ] || echo '{"private": true}' > package.json
npm install --no-audit --no-fund --ignore-scripts @portkey-ai/gateway@1.15.2
echo "Portkey gateway installed: $dir/node_modules/@portkey-ai/gateway/build/start-server.js"
