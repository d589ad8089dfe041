#!/usr/bin/env bash
# Runs reads.js (the official Node SDK's App API reads) against one `cio mock --tls`. Needs node
# and customerio-node 5 (`npm install customerio-node@5` into NODE_MODULES); CI needs neither.
#
#   CIO=target/release/cio NODE_MODULES=/opt/peers/node5/node_modules crates/cio-mock/tests/node/reads.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cio="${CIO:-target/release/cio}"
modules="${NODE_MODULES:?set NODE_MODULES to a node_modules holding customerio-node 5}"
dir="$(mktemp -d)"
trap 'kill "$mock" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$((20000 + RANDOM % 20000))
"$cio" mock --listen "127.0.0.1:$port" --tls --tls-ca-out "$dir/ca.pem" \
  --site-id site --api-key key --app-key app-key >"$dir/mock.log" 2>&1 &
mock=$!
for _ in $(seq 50); do [ -s "$dir/ca.pem" ] && break; sleep 0.1; done
NODE_PATH="$modules" NODE_EXTRA_CA_CERTS="$dir/ca.pem" node "$here/reads.js" "https://127.0.0.1:$port"
