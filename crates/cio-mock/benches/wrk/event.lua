-- wrk script: Track v1 events with a unique id each, the way TrackClient sends them.
-- wrk -t1 -c64 -d10s -s crates/cio-mock/benches/wrk/event.lua http://127.0.0.1:7070
-- Ids are unique across runs too (the run's start second, then a counter), as `cio load`'s are:
-- a repeated id costs the mock less (nothing new to remember), which would flatter this side.
local counter = 0
local run = os.time() % 10000000000
wrk.method = "POST"
wrk.headers["Authorization"] = "Basic c2l0ZTprZXk=" -- site:key
wrk.headers["Content-Type"] = "application/json"

request = function()
  counter = counter + 1
  local body = string.format(
    '{"name":"purchase","id":"01J%010d%013d","timestamp":1700000000,"data":{"price":23.45,"sku":"socks-%d","currency":"EUR"}}',
    run, counter, counter % 1000)
  return wrk.format(nil, "/api/v1/customers/user-" .. (counter % 10000) .. "/events", nil, body)
end
