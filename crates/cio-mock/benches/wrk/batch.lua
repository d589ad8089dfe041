-- wrk script: Track v2 batches of 50 event entries (~9 KB), each with a unique id.
-- wrk -t1 -c64 -d10s -s crates/cio-mock/benches/wrk/batch.lua http://127.0.0.1:7070
local counter = 0
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic c2l0ZTprZXk="
wrk.headers["Content-Type"] = "application/json"

request = function()
  local entries = {}
  for i = 1, 50 do
    counter = counter + 1
    entries[i] = string.format(
      '{"type":"person","identifiers":{"id":"user-%d"},"action":"event","name":"purchase","id":"01J%023d","timestamp":1700000000,"attributes":{"price":23.45,"sku":"socks","currency":"EUR"}}',
      counter % 10000, counter)
  end
  return wrk.format(nil, "/api/v2/batch", nil, '{"batch":[' .. table.concat(entries, ",") .. ']}')
end

done = function(summary, latency, requests)
  io.write(string.format("entries/s: %.0f\n", summary.requests / (summary.duration / 1e6) * 50))
end
