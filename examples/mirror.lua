-- mirror.lua: shadow traffic: a copy of live requests goes to a new
-- version, whose answers are thrown away; the live servers retry on 502,
-- 503 and 504.
--
-- Every request goes to the live upstream. A share of them (MIRROR_PERCENT,
-- picked per request) goes through a second upstream with the same servers
-- and `mirror = shadow`: the shadow servers get a copy of the request, head
-- and body (the body duplicated inside the kernel with tee()), and the
-- client only ever sees the live answer. A slow or dead shadow costs the
-- live traffic nothing: copies it cannot take are dropped and counted in
-- luaproxy_mirror_dropped_total{upstream="shadow"} (/metrics, --admin).
-- An idempotent request that a live server answers 502, 503 or 504 goes to
-- the next live server (retry_on), when nothing of the answer went out yet.
--
-- Configuration (environment, read when the script loads):
--   LIVE_ADDRS      default 127.0.0.1:9001,127.0.0.1:9002
--   SHADOW_ADDRS    default 127.0.0.1:9201
--   MIRROR_PERCENT  default 100 (0 to 100)
--
-- Try it (no backend needed for the dry runs):
--   luaproxy --try "GET /api/users" examples/mirror.lua
--   MIRROR_PERCENT=0 luaproxy --try "POST /api/users" examples/mirror.lua
-- and for real, with backends on the default addresses:
--   luaproxy --admin 127.0.0.1:9100 examples/mirror.lua &
--   curl -i -d 'hello' 127.0.0.1:8080/api/users       # live answers; shadow got a copy
--   curl -s 127.0.0.1:9100/metrics | grep mirror

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local percent = tonumber(os.getenv("MIRROR_PERCENT") or "100")
assert(percent and percent >= 0 and percent <= 100, "MIRROR_PERCENT must be a number from 0 to 100")

local live_servers = addrs("LIVE_ADDRS", "127.0.0.1:9001,127.0.0.1:9002")
local live_opts = { retries = 1, retry_on = { 502, 503, 504 } }

-- The shadow's answers are not waited for; a short read_timeout bounds how
-- long a copy may hold its connection.
local shadow = proxy.upstream("shadow", addrs("SHADOW_ADDRS", "127.0.0.1:9201"), { read_timeout = "5s" })

local live = proxy.upstream("live", live_servers, live_opts)
local mirrored_opts = { mirror = shadow }
for k, v in pairs(live_opts) do mirrored_opts[k] = v end
local live_mirrored = proxy.upstream("live_mirrored", live_servers, mirrored_opts)

function route(req)
  if percent > 0 and math.random(100) <= percent then return live_mirrored end
  return live
end
