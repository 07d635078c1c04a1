-- Which record a claim points at, within a size bound.
-- KEYS[1]: the claim. ARGV[1]: the longest key returned.
-- Returns nil (not taken) | the record's key | {'big'}.
if redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[1]) then
  return {'big'}
end
return redis.call('GET', KEYS[1])
