-- The newest records of an index (highest score first) that still exist, dropping from the
-- index those that are gone, within a size bound.
-- KEYS[1]: the index. ARGV[1]: how many. ARGV[2]: the largest document returned.
-- Returns {key, version, document, ...} | {'big'}.
local index = KEYS[1]
local max = tonumber(ARGV[1])
local out = {}
local found = 0
local start = 0
while found < max do
  local page = redis.call('ZREVRANGE', index, start, start + 99)
  if #page == 0 then
    break
  end
  local kept = 0
  for _, key in ipairs(page) do
    local v = redis.call('HGET', key, 'v')
    if not v then
      redis.call('ZREM', index, key)
    else
      kept = kept + 1
      if found < max then
        if redis.call('HSTRLEN', key, 'd') > tonumber(ARGV[2]) then
          return {'big'}
        end
        found = found + 1
        out[#out + 1] = key
        out[#out + 1] = tonumber(v)
        out[#out + 1] = redis.call('HGET', key, 'd')
      end
    end
  end
  start = start + kept
end
return out
