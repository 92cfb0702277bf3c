"""SPEC §4/§5 corner cases of proxying: HTTP/1.0 clients, Connection: close
from the client, refused upgrades, large or trickled heads and bodies,
broken backends, clients that go away mid-request (the pool must not be
poisoned), 100-continue passed through, mixed local/proxied pipelining."""

import json
import socket
import time

import lp
from origin import Origin, pattern_bytes, pattern_sha256, upstream_script


def _echo_target(r):
    assert r.status == 200, r
    return json.loads(r.body)["target"]


def test_http10_client_never_gets_chunked():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        raw = lp.send_raw_closed(p.port, "GET /chunked/5000 HTTP/1.0\r\nHost: x\r\n\r\n", timeout=5)
        head, _, _ = raw.partition(b"\r\n\r\n")
        assert b"transfer-encoding" not in head.lower(), \
            "chunked response sent to an HTTP/1.0 client: %r" % head
        rs = lp.parse_responses(raw)
        assert len(rs) == 1 and rs[0].status == 200, raw[:300]
        assert rs[0].body == pattern_bytes(5000), "HTTP/1.0 client got %d body bytes" % len(rs[0].body)
        o.assert_clean()


def test_client_connection_close_honoured_backend_kept():
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p:
        for i in range(5):
            t0 = time.monotonic()
            raw = lp.send_raw_closed(p.port, "GET /echo?i=%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % i,
                              timeout=3)
            dt = time.monotonic() - t0
            rs = lp.parse_responses(raw)
            assert len(rs) == 1 and _echo_target(rs[0]) == "/echo?i=%d" % i, raw[:300]
            assert dt < 2, "client sent Connection: close; the proxy did not close (%.1fs)" % dt
            assert "close" not in o.last().tokens("connection"), \
                "the client's Connection: close was forwarded: %r" % o.last().headers
        assert o.connections == 1, "5 requests with client Connection: close used %d backend " \
                                   "connections (the backend connection should be pooled)" % o.connections
        o.assert_clean()


def test_upgrade_refused_by_backend_continues_as_http():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/echo?up", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")])
        assert _echo_target(r) == "/echo?up"
        r = c.request("GET", "/echo?next")
        assert _echo_target(r) == "/echo?next", "after a refused upgrade: %r" % r
        o.assert_clean()


def test_large_response_head():
    """A 12 KB response head (60 headers of 200 bytes) arrives in more than
    one read and passes on whole."""
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/many-headers/60?len=200")
        assert r.status == 200, "backend response with a 12 KB head: %r" % r
        for i in range(60):
            assert r.header("x-h-%d" % i) == "v" * 200, "response header X-H-%d lost (of 60, ~12 KB head)" % i
        json.loads(r.body)
        o.assert_clean()


def test_trickled_backend_response():
    """The backend writes its response a few bytes at a time."""
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port, timeout=10) as c:
        r = c.request("GET", "/echo?t", headers={"X-Origin-Trickle": "7"})
        assert _echo_target(r) == "/echo?t"
        r = c.request("GET", "/chunked/700", headers={"X-Origin-Trickle": "3"})
        assert r.status == 200 and r.body == pattern_bytes(700), r
        r = c.request("GET", "/size/3000", headers={"X-Origin-Trickle": "100"})
        assert r.status == 200 and r.body == pattern_bytes(3000), r
        assert _echo_target(c.request("GET", "/echo?after")) == "/echo?after"
        o.assert_clean()


def test_trickled_request_bodies():
    """The client sends head and body in small pieces (Content-Length and
    chunked): the backend gets them whole and in step."""
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port, timeout=10) as c:
        n = 200000
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n
        body = pattern_bytes(n)
        # Each piece is read by the worker before the next is sent, so that
        # the pieces really arrive in separate reads.
        c.send(head[:20])
        lp.wait_server_read(p.port, c)
        c.send(head[20:] + body[:5])
        for i in range(5, n, 10000):
            lp.wait_server_read(p.port, c)
            c.send(body[i:i + 10000])
        r = c.read_response()
        d = json.loads(r.body)
        assert d["len"] == n and d["sha256"] == pattern_sha256(n), "trickled upload arrived as %r" % d
        wire = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n1;x=y\r\n \r\na\r\n0123456789\r\n0\r\n\r\n")
        for i in range(0, len(wire), 3):
            c.send(wire[i:i + 3])
            lp.wait_server_read(p.port, c)
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["body"] == "hello 0123456789", r
        assert _echo_target(c.request("GET", "/echo?after")) == "/echo?after"
        o.assert_clean()


def test_truncated_backend_response_closes_client():
    """The backend promises 200000 bytes, sends half and closes: the client
    must not hang, and must not take what follows for a complete response."""
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port, timeout=10) as c:
        c.send(lp.build_request("GET", "/truncate/200000"))
        t0 = time.monotonic()
        data = c.read_until_close(timeout=6)
        dt = time.monotonic() - t0
        assert c.eof, "backend closed mid-body; the client connection stayed open for %.1fs (%d bytes)" % (
            dt, len(data))
        # The head went on before the backend broke: the client gets it, the
        # half of the body that came, and the close (a 502 is too late now).
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"\r\ncontent-length: 200000" in head.lower(), \
            "expected the backend's 200 head with its Content-Length, got %r" % head[:300]
        assert body == pattern_bytes(100000), "expected the 100000 bytes the backend sent, got %d" % len(body)


