-- balancer.lua: a custom balancer in Lua: peak-EWMA latency with the power
-- of two choices.
--
-- For each request the balancer draws two different servers among those up
-- and keeps the cheaper one. A server's cost is its peak-EWMA latency times
-- (active + 1), where active is the requests this worker has in flight to
-- it: a slow server, or a busy one, gets less traffic. The latency is
-- measured from the balancing decision to the response head (on_response);
-- a sample above the average replaces it at once (the "peak"), lower
-- samples pull it down gradually, and with no samples it decays towards 0
-- within about DECAY seconds, so a server that was slow once gets tried
-- again. A server never measured costs 0, so every server is tried early.
-- A failed connect counts as a 1 s answer, and a retry never goes back to
-- a server already tried for that request.
--
-- Each worker learns on its own (the figures live in its Lua state, not in
-- shared memory), and a reload starts the learning again.
--
-- Configuration (environment, read when the script loads):
--   APP_ADDRS   default 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003
--
-- Try it (the dry run shows the first pick of a fresh worker):
--   luaproxy --try "GET /" examples/balancer.lua
-- and for real, with backends on the default addresses, one of them slow:
--   luaproxy -w 1 examples/balancer.lua &
--   for i in $(seq 20); do curl -s -o /dev/null -w '%{time_total}\n' 127.0.0.1:8080/; done
--   # after the first few requests, the slow backend is left alone

local DECAY = 10  -- seconds
local FAILED = 1  -- seconds: what a failed attempt counts as

local function addrs(var, default)
  local list = {}
  for a in (os.getenv(var) or default):gmatch("[^,%s]+") do list[#list + 1] = a end
  return list
end

local stats = {} -- addr -> { ewma = seconds, stamp = time of the last sample }
-- Per request, in req.ctx.attempt: { t0 = when it was balanced, last = addr,
-- tried = { addr = true } }. req.ctx goes with its request, answered or not.
math.randomseed(os.time() * 1000 + proxy.worker_id)

-- The average, decayed from its last sample to now.
local function latency(addr, now)
  local st = stats[addr]
  if not st then return 0 end
  return st.ewma * math.exp(-math.max(now - st.stamp, 0) / DECAY)
end

local function observe(addr, rtt, now)
  local st = stats[addr]
  if not st then
    stats[addr] = { ewma = rtt, stamp = now }
    return
  end
  local w = math.exp(-math.max(now - st.stamp, 0) / DECAY)
  st.ewma = rtt > st.ewma and rtt or st.ewma * w + rtt * (1 - w)
  st.stamp = now
end

local function cost(s, now)
  return latency(s.addr, now) * (s.active + 1)
end

local function peak_ewma_p2c(req, servers)
  local now = proxy.now()
  local a = req.ctx.attempt
  if a then
    -- Called again for the same request: connecting to the last pick
    -- failed. Count that as a slow answer, and never pick a server twice
    -- for one request (the core answers 502 if we do).
    observe(a.last, FAILED, now)
  else
    a = { tried = {} }
    req.ctx.attempt = a
  end
  local candidates = {}
  for _, s in ipairs(servers) do
    if s.up and not a.tried[s.addr] then candidates[#candidates + 1] = s end
  end
  if #candidates == 0 then return nil end -- 503 (502 on a retry)
  local best = candidates[1]
  if #candidates > 1 then
    local i = math.random(#candidates)
    local j = math.random(#candidates - 1)
    if j >= i then j = j + 1 end -- two different servers
    local x, y = candidates[i], candidates[j]
    best = cost(x, now) <= cost(y, now) and x or y
  end
  a.t0, a.last = now, best.addr
  a.tried[best.addr] = true
  return best
end

local app = proxy.upstream("app", addrs("APP_ADDRS", "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"), {
  balance = peak_ewma_p2c,
})

function route(req)
  return app
end

function on_response(req, res)
  local a = req.ctx.attempt
  if not a then return end
  local now = proxy.now()
  observe(res.server, now - a.t0, now)
end
