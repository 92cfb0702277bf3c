-- health_checked.lua: an upstream under active health checks: servers whose
-- health page fails leave every worker's rotation, and come back on their own.
--
-- One worker probes each server with GET HEALTH_PATH every 2 s (the workers
-- agree through shared memory, so probes do not multiply with workers). 3
-- failures in a row (a status other than 200 or 204, no answer within 1 s,
-- a refused connection) take a server out of every worker's rotation at
-- once; 2 successes in a row bring it back. Changes are logged once (warn
-- when down, info when up), shown by luaproxy_upstream_server_up and in
-- /status with --admin. Passive health (max_fails) still works beside it:
-- a server that fails live requests is taken out by the worker that saw it.
-- When every server is down, requests get 503.
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS     default 127.0.0.1:9001,127.0.0.1:9002
--   HEALTH_PATH   default /healthz
--
-- Try it (the dry run shows where a request would go):
--   luaproxy --try "GET /" examples/health_checked.lua
-- and for real, with backends on the default addresses:
--   luaproxy --admin 127.0.0.1:9900 examples/health_checked.lua &
--   curl -s 127.0.0.1:8080/
--   curl -s 127.0.0.1:9900/metrics | grep luaproxy_upstream_server_up
--   curl -s 127.0.0.1:9900/status    # "health_checks": up, checks, prober

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001,127.0.0.1:9002"), {
  check = {
    path = os.getenv("HEALTH_PATH") or "/healthz",
    interval = "2s", timeout = "1s",
    rise = 2, fall = 3,
    expect = { 200, 204 },
  },
  max_fails = 3, fail_timeout = "10s",
})

function route(req)
  return app
end
