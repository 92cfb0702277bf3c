"""SPEC §5: failures: 502 (connect refused, all tried), retries to the next
server, 504 (read_timeout), 503 (every server marked down), passive health
(max_fails / fail_timeout) taking a server out and bringing it back."""

import json
import socket
import time

import lp
from origin import Origin, dead_port, upstream_script


def test_502_when_the_only_server_refuses():
    port = dead_port()
    with lp.Proxy(upstream_script([port], "retries = 1")) as p:
        t0 = time.monotonic()
        r = lp.get(p.port, "/x", timeout=10)
        assert r.status == 502, "connect refused: expected 502, got %r" % r
        assert time.monotonic() - t0 < 3, "502 took %.1fs" % (time.monotonic() - t0)
        assert int(r.header("content-length", "-1")) == len(r.body), r


def test_retries_move_to_the_next_server():
    port = dead_port()
    with Origin(name="live") as o, \
            lp.Proxy(upstream_script([port, o], "retries = 1, max_fails = 1000"), workers=1) as p, \
            lp.Conn(p.port) as c:
        for i in range(20):
            r = c.request("GET", "/echo?i=%d" % i)
            assert r.status == 200 and r.header("x-origin") == "live", \
                "request %d with retries = 1 (one dead, one live server): %r" % (i, r)
        assert o.requests == 20
        o.assert_clean()


# connect_timeout and read_timeout differ sixfold in these tests, and the
# bounds on when the answer comes sit between them: a timer armed with the
# other value fails the test (generous for a slow machine, not tenfold).
SHORT, LONG = 0.3, 2.0
TIMEOUTS_504 = 'read_timeout = "300ms", connect_timeout = "2s"'


def _timed(what, fn, short=SHORT, long=LONG):
    t0 = time.monotonic()
    r = fn()
    dt = time.monotonic() - t0
    assert short * 0.9 <= dt < (short + long) / 2, \
        "%s after %.2fs: the %.1fs timeout should end it (the other one is %.1fs)" % (what, dt, short, long)
    return r


def test_504_when_the_backend_does_not_answer():
    with Origin() as o, lp.Proxy(upstream_script([o], TIMEOUTS_504), workers=1) as p:
        # a fresh backend connection: connect_timeout, then read_timeout
        r = _timed("504 on a new connection", lambda: lp.get(p.port, "/hang", timeout=10))
        assert r.status == 504, "backend silent past read_timeout: expected 504, got %r" % r
        assert o.requests == 1, "origin saw %d requests for one /hang" % o.requests
        # a pooled one: read_timeout only
        with lp.Conn(p.port, timeout=10) as c:
            r = c.request("GET", "/echo?pooled")
            assert r.status == 200, r
            r = _timed("504 on a pooled connection", lambda: c.request("GET", "/hang"))
            assert r.status == 504, "backend silent past read_timeout: expected 504, got %r" % r
        assert o.connections == 2, "the /hang after /echo did not reuse its connection: %d" % o.connections
        # a response slower than nothing but within read_timeout is fine
        r = lp.get(p.port, "/slow/100", timeout=10)
        assert r.status == 200, r
        o.assert_clean()


def test_503_when_every_server_is_down():
    port = dead_port()
    script = upstream_script([port], 'max_fails = 1, fail_timeout = "5s", retries = 0')
    with lp.Proxy(script, workers=1) as p, lp.Conn(p.port) as c:
        first = c.request("GET", "/a")
        assert first.status == 502, "first request to a dead server: expected 502, got %r" % first
        for i in range(3):
            r = c.request("GET", "/b%d" % i)
            assert r.status == 503, "server marked down after max_fails = 1: expected 503, got %r" % r


def test_passive_health_takes_a_server_out_and_back():
    port = dead_port()
    b = Origin(name="b").start()
    a = None
    try:
        script = upstream_script([port, b], 'max_fails = 1, fail_timeout = "1s", retries = 0')
        with lp.Proxy(script, workers=1) as p, lp.Conn(p.port) as c:
            statuses = []
            for i in range(20):
                r = c.request("GET", "/echo?i=%d" % i)
                statuses.append((r.status, r.header("x-origin")))
            # retries = 0: the one request sent to the dead server fails (502),
            # and with max_fails = 1 no other goes there.
            bad = [s for s in statuses if s[0] != 200]
            assert [s[0] for s in bad] == [502], \
                "expected exactly one 502 before the dead server was taken out: %r" % statuses
            assert all(s == (200, "b") for s in statuses[2:]), statuses
            # bring the dead server to life; after fail_timeout it gets traffic again
            a = Origin(name="a", port=port).start()
            time.sleep(1.3)
            names = []
            for i in range(20):
                r = c.request("GET", "/echo?j=%d" % i)
                assert r.status == 200, "after the server came back: %r" % r
                names.append(r.header("x-origin"))
            assert "a" in names, "server back after fail_timeout = 1s got no traffic: %r" % names
        b.assert_clean()
        a.assert_clean()
    finally:
        b.stop()
        if a:
            a.stop()


def test_504_backend_connection_not_reused():
    """After a 504 the late response must not reach a later request."""
    with Origin() as o, lp.Proxy(upstream_script([o], 'read_timeout = "300ms"'), workers=1) as p:
        r = lp.get(p.port, "/slow/700", timeout=10)
        assert r.status == 504, "expected 504, got %r" % r
        with lp.Conn(p.port) as c:
            r = c.request("GET", "/echo?after")
            assert r.status == 200 and json.loads(r.body)["target"] == "/echo?after", \
                "request after a 504 got %r" % r
            # The late answer to /slow/700 has been written to its connection.
            lp.wait_until(lambda: o.in_flight == 0, what="the origin to answer /slow/700 late")
            r = c.request("GET", "/echo?later")
            assert r.status == 200 and json.loads(r.body)["target"] == "/echo?later", \
                "request after the late response got %r" % r
        o.assert_clean()


def test_connect_timeout():
    """A server whose accept queue is full drops SYNs: connect_timeout ends
    the attempt (502/504, not a hang); with retries = 1 the live server
    answers."""
    full = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    port = full.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        opts = 'connect_timeout = "300ms", read_timeout = "2s", retries = 0'
        with lp.Proxy(upstream_script([port], opts)) as p:
            r = _timed("connect_timeout", lambda: lp.get(p.port, "/x", timeout=10))
            # SPEC §5: a connect that fails (here: times out) with no server
            # left to try is a 502; 504 is for a backend that does not answer.
            assert r.status == 502, "connect timeout: expected 502, got %r" % r
        with Origin(name="live") as o, \
                lp.Proxy(upstream_script([port, o], 'connect_timeout = "300ms", retries = 1, max_fails = 1000'),
                         workers=1) as p, lp.Conn(p.port) as c:
            for i in range(4):
                r = c.request("GET", "/echo?i=%d" % i, timeout=10)
                assert r.status == 200 and r.header("x-origin") == "live", \
                    "request %d (one server times out on connect, retries = 1): %r" % (i, r)
    finally:
        filler.close()
        full.close()
