"""SPEC §3 (errors in scripts): runtime errors and runaway Lua calls give 500,
are logged with a traceback, method and path, and the worker goes on."""

import time

import lp
from origin import Origin

SCRIPT = r'''
local function deeper(x)
  error("kaboom-marker " .. x)
end

local function double(i) return i * 2 end

function route(req)
  if req.path == "/route-error" then
    local t = nil
    return t.field
  end
end

function on_get(req)
  if req.path == "/boom" then deeper("in-get") end
  if req.path == "/table-error" then error({ code = 1 }) end
  if req.path == "/spin" then
    while true do end
  end
  if req.path == "/loop" then
    local s = 0
    for i = 1, 1e15 do s = s + double(i) end
    return 200, tostring(s)
  end
  if req.path == "/strings" then
    local t = {}
    while true do t[#t % 100 + 1] = string.rep("x", 10) .. #t end
  end
  return 200, "fine"
end

function on_post(req)
  deeper("in-post")
end
'''


def assert_served_by_same_worker(p, before):
    lp.expect(lp.get(p.port, "/"), 200, b"fine")
    after = p.worker_pids()
    assert after == before, "worker replaced: %r -> %r" % (before, after)


def test_runtime_error_500_and_traceback():
    with lp.Proxy(SCRIPT) as p:
        before = p.wait_workers(1)
        r = lp.get(p.port, "/boom")
        assert r.status == 500, r
        assert int(r.headers.get("content-length", -1)) == len(r.body), r
        assert b"kaboom" not in r.body, "error message leaked to the client: %r" % r.body
        text = p.wait_stderr("kaboom-marker in-get")
        tail = text[text.index("kaboom-marker in-get"):]
        assert "traceback" in tail.lower(), "no traceback:\n%s" % text
        assert "script.lua:3: in function 'deeper'" in tail, "traceback without the frames:\n%s" % text
        # One line at level error that names the method and the path.
        err_lines = [l for l in text.split("\n") if "kaboom-marker" in l]
        assert len(err_lines) == 1 and "[error]" in err_lines[0] and "GET /boom" in err_lines[0], \
            "expected one [error] line naming GET /boom:\n%s" % text
        assert_served_by_same_worker(p, before)


def test_error_in_post_handler_and_route():
    with lp.Proxy(SCRIPT) as p:
        before = p.wait_workers(1)
        r = lp.post(p.port, "/p", b"data")
        assert r.status == 500, r
        text = p.wait_stderr("kaboom-marker in-post")
        assert "POST" in text and "/p" in text, text
        r = lp.get(p.port, "/route-error")
        assert r.status == 500, r
        p.wait_stderr("/route-error")
        assert_served_by_same_worker(p, before)


def test_error_with_table_value():
    with lp.Proxy(SCRIPT) as p:
        before = p.wait_workers(1)
        lp.expect(lp.get(p.port, "/table-error"), 500)
        assert_served_by_same_worker(p, before)


def test_keep_alive_survives_500():
    with lp.Proxy(SCRIPT) as p, lp.Conn(p.port) as c:
        lp.expect(c.request("GET", "/boom"), 500)
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"fine", r


def timed_500(p, path, limit):
    t0 = time.monotonic()
    r = lp.get(p.port, path, timeout=10)
    dt = time.monotonic() - t0
    assert r.status == 500, "%s: %r" % (path, r)
    assert dt < limit + 1.5, "%s answered after %.2fs with --lua-time-limit %.1fs" % (path, dt, limit)
    assert dt >= limit * 0.8, "%s answered after %.2fs, before the limit" % (path, dt)


def test_time_limit_empty_loop():
    with lp.Proxy(SCRIPT, args=["--lua-time-limit", "200ms"]) as p:
        before = p.wait_workers(1)
        timed_500(p, "/spin", 0.2)
        p.wait_stderr("/spin")
        assert_served_by_same_worker(p, before)


