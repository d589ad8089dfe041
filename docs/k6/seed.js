// The seed's k6 script (../shared/seed), corrected, and shortened to 18 s so that it runs next
// to `cio load crates/cio-load/scenarios/seed.toml` against the same mock (docs/load-testing.md,
// "The seed's k6 script as a cio plan"):
// - identify is a PUT (Customer.io's Track API), not a POST;
// - `ramping-rate` is not a k6 executor: `ramping-arrival-rate` is;
// - the two scenarios peak at 50/s each, 100 requests/s together: the workspace limit, not twice it.
//
//   BASE_URL=http://127.0.0.1:7072/api/v1 CIO_AUTH=$(printf site:key | base64) \
//     k6 run --summary-export k6-summary.json docs/k6/seed.js
import http from 'k6/http';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:7072/api/v1';
const AUTH = __ENV.CIO_AUTH;

const stages = [
  { target: 25, duration: '2s' },
  { target: 50, duration: '4s' },
  { target: 50, duration: '10s' },
  { target: 0, duration: '2s' },
];

// Both scenarios ramp the same way; only the function they run differs.
const ramp = (exec) => ({
  executor: 'ramping-arrival-rate',
  startRate: 5,
  timeUnit: '1s',
  preAllocatedVUs: 20,
  maxVUs: 100,
  stages,
  exec,
});

export const options = {
  scenarios: {
    identify_load: ramp('identifyScenario'),
    track_load: ramp('trackScenario'),
  },
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{scenario:identify_load}': ['p(95)<500'],
    'http_req_duration{scenario:track_load}': ['p(95)<500'],
  },
};

const params = {
  headers: { Authorization: `Basic ${AUTH}`, 'Content-Type': 'application/json' },
};

export function identifyScenario() {
  const id = `load-test-${__VU}-${__ITER}`;
  const body = JSON.stringify({
    email: `${id}@loadtest.com`,
    _load_test: true,
    created_at: Math.floor(Date.now() / 1000),
  });
  http.put(`${BASE_URL}/customers/${id}`, body, params);
}

export function trackScenario() {
  const id = `load-test-${__VU}-${__ITER}`;
  const body = JSON.stringify({
    name: 'load_test_event',
    data: { source: 'k6', timestamp: new Date().toISOString() },
  });
  http.post(`${BASE_URL}/customers/${id}/events`, body, params);
}
