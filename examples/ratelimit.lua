-- ratelimit.lua: per-client rate limiting on proxy.shared, answering 429
-- with Retry-After.
--
-- A client is its X-Api-Key header, or else its address. Each client may
-- send RATE_LIMIT requests per window of RATE_WINDOW seconds; the window
-- starts with the client's first request (dict:incr creates the counter with
-- a TTL of one window, and later increments keep that TTL). Past the limit
-- the proxy answers 429 itself, with Retry-After giving the whole seconds
-- left in the window, and the backend never sees the request. The counters
-- live in shared memory, so the limit holds across all workers and reloads.
-- If the dict is full, requests are let through (and a warning logged)
-- rather than refused.
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS     default 127.0.0.1:9001
--   RATE_LIMIT    default 10 requests
--   RATE_WINDOW   default 1 second
--
-- Try it, with a backend on the default address:
--   RATE_LIMIT=3 RATE_WINDOW=10 luaproxy examples/ratelimit.lua &
--   for i in 1 2 3 4; do curl -s -o /dev/null -w '%{http_code}\n' -H 'X-Api-Key: k1' 127.0.0.1:8080/; done
--   # 200 200 200 429
--   curl -si -H 'X-Api-Key: k1' 127.0.0.1:8080/ | grep -i retry-after    # Retry-After: 10 (or less)
--   curl -s -o /dev/null -w '%{http_code}\n' -H 'X-Api-Key: k2' 127.0.0.1:8080/   # 200: another client
-- A dry run starts with empty dicts, so it shows a client's first request:
--   luaproxy --try "GET /" -H "X-Api-Key: k1" examples/ratelimit.lua

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001"))
local limit = tonumber(os.getenv("RATE_LIMIT") or "10")
local window = tonumber(os.getenv("RATE_WINDOW") or "1")
assert(limit and limit >= 1, "RATE_LIMIT must be a number >= 1")
assert(window and window > 0, "RATE_WINDOW must be a number of seconds > 0")
local counters = proxy.shared("ratelimit")

function route(req)
  local client = req.headers["x-api-key"] or req.remote_addr
  local key = "n:" .. client
  local n, err = counters:incr(key, 1, 0, window) -- 1 on the first request of a window
  if not n then
    proxy.log("warn", "rate limit not applied to ", client, ": ", err)
    return app
  end
  if n == 1 then counters:set("t:" .. client, proxy.now(), window) end
  if n <= limit then return app end
  local started = counters:get("t:" .. client) or proxy.now()
  local retry = math.max(1, math.ceil(started + window - proxy.now()))
  return 429, "too many requests\n", {
    ["retry-after"] = tostring(retry),
    ["content-type"] = "text/plain",
  }
end
