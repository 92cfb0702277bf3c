-- dynamic_routes.lua: a routing table refreshed from an HTTP endpoint by a
-- timer, without reloads.
--
-- Each worker fetches ROUTES_URL when it starts and then every
-- ROUTES_EVERY seconds (proxy.timer.every, proxy.http.request). The
-- endpoint answers one route per line, "PREFIX POOL", where POOL is "blue"
-- or "green"; the longest matching prefix wins, and a path no route covers
-- gets 404. While the endpoint is down or answers nonsense, the last good
-- table stays in service (and a warning is logged).
--
-- Configuration (environment, read when the script loads):
--   BLUE_ADDRS     default 127.0.0.1:9001
--   GREEN_ADDRS    default 127.0.0.1:9002
--   ROUTES_URL     default http://127.0.0.1:9003/routes
--   ROUTES_EVERY   default 5 seconds
--
-- Try it, with backends on :9001 and :9002 and the table served on :9003:
--   printf '/api blue\n/shop green\n' > routes && python3 -m http.server 9003 &
--   luaproxy examples/dynamic_routes.lua &
--   curl -s 127.0.0.1:8080/api/x      # from blue
--   printf '/api green\n' > routes; sleep 6
--   curl -s 127.0.0.1:8080/api/x      # from green, no reload
-- A dry run has no timers, so its table is empty: every path is a 404.
--   luaproxy --try "GET /api/x" examples/dynamic_routes.lua

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local pools = {
  blue = proxy.upstream("blue", addrs("BLUE_ADDRS", "127.0.0.1:9001")),
  green = proxy.upstream("green", addrs("GREEN_ADDRS", "127.0.0.1:9002")),
}
local routes_url = os.getenv("ROUTES_URL") or "http://127.0.0.1:9003/routes"
local every = tonumber(os.getenv("ROUTES_EVERY") or "5")
assert(every and every > 0, "ROUTES_EVERY must be a number of seconds > 0")

local routes = {} -- { {prefix =, pool =}, ... }, longest prefix first

local function parse(text)
  local list = {}
  for line in text:gmatch("[^\n]+") do
    local prefix, pool = line:match("^%s*(/%S*)%s+(%w+)%s*$")
    if not prefix or not pools[pool] then return nil, "bad line: " .. line end
    list[#list + 1] = { prefix = prefix, pool = pool }
  end
  table.sort(list, function(a, b) return #a.prefix > #b.prefix end)
  return list
end

local function refresh(premature)
  if premature then return end
  local res, err = proxy.http.request({ url = routes_url, timeout = 2 })
  if not res or res.status ~= 200 then
    proxy.log("warn", "routes: keeping the last table: ", err or ("status " .. res.status))
    return
  end
  local list, perr = parse(res.body)
  if not list then
    proxy.log("warn", "routes: keeping the last table: ", perr)
    return
  end
  routes = list
end

proxy.timer.at(0, refresh)
proxy.timer.every(every, refresh)

function route(req)
  for _, r in ipairs(routes) do
    if req.path:sub(1, #r.prefix) == r.prefix then return pools[r.pool] end
  end
  return 404, "no route\n"
end
