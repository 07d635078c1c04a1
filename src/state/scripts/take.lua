-- Everything a request takes before it is sent, in one atomic step: the same order and steps
-- as `Counters::take` in src/state/algo.rs (the_lua_scripts_and_algo_agree_step_by_step, in
-- tests/e2e/state_contract.rs, feeds both the same inputs), on the server's clock
-- (`server_now`, clock.lua) so every replica shares one.
-- ARGV[1]: how many limiters. ARGV[2]: 1 with a claim, else 0. ARGV[3]: how many budgets,
-- or -1 without an admission. ARGV[4]: the request's cost in units (devices; at least 1).
-- Then each part's keys and arguments, in this order:
-- - limiter i: KEYS: its theoretical arrival time (us); ARGV: its emission interval and
--   burst tolerance (us);
-- - the claim: KEYS: the claim; ARGV: the running value ('R' .. fingerprint .. owner), the
--   window (ms), the longest value a gateway reads (bytes);
-- - the admission: KEYS: the pacing window (a sorted set of admission times, us), then each
--   budget's counter for the current window; ARGV: writes allowed per window, the window
--   (us), a unique member for this admission, devices (what each budget counts), then per
--   budget its limit and when its window ends (Unix s, by the gateway's clock, which also
--   named the counter's window).
-- Limiters that conform are charged whatever follows; the claim, the budgets and the slot
-- are taken together or not at all.
-- Returns {'ok', used_1, ..}, {'limit', i, wait in us}, {'held', the claim's value},
-- {'budget', j, used_j} or {'pace', wait in us}; an error when the claim's value is longer
-- than any a gateway writes (it is not sent, so it cannot flood the reader).
local now = server_now()
local limiters = tonumber(ARGV[1])
local claimed = ARGV[2] == '1'
local budgets = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
if cost < 1 then
  cost = 1
end
local k, a = 1, 5

-- Rate limits (GCRA): every limiter conforms, or none is charged.
local next_tat = {}
for i = 1, limiters do
  local interval = tonumber(ARGV[a])
  local tolerance = tonumber(ARGV[a + 1])
  local tat = tonumber(redis.call('GET', KEYS[k]) or now)
  if tat < now then
    tat = now
  end
  local due = tat + interval * (cost - 1) - now
  if due > tolerance then
    return {'limit', i, due - tolerance}
  end
  next_tat[i] = tat + interval * cost
  k, a = k + 1, a + 2
end
local function charge()
  for i = 1, limiters do
    local ttl_ms = math.ceil((next_tat[i] - now) / 1000) + 1
    redis.call('SET', KEYS[i], string.format('%.0f', next_tat[i]), 'PX', ttl_ms)
  end
end

-- The idempotency claim: free, or what holds it (running or done).
local claim, running, claim_ms
if claimed then
  claim, running, claim_ms = KEYS[k], ARGV[a], ARGV[a + 1]
  local len = redis.call('STRLEN', claim)
  if len > tonumber(ARGV[a + 2]) then
    return redis.error_reply('graphgate: the idempotency claim is longer than any graphgate writes')
  end
  if len > 0 then
    charge()
    return {'held', redis.call('GET', claim)}
  end
  k, a = k + 1, a + 3
end

-- Budgets and one tenant write slot, together or not at all.
local out = {'ok'}
if budgets >= 0 then
  local pacing = KEYS[k]
  local count = tonumber(ARGV[a])
  local window = tonumber(ARGV[a + 1])
  local member = ARGV[a + 2]
  local n = tonumber(ARGV[a + 3])
  a = a + 4
  local used = {}
  for j = 1, budgets do
    local u = tonumber(redis.call('GET', KEYS[k + j]) or '0')
    if u + n > tonumber(ARGV[a + 2 * (j - 1)]) then
      charge()
      return {'budget', j, u}
    end
    used[j] = u
  end
  -- A slot taken at s is free again at s + window.
  redis.call('ZREMRANGEBYSCORE', pacing, '-inf', string.format('%.0f', now - window))
  if redis.call('ZCARD', pacing) >= count then
    local oldest = redis.call('ZRANGE', pacing, 0, 0, 'WITHSCORES')
    charge()
    return {'pace', tonumber(oldest[2]) + window - now}
  end
  redis.call('ZADD', pacing, string.format('%.0f', now), member)
  redis.call('PEXPIRE', pacing, math.ceil(window / 1000) + 1000)
  for j = 1, budgets do
    redis.call('INCRBY', KEYS[k + j], n)
    -- A minute past the window's end: a replica whose clock runs behind the server's must
    -- not find its counter already gone (the key names its window, so nothing is counted
    -- twice).
    redis.call('EXPIREAT', KEYS[k + j], tonumber(ARGV[a + 2 * (j - 1) + 1]) + 60)
    out[1 + j] = used[j] + n
  end
end
charge()
if claimed then
  redis.call('SET', claim, running, 'PX', claim_ms)
end
return out
