-- canary.lua: send a percentage of users to a new version, the same users
-- every time.
--
-- A user is the "uid" cookie, or else the X-User header. The user id is
-- hashed (FNV-1a) into one of 100 buckets; buckets below CANARY_PERCENT go
-- to the canary upstream, the others to stable. The same user always lands
-- in the same bucket, in every worker and after every reload, so nobody
-- flips between versions; raising the percentage only adds users. Requests
-- with no user id go to stable. Testers can force a side with the cookie
-- "canary=always" or "canary=never".
--
-- Configuration (environment, read when the script loads):
--   STABLE_ADDRS    default 127.0.0.1:9001,127.0.0.1:9002
--   CANARY_ADDRS    default 127.0.0.1:9101
--   CANARY_PERCENT  default 10 (0 to 100)
--
-- Try it (no backend needed for the dry runs):
--   luaproxy --try "GET /" -H "X-User: alice" examples/canary.lua
--   CANARY_PERCENT=100 luaproxy --try "GET /" -H "X-User: alice" examples/canary.lua
--   luaproxy --try "GET /" -H "Cookie: canary=always" examples/canary.lua
-- and for real, with backends on the default addresses:
--   CANARY_PERCENT=25 luaproxy examples/canary.lua &
--   curl -i -H 'X-User: alice' 127.0.0.1:8080/        # always the same upstream for alice
--   curl -i -b 'uid=u-1234' 127.0.0.1:8080/

local bit = require("bit")

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local stable = proxy.upstream("stable", addrs("STABLE_ADDRS", "127.0.0.1:9001,127.0.0.1:9002"))
local canary = proxy.upstream("canary", addrs("CANARY_ADDRS", "127.0.0.1:9101"))
local percent = tonumber(os.getenv("CANARY_PERCENT") or "10")
assert(percent and percent >= 0 and percent <= 100, "CANARY_PERCENT must be a number from 0 to 100")

-- FNV-1a, 32 bits. The prime 16777619 is 2^24 + 403: multiplying in two
-- parts keeps every intermediate value exact in a double.
local function bucket(s)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(bit.lshift(h, 24) + h * 403)
  end
  return h % 100 -- Lua's % is never negative for a positive divisor
end

local function cookie(req, name)
  local c = req.headers["cookie"]
  return c and c:match("%f[%w_]" .. name .. "=([^;%s]+)")
end

function route(req)
  local forced = cookie(req, "canary")
  if forced == "always" then return canary end
  if forced == "never" then return stable end
  local user = cookie(req, "uid") or req.headers["x-user"]
  if user and bucket(user) < percent then return canary end
  return stable
end
