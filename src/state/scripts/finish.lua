-- Stores the final answer against a claim this replica took.
-- KEYS[1]: the claim.
-- ARGV[1]: the running value it was taken with. ARGV[2]: the done value ('D' ..).
-- ARGV[3]: ms left in the window, used when the claim is gone (a Redis that restarted empty).
-- Returns 1 stored, 2 stored afresh, 0 not stored (another request holds the key now).
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
if not current and tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 2
end
return 0
