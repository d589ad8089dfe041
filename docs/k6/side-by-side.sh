#!/usr/bin/env bash
# docs/load-testing.md, "Both, on one mock". One run of the seed plan by TOOL (k6|cio) against a fresh `cio mock` with the 100/s limit.
set -euo pipefail
tool=$1 out=$2
cd "$(dirname "$0")/../.."
./target/release/cio mock --listen 127.0.0.1:7072 --site-id site --api-key key --track-rate 100 > /tmp/side-mock.log 2>&1 &
mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
sleep 0.5
case $tool in
  k6) BASE_URL=http://127.0.0.1:7072/api/v1 CIO_AUTH=$(printf site:key | base64) /usr/bin/time -f "%U %S %M" -o $out.time \
        ${K6:-k6} run --quiet --summary-export $out.json docs/k6/seed.js > $out.txt 2>&1 || true ;;
  cio) CIO_SITE_ID=site CIO_API_KEY=key /usr/bin/time -f "%U %S %M" -o $out.time \
        ./target/release/cio load crates/cio-load/scenarios/seed.toml --target http://127.0.0.1:7072 --no-progress \
        --summary-export $out.json > $out.txt 2>&1 || true ;;
esac
curl -s http://127.0.0.1:7072/__mock/stats > $out.mock.json
