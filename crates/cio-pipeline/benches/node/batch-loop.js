// The hand-made Node.js loop `cio pipe` is measured against (docs/benchmarks.md, "The pipeline
// next to a Node.js loop over the official SDK"): read a JSON-lines file of v2 entries, parse each
// line, fill batches of about 480 KB and POST them to /api/v2/batch through customerio-node's own
// request layer (the SDK has no batch call; its TrackClient.request signs, times out and
// follows redirects as it does for every call), with up to CONCURRENCY batches in flight.
//
//   NODE_PATH=/path/to/node_modules NODE_EXTRA_CA_CERTS=ca.pem \
//     node batch-loop.js FILE https://127.0.0.1:7443 [CONCURRENCY]
//
// Prints one line: events, seconds, events/s. Loopback only.
const fs = require("fs");
const readline = require("readline");
const { TrackClient } = require("customerio-node");

const [file, base, concurrencyArg] = process.argv.slice(2);
const url = new URL(base);
const client = new TrackClient("site", "key", {
  url: `${base}/api/v1`,
  port: Number(url.port || 443),
});
const batchUrl = `${base}/api/v2/batch`;
const LIMIT = 480 * 1024;
const concurrency = Number(concurrencyArg || 8);

async function main() {
  const started = process.hrtime.bigint();
  const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  let batch = [];
  let bytes = 0;
  let events = 0;
  const inFlight = new Set();
  const send = async (entries) => {
    const p = client.request.post(batchUrl, { batch: entries }).then(() => {
      events += entries.length;
    });
    inFlight.add(p);
    p.finally(() => inFlight.delete(p));
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
  };
  for await (const line of lines) {
    if (!line) continue;
    const entry = JSON.parse(line);
    if (bytes + line.length + 1 > LIMIT) {
      await send(batch);
      batch = [];
      bytes = 0;
    }
    batch.push(entry);
    bytes += line.length + 1;
  }
  if (batch.length) await send(batch);
  await Promise.all(inFlight);
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  console.log(`node events=${events} seconds=${secs.toFixed(2)} events_per_s=${Math.round(events / secs)}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
