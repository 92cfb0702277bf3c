"""Lua that waits, at scale and at the edges: 10,000 requests suspended in
proxy.sleep on one worker, clients that go away while their requests wait,
a reload while 1,000 wait, and --lua-time-limit with waiting routes.

Clients come from tests/helpers/many.py: one thread, blocking connects,
one epoll loop for the responses."""

import os
import signal
import time

import lp
import many

# Every request waits in a barrier: it counts itself in, then sleeps until
# the last of N has come (that one opens the barrier). No request can
# finish before all N are suspended at once, so N responses of 200 prove N
# waited together.
BARRIER = '''
local d = proxy.shared("scale")
function on_get(req)
  if req.path == "/wait" then
    local n = tonumber(req.query)
    if d:incr("in", 1, 0) >= n then d:set("go", true) end
    local naps = 0
    while not d:get("go") do
      proxy.sleep(0.5)
      naps = naps + 1
    end
    return 200, "woke " .. naps .. "\\n"
  end
end
'''

# Descriptors: a waiting request holds one in the proxy (its client) and
# one here. The proxy warns at start-up when its limit cannot hold 6 per
# connection (client, backend, two splice pipes) for all of
# --max-connections (10,000), but does not cap: 10,000 that wait fit in a
# limit of 20,000. This process needs as many as the requests, plus spare.


