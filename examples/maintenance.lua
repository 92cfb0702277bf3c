-- maintenance.lua: a maintenance switch flipped at run time.
--
-- While the switch is on, every request gets 503 from the proxy with
-- Retry-After and a message, and the backends see nothing; requests that
-- carry the admin token still go through, so operators can check the site
-- before opening it again. The switch is a key in proxy.shared("flags"):
-- flipping it reaches every worker at once, without a reload, and it stays
-- as it is across reloads.
--
-- Admin routes, for requests carrying "X-Admin-Token: $ADMIN_TOKEN" (403
-- without it; with ADMIN_TOKEN unset the admin routes are off):
--   PUT    /admin/maintenance   body: the message for clients (may be empty)   switch on
--   DELETE /admin/maintenance                                                switch off
--   GET    /admin/maintenance   "on: MESSAGE" or "off"
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS           default 127.0.0.1:9001
--   ADMIN_TOKEN         no default: the admin routes answer 403 until it is set
--   MAINTENANCE_RETRY   default 300: the Retry-After of the 503, in seconds
--
-- Try it, with a backend on the default address:
--   ADMIN_TOKEN=s3cret luaproxy examples/maintenance.lua &
--   curl -X PUT -H 'X-Admin-Token: s3cret' -d 'Back at 14:00 UTC' 127.0.0.1:8080/admin/maintenance
--   curl -i 127.0.0.1:8080/                                   # 503, Retry-After: 300
--   curl -i -H 'X-Admin-Token: s3cret' 127.0.0.1:8080/        # proxied: operators get through
--   curl -X DELETE -H 'X-Admin-Token: s3cret' 127.0.0.1:8080/admin/maintenance
--   curl -i 127.0.0.1:8080/                                   # proxied again
-- A dry run starts with empty dicts, so it shows the switch off:
--   luaproxy --try "GET /" examples/maintenance.lua

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001"))
local admin_token = os.getenv("ADMIN_TOKEN")
local retry_after = os.getenv("MAINTENANCE_RETRY") or "300"
local flags = proxy.shared("flags")
local text = { ["content-type"] = "text/plain" }

local function is_admin(req)
  return admin_token ~= nil and req.headers["x-admin-token"] == admin_token
end

function route(req)
  if req.path == "/admin/maintenance" then
    if not is_admin(req) then return 403, "forbidden\n", text end
    return -- the handlers below: they see the request body, route does not
  end
  local message = flags:get("maintenance") -- nil while the switch is off
  if message and not is_admin(req) then
    if message == "" then message = "down for maintenance" end
    return 503, message .. "\n", { ["content-type"] = "text/plain", ["retry-after"] = retry_after }
  end
  return app
end

function on_put(req)
  local ok, err = flags:set("maintenance", req.body:match("^%s*(.-)%s*$"))
  if not ok then return 507, "cannot store: " .. err .. "\n", text end
  proxy.log("warn", "maintenance switched on")
  return 200, "on\n", text
end

function on_delete(req)
  flags:delete("maintenance")
  proxy.log("warn", "maintenance switched off")
  return 200, "off\n", text
end

function on_get(req)
  local message = flags:get("maintenance")
  return 200, message and ("on: " .. message .. "\n") or "off\n", text
end