def test_time_limit_jit_loop_with_calls():
    with lp.Proxy(SCRIPT, args=["--lua-time-limit", "200ms"]) as p:
        before = p.wait_workers(1)
        timed_500(p, "/loop", 0.2)
        assert_served_by_same_worker(p, before)


def test_time_limit_allocating_loop():
    with lp.Proxy(SCRIPT, args=["--lua-time-limit", "200ms"]) as p:
        before = p.wait_workers(1)
        timed_500(p, "/strings", 0.2)
        assert_served_by_same_worker(p, before)


def test_time_limit_repeatedly():
    # The limit must re-arm for every call, including after an abort.
    with lp.Proxy(SCRIPT, args=["--lua-time-limit", "200ms"]) as p:
        before = p.wait_workers(1)
        for path in ("/spin", "/loop", "/spin"):
            timed_500(p, path, 0.2)
            lp.expect(lp.get(p.port, "/"), 200, b"fine")
        assert_served_by_same_worker(p, before)


def test_time_limit_does_not_block_other_connections_for_long():
    # While one request spins, another queued on the same (only) worker is
    # answered once the limit has cut the first one short.
    import threading
    with lp.Proxy(SCRIPT, args=["--lua-time-limit", "300ms"]) as p:
        [w] = p.wait_workers(1)
        results = {}

        def spin():
            results["spin"] = lp.get(p.port, "/spin", timeout=10).status
        t_spin = time.monotonic()
        t = threading.Thread(target=spin)
        t.start()
        # The worker is inside the spin (burning CPU) before the second request.
        lp.wait_cpu_busy(w, what="the worker to spin in /spin")
        r = lp.get(p.port, "/", timeout=10)
        t_done = time.monotonic()
        t.join(10)
        assert results.get("spin") == 500, results
        assert r.status == 200, "second request: %r" % r
        # It waited for the limit to cut the spin short, and not much longer.
        assert 0.25 <= t_done - t_spin < 2.0, "second request answered %.2fs after the spin began " \
            "(--lua-time-limit 300ms)" % (t_done - t_spin)


BALANCING = r'''
local function pick(req, servers)
  if req.path == "/balance-error" then error("balance-marker") end
  if req.path == "/balance-nil" then return nil end
  if req.path == "/balance-bogus" then return "nope" end
  if req.path == "/balance-range" then return 7 end
  return servers[1]
end
local lua_up = proxy.upstream("l", { "%s" }, { balance = pick })
local hash_up = proxy.upstream("h", { "%s" }, { balance = "hash", hash_key = function(req)
  if req.path == "/hash-error" then error("hash-marker") end
  if req.path == "/hash-bogus" then return {} end
  return req.headers["x-user"]
end })
function route(req)
  if req.path:find("^/hash") then return hash_up end
  return lua_up
end
'''


def test_runtime_error_in_balance_or_hash_key_is_a_500():
    """Like any hook: 500, the error logged at error with method and path,
    and nothing sent to a backend."""
    with Origin() as o:
        with lp.Proxy(BALANCING % (o.addr, o.addr)) as p:
            for path, marker in (("/balance-error", "balance-marker"), ("/hash-error", "hash-marker"),
                                 ("/balance-bogus", "neither a server"), ("/balance-range", "neither a server"),
                                 ("/hash-bogus", "hash_key returned a table")):
                r = lp.get(p.port, path)
                assert r.status == 500, "%s: %r" % (path, r)
                text = p.wait_stderr("GET %s: " % path)
                [line] = [l for l in text.split("\n") if "GET %s: " % path in l]
                assert "[error]" in line and marker in line, line
            assert o.requests == 0, "a request went on after its balancing hook failed"
            # nil from balance is still "no server": 503; and good answers proxy.
            lp.expect(lp.get(p.port, "/balance-nil"), 503)
            lp.expect(lp.get(p.port, "/fine"), 200)
            lp.expect(lp.get(p.port, "/hash-fine", headers={"X-User": "u"}), 200)
            assert o.requests == 2
