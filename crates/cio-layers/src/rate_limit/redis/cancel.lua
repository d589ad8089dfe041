-- Hands a reservation back if it is still the last one taken (nobody reserved after it).
-- KEYS[1]: the limit's key. ARGV[1]: the reservation's token (the TAT it left). ARGV[2]: the
-- emission interval in microseconds. Returns 1 if the slot was handed back, 0 if not.
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat ~= nil and tat == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], tat - tonumber(ARGV[2]), 'KEEPTTL')
  return 1
end
return 0
