-- routing.lua: path-prefix routing to several upstreams.
--
--   /api/...      -> upstream "api"    (the path as it came)
--   /static/...   -> upstream "static" ("/static" taken off: /static/app.js -> /app.js)
--   /auth/...     -> upstream "auth"
--   /healthz      -> answered here: 200 "ok"
--   anything else -> 404 here
--
-- A prefix matches the path itself or the path followed by "/", so /api and
-- /api/users go to "api" but /apix does not; the longest prefix wins, so a
-- "/api/admin" entry would take precedence over "/api".
--
-- Addresses come from the environment (comma-separated host:port lists,
-- read when the script loads), so one file serves tests, staging and
-- production unchanged:
--   API_ADDRS     default 127.0.0.1:9001,127.0.0.1:9002
--   STATIC_ADDRS  default 127.0.0.1:9101
--   AUTH_ADDRS    default 127.0.0.1:9201
--
-- Try it (no backend needed for the dry runs):
--   luaproxy --try "GET /api/users" examples/routing.lua
--   luaproxy --try "GET /static/app.js" examples/routing.lua
--   luaproxy --try "GET /nope" examples/routing.lua
-- and for real, with backends on the default addresses:
--   luaproxy examples/routing.lua &
--   curl -i 127.0.0.1:8080/api/users        # proxied to 127.0.0.1:9001 or :9002
--   curl -i 127.0.0.1:8080/static/app.js    # 127.0.0.1:9101 sees GET /app.js
--   curl -i 127.0.0.1:8080/healthz          # 200 ok

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local routes = {
  { prefix = "/api",    upstream = proxy.upstream("api", addrs("API_ADDRS", "127.0.0.1:9001,127.0.0.1:9002")) },
  { prefix = "/static", upstream = proxy.upstream("static", addrs("STATIC_ADDRS", "127.0.0.1:9101")), strip = true },
  { prefix = "/auth",   upstream = proxy.upstream("auth", addrs("AUTH_ADDRS", "127.0.0.1:9201")) },
}
table.sort(routes, function(a, b) return #a.prefix > #b.prefix end)

function route(req)
  local path = req.path
  for _, r in ipairs(routes) do
    local p = r.prefix
    if path == p or path:sub(1, #p + 1) == p .. "/" then
      if r.strip then
        local rest = path:sub(#p + 1)
        req:set_path(rest == "" and "/" or rest)
      end
      return r.upstream
    end
  end
  if path == "/healthz" then return 200, "ok\n", { ["content-type"] = "text/plain" } end
  return 404, "no route for " .. path .. "\n", { ["content-type"] = "text/plain" }
end
