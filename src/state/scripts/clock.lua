-- The server's clock in microseconds: every replica reads one clock. (Prepended to the
-- scripts that need the time; the vector test prepends a fixed time instead.)
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
