-- Budgets and one tenant write slot, taken together or not at all: the same steps as the
-- memory store's admission and `slide` in src/state/algo.rs (the pacing:
-- the_lua_scripts_and_algo_agree_step_by_step, in tests/e2e/state_contract.rs, feeds both
-- the same inputs; the budgets: the contract suite there), on the server's clock
-- (`server_now`, clock.lua).
-- KEYS[1]: the pacing window (a sorted set of admission times, us).
-- KEYS[1 + j]: budget j's counter for the current window.
-- ARGV[1]: writes allowed per window. ARGV[2]: the window (us). ARGV[3]: a unique member
-- for this admission. ARGV[4]: devices (what each budget counts).
-- ARGV[3 + 2j]: budget j's limit. ARGV[4 + 2j]: when its window ends (Unix s, by the
-- gateway's clock, which also named the counter's window).
-- Returns {'ok', used_1, ..}, {'budget', j, used_j} or {'pace', wait in us}.
local n = tonumber(ARGV[4])
local used = {}
for j = 1, #KEYS - 1 do
  local u = tonumber(redis.call('GET', KEYS[1 + j]) or '0')
  if u + n > tonumber(ARGV[3 + 2 * j]) then
    return {'budget', j, u}
  end
  used[j] = u
end
local now = server_now()
local count = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
-- A slot taken at s is free again at s + window.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) >= count then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {'pace', tonumber(oldest[2]) + window - now}
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
local out = {'ok'}
for j = 1, #KEYS - 1 do
  redis.call('INCRBY', KEYS[1 + j], n)
  -- A minute past the window's end: a replica whose clock runs behind the server's must not
  -- find its counter already gone (the key names its window, so nothing is counted twice).
  redis.call('EXPIREAT', KEYS[1 + j], tonumber(ARGV[4 + 2 * j]) + 60)
  out[1 + j] = used[j] + n
end
return out
