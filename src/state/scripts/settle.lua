-- Everything a request leaves in the store once it is answered, in one atomic step: how its
-- idempotency claim ends, and what it gives back when it was not sent after all.
-- ARGV[1]: the claim's end: 'finish' (the answer is kept for duplicates), 'release' (the key
-- is let go: the action certainly did not run) or 'none'. ARGV[2]: 1 with a refund, else 0.
-- Then each part's keys and arguments, in this order:
-- - the claim: KEYS: the claim; ARGV: the running value it was taken with, and for 'finish'
--   the done value ('D' ..) and the ms left in the window, used when the claim is gone (a
--   Redis that restarted empty). A key another request holds now is left alone.
-- - the refund: KEYS: the pacing window, then the budget counters; ARGV: devices, the
--   admission's member in the pacing window. Counts never go below zero; expiries stay.
-- Returns 1.
local k, a = 1, 3
local ending = ARGV[1]
if ending ~= 'none' then
  local claim, running = KEYS[1], ARGV[3]
  local current = redis.call('GET', claim)
  if ending == 'finish' then
    if current == running then
      redis.call('SET', claim, ARGV[4], 'KEEPTTL')
    elseif not current and tonumber(ARGV[5]) > 0 then
      redis.call('SET', claim, ARGV[4], 'PX', ARGV[5])
    end
    a = 6
  else
    if current == running then
      redis.call('DEL', claim)
    end
    a = 4
  end
  k = 2
end
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[k], ARGV[a + 1])
  local n = tonumber(ARGV[a])
  for i = k + 1, #KEYS do
    local u = tonumber(redis.call('GET', KEYS[i]) or '0')
    if u > 0 then
      local left = u - n
      if left < 0 then
        left = 0
      end
      redis.call('SET', KEYS[i], left, 'KEEPTTL')
    end
  end
end
return 1
