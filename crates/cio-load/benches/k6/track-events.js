// k6's side of the open-model comparison in docs/benchmarks.md: the workload of
// crates/cio-load/scenarios/max-rate.toml (Track v1 events, a unique id each, 3 attributes,
// 10,000 people) at a constant arrival rate, against `cio mock --track-rate 0`.
//
//   RATE=5000 VUS=64 BASE=http://127.0.0.1:7080 k6 run --summary-export k6.json track-events.js
//   # https: cio mock --tls --tls-ca-out ca.pem; k6 is Go, so SSL_CERT_FILE=ca.pem k6 run ...
//
// dropped_iterations in the summary is what k6 could not start on time; the rate is held
// within 2 % when it is at most 2 % of RATE * 10.
import http from 'k6/http';
import encoding from 'k6/encoding';

const RATE = parseInt(__ENV.RATE || '5000');
const VUS = parseInt(__ENV.VUS || '64');
const BASE = __ENV.BASE || 'http://127.0.0.1:7080';
const AUTH = 'Basic ' + encoding.b64encode('site:key');
const RUN = Date.now() % 10000000000;

export const options = {
  discardResponseBodies: true,
  scenarios: {
    max: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '10s',
      preAllocatedVUs: VUS,
      maxVUs: VUS,
    },
  },
};

let counter = 0;

export default function () {
  counter += 1;
  const n = __VU * 100000000 + counter;
  const body = `{"name":"purchase","id":"01J${String(RUN).padStart(10, '0')}${String(n).padStart(13, '0')}","data":{"price":23.45,"sku":"socks-${n % 1000}","currency":"EUR"}}`;
  http.post(`${BASE}/api/v1/customers/user-${n % 10000}/events`, body, {
    headers: { Authorization: AUTH, 'Content-Type': 'application/json' },
  });
}
