#!/usr/bin/env bash
# One run of the open-model comparison in docs/benchmarks.md ("The load generator on hyper"):
# a fresh `cio mock` on 127.0.0.1:7080 (no rate limit), one tool at a constant arrival rate for
# 10 s, then one line: tool scheme rate vus requests achieved_per_s dropped cpu_user cpu_sys
# cpu_us_per_request.
#
#   crates/cio-load/benches/peers.sh cio|k6 http|https RATE VUS
#
# CIO (default ./target/release/cio) and K6 (default k6 on PATH) name the binaries;
# CIO_LOAD_THREADS sets `cio load --threads` (default 1). Loopback
# only; each run is bounded by its 10 s duration.
set -euo pipefail
tool=$1 scheme=$2 rate=$3 vus=$4
CIO=${CIO:-./target/release/cio}
K6=${K6:-k6}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'kill "$mock" 2>/dev/null || true; wait "$mock" 2>/dev/null || true; rm -rf "$tmp"' EXIT

mock_flags=(mock --listen 127.0.0.1:7080 --track-rate 0)
[ "$scheme" = https ] && mock_flags+=(--tls --tls-ca-out "$tmp/ca.pem")
"$CIO" "${mock_flags[@]}" >"$tmp/mock.out" 2>/dev/null &
mock=$!
for _ in $(seq 1 100); do grep -q listening "$tmp/mock.out" 2>/dev/null && break; sleep 0.05; done
base="$scheme://127.0.0.1:7080"

case "$tool" in
  cio)
    sed -e "s#http://127.0.0.1:7070#$base#" -e "s/^rate = .*/rate = $rate/" \
        -e "s/^pre_allocated_vus = .*/pre_allocated_vus = $vus/" -e "s/^max_vus = .*/max_vus = $vus/" \
        "$here/../scenarios/max-rate.toml" >"$tmp/plan.toml"
    extra=()
    [ "$scheme" = https ] && extra=(--ca-cert "$tmp/ca.pem")
    /usr/bin/time -f "%U %S" -o "$tmp/time" "$CIO" load "$tmp/plan.toml" --no-progress --quiet \
      --summary-export "$tmp/s.json" "${extra[@]}" || true
    read -r requests dropped < <(python3 -c "
import json; s=json.load(open('$tmp/s.json'))['scenarios']['max']
print(s['iterations'], s['dropped_iterations'])")
    ;;
  k6)
    env_ca=()
    [ "$scheme" = https ] && env_ca=(SSL_CERT_FILE="$tmp/ca.pem")
    env "${env_ca[@]}" RATE="$rate" VUS="$vus" BASE="$base" /usr/bin/time -f "%U %S" -o "$tmp/time" \
      "$K6" run --quiet --summary-export "$tmp/s.json" "$here/k6/track-events.js" >/dev/null 2>&1 || true
    read -r requests dropped < <(python3 -c "
import json; m=json.load(open('$tmp/s.json'))['metrics']
print(int(m['http_reqs']['count']), int(m.get('dropped_iterations', {}).get('count', 0)))")
    ;;
  *) echo "tool must be cio or k6" >&2; exit 2 ;;
esac
read -r user sys < <(tail -1 "$tmp/time")
python3 -c "
r, d, u, s = $requests, $dropped, $user, $sys
print('$tool $scheme rate=$rate vus=$vus requests=%d achieved=%.0f/s (%.2f %%) dropped=%d cpu=%.2fu+%.2fs %.1f us/request'
      % (r, r / 10, 100 * r / ($rate * 10), d, u, s, 1e6 * (u + s) / max(r, 1)))"
