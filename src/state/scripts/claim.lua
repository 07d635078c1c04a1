-- Takes an idempotency claim, or reports the one already there (atomically: two replicas
-- racing for one key cannot both take it).
-- KEYS[1]: the claim.
-- ARGV[1]: the running value ('R' .. fingerprint .. owner). ARGV[2]: the window (ms).
-- Returns 1 when taken, else the value already there (running or done).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return redis.call('GET', KEYS[1])
