"""A script cannot exhaust the worker's memory.

Every allocation of a worker's Lua state goes through a counting allocator
(lua/limits.c); past --lua-memory-limit it refuses, Lua raises "not enough
memory", the request gets 500 (logged with method and path), a full
collection returns the garbage, and the same worker serves on."""

import time

import lp
from origin import Origin

SCRIPT = r'''
leaked = {}
local up = UPSTREAM
function route(req)
  if req.path == "/route-alloc" then
    local t = {}
    while true do t[#t + 1] = string.rep("r", 65536) .. #t end
  end
  if req.path:find("^/p/") then return up end
end
function on_response(req, res)
  if req.path == "/p/alloc" then
    local t = {}
    while true do t[#t + 1] = string.rep("o", 65536) .. #t end
  end
end
function on_get(req)
  if req.path == "/alloc" then
    local t = {}
    while true do t[#t + 1] = string.rep("x", 1048576) .. #t end
  elseif req.path == "/huge" then
    return 200, string.rep("h", 2^30)
  elseif req.path == "/leak" then
    leaked[#leaked + 1] = string.rep("l", 4 * 1048576) .. #leaked
    return 200, tostring(#leaked)
  elseif req.path == "/mem" then
    collectgarbage()
    return 200, string.format("%.0f", collectgarbage("count") * 1024)
  end
  return 200, "ok"
end
'''

LIMIT_MB = 64


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def sanitized(pid):
    """AddressSanitizer keeps freed memory in quarantine: RSS says nothing."""
    with open("/proc/%d/maps" % pid) as f:
        return "libasan" in f.read()


def lua_bytes(p):
    r = lp.expect(lp.get(p.port, "/mem"), 200)
    return int(r.body)


def proxy(o):
    script = SCRIPT.replace("UPSTREAM", 'proxy.upstream("o", { "%s" })' % o.addr)
    # The time limit is long so that the memory limit is what stops the calls.
    return lp.Proxy(script, args=["--lua-memory-limit", "%dm" % LIMIT_MB, "--lua-time-limit", "10s"],
                    workers=1)


def test_unbounded_allocation_gets_500_and_the_worker_recovers():
    with Origin() as o, proxy(o) as p:
        [w] = p.wait_workers(1)
        lp.expect(lp.get(p.port, "/"), 200)
        base_lua, base_rss = lua_bytes(p), rss(w)
        for path in ("/alloc", "/route-alloc", "/huge", "/p/alloc", "/alloc"):
            t0 = time.monotonic()
            r = lp.get(p.port, path, timeout=15)
            dt = time.monotonic() - t0
            assert r.status == 500, "%s past --lua-memory-limit %dm: expected 500, got %r" % (path, LIMIT_MB, r)
            assert dt < 5, "%s took %.1fs: the memory limit, not the time limit, must stop it" % (path, dt)
            assert b"memory" not in r.body, "error text leaked to the client: %r" % r.body
            lp.expect(lp.get(p.port, "/"), 200, b"ok", what="right after %s" % path)
            p.wait_stderr("GET %s" % path)
        text = p.stderr_text()
        assert text.count("not enough memory") >= 5, "memory errors not logged:\n%s" % text[-2000:]
        assert p.worker_pids() == [w], "the worker was replaced"
        # The garbage went back: the Lua heap and the worker's RSS are near where they started.
        after_lua, after_rss = lua_bytes(p), rss(w)
        assert after_lua < base_lua + 4 * 1048576, "Lua heap %d bytes after the failures (was %d)" % (
            after_lua, base_lua)
        assert sanitized(w) or after_rss < base_rss + 24 * 1048576, "worker RSS %.1f MiB after the failures (was %.1f MiB, " \
            "limit %d MiB)" % (after_rss / 1048576, base_rss / 1048576, LIMIT_MB)
        r = lp.get(p.port, "/p/ok")
        assert r.status == 200 and r.header("x-origin") == "origin", "proxying after the failures: %r" % r
        print("    Lua heap %.1f -> %.1f MiB, worker RSS %.1f -> %.1f MiB after 5 allocations past %d MiB"
              % (base_lua / 1048576, after_lua / 1048576, base_rss / 1048576, after_rss / 1048576, LIMIT_MB))


def test_memory_kept_by_the_script_fails_only_the_calls_that_need_more():
    """A script that keeps what it allocates (a global table) reaches the
    limit for good: the calls that need more memory fail, the others and
    the worker go on."""
    with Origin() as o, proxy(o) as p:
        [w] = p.wait_workers(1)
        statuses = []
        for i in range(LIMIT_MB // 4 + 4):
            statuses.append(lp.get(p.port, "/leak", timeout=10).status)
        assert 200 in statuses and statuses[-1] == 500, statuses
        assert statuses.index(500) <= LIMIT_MB // 4, "the leak passed the limit: %r" % statuses
        for i in range(5):
            lp.expect(lp.get(p.port, "/"), 200, b"ok", what="after the script kept %d MiB" % LIMIT_MB)
        assert sanitized(w) or rss(w) < (LIMIT_MB + 48) * 1048576, "worker RSS %.0f MiB with a %d MiB Lua limit" % (
            rss(w) / 1048576, LIMIT_MB)
        assert p.worker_pids() == [w]
