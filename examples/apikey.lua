-- apikey.lua: API-key authentication, with the keys in a shared dict
-- managed over an admin route.
--
-- Every request needs a key, as "Authorization: Bearer KEY" or "X-Api-Key:
-- KEY". A known key is proxied with X-Client naming its owner, and the key
-- itself removed, so the backend never sees it; a missing or unknown key
-- gets 401 here. Keys live in proxy.shared("apikeys"): all workers see a
-- change at once, and keys survive reloads (not restarts).
--
-- Admin routes, for requests carrying "X-Admin-Token: $ADMIN_TOKEN" (403
-- without it; with ADMIN_TOKEN unset the admin routes are off):
--   PUT    /admin/keys/KEY   body: the owner's name   201 added, 200 replaced
--   DELETE /admin/keys/KEY                            204, or 404 if unknown
--   GET    /admin/keys                                one "KEY OWNER" line per key
-- A key is 8 to 128 letters, digits, '-' or '_'.
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS     default 127.0.0.1:9001
--   ADMIN_TOKEN   no default: the admin routes answer 403 until it is set
--
-- Try it, with a backend on the default address:
--   ADMIN_TOKEN=s3cret luaproxy examples/apikey.lua &
--   curl -i 127.0.0.1:8080/data                                  # 401
--   curl -i -X PUT -H 'X-Admin-Token: s3cret' -d 'alice' 127.0.0.1:8080/admin/keys/k-alice-0001
--   curl -i -H 'Authorization: Bearer k-alice-0001' 127.0.0.1:8080/data   # proxied, X-Client: alice
--   curl -s -H 'X-Admin-Token: s3cret' 127.0.0.1:8080/admin/keys
--   curl -i -X DELETE -H 'X-Admin-Token: s3cret' 127.0.0.1:8080/admin/keys/k-alice-0001
-- A dry run shows the 401 (its dicts start empty):
--   luaproxy --try "GET /data" examples/apikey.lua

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001"))
local admin_token = os.getenv("ADMIN_TOKEN")
local keys = proxy.shared("apikeys")
local text = { ["content-type"] = "text/plain" }

local function key_of(req)
  local auth = req.headers["authorization"]
  return (auth and auth:match("^[Bb]earer%s+(%S+)$")) or req.headers["x-api-key"]
end

function route(req)
  if req.path:sub(1, 7) == "/admin/" then
    if not admin_token or req.headers["x-admin-token"] ~= admin_token then
      return 403, "forbidden\n", text
    end
    return -- the handlers below: they see the request body, route does not
  end
  local key = key_of(req)
  local owner = key and keys:get(key)
  if not owner then
    return 401, key and "unknown API key\n" or "API key required\n",
           { ["content-type"] = "text/plain", ["www-authenticate"] = 'Bearer realm="api"' }
  end
  req:set_header("authorization", nil)
  req:set_header("x-api-key", nil)
  req:set_header("x-client", owner)
  return app
end

local function admin_key(req)
  local key = req.path:match("^/admin/keys/([%w_%-]+)$")
  if key and #key >= 8 and #key <= 128 then return key end
end

function on_put(req)
  local key = admin_key(req)
  if not key then return 404, "not found\n", text end
  local owner = req.body:match("^%s*(.-)%s*$")
  if owner == "" or owner:find("[%c]") then return 400, "the body names the key's owner\n", text end
  local ok, err = keys:add(key, owner)
  if ok then return 201, key .. " " .. owner .. "\n", text end
  if err == "exists" then
    ok, err = keys:set(key, owner)
    if ok then return 200, key .. " " .. owner .. "\n", text end
  end
  return 507, "cannot store: " .. err .. "\n", text
end

function on_delete(req)
  local key = admin_key(req)
  if key and keys:delete(key) then return 204 end
  return 404, "not found\n", text
end

function on_get(req)
  if req.path ~= "/admin/keys" then return 404, "not found\n", text end
  local lines = {}
  for _, k in ipairs(keys:keys(0)) do
    local owner = keys:get(k)
    if owner then lines[#lines + 1] = k .. " " .. owner .. "\n" end
  end
  table.sort(lines)
  return 200, table.concat(lines), text
end
