-- Gives devices back to budget counters (the request was not sent after all); never below
-- zero, and a counter's expiry stays.
-- KEYS: the counters. ARGV[1]: devices.
local n = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local u = tonumber(redis.call('GET', key) or '0')
  if u > 0 then
    local left = u - n
    if left < 0 then
      left = 0
    end
    redis.call('SET', key, left, 'KEEPTTL')
  end
end
return 1
