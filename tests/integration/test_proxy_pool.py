"""SPEC §5: the keep-alive backend pool (reuse, a backend-closed connection
noticed and dropped, the transparent retry of a request on a stale pooled
connection)."""

import json
import time

import lp
from origin import Origin, upstream_script


def _ok(r, what):
    assert r.status == 200, "%s: %r" % (what, r)
    return r


def test_pool_reuse_sequential():
    """300 sequential requests over 3 client connections, -w 1: the origin
    sees a handful of TCP connections."""
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p:
        conns = [lp.Conn(p.port) for _ in range(3)]
        try:
            for i in range(300):
                r = conns[i % 3].request("GET", "/echo?i=%d" % i)
                _ok(r, "request %d" % i)
                assert json.loads(r.body)["target"] == "/echo?i=%d" % i, "request %d got %r" % (i, r.body[:100])
        finally:
            for c in conns:
                c.close()
        assert o.requests == 300, "origin saw %d requests" % o.requests
        assert o.connections <= 4, "300 keep-alive requests used %d backend connections" % o.connections
        o.assert_clean()


def test_pool_reuse_after_idle():
    """Requests 300 ms apart, on a new client connection each, -w 1: the
    connection that waited in the pool is reused each time, not only one
    handed back a moment ago (a pool that drops or never offers a
    connection idle for a while opens one per request)."""
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p:
        for i in range(5):
            if i:
                time.sleep(0.3)
            _ok(lp.get(p.port, "/echo?idle=%d" % i), "request %d after 300 ms idle" % i)
        assert o.requests == 5, "origin saw %d requests" % o.requests
        assert o.connections == 1, \
            "5 requests 300 ms apart opened %d backend connections (1 pooled one should serve all)" % o.connections
        o.assert_clean()


def test_pool_reuse_mixed_framing():
    """Reused backend connections stay in step across every kind of framing
    (a proxy that gets one wrong leaves bytes that the strict origin sees
    as a malformed next request, or the client gets the wrong answer)."""
    seq = [
        ("GET", "/size/1000", None, 1000),
        ("HEAD", "/size/5000", None, 0),
        ("POST", "/echo", b"x" * 3000, None),
        ("GET", "/status/204", None, 0),
        ("GET", "/chunked/7000", None, 7000),
        ("GET", "/status/304", None, 0),
        ("HEAD", "/chunked/100", None, 0),
        ("PUT", "/echo", b"", None),
        ("GET", "/status/404", None, None),
        ("DELETE", "/echo", None, None),
    ]
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p, lp.Conn(p.port) as c:
        for rnd in range(6):
            for m, t, b, n in seq:
                r = c.request(m, t, body=b)
                want = 404 if t == "/status/404" else 204 if t == "/status/204" else \
                    304 if t == "/status/304" else 200
                assert r.status == want, "round %d %s %s: %r" % (rnd, m, t, r)
                if n is not None:
                    assert len(r.body) == n, "round %d %s %s: %d body bytes" % (rnd, m, t, len(r.body))
                if t == "/echo":
                    d = json.loads(r.body)
                    assert d["method"] == m and d["body_len"] == len(b or b""), d
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"7\r\nchunked\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["body"] == "chunked", r
        r = c.request("GET", "/echo?last")
        assert json.loads(r.body)["target"] == "/echo?last", r
        o.assert_clean()
        assert o.connections <= 3, "%d requests used %d backend connections" % (o.requests, o.connections)


def test_backend_closes_after_each_response():
    """The origin closes every connection right after its response (without
    saying Connection: close): every GET still succeeds."""
    with Origin(close_after_response=True) as o, lp.Proxy(upstream_script([o]), workers=1) as p, \
            lp.Conn(p.port) as c:
        bad = []
        for i in range(60):
            r = c.request("GET", "/echo?i=%d" % i)
            if r.status != 200:
                bad.append((i, r.status, r.body[:80]))
        assert not bad, "%d of 60 GETs failed when the origin closes after each response: %r" % (len(bad), bad[:5])
        assert o.requests == 60, o.requests
        o.assert_clean()


