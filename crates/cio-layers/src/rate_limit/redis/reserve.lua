-- One GCRA decision with a reservation, atomically.
-- KEYS[1]: the limit's key (the theoretical arrival time, TAT, in microseconds of Redis' clock).
-- ARGV[1]: emission interval in microseconds (1 s / rate, rounded up).
-- ARGV[2]: tolerance in microseconds ((burst - 1) * interval).
-- Returns {wait, token}: how long the caller waits for its slot (µs), and the TAT after it
-- (what `cancel.lua` compares to hand the slot back).
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local after = tat + interval
local wait = tat - tolerance - now
if wait < 0 then
  wait = 0
end
-- Once the TAT is in the past the key says nothing a missing key would not: let it expire.
redis.call('SET', KEYS[1], after, 'PX', math.ceil((after - now) / 1000) + 1000)
return {wait, after}
