#!/usr/bin/env bash
# Runs keepalive.js RUNS times (default 50) against one `cio mock --tls`, and counts the runs in
# which the official Node SDK met a connection error. Needs node and customerio-node
# (`npm install customerio-node` into NODE_MODULES); CI needs neither.
#
#   CIO=target/release/cio NODE_MODULES=/opt/peers/node/node_modules crates/cio-mock/tests/node/keepalive.sh [RUNS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
runs="${1:-50}"
cio="${CIO:-target/release/cio}"
modules="${NODE_MODULES:?set NODE_MODULES to a node_modules holding customerio-node}"
dir="$(mktemp -d)"
trap 'kill "$mock" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$((20000 + RANDOM % 20000))
"$cio" mock --listen "127.0.0.1:$port" --tls --tls-ca-out "$dir/ca.pem" \
  --site-id site --api-key key --track-rate 50 >"$dir/mock.log" 2>&1 &
mock=$!
for _ in $(seq 50); do [ -s "$dir/ca.pem" ] && break; sleep 0.1; done
failed=0
for i in $(seq "$runs"); do
  if ! NODE_PATH="$modules" NODE_EXTRA_CA_CERTS="$dir/ca.pem" node "$here/keepalive.js" "https://127.0.0.1:$port" >"$dir/run.txt"; then
    failed=$((failed + 1))
    echo "run $i: $(cat "$dir/run.txt")"
  fi
done
echo "$runs runs, $failed with a connection error"
[ "$failed" -eq 0 ]
