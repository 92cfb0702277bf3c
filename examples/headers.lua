-- headers.lua: request and response header rewriting.
--
-- On the way in (route):
--   - /v1/... is served by the backend's /v2/... (req:set_path);
--   - utm_* tracking parameters are dropped from the query (req:set_query);
--   - X-Internal-User, which only the backend's own systems may set, is
--     removed when a client sends it;
--   - X-Request-Id is added when the client sent none, and X-Real-IP names
--     the client.
-- On the way out (on_response):
--   - Server and X-Powered-By are removed (less to learn about the backend);
--   - X-Request-Id comes back to the client;
--   - X-Content-Type-Options: nosniff and X-Frame-Options: DENY are added
--     unless the backend set them;
--   - a redirect to the backend's own address (Location: http://ADDR/next)
--     becomes a relative one (/next), so clients never see internal
--     addresses.
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS   default 127.0.0.1:9001
--
-- Try it (the dry run shows the request side: path, query and header edits):
--   luaproxy --try "GET /v1/items?utm_source=mail&id=3" -H "X-Internal-User: root" examples/headers.lua
-- and for real, with a backend on the default address:
--   luaproxy examples/headers.lua &
--   curl -i '127.0.0.1:8080/v1/items?utm_source=mail&id=3'   # backend sees /v2/items?id=3

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001"))
local seq = 0

local function request_id()
  seq = seq + 1
  return string.format("%x-%d-%x", math.floor(proxy.now() * 1000), proxy.worker_id, seq)
end

local function without_utm(query)
  local kept = {}
  for pair in query:gmatch("[^&]+") do
    if not pair:find("^utm_") then kept[#kept + 1] = pair end
  end
  return #kept > 0 and table.concat(kept, "&") or nil
end

function route(req)
  if req.path:sub(1, 4) == "/v1/" then req:set_path("/v2/" .. req.path:sub(5)) end
  if req.query and req.query:find("utm_") then req:set_query(without_utm(req.query)) end
  req:set_header("x-internal-user", nil)
  if not req.headers["x-request-id"] then req:set_header("x-request-id", request_id()) end
  req:set_header("x-real-ip", req.remote_addr)
  return app
end

function on_response(req, res)
  local h = res.headers
  res:set_header("server", nil)
  res:set_header("x-powered-by", nil)
  res:set_header("x-request-id", req.headers["x-request-id"])
  if not h["x-content-type-options"] then res:set_header("x-content-type-options", "nosniff") end
  if not h["x-frame-options"] then res:set_header("x-frame-options", "DENY") end
  local loc = h["location"]
  local own = "http://" .. res.server
  local rest = loc and loc:sub(1, #own) == own and loc:sub(#own + 1)
  if rest == "" then
    res:set_header("location", "/")
  elseif rest and rest:find("^[/?#]") then
    res:set_header("location", rest)
  end
end
