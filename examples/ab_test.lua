-- ab_test.lua: A/B testing, with a response header naming the variant.
--
-- Each visitor sees variant "a" (upstream A_ADDRS) or "b" (B_ADDRS):
--   - the "ab" cookie, when it holds a or b, decides (a returning visitor);
--   - else a user id (the X-User header) is hashed, so a signed-in user gets
--     the same variant on every device;
--   - else the variant is drawn at random, B_PERCENT percent of the time "b".
-- route() tells the backend which variant it serves (X-AB-Variant request
-- header). on_response() names it to the client (X-AB-Variant response
-- header) and, for a visitor without the cookie, sets "ab" so that the next
-- visit gets the same variant. A backend's own Set-Cookie is never replaced:
-- res:set_header sets a header, it does not add one, so the cookie is only
-- set when the backend sets none.
--
-- Configuration (environment, read when the script loads):
--   A_ADDRS     default 127.0.0.1:9001
--   B_ADDRS     default 127.0.0.1:9101
--   B_PERCENT   default 50
--
-- Try it (the dry run shows the variant route picks; on_response needs a
-- real backend):
--   luaproxy --try "GET /" -H "Cookie: ab=b" examples/ab_test.lua
--   luaproxy --try "GET /" -H "X-User: alice" examples/ab_test.lua
-- and for real, with backends on the default addresses:
--   luaproxy examples/ab_test.lua &
--   curl -si 127.0.0.1:8080/ | grep -i -e x-ab-variant -e set-cookie
--   curl -si -b 'ab=b' 127.0.0.1:8080/ | grep -i x-ab-variant     # b

local bit = require("bit")

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local upstreams = {
  a = proxy.upstream("variant-a", addrs("A_ADDRS", "127.0.0.1:9001")),
  b = proxy.upstream("variant-b", addrs("B_ADDRS", "127.0.0.1:9101")),
}
local b_percent = tonumber(os.getenv("B_PERCENT") or "50")
math.randomseed(os.time() * 1000 + proxy.worker_id)

local function bucket(s) -- FNV-1a into 0..99 (see canary.lua)
  local h = 2166136261
  for i = 1, #s do
    h = bit.bxor(h, s:byte(i))
    h = bit.tobit(bit.lshift(h, 24) + h * 403)
  end
  return h % 100
end

local function cookie(req, name)
  local c = req.headers["cookie"]
  return c and c:match("%f[%w_]" .. name .. "=([^;%s]+)")
end

function route(req)
  local v = cookie(req, "ab")
  if v ~= "a" and v ~= "b" then
    local user = req.headers["x-user"]
    local n = user and bucket(user) or math.random(0, 99)
    v = n < b_percent and "b" or "a"
  end
  req:set_header("x-ab-variant", v)
  return upstreams[v]
end

function on_response(req, res)
  local v = req.headers["x-ab-variant"] -- as route set it
  res:set_header("x-ab-variant", v)
  if cookie(req, "ab") ~= v and not res.headers["set-cookie"] then
    res:set_header("set-cookie", "ab=" .. v .. "; Path=/; Max-Age=2592000")
  end
end
