"""SPEC §5: a request reaches the backend at most once unless replaying it
is safe, and bytes a pooled connection received while idle reach nobody.

- A pooled connection that the backend closes after reading a request,
  without answering: an idempotent request is retried once on a fresh
  connection; any other method is never written to a second connection
  once a byte of it went to the first, and gets 502.
- A backend that sends bytes on an idle pooled connection (a second
  response, garbage): the connection is dropped before reuse, whatever its
  idle time, even when those bytes arrived in the same loop turn as the
  request that would reuse it (the worker was busy in Lua meanwhile).
- An early answer (413 before the upload was read) says Connection: close
  to the client, since the connection ends after it."""

import socket
import threading
import time

import lp
from strict_origin import StrictOrigin, default_answer


def close_second(methods):
    """The origin answers the first request of each connection; a second one
    of `methods` is read whole and the connection closed without answer."""
    def respond(req):
        if req.seq == 1 and req.method in methods:
            return ["close"]
        return default_answer(req)
    return respond


def upstream(o, opts=""):
    return ('local up = proxy.upstream("backend", { "%s" }, { %s })\n'
            'function route(req) return up end\n' % (o.addr, opts))


def saw(o, method, target):
    return [r for r in o.requests if r.method == method and r.target == target]


def test_post_is_not_replayed_after_a_pooled_connection_closes():
    with StrictOrigin(respond=close_second({"POST", "PATCH"})) as o, \
            lp.Proxy(upstream(o, "retries = 2"), workers=1) as p, lp.Conn(p.port) as c:
        for method in ("POST", "PATCH"):
            r = c.request("GET", "/warm-" + method)
            assert r.status == 200, "warm-up request: %r" % r
            # head and body in one send: the body arrives with the head
            r = c.request(method, "/once", body=b"hello")
            assert r.status == 502, "%s on a pooled connection closed without answer: expected 502, got %r" \
                % (method, r)
            o.wait_quiet()
            seen = saw(o, method, "/once")
            assert len(seen) == 1, "the backend saw the %s %d times: %r" % (method, len(seen), seen)
            assert seen[0].body == b"hello", seen
        o.assert_clean()


def test_idempotent_requests_are_retried_once_on_a_fresh_connection():
    with StrictOrigin(respond=close_second({"GET", "PUT", "DELETE"})) as o, \
            lp.Proxy(upstream(o, "retries = 0"), workers=1) as p, lp.Conn(p.port) as c:
        for method, body in (("GET", None), ("PUT", b"put-body"), ("DELETE", None)):
            r = c.request("GET", "/warm-" + method)
            assert r.status == 200, "warm-up request: %r" % r
            r = c.request(method, "/again", body=body)
            assert r.status == 200, "%s retried on a fresh connection: expected 200, got %r" % (method, r)
            o.wait_quiet()
            seen = saw(o, method, "/again")
            assert len(seen) == 2, "an idempotent %s is replayed once: the backend saw it %d times" \
                % (method, len(seen))
            assert seen[1].seq == 0 and seen[0].conn_id != seen[1].conn_id, \
                "the replay went on a fresh connection: %r" % seen
            assert all(s.body == (body or b"") for s in seen), seen
            o.requests.clear()
        o.assert_clean()


STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Stray: 1\r\n\r\nSTRAY"

SPIN = '''
function route(req)
  if req.path == "/spin" then
    proxy.log("info", "spin begins")
    local t = os.clock()
    while os.clock() - t < 0.8 do end
    return 200, "spun\\n"
  end
  return up
end
'''


def test_stray_bytes_on_an_idle_pooled_connection_reach_nobody():
    """The worker is busy in Lua (0.8 s) while the backend sends a stray
    response on the connection it just pooled; the pipelined request after
    the spin, handled in that same loop turn, must not get those bytes."""
    go = threading.Event()

    def respond(req):
        if req.target == "/first":
            return default_answer(req) + [("wait", go), STRAY]
        return default_answer(req)

    script = ('local up = proxy.upstream("backend", { "%s" }, { })\n' % "{addr}") + SPIN
    with StrictOrigin(respond=respond) as o, \
            lp.Proxy(script.replace("{addr}", o.addr), args=["--lua-time-limit", "10s"], workers=1) as p, \
            lp.Conn(p.port, timeout=20) as c:
        r = c.request("GET", "/first")
        assert r.status == 200 and r.header("x-strict-token"), r
        c.send(lp.build_request("GET", "/spin") + lp.build_request("GET", "/second"))
        # the stray bytes come while Lua runs
        p.wait_stderr("spin begins", timeout=10)
        go.set()
        spun = c.read_response()
        assert spun.status == 200 and spun.body == b"spun\n", spun
        second = c.read_response()
        assert second.header("x-stray") is None and second.body != b"STRAY", \
            "stray bytes of an idle pooled connection were the answer to the next request: %r" % second
        assert second.status == 200 and b"target=/second" in second.body, second
        o.wait_quiet()
        first_conn = saw(o, "GET", "/first")[0].conn_id
        seconds = saw(o, "GET", "/second")
        assert len(seconds) == 1 and seconds[0].conn_id != first_conn, \
            "the connection that sent stray bytes was reused: %r" % seconds
        o.assert_clean()


def test_early_answer_says_connection_close():
    """The backend answers 413 after the head, while the client is still
    sending a large body: the client is told the connection ends."""
    def early(req):
        if req.target == "/upload":
            return [b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo big\r\n", "close"]
        return None

    with StrictOrigin(early=early) as o, lp.Proxy(upstream(o), workers=1) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            total = 8 << 20
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % total
                      + b"a" * 65536)
            # Keep sending until the answer arrives (or the proxy stops
            # reading), as a real uploader would.
            s.setblocking(False)
            got = b""
            deadline = time.monotonic() + 10
            sent = 65536
            while b"\r\n\r\n" not in got and time.monotonic() < deadline:
                try:
                    if sent < total:
                        sent += s.send(b"a" * 65536)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
                except BlockingIOError:
                    time.sleep(0.005)
                except ConnectionResetError:
                    break
            assert sent < total, "the whole upload went through before the early answer"
            head = got.split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 413"), "expected the backend's 413, got %r" % got[:300]
            assert b"\r\nconnection: close" in head, \
                "an early answer (the upload not read to its end) without Connection: close: %r" % head
        finally:
            s.close()
