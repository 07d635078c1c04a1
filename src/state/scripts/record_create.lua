-- Creates a versioned record (a hash: 'v' the version, 'd' the document) with its claims,
-- indexes and bounded-set membership, or nothing (atomically: of two replicas taking one
-- claim, one creates).
-- KEYS[1]: the record. KEYS[2 .. 1+nc]: its claims. Then ni indexes. Then the set, if bounded.
-- ARGV[1]: the document. ARGV[2]: time to live (ms). ARGV[3]: nc. ARGV[4]: ni.
-- ARGV[5]: the set's bound (0: no set). Then, per index: the score, the oldest score kept.
-- Returns {'claimed', i, holder} | {'full'} | {'exists'} | {'ok'}.
local record = KEYS[1]
local nc = tonumber(ARGV[3])
local ni = tonumber(ARGV[4])
local bound = tonumber(ARGV[5])
for i = 1, nc do
  local holder = redis.call('GET', KEYS[1 + i])
  if holder then
    return {'claimed', i, holder}
  end
end
if bound > 0 then
  local set = KEYS[2 + nc + ni]
  local live = 0
  for _, member in ipairs(redis.call('SMEMBERS', set)) do
    if redis.call('EXISTS', member) == 1 then
      live = live + 1
    else
      redis.call('SREM', set, member)
    end
  end
  if live >= bound then
    return {'full'}
  end
end
if redis.call('EXISTS', record) == 1 then
  return {'exists'}
end
redis.call('HSET', record, 'v', 1, 'd', ARGV[1])
redis.call('PEXPIRE', record, ARGV[2])
for i = 1, nc do
  redis.call('SET', KEYS[1 + i], record, 'PX', ARGV[2])
end
for i = 1, ni do
  local index = KEYS[1 + nc + i]
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. ARGV[5 + 2 * i])
  redis.call('ZADD', index, ARGV[4 + 2 * i], record)
end
if bound > 0 then
  redis.call('SADD', KEYS[2 + nc + ni], record)
end
return {'ok'}
