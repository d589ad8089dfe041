// The official Node SDK against `cio mock`, the way it once broke: 35 calls in a row on Node's
// keep-alive agent, where some are refused before the mock reads their body (an oversize
// identify, wrong credentials, a rate-limited call) and good calls follow each at once. Every
// call must get an HTTP answer: a connection error (`other side closed`, `EPIPE`,
// `ECONNRESET`) means the mock left a pooled connection unusable.
//
//   NODE_PATH=/path/to/node_modules NODE_EXTRA_CA_CERTS=ca.pem node keepalive.js https://127.0.0.1:7443
//
// Prints `answers N, connection errors M` and exits 1 when M > 0. Run by keepalive.sh.
const { TrackClient } = require("customerio-node");

const base = process.argv[2];
const port = Number(new URL(base).port || 443);
const good = new TrackClient("site", "key", { url: `${base}/api/v1`, port });
const wrong = new TrackClient("site", "wrong", { url: `${base}/api/v1`, port });

// Over the mock's 32 KB body limit for a v1 identify.
const huge = { pad: "x".repeat(40 * 1024) };

async function main() {
  const calls = [];
  for (let i = 0; i < 5; i++) {
    calls.push(
      () => good.identify(`p${i}`, huge),
      () => good.identify(`p${i}`, { plan: "pro" }),
      () => wrong.identify(`p${i}`, { plan: "pro", pad: "y".repeat(8 * 1024) }),
      () => good.track(`p${i}`, { name: "purchase", data: { amount: i } }),
      () => good.identify(`p${i}`, { email: `p${i}@example.com` }),
      () => good.trackAnonymous(`anon-${i}`, { name: "visit", data: { pad: "z".repeat(4096) } }),
      () => good.trackPageView(`p${i}`, `/pricing/${i}`),
    );
  }
  let answers = 0;
  const errors = [];
  for (const call of calls) {
    try {
      await call();
      answers++;
    } catch (e) {
      if (typeof e.statusCode === "number" && e.statusCode > 0) {
        answers++; // an HTTP answer: 413, 401, 429 are what the mock should say
      } else {
        errors.push(e.code || e.message);
      }
    }
  }
  console.log(`answers ${answers}, connection errors ${errors.length}${errors.length ? ": " + errors.join(", ") : ""}`);
  process.exit(errors.length ? 1 : 0);
}

main();