def request(path):
    return ("GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path).encode()


def test_ten_thousand_requests_wait_on_one_worker():
    n = many.fit(10000, spare=512)
    assert n >= 5000, "only %d client sockets fit in this process's descriptor limit" % n
    with lp.Proxy(BARRIER, workers=1) as p:
        t0 = time.monotonic()
        with many.Clients(p.port, n, request("/wait?%d" % n), connect_timeout=10.0) as c:
            opened = time.monotonic() - t0
            done = c.collect(timeout=15.0)
            took = time.monotonic() - t0
            assert not c.errors, list(c.errors.items())[:5]
        statuses = [s for s, _ in done.values()]
        assert len(done) == n and statuses.count(200) == n, \
            "%d of %d answered (%d with 200) in %.1fs (connects took %.1fs)" % (
                len(done), n, statuses.count(200), took, opened)
        assert all(b.startswith(b"woke ") for _, b in done.values())
        # The first ones came in before the last: they napped, and woke.
        assert max(int(b.split()[1]) for _, b in done.values()) >= 1
        assert len(p.worker_pids()) == 1 and p.alive()
        # The worker is its usual self afterwards.
        lp.expect(lp.get(p.port, "/wait?1"), 200)


GONE = '''
local d = proxy.shared("gone")
function on_get(req)
  if req.path == "/sleep" then
    d:incr("in", 1, 0)
    while not d:get("go") do proxy.sleep(0.05) end
    d:set("after:" .. req.query, true)   -- the side effect
    d:incr("after", 1, 0)
    return 200, "slept\\n"
  end
  if req.path == "/go" then d:set("go", true) return 200, "go\\n" end
  if req.path == "/tick" then
    -- After a sleep longer than the barrier's: every sleeper that would
    -- wake for "go" has done so (timers fire in order of their deadline).
    proxy.sleep(0.2)
    return 200, tostring(d:get("after") or 0)
  end
  if req.path == "/get" then return 200, tostring(d:get(req.query)) end
end
'''


def test_clients_that_go_away_while_their_requests_wait():
    n = 200
    with lp.Proxy(GONE, workers=1) as p:
        worker = p.wait_workers(1)[0]
        fds_before = len(os.listdir("/proc/%d/fd" % worker))
        with many.Clients(p.port, n, lambda i: request("/sleep?%d" % i)) as c:
            lp.wait_until(lambda: lp.get(p.port, "/get?in").body == str(n).encode(),
                          what="%d requests waiting" % n)
            # Half go away: even ones with a FIN, every fourth with an RST.
            c.poll(0)
            gone = [i for i in range(n) if i % 2 == 0]
            for i in gone:
                assert c.is_open(i), "request %d was answered before its client left" % i
                c.close(i, reset=(i % 4 == 0))
            # The worker notices: the connections of the gone are closed.
            lp.wait_until(lambda: len(os.listdir("/proc/%d/fd" % worker)) <= fds_before + n - len(gone),
                          what="the worker to close the connections of clients that left")
            lp.expect(lp.get(p.port, "/go"), 200)
            done = c.collect(timeout=5.0)
            assert not c.errors, list(c.errors.items())[:5]
        assert sorted(done) == [i for i in range(n) if i not in gone], sorted(done)
        assert all(s == 200 for s, _ in done.values()), done
        # Every sleeper that was still there has written; the gone have not.
        lp.expect(lp.get(p.port, "/tick"), 200, str(n - len(gone)).encode())
        for i in gone:
            lp.expect(lp.get(p.port, "/get?after:%d" % i), 200, b"nil",
                      "the request of a client that left went on after its wait")
        lp.expect(lp.get(p.port, "/get?after:1"), 200, b"true")
        assert p.alive()


RELOAD = '''
local d = proxy.shared("reload")
local VERSION = "%s"
function on_get(req)
  if req.path == "/wait" then
    d:incr("in", 1, 0)
    while not d:get("go") do proxy.sleep(0.1) end
    return 200, VERSION .. " " .. proxy.generation .. "\\n"
  end
  if req.path == "/go" then d:set("go", true) return 200, "go\\n" end
  if req.path == "/get" then return 200, tostring(d:get(req.query)) end
  return 200, VERSION .. "\\n"
end
'''


def test_reload_while_a_thousand_requests_wait():
    n = 1000
    with lp.Proxy(RELOAD % "v1", workers=1) as p:
        with many.Clients(p.port, n, request("/wait")) as c:
            lp.wait_until(lambda: lp.get(p.port, "/get?in").body == str(n).encode(),
                          what="%d requests waiting" % n)
            with open(p.script_path, "w") as f:
                f.write(RELOAD % "v2")
            p.send_signal(signal.SIGHUP)
            p.wait_stderr("script generation 1 loaded", timeout=5.0)
            lp.wait_until(lambda: lp.get(p.port, "/").body == b"v2\n", what="the new script to serve")
            # Nothing of the waiting was lost, and the old generation lives.
            assert c.poll(0) == n, "requests ended at the reload"
            assert "script generation 0 closed" not in p.stderr_text()
            lp.expect(lp.get(p.port, "/go"), 200, b"go\n")
            done = c.collect(timeout=10.0)
            assert not c.errors, list(c.errors.items())[:5]
        bodies = [b for s, b in done.values() if s == 200]
        assert len(done) == n and len(bodies) == n, \
            "%d of %d answered, %d with 200" % (len(done), n, len(bodies))
        assert set(bodies) == {b"v1 0\n"}, set(bodies)
        p.wait_stderr("script generation 0 closed", timeout=5.0)
        # New requests get the new script, waiting included.
        lp.expect(lp.get(p.port, "/wait"), 200, b"v2 1\n")
        assert p.alive()


TIME_LIMIT = '''
function on_get(req)
  if req.path == "/waits" then
    for i = 1, 3 do proxy.sleep(0.15) end
    return 200, "done\\n"
  end
  if req.path == "/busy" then
    proxy.sleep(0.15)
    while true do end
  end
end
'''


def test_time_limit_counts_the_running_not_the_waiting():
    with lp.Proxy(TIME_LIMIT, args=["--lua-time-limit", "200ms"]) as p:
        t0 = time.monotonic()
        lp.expect(lp.get(p.port, "/waits"), 200, b"done\n")
        assert time.monotonic() - t0 >= 0.45
        assert "time limit" not in p.stderr_text()
        t0 = time.monotonic()
        r = lp.get(p.port, "/busy")
        took = time.monotonic() - t0
        assert r.status == 500, r
        assert 0.35 <= took < 2.0, took
        p.wait_stderr("lua time limit exceeded")
        # The worker goes on.
        lp.expect(lp.get(p.port, "/waits"), 200, b"done\n")
