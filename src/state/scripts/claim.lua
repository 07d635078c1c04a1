-- Takes an idempotency claim, or reports the one already there (atomically: two replicas
-- racing for one key cannot both take it).
-- KEYS[1]: the claim.
-- ARGV[1]: the running value ('R' .. fingerprint .. owner). ARGV[2]: the window (ms).
-- ARGV[3]: the longest value a gateway reads (bytes).
-- Returns 1 when taken, else the value already there (running or done); an error when that
-- value is longer than any a gateway writes (it is not sent, so it cannot flood the reader).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[3]) then
  return redis.error_reply('graphgate: the idempotency claim is longer than any graphgate writes')
end
return redis.call('GET', KEYS[1])
