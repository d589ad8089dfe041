#!/usr/bin/env bash
# One run of the pipeline comparison in docs/benchmarks.md ("cio pipe next to a Node.js loop"):
# a fresh `cio mock --tls` on 127.0.0.1:7443 with no limit, then one tool sends FILE (v2 entries,
# one per line, e.g. from `cio demo --generate-only FILE --events 1000000`) over https, and one
# line is printed: tool events seconds events_per_s cpu_user cpu_sys cpu_us_per_event
# peak_rss_mb mock_cpu_s mock_cpu_us_per_event.
#
#   crates/cio-pipeline/benches/vs-node.sh cio|node FILE
#
# CIO (default ./target/release/cio) names the binary; NODE_PATH must hold customerio-node
# (`npm install customerio-node`). Loopback only; each run is bounded by the file.
set -euo pipefail
tool=$1 file=$2
CIO=${CIO:-./target/release/cio}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'kill "$mock" 2>/dev/null || true; wait "$mock" 2>/dev/null || true; rm -rf "$tmp"' EXIT

"$CIO" mock --listen 127.0.0.1:7443 --track-rate 0 --tls --tls-ca-out "$tmp/ca.pem" >"$tmp/mock.out" 2>/dev/null &
mock=$!
for _ in $(seq 1 100); do grep -q listening "$tmp/mock.out" 2>/dev/null && break; sleep 0.05; done
ticks() { awk '{print $14 + $15}' "/proc/$mock/stat"; }
before=$(ticks)
start=$(date +%s.%N)
case "$tool" in
  cio)
    CIO_SITE_ID=site CIO_API_KEY=key /usr/bin/time -f "%U %S %M" -o "$tmp/time" \
      "$CIO" pipe --input "$file" --endpoint https://127.0.0.1:7443 --ca-cert "$tmp/ca.pem" \
      --rate 100000 --burst 1000 --dead-letter "$tmp/dead.jsonl" --report-json "$tmp/report.json" \
      >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }
    events=$(python3 -c "import json; print(json.load(open('$tmp/report.json'))['delivered'])")
    ;;
  node)
    NODE_EXTRA_CA_CERTS="$tmp/ca.pem" /usr/bin/time -f "%U %S %M" -o "$tmp/time" \
      node "$here/node/batch-loop.js" "$file" https://127.0.0.1:7443 8 >"$tmp/out"
    events=$(sed -E 's/.*events=([0-9]+).*/\1/' "$tmp/out")
    ;;
  *) echo "tool must be cio or node" >&2; exit 2 ;;
esac
end=$(date +%s.%N)
after=$(ticks)
read -r user sys rss < <(tail -1 "$tmp/time")
python3 -c "
e, s, u, y, r, m = $events, $end - $start, $user, $sys, $rss, ($after - $before) / 100
print('$tool events=%d seconds=%.2f events_per_s=%.0f cpu=%.2fu+%.2fs %.2f us/event peak_rss=%.0f MB mock_cpu=%.2fs %.2f us/event'
      % (e, s, e / s, u, y, 1e6 * (u + y) / max(e, 1), r / 1024, m, 1e6 * m / max(e, 1)))"
