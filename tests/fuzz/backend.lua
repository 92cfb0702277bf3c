-- backend.lua: the script of the backend-side fuzz target. Every request
-- goes to the harness's origin, whose answer is the fuzzer's input.
local origin = os.getenv("FUZZ_ORIGIN")
local up = proxy.upstream("origin", { origin }, {
  keepalive = 4, max_fails = 0, retries = 1, read_timeout = "30s",
})

function route(req)
  return up
end

function on_response(req, res)
  local h = res.headers
  res:set_header("x-status", tostring(res.status))
  if h["x-drop"] then res:set_header(h["x-drop"], nil) end
  if h["x-fail"] then error("on_response failed on purpose") end
end
