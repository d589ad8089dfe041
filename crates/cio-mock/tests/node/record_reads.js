// Records the requests customerio-node 5 sends for its App API reads into the fixture
// crates/cio-api/tests/fixtures/node_sdk_reads.json (what the Rust tests compare against):
//   NODE_PATH=/opt/peers/node5/node_modules node record_reads.js > crates/cio-api/tests/fixtures/node_sdk_reads.json
const http = require('http');
const { APIClient } = require('customerio-node');
const seen = [];
const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    seen.push({ method: req.method, path: req.url, body: body ? JSON.parse(body) : null });
    res.setHeader('Content-Type', 'application/json');
    res.end('{}');
  });
});
server.listen(0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${server.address().port}/v1`;
  const api = new APIClient('k', { url: base });
  const calls = [
    ["api.getCustomersByEmail('ada+1@example.com')", () => api.getCustomersByEmail('ada+1@example.com')],
    ["api.getAttributes('42')", () => api.getAttributes('42')],
    ["api.getAttributes('ada+1@example.com', 'email')", () => api.getAttributes('ada+1@example.com', 'email')],
    ["api.getAttributes('user/7 ü', 'id')", () => api.getAttributes('user/7 ü', 'id')],
    ["api.getCustomersAttributes(['42', '43'])", () => api.getCustomersAttributes(['42', '43'])],
    ["api.getCustomerSegments('42')", () => api.getCustomerSegments('42')],
    ["api.getCustomerSegments('d9c1', 'cio_id')", () => api.getCustomerSegments('d9c1', 'cio_id')],
    ["api.getCustomerActivities('42')", () => api.getCustomerActivities('42')],
    ["api.getCustomerActivities('42', { type: 'event', name: 'Signed Up', limit: 5, start: '10' })", () => api.getCustomerActivities('42', { type: 'event', name: 'Signed Up', limit: 5, start: '10' })],
  ];
  const out = [];
  for (const [call, f] of calls) {
    const before = seen.length;
    await f();
    const r = seen[before];
    out.push({ call, source: 'customerio-node 5.2.0 dist/lib/api.js APIClient', ...r });
  }
  console.log(JSON.stringify(out, null, 2));
  server.close();
});
