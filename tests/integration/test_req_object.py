"""The `req` object's identity and life (docs/lua-api.md, `req`): it is the
same value in every hook of one request and a different one for each
request, it works as a table key, and once its request is over every use of
it raises "this request is over", whatever request runs then. Many requests
in flight at once each read their own fields."""

import threading

import lp
from origin import Origin, upstream_script

KEEP = r'''
local kept
function on_get(req)
  if req.path == "/keep" then
    kept = req
    return 200, tostring(req)
  end
  local function try(f)
    local ok, err = pcall(f)
    return tostring(ok) .. ":" .. tostring(err)
  end
  return 200, table.concat({
    try(function() return kept.path end),
    try(function() return kept:header("host") end),
    try(function() kept:set_header("x-a", "b") end),
    tostring(kept), tostring(kept == req), type(kept), tostring(getmetatable(kept)),
    tostring(req), req.path,
  }, "|")
end
'''


def test_req_kept_past_its_request_raises_on_every_use():
    over = "this request is over (req used after its handler returned)"
    with lp.Proxy(KEEP) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/keep")
        assert (r.status, r.body) == (200, b"req (GET)"), r
        # On the same worker, a new request is live while the kept one is
        # used: the kept req must not read it, however many requests came
        # after it (whatever slot or number the new one gets).
        for i in range(300):
            r = c.request("GET", "/use")
            assert r.status == 200, r
            parts = r.body.decode().split("|")
            for p_ in parts[:3]:
                assert p_.startswith("false:") and over in p_, (i, parts)
            assert parts[3:] == ["req (over)", "false", "userdata", "req", "req (GET)", "/use"], (i, parts)


IDENTITY = r'''
local seen, routed = {}, 0
function route(req)
  if req.path == "/count" then
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    return 200, n .. " " .. routed
  end
  routed = routed + 1
  seen[req] = { path = req.path, req = req }
  return up
end
function on_response(req, res)
  local s = seen[req]
  seen[req] = nil
  res:set_header("x-seen-path", s and s.path or "none")
  res:set_header("x-same", tostring(s ~= nil and s.req == req))
  res:set_header("x-path", req.path)
  res:set_header("x-i", req:header("x-i") or "none")
end
'''


def test_req_is_one_value_per_request_and_a_table_key():
    with Origin() as o, lp.Proxy(upstream_script([o], extra=IDENTITY)) as p, lp.Conn(p.port) as c:
        for i in range(5):
            r = c.request("GET", "/k/%d" % i, headers={"X-I": str(i)})
            assert r.status == 200, r
            assert r.headers.get("x-seen-path") == "/k/%d" % i and r.headers.get("x-same") == "true", r
            assert r.headers.get("x-i") == str(i), r
        r = c.request("GET", "/count")
        # Every entry was found again (and removed) by on_response.
        assert (r.status, r.body) == (200, b"0 5"), r


def test_many_requests_in_flight_each_read_their_own():
    """150 proxied requests held at once by a slow origin on one worker
    (more than the first size of the table of live requests): each
    on_response must read its own request."""
    n = 150
    with Origin(delay_ms=400) as o, lp.Proxy(upstream_script([o], extra=IDENTITY)) as p:
        results = [None] * n

        def one(i):
            try:
                results[i] = lp.request(p.port, "GET", "/f/%d?q" % i, headers={"X-I": str(i)}, timeout=20)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert o.max_in_flight >= 64, "the origin saw at most %d at once" % o.max_in_flight
        for i, r in enumerate(results):
            assert isinstance(r, lp.Response) and r.status == 200, (i, r)
            assert r.headers.get("x-path") == "/f/%d" % i and r.headers.get("x-i") == str(i), (i, r.headers)
            assert r.headers.get("x-seen-path") == "/f/%d" % i and r.headers.get("x-same") == "true", (i, r.headers)
        r = lp.get(p.port, "/count")
        assert (r.status, r.body) == (200, b"0 %d" % n), r


CTX = r'''
local weak = setmetatable({}, { __mode = "v" })
local n = 0
function route(req)
  if req.path == "/live" then
    collectgarbage()
    collectgarbage()
    local live = 0
    for _ in pairs(weak) do live = live + 1 end
    return 200, tostring(live)
  end
  assert(req.ctx.seen == nil, "a fresh request's ctx is empty")
  n = n + 1
  req.ctx.seen = req.path
  req.ctx.n = n
  weak[n] = req.ctx
  return up
end
function on_response(req, res)
  res:set_header("x-ctx-path", tostring(req.ctx.seen))
  res:set_header("x-ctx-n", tostring(req.ctx.n))
  res:set_header("x-ctx-same", tostring(rawequal(req.ctx, weak[req.ctx.n])))
end
'''


def test_req_ctx_carries_data_from_route_to_on_response_and_ends_with_it():
    with Origin() as o, lp.Proxy(upstream_script([o], extra=CTX)) as p, lp.Conn(p.port) as c:
        for i in range(1, 4):
            r = c.request("GET", "/c/%d" % i)
            assert r.status == 200, r
            assert r.headers.get("x-ctx-path") == "/c/%d" % i and r.headers.get("x-ctx-n") == str(i), r.headers
            assert r.headers.get("x-ctx-same") == "true", r.headers
        # The three tables went with their requests (the /live request's
        # own ctx is never made).
        r = c.request("GET", "/live")
        assert (r.status, r.body) == (200, b"0"), r
