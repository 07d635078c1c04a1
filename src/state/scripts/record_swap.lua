-- Replaces a versioned record's document if its version is still the one the change was
-- made from (atomically: of two replicas changing one version, one wins); then lets go of
-- claims still pointing at it and leaves indexes and a set.
-- KEYS[1]: the record. KEYS[2 .. 1+nr]: claims to let go. Then nu indexes to leave. Then the
-- set to leave, if ARGV[6] is '1'.
-- ARGV[1]: the expected version. ARGV[2]: the document. ARGV[3]: time to live (ms).
-- ARGV[4]: nr. ARGV[5]: nu. ARGV[6]: '1' to leave the set. ARGV[7]: the largest document
-- returned.
-- Returns {'ok', version} | {'stale'} (gone) | {'stale', version, document} | {'big'}.
local record = KEYS[1]
local v = redis.call('HGET', record, 'v')
if not v then
  return {'stale'}
end
if v ~= ARGV[1] then
  if redis.call('HSTRLEN', record, 'd') > tonumber(ARGV[7]) then
    return {'big'}
  end
  return {'stale', tonumber(v), redis.call('HGET', record, 'd')}
end
local version = tonumber(v) + 1
redis.call('HSET', record, 'v', version, 'd', ARGV[2])
redis.call('PEXPIRE', record, ARGV[3])
local nr = tonumber(ARGV[4])
local nu = tonumber(ARGV[5])
for i = 1, nr do
  if redis.call('GET', KEYS[1 + i]) == record then
    redis.call('DEL', KEYS[1 + i])
  end
end
for i = 1, nu do
  redis.call('ZREM', KEYS[1 + nr + i], record)
end
if ARGV[6] == '1' then
  redis.call('SREM', KEYS[2 + nr + nu], record)
end
return {'ok', version}
