-- auth_callout.lua: every request is checked by an auth service before it
-- is proxied; the service's answer is cached per token with resty.lrucache.
--
-- route(req) sends the client's Authorization header to AUTH_URL with
-- proxy.http.request. A 200 from the service lets the request through to
-- the app; anything else is a 403. The answer is cached in each worker for
-- AUTH_TTL seconds (a refusal for a tenth of that), so a busy client costs
-- the auth service one call per worker and period. The request waits for
-- the service without blocking the worker; if the service does not answer
-- within 2 s or cannot be reached, the client gets 503 (fail closed).
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS   default 127.0.0.1:9001
--   AUTH_URL    default http://127.0.0.1:9002/check
--   AUTH_TTL    default 60 seconds
--
-- Try it, with the app on 127.0.0.1:9001 and an auth service on :9002
-- that answers 200 to "Bearer good" and 401 otherwise:
--   luaproxy examples/auth_callout.lua &
--   curl -s -o /dev/null -w '%{http_code}\n' 127.0.0.1:8080/                                  # 401
--   curl -s -o /dev/null -w '%{http_code}\n' -H 'Authorization: Bearer good' 127.0.0.1:8080/  # 200
--   curl -s -o /dev/null -w '%{http_code}\n' -H 'Authorization: Bearer bad' 127.0.0.1:8080/   # 403
-- A dry run cannot call the service; without credentials it shows the 401:
--   luaproxy --try "GET /" examples/auth_callout.lua

local lrucache = require "resty.lrucache"

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001"))
local auth_url = os.getenv("AUTH_URL") or "http://127.0.0.1:9002/check"
local ttl = tonumber(os.getenv("AUTH_TTL") or "60")
assert(ttl and ttl > 0, "AUTH_TTL must be a number of seconds > 0")
local verdicts = assert(lrucache.new(10000))

function route(req)
  local token = req.headers["authorization"]
  if not token then
    return 401, "credentials required\n", { ["WWW-Authenticate"] = "Bearer" }
  end
  local ok = verdicts:get(token)
  if ok == nil then
    local res, err = proxy.http.request({ url = auth_url, headers = { Authorization = token }, timeout = 2 })
    if not res then
      proxy.log("warn", "auth service: ", err)
      return 503, "authentication unavailable\n"
    end
    ok = res.status == 200
    verdicts:set(token, ok, ok and ttl or ttl / 10)
  end
  if not ok then return 403, "forbidden\n" end
  return app
end