def test_garbage_from_backend_502():
    with Origin() as o, lp.Proxy(upstream_script([o], "retries = 0")) as p:
        r = lp.get(p.port, "/garbage", timeout=10)
        assert r.status == 502, "backend answered garbage: expected 502, got %r" % r


def test_client_abort_mid_upload_does_not_poison_pool():
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n" + pattern_bytes(100000))
        # The upload is under way at the backend when the client goes.
        lp.wait_until(lambda: o.requests == 1 and o.last().body_len > 0, what="the upload under way at the origin")
        s.close()
        # Half a body went to that backend connection: the proxy must close it.
        lp.wait_until(lambda: o.open_connections == 0, what="the backend connection of the aborted upload closed")
        with lp.Conn(p.port) as c:
            for i in range(5):
                r = c.request("GET", "/echo?b=%d" % i)
                assert _echo_target(r) == "/echo?b=%d" % i, "after an aborted upload: %r" % r
        others = [e for e in o.errors if "bytes missing" not in e]
        assert not others, "origin received malformed HTTP after an aborted upload: %r" % others


def test_client_abort_while_waiting_does_not_poison_pool():
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"GET /slow/400?a HTTP/1.1\r\nHost: x\r\n\r\n")
        o.wait_requests(1)      # the backend has it when the client goes
        s.close()
        with lp.Conn(p.port) as c:
            assert _echo_target(c.request("GET", "/echo?b1")) == "/echo?b1", "got another request's response"
            # The abandoned request's late answer has been written to the proxy.
            lp.wait_until(lambda: o.in_flight == 0, what="the origin to answer the abandoned /slow/400")
            assert _echo_target(c.request("GET", "/echo?b2")) == "/echo?b2", "got another request's response"
            assert _echo_target(c.request("GET", "/echo?b3")) == "/echo?b3"
        o.assert_clean()


def test_expect_100_continue_passed_through():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        try:
            r = c.read_response(timeout=3)
        except socket.timeout:
            raise AssertionError("Expect: 100-continue to a proxied route: no 100 Continue within 3 s "
                                 "(the origin saw the request %s and sent %d '100 Continue')"
                                 % ("with Expect" if o.requests and o.last().has("expect") else
                                    "without Expect" if o.requests else "- not at all", o.continues))
        assert r.status == 100, "Expect: 100-continue to a proxied route: expected 100 first, got %r" % r
        c.send(b"hello world")
        r = c.read_response(timeout=5)
        while r.status == 100:
            r = c.read_response(timeout=5)
        assert r.status == 200 and json.loads(r.body)["body"] == "hello world", r
        assert _echo_target(c.request("GET", "/echo?after")) == "/echo?after"
        o.assert_clean()


MIXED = r'''
function route(req)
  if req.path:find("^/p/") then return up end
  if req.path == "/early" then return 202, "early " .. req.path end
end
function on_get(req) return 200, "local " .. req.path end
'''


def test_pipelined_local_and_proxied_in_order():
    with Origin() as o, lp.Proxy(upstream_script([o], extra=MIXED)) as p, lp.Conn(p.port, timeout=10) as c:
        c.send(lp.build_request("GET", "/p/1", headers={"X-Origin-Path": "/slow/200"})
               + lp.build_request("GET", "/local1")
               + lp.build_request("GET", "/p/2", headers={"X-Origin-Path": "/size/5000"})
               + lp.build_request("GET", "/early")
               + lp.build_request("GET", "/p/3"))
        r1, r2, r3, r4, r5 = [c.read_response() for _ in range(5)]
        assert _echo_target(r1) == "/p/1", r1
        assert r2.status == 200 and r2.body == b"local /local1", r2
        assert r3.status == 200 and r3.body == pattern_bytes(5000), r3
        assert r4.status == 202 and r4.body == b"early /early", r4
        assert _echo_target(r5) == "/p/3", r5
        o.assert_clean()


def test_conflicting_content_length_from_backend_502():
    """A backend response with two different Content-Lengths is not passed
    on as if one of them were right (response smuggling)."""
    with Origin() as o, lp.Proxy(upstream_script([o], "retries = 0")) as p:
        r = lp.get(p.port, "/headers?Content-Length=3", timeout=10)
        assert r.status == 502, "backend sent Content-Length: 3 and another Content-Length: " \
                                "expected 502, got %r" % r


def test_large_request_head_forwarded():
    big = "b" * 10000
    target = "/echo?" + "q" * 3000
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        r = c.request("GET", target, headers={"X-Big": big, "Cookie": "c=" + "k" * 1500})
        assert _echo_target(r) == target, "long target forwarded wrong"
        rec = o.last()
        assert rec.header("x-big") == big, "10 KB request header forwarded as %d bytes" % len(rec.header("x-big") or "")
        assert rec.header("cookie") == "c=" + "k" * 1500
        o.assert_clean()
