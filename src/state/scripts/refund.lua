-- Gives back what an admission took, for a request that was not sent after all: its write
-- slot, and its devices on each budget counter (never below zero; a counter's expiry stays).
-- KEYS[1]: the pacing window. KEYS[2..]: the budget counters.
-- ARGV[1]: devices. ARGV[2]: the admission's member in the pacing window.
redis.call('ZREM', KEYS[1], ARGV[2])
local n = tonumber(ARGV[1])
for i = 2, #KEYS do
  local u = tonumber(redis.call('GET', KEYS[i]) or '0')
  if u > 0 then
    local left = u - n
    if left < 0 then
      left = 0
    end
    redis.call('SET', KEYS[i], left, 'KEEPTTL')
  end
end
return 1
