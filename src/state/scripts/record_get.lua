-- Reads a versioned record, within a size bound.
-- KEYS[1]: the record. ARGV[1]: the largest document returned.
-- Returns {} (none) | {version, document} | {'big'}.
local v = redis.call('HGET', KEYS[1], 'v')
if not v then
  return {}
end
if redis.call('HSTRLEN', KEYS[1], 'd') > tonumber(ARGV[1]) then
  return {'big'}
end
return {tonumber(v), redis.call('HGET', KEYS[1], 'd')}
