-- sticky.lua: sticky sessions with the "hash" balancing policy.
--
-- Requests carrying the same session go to the same server: the session is
-- the "session" cookie, else the X-Session header, else the client address.
-- The hash policy places each server on a ring (160 points per unit of
-- weight, by address), so when a server fails only its own sessions move to
-- the next server on the ring; all the others stay where they were. When the
-- failed server comes back, its sessions return to it.
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS   default 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003
--
-- Try it (no backend needed for the dry runs):
--   luaproxy --try "GET /cart" -H "Cookie: session=s-42" examples/sticky.lua
--   luaproxy --try "GET /cart" -H "X-Session: s-7" examples/sticky.lua
-- and for real, with backends on the default addresses:
--   luaproxy examples/sticky.lua &
--   for i in 1 2 3; do curl -s -b 'session=s-42' 127.0.0.1:8080/cart; done   # one backend

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"), {
  balance = "hash",
  hash_key = function(req)
    local c = req.headers["cookie"]
    return (c and c:match("%f[%w_]session=([^;%s]+)")) or req.headers["x-session"] or req.remote_addr
  end,
  max_fails = 1,          -- one failed connect takes a server out ...
  fail_timeout = "10s",   -- ... for ten seconds
})

function route(req)
  return app
end
