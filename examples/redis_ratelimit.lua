-- redis_ratelimit.lua: per-client rate limiting shared by every luaproxy
-- instance through Redis, with OpenResty's nginx.redis library.
--
-- A client is its X-Api-Key header, or else its address. Each client may
-- send RATE_LIMIT requests per window of RATE_WINDOW seconds, counted in
-- Redis, so the limit holds across all workers and all instances that use
-- the same Redis (ratelimit.lua does the same within one machine). The
-- window starts with the client's first request: one round trip sends INCR,
-- EXPIRE ... NX (sets the TTL only when the key has none, so a counter can
-- never be left without one) and TTL. Past the limit the proxy answers 429
-- with Retry-After; the backend never sees the request. Connections to
-- Redis are pooled per worker (set_keepalive), so a request costs one round
-- trip, not a connect. The request waits for Redis; the worker does not.
--
-- When Redis cannot be reached or does not answer within REDIS_TIMEOUT, the
-- limiter FAILS OPEN: the request is proxied without a limit (a warning is
-- logged), since an outage of the limiter should not become an outage of
-- the service. Where a limit must never be exceeded, answer 503 instead
-- (see `unlimited` below).
--
-- Needs nginx/redis.lua on the Lua path (Debian: lua-nginx-redis; see the
-- README for installing it without nginx, then LUA_PATH='DIR/?.lua;;').
-- Redis 7 or later (EXPIRE ... NX).
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS       default 127.0.0.1:9001
--   REDIS_ADDR      default 127.0.0.1:6379 (HOST:PORT, or unix:/path/redis.sock)
--   REDIS_TIMEOUT   default 200 ms (connect, send and each reply)
--   RATE_LIMIT      default 10 requests
--   RATE_WINDOW     default 60 seconds
--
-- Try it, with Redis and a backend on the default addresses:
--   RATE_LIMIT=3 luaproxy examples/redis_ratelimit.lua &
--   RATE_LIMIT=3 luaproxy -l 127.0.0.1:8081 examples/redis_ratelimit.lua &
--   for p in 8080 8081 8080 8081; do curl -s -o /dev/null -w '%{http_code}\n' -H 'X-Api-Key: k1' 127.0.0.1:$p/; done
--   # 200 200 200 429: the two instances share one budget
--   curl -si -H 'X-Api-Key: k1' 127.0.0.1:8080/ | grep -i retry-after    # Retry-After: 60 (or less)
-- A dry run cannot wait for Redis: it shows the request let through, as
-- when Redis is down:
--   luaproxy --try "GET /" -H "X-Api-Key: k1" examples/redis_ratelimit.lua

local redis = require "nginx.redis"

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001"))
local limit = tonumber(os.getenv("RATE_LIMIT") or "10")
local window = tonumber(os.getenv("RATE_WINDOW") or "60")
local timeout = tonumber(os.getenv("REDIS_TIMEOUT") or "200")
assert(limit and limit >= 1, "RATE_LIMIT must be a number >= 1")
assert(window and window >= 1 and window % 1 == 0, "RATE_WINDOW must be a whole number of seconds >= 1")
assert(timeout and timeout > 0, "REDIS_TIMEOUT must be a number of milliseconds > 0")

-- "host:port" or "unix:/path" (connect takes the latter as one argument).
local redis_addr = os.getenv("REDIS_ADDR") or "127.0.0.1:6379"
local redis_host, redis_port = redis_addr:match("^(.+):(%d+)$")
if redis_addr:sub(1, 5) == "unix:" then
  redis_host, redis_port = redis_addr, nil
end
assert(redis_host, "REDIS_ADDR must be HOST:PORT or unix:/path")

local POOL_IDLE_MS, POOL_SIZE = 30000, 32

-- Counts one request of client; returns its count and the seconds left in
-- its window, or nil and an error.
local function count(client)
  local r = redis:new()
  r:set_timeout(timeout)
  local ok, err = r:connect(redis_host, redis_port)
  if not ok then return nil, "connect: " .. tostring(err) end
  local key = "ratelimit:" .. client
  r:init_pipeline(3)
  r:incr(key)
  r:expire(key, window, "NX")
  r:ttl(key)
  local res, perr = r:commit_pipeline()
  if not res then
    r:close() -- a reply may still be on its way: never pool this connection
    return nil, perr
  end
  r:set_keepalive(POOL_IDLE_MS, POOL_SIZE)
  local n, ttl = res[1], res[3]
  if type(n) ~= "number" then
    return nil, "INCR: " .. tostring(type(n) == "table" and n[2] or n)
  end
  return n, type(ttl) == "number" and ttl > 0 and ttl or window
end

-- What to do when Redis is unavailable: fail open (proxy the request).
-- To fail closed instead, return 503, "rate limiter unavailable\n".
local function unlimited(client, err)
  proxy.log("warn", "rate limit not applied to ", client, ": redis ", redis_addr, ": ", err)
  return app
end

function route(req)
  local client = req.headers["x-api-key"] or req.remote_addr
  local ok, n, left = pcall(count, client)
  if not ok then return unlimited(client, n) end -- raised: e.g. a dry run, where nothing may wait
  if not n then return unlimited(client, left) end
  if n <= limit then return app end
  return 429, "too many requests\n", {
    ["retry-after"] = tostring(left),
    ["content-type"] = "text/plain",
  }
end
