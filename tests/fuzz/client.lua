-- client.lua: the script of the client-side fuzz target. The second byte
-- of the path picks what happens, so that the fuzzer reaches every kind of
-- decision with short inputs:
--   /p... /h... /b...  proxied to the harness's origin (round robin, hash,
--                       a Lua balancer); the origin's answer depends on the
--                       rest of the path (see harness.c)
--   /f...               proxied to a dead server and the origin, round
--                       robin with one retry (connect failures)
--   /r...               route answers itself (with a body and headers)
--   /e...  /n...        route raises an error / returns a bad status
--   anything else       the on_<method> handlers below
local origin = os.getenv("FUZZ_ORIGIN")
local opts = { keepalive = 4, max_fails = 0, retries = 1, read_timeout = "30s" }
local plain = proxy.upstream("plain", { origin }, opts)
local hashed = proxy.upstream("hashed", { origin, { addr = origin, weight = 2 } }, {
  keepalive = 4, max_fails = 0, balance = "hash",
  hash_key = function(req) return req.headers["x-key"] end,
})
local picked = proxy.upstream("picked", { origin, origin }, {
  keepalive = 4, max_fails = 0,
  balance = function(req, servers)
    local n = #(req.query or "") % 3
    if n == 2 then return nil end
    return servers[n + 1]
  end,
})
local flaky = proxy.upstream("flaky", { os.getenv("FUZZ_DEAD"), origin }, {
  keepalive = 4, max_fails = 0, retries = 1,
})
local dict = proxy.shared("fuzz")

routed = 0 -- requests sent upstream in this input (the harness reads it)

function route(req)
  local c = req.path:byte(2)
  if c == 112 or c == 104 or c == 98 or c == 102 then -- p h b f
    routed = routed + 1
    local h = req.headers
    if h["x-set"] then req:set_header("x-copied", h["x-set"]) end
    if h["x-drop"] then req:set_header(h["x-drop"], nil) end
    if req.query == "strip" then req:set_query(nil) end
    if req.query == "move" then req:set_path("/p/moved") end
    if c == 104 then return hashed end
    if c == 98 then return picked end
    if c == 102 then return flaky end
    return plain
  elseif c == 114 then -- r
    return 200, "routed " .. req.method .. "\n", { ["x-uri"] = req.uri, ["x-n"] = 7 }
  elseif c == 101 then -- e
    error("route failed on purpose")
  elseif c == 110 then -- n
    return 99
  end
end

function on_get(req)
  local h = req.headers
  local n = 0
  for _ in pairs(h) do n = n + 1 end
  if req.path == "/big" then return 200, string.rep("x", 300000) end
  if req.path == "/hdr" then return 200, nil, { ["x-many"] = { "a", "b" }, ["x-host"] = h.host } end
  if req.path == "/bad" then return 200, nil, { ["bad name"] = "x" } end
  local v = dict:get(req.path)
  return 200, (v or "none") .. " " .. n .. " " .. tostring(req.query) .. " " .. req.remote_addr
end

function on_post(req)
  dict:set(req.path, req.body or "")
  return 201, req.body
end

function on_put(req)
  return 200, tostring(#(req.body or "")), { ["content-type"] = req.headers["content-type"] }
end

function on_delete(req)
  dict:delete(req.path)
  return 204
end

function on_response(req, res)
  res:set_header("x-status", tostring(res.status))
  if res.headers["x-origin"] and req.headers["x-fail"] then error("on_response failed on purpose") end
end
