-- kvstore.lua: the default app, a key-value store every worker shares.
--
--   POST   /some/path   stores the body and its Content-Type: 201 new, 200 replaced
--   GET    /some/path   returns them (404 when absent; default type
--                       application/octet-stream)
--   DELETE /some/path   204, or 404 when absent
--
-- Try it:  make run
--          curl -d 'hello' -H 'content-type: text/plain' 127.0.0.1:8080/greeting
--          curl -i 127.0.0.1:8080/greeting
--          curl -i -X DELETE 127.0.0.1:8080/greeting

local store = proxy.shared("kvstore")

-- One dict entry per key, "content-type\n" .. body, so that a reader in
-- another worker never sees the body of one write with the type of another.
local function pack(ctype, body)
  return ctype .. "\n" .. body
end

local function unpack(v)
  local nl = v:find("\n", 1, true)
  return v:sub(1, nl - 1), v:sub(nl + 1)
end

function on_post(req)
  local ctype = req.headers["content-type"] or "application/octet-stream"
  local value = pack(ctype, req.body or "")
  local ok, err = store:add(req.path, value)
  if ok then return 201 end
  if err == "exists" then
    ok, err = store:set(req.path, value)
    if ok then return 200 end
  end
  return 507, "store full: " .. tostring(err) .. "\n"
end

function on_get(req)
  local v = store:get(req.path)
  if not v then return 404, "not found\n" end
  local ctype, body = unpack(v)
  return 200, body, { ["content-type"] = ctype }
end

function on_delete(req)
  if store:delete(req.path) then return 204 end
  return 404, "not found\n"
end
