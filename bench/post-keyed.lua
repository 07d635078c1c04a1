-- The bench request (as post.lua) with an Idempotency-Key of its own on every request, so
-- each one takes and settles an idempotency claim in the state store.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key-0123456789abcdef"
wrk.body = '{"updateWindowsDeviceAccountActionParameter":{"@odata.type":"microsoft.graph.updateWindowsDeviceAccountActionParameter","deviceAccount":{"@odata.type":"microsoft.graph.windowsDeviceAccount","password":"Password value"},"passwordRotationEnabled":true,"calendarSyncEnabled":true,"deviceAccountEmail":"room@contoso.com","exchangeServer":"outlook.office365.com","sessionInitiationProtocalAddress":"sip:room@contoso.com"}}'

local run = tostring(os.time()) .. "-" .. tostring(math.random(1, 1000000000))
local n = 0

request = function()
  n = n + 1
  wrk.headers["Idempotency-Key"] = "bench-" .. run .. "-" .. n
  return wrk.format()
end