def test_stale_pooled_connection_retried():
    """The origin answers only the first request of each connection and
    closes the connection, without a response byte, on the next one (a
    pooled connection that went stale): the GET is retried on a fresh
    connection, invisibly to the client."""
    with Origin(drop_reused=True) as o, lp.Proxy(upstream_script([o]), workers=1) as p, \
            lp.Conn(p.port) as c:
        bad = []
        for i in range(40):
            r = c.request("GET", "/echo?i=%d" % i)
            if r.status != 200:
                bad.append((i, r.status, r.body[:80]))
        assert not bad, "%d of 40 GETs failed on stale pooled connections: %r" % (len(bad), bad[:5])
        for i in range(10):
            r = c.request("HEAD", "/echo?h=%d" % i)
            assert r.status == 200, "HEAD %d: %r" % (i, r)
        assert o.dropped >= 1, ("the proxy never reused a backend connection (origin: %d connections, "
                                "%d requests), so the retry was not exercised" % (o.connections, o.requests))
        o.assert_clean()


def test_idle_backend_close_noticed():
    """The origin closes a connection idle for 100 ms; requests spaced
    250 ms apart all succeed (the closed pooled connection is dropped or
    the request retried)."""
    with Origin(idle_close_ms=100) as o, lp.Proxy(upstream_script([o]), workers=1) as p, \
            lp.Conn(p.port) as c:
        for i in range(6):
            r = c.request("GET", "/echo?i=%d" % i)
            assert r.status == 200, "request %d after the backend closed its idle connection: %r" % (i, r)
            # The next request comes only once the origin has closed this one.
            lp.wait_until(lambda: o.open_connections == 0, what="the origin to close its idle connection")
        assert o.connections == 6, "6 requests, each after an idle close, used %d connections" % o.connections
        o.assert_clean()


def test_keepalive_caps_idle_connections():
    """keepalive = 2: after 8 concurrent requests, at most 2 idle backend
    connections stay open (per worker; -w 1)."""
    import threading
    with Origin() as o, lp.Proxy(upstream_script([o], "keepalive = 2"), workers=1) as p:
        res = []

        def one(i):
            try:
                res.append(lp.get(p.port, "/slow/300?i=%d" % i, timeout=10).status)
            except Exception as e:
                res.append(repr(e))
        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
        assert res == [200] * 8, res
        assert o.connections >= 8, "8 concurrent requests over %d backend connections" % o.connections
        # Exactly 2 stay: more breaks the cap, fewer means nothing was pooled.
        lp.wait_until(lambda: o.open_connections == 2, 3,
                      what="keepalive = 2: exactly 2 idle backend connections open")
        o.assert_clean()


def test_concurrent_mixed_load_no_mixups():
    """16 clients x 40 mixed requests through -w 2 and a shared pool: every
    response belongs to its request, and the origin sees only well-formed
    requests."""
    import random
    import threading
    from origin import pattern_bytes
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=2) as p:
        errors = []

        def client(k):
            rnd = random.Random(k)
            try:
                with lp.Conn(p.port, timeout=10) as c:
                    for i in range(40):
                        kind = rnd.randrange(4)
                        tag = "c%d-%d" % (k, i)
                        if kind == 0:
                            r = c.request("GET", "/echo?" + tag)
                            assert r.status == 200 and json.loads(r.body)["target"] == "/echo?" + tag, (tag, r)
                        elif kind == 1:
                            body = (tag * rnd.randint(1, 3000)).encode()
                            r = c.request("POST", "/echo?" + tag, body=body)
                            d = json.loads(r.body)
                            assert d["target"] == "/echo?" + tag and d["body"] == body.decode(), (tag, r.status)
                        elif kind == 2:
                            n = rnd.randint(0, 200000)
                            r = c.request("GET", "/size/%d?%s" % (n, tag))
                            assert r.status == 200 and r.body == pattern_bytes(n), (tag, n, len(r.body))
                        else:
                            n = rnd.randint(0, 100000)
                            r = c.request("GET", "/chunked/%d?%s" % (n, tag))
                            assert r.status == 200 and r.body == pattern_bytes(n), (tag, n, len(r.body))
            except Exception as e:
                errors.append("client %d: %r" % (k, e))
        ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(16)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(40)
        assert not errors, "%d clients failed: %s" % (len(errors), errors[:3])
        assert o.requests == 640, o.requests
        o.assert_clean()
