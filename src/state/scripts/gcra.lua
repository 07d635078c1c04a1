-- Rate limits (GCRA) on several limiters, all or nothing: the same steps as `gcra` in
-- src/state/algo.rs (the_lua_scripts_and_algo_agree_step_by_step, in
-- tests/e2e/state_contract.rs, feeds both the same inputs), on the server's clock
-- (`server_now`, clock.lua) so every replica shares one.
-- KEYS[i]: limiter i's theoretical arrival time (microseconds).
-- ARGV[2i-1]: its emission interval (us). ARGV[2i]: its burst tolerance (us).
-- ARGV[2n+1]: the request's cost in units (its devices; at least 1).
-- Returns {0, 0} when all conform (all are charged), else {i, wait in us} for the first
-- that does not (none is charged).
local now = server_now()
local cost = tonumber(ARGV[2 * #KEYS + 1] or 1)
if cost < 1 then
  cost = 1
end
local next_tat = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then
    tat = now
  end
  local due = tat + interval * (cost - 1) - now
  if due > tolerance then
    return {i, due - tolerance}
  end
  next_tat[i] = tat + interval * cost
end
for i, key in ipairs(KEYS) do
  local ttl_ms = math.ceil((next_tat[i] - now) / 1000) + 1
  redis.call('SET', key, string.format('%.0f', next_tat[i]), 'PX', ttl_ms)
end
return {0, 0}
