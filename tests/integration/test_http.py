"""SPEC §4: HTTP/1.x behaviour: rejections, keep-alive, pipelining,
100-continue, timeouts, and the headers of local responses."""

import email.utils
import os
import select
import time

import lp

ECHO = r'''
function on_get(req)
  return 200, "GET " .. req.path, { ["content-type"] = "text/plain" }
end
function on_post(req)
  return 200, "POST " .. req.path .. " " .. req.body
end
'''


def assert_rejected(conn, status):
    """The rejection contract: status, a short body with a correct
    Content-Length, Connection: close, then the server closes."""
    r = conn.read_response(timeout=5)
    assert r.status == status, "expected %d, got %r" % (status, r)
    assert "content-length" in r.headers, "no Content-Length: %r" % r
    assert int(r.headers["content-length"]) == len(r.body), r
    assert 0 < len(r.body) <= 512, "body should be short and non-empty: %r" % r.body
    assert "close" in r.connection_tokens(), "no Connection: close: %r" % r
    assert conn.closed_by_peer(timeout=3), "server kept the connection open after %d" % status
    # A reset may destroy the answer before a client reads it (RFC 9112 §9.6).
    assert not conn.reset, "the server reset the connection after %d instead of closing it" % status
    return r


def rejection(raw, status, args=()):
    with lp.Proxy(ECHO, args=args) as p, lp.Conn(p.port) as c:
        c.send(raw)
        return assert_rejected(c, status)


def test_malformed_request_line_400():
    rejection(b"THIS IS NOT HTTP\r\n\r\n", 400)


def test_malformed_header_line_400():
    rejection(b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400)


def test_content_length_and_transfer_encoding_400():
    rejection(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 400)


def test_conflicting_content_lengths_400():
    rejection(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
              b"hello!", 400)


def test_transfer_encoding_gzip_501():
    rejection(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxxxx", 501)


def test_head_too_large_431():
    big = b"X-Big: " + b"a" * 2048 + b"\r\n"
    rejection(b"GET / HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n", 431, args=["--max-header-size", "1k"])


def test_head_within_limit_accepted():
    with lp.Proxy(ECHO, args=["--max-header-size", "1k"]) as p:
        r = lp.get(p.port, "/ok", headers={"X-Pad": "a" * 600})
        assert r.status == 200, r


def test_body_too_large_413():
    rejection(lp.build_request("POST", "/big", b"b" * 2048), 413, args=["--max-body-size", "1k"])


def test_chunked_body_too_large_413():
    body = b"".join(b"200\r\n" + b"c" * 512 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
    rejection(lp.build_request("POST", "/big", body, headers={"Transfer-Encoding": "chunked"}),
              413, args=["--max-body-size", "1k"])


def test_body_at_limit_accepted():
    with lp.Proxy(ECHO, args=["--max-body-size", "1k"]) as p:
        r = lp.post(p.port, "/edge", b"e" * 1024)
        assert r.status == 200 and r.body == b"POST /edge " + b"e" * 1024, r


def test_header_timeout_408():
    with lp.Proxy(ECHO, args=["--header-timeout", "300ms"]) as p, lp.Conn(p.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slo")
        r = assert_rejected(c, 408)
        dt = time.monotonic() - t0
        assert 0.25 <= dt < 2.5, "408 after %.2fs with --header-timeout 300ms" % dt


def test_header_timeout_covers_slow_headers():
    # Bytes keep trickling in, but the head is not complete in time.
    # The drip goes on for 2 s: a timer re-armed by each byte would never
    # fire while it lasts, so the 408 must come while the client still sends.
    with lp.Proxy(ECHO, args=["--header-timeout", "300ms"]) as p, lp.Conn(p.port) as c:
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\n")
        answered = False
        for i in range(20):
            if select.select([c.sock], [], [], 0.1)[0]:
                answered = True     # the server has answered: stop before causing a reset
                break
            try:
                c.send(b"X-Drip-%d: y\r\n" % i)
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
        dt = time.monotonic() - t0
        assert answered, "no 408 while header bytes kept trickling in for %.1fs (--header-timeout 300ms)" % dt
        r = c.read_response(timeout=3)
        assert r.status == 408, r
        assert dt < 1.5, "408 came %.2fs after the head began (--header-timeout 300ms)" % dt


def test_chunked_request_body():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        c.send(b"POST /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"POST /ch hello world!", r


def test_keep_alive_two_requests():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        r1 = c.request("GET", "/one")
        assert r1.status == 200 and r1.body == b"GET /one", r1
        assert "close" not in r1.connection_tokens(), r1
        r2 = c.request("POST", "/two", b"body")
        assert r2.status == 200 and r2.body == b"POST /two body", r2
        assert not c.closed_by_peer(timeout=0.3), "HTTP/1.1 connection closed after the response"


def test_connection_close_honoured():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/bye", headers={"Connection": "close"})
        assert r.status == 200 and r.body == b"GET /bye", r
        assert c.closed_by_peer(timeout=2), "server kept the connection after Connection: close"


def test_http10_closes_by_default():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/old", version="1.0")
        assert r.status == 200 and r.body == b"GET /old", r
        assert r.version == "HTTP/1.1", "a server answers with its own version (RFC 9110 §6.2): %r" % r
        assert c.closed_by_peer(timeout=2), "HTTP/1.0 connection without keep-alive stayed open"


def test_http10_keep_alive():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/a", headers={"Connection": "keep-alive"}, version="1.0")
        assert r.status == 200 and r.body == b"GET /a", r
        assert "keep-alive" in r.connection_tokens(), \
            "HTTP/1.0 keep-alive response should say Connection: keep-alive: %r" % r
        assert not c.closed_by_peer(timeout=0.3), "HTTP/1.0 keep-alive connection was closed"
        r = c.request("GET", "/b", headers={"Connection": "keep-alive"}, version="1.0")
        assert r.status == 200 and r.body == b"GET /b", r


def test_pipelining_in_order():
    reqs = [("GET", "/p1", None), ("POST", "/p2", b"alpha"), ("GET", "/p3", None),
            ("POST", "/p4", b"b" * 3000), ("GET", "/p5", None), ("POST", "/p6", b"")]
    data = b"".join(lp.build_request(m, path, body) for m, path, body in reqs)
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        c.send(data)
        for m, path, body in reqs:
            r = c.read_response()
            want = ("%s %s" % (m, path)).encode() + (b" " + body if m == "POST" else b"")
            assert r.status == 200 and r.body == want, "for %s %s: %r" % (m, path, r)
        assert not c.closed_by_peer(timeout=0.2), "closed after pipelined requests"


def test_pipelining_with_close_at_the_end():
    data = (lp.build_request("GET", "/x") + lp.build_request("GET", "/y")
            + lp.build_request("GET", "/z", headers={"Connection": "close"}))
    with lp.Proxy(ECHO) as p:
        rs = lp.parse_responses(lp.send_raw_closed(p.port, data, timeout=3))
        assert [r.body for r in rs] == [b"GET /x", b"GET /y", b"GET /z"], rs


def test_expect_100_continue():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        c.send(b"POST /exp HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 100, "expected 100 Continue before sending the body, got %r" % r
        assert r.version == "HTTP/1.1", r
        c.send(b"hello")
        r = c.read_response(timeout=3)
        assert r.status == 200 and r.body == b"POST /exp hello", r


def test_expect_100_continue_then_keep_alive():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        c.send(b"POST /e1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
        lp.expect(c.read_response(timeout=3), 100)
        c.send(b"abc")
        lp.expect(c.read_response(), 200, b"POST /e1 abc")
        r = c.request("GET", "/after")
        assert r.status == 200 and r.body == b"GET /after", r


def test_expect_100_continue_rejected_when_too_large():
    # The body would be over the limit: answer 413 without asking for it.
    with lp.Proxy(ECHO, args=["--max-body-size", "1k"]) as p, lp.Conn(p.port) as c:
        c.send(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 413, "expected 413 instead of 100 for an oversized body: %r" % r


def test_idle_timeout_closes_keep_alive():
    with lp.Proxy(ECHO, args=["--idle-timeout", "300ms"]) as p, lp.Conn(p.port) as c:
        lp.expect(c.request("GET", "/"), 200)
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=3), "idle connection still open 3s after its last response"
        dt = time.monotonic() - t0
        assert 0.2 <= dt < 2.0, "closed after %.2fs with --idle-timeout 300ms" % dt


def test_idle_timeout_rearmed_by_requests():
    with lp.Proxy(ECHO, args=["--idle-timeout", "400ms"]) as p, lp.Conn(p.port) as c:
        for i in range(4):   # 4 x 0.2s: longer than one idle timeout in total
            lp.expect(c.request("GET", "/%d" % i), 200)
            time.sleep(0.2)
        lp.expect(c.request("GET", "/last"), 200)


def check_local_headers(r):
    assert r.headers.get("server") == "luaproxy", "Server header: %r" % r
    assert "date" in r.headers, "no Date: %r" % r
    d = email.utils.parsedate_to_datetime(r.headers["date"])
    assert abs(d.timestamp() - time.time()) < 5, "Date is off: %r" % r.headers["date"]
    assert r.headers["date"].endswith("GMT"), r.headers["date"]
    assert int(r.headers.get("content-length", -1)) == len(r.body), "Content-Length: %r" % r


def test_local_response_headers():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        check_local_headers(c.request("GET", "/h"))
        check_local_headers(c.request("POST", "/h", b"xyz"))
        check_local_headers(c.request("DELETE", "/h"))   # 405


def test_rejection_headers():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        c.send(b"BAD\r\n\r\n")
        r = c.read_response()
        assert r.status == 400, r
        check_local_headers(r)


def test_bad_request_after_good_one_in_pipeline():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        c.send(lp.build_request("GET", "/good") + b"NONSENSE\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body == b"GET /good", r
        assert_rejected(c, 400)


def test_header_timeout_on_second_request():
    with lp.Proxy(ECHO, args=["--header-timeout", "300ms"]) as p, lp.Conn(p.port) as c:
        lp.expect(c.request("GET", "/first"), 200)
        time.sleep(0.4)   # idle time between requests is not head time
        lp.expect(c.request("GET", "/second"), 200)
        c.send(b"GET /third HTTP/1.1\r\nHost")
        assert_rejected(c, 408)


def test_body_in_small_pieces():
    body = bytes(range(256)) * 8
    with lp.Proxy('function on_post(req) return 200, req.body end') as p, lp.Conn(p.port) as c:
        c.send(b"POST /drip HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 256):
            lp.wait_server_read(p.port, c)     # one piece per read
            c.send(body[i:i + 256])
        r = c.read_response()
        assert r.status == 200 and r.body == body, "body changed on the way (%d bytes back)" % len(r.body)


def test_large_request_body():
    body = b"0123456789abcdef" * (900 * 64)   # 900 KiB, under the 1m default
    with lp.Proxy('function on_post(req) return 200, #req.body .. " " .. req.body:sub(-4) end') as p:
        r = lp.post(p.port, "/big", body)
        assert r.status == 200 and r.body == b"%d cdef" % len(body), r


def test_large_responses_pipelined_slow_reader():
    script = 'local big = string.rep("0123456789", 600 * 1024)\nfunction on_get(req) return 200, big end'
    with lp.Proxy(script) as p, lp.Conn(p.port, timeout=5) as c:
        [w] = p.wait_workers(1)
        c.sock.setsockopt(lp.socket.SOL_SOCKET, lp.socket.SO_RCVBUF, 16384)
        c.send(lp.build_request("GET", "/1") + lp.build_request("GET", "/2"))
        lp.wait_cpu_idle(w, quiet=0.1, what="the server to fill the socket and wait for room")
        for i in (1, 2):
            try:
                r = c.read_response(timeout=5)
            except lp.socket.timeout as e:
                raise AssertionError("pipelined response %d of 2 (6 MB each) never came: %s" % (i, e))
            assert r.status == 200 and len(r.body) == 6144000, "%d, %d bytes" % (r.status, len(r.body))
            assert r.body[:20] == b"01234567890123456789" and r.body[-10:] == b"0123456789"


def test_client_gone_mid_request_does_not_hurt():
    with lp.Proxy(ECHO) as p:
        [w] = p.wait_workers(1)
        fds = len(os.listdir("/proc/%d/fd" % w))
        for data in (b"GET /half HTTP/1.1\r\nHo", lp.build_request("POST", "/x", b"a" * 100)[:-50],
                     lp.build_request("GET", "/abandoned")):
            c = lp.Conn(p.port)
            c.send(data)
            c.sock.setsockopt(lp.socket.SOL_SOCKET, lp.socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            c.close()   # SO_LINGER 0: a reset, not a FIN
        # The worker has seen the resets and closed the three connections.
        lp.wait_until(lambda: len(os.listdir("/proc/%d/fd" % w)) <= fds,
                      what="the worker to close the reset connections (back to %d descriptors)" % fds)
        lp.expect(lp.get(p.port, "/still"), 200, b"GET /still")
        assert p.worker_pids() == [w], "worker replaced after clients went away"


def test_many_concurrent_connections():
    with lp.Proxy(ECHO) as p:
        conns = [lp.Conn(p.port) for _ in range(200)]
        try:
            for i, c in enumerate(conns):
                c.send(lp.build_request("GET", "/c%d" % i))
            for i, c in enumerate(conns):
                lp.expect(c.read_response(), 200, b"GET /c%d" % i)
        finally:
            for c in conns:
                c.close()


def test_handler_headers_cannot_break_framing():
    script = r'''
function on_get(req)
  if req.path == "/cl" then return 200, "four", { ["content-length"] = "999" } end
  if req.path == "/te" then return 200, "body", { ["transfer-encoding"] = "chunked" } end
  if req.path == "/204" then return 204, "not allowed" end
  if req.path == "/304" then return 304, "not allowed" end
  return 200, "next"
end
'''
    with lp.Proxy(script) as p, lp.Conn(p.port) as c:
        # Framing headers are the proxy's: a handler naming one is a 500
        # (docs/lua-api.md); a 204 or 304 goes out without its body.
        for path, status in (("/cl", 500), ("/te", 500), ("/204", 204), ("/304", 304)):
            c.send(lp.build_request("GET", path) + lp.build_request("GET", "/next"))
            r = c.read_response()
            assert r.status == status, "%s: %r" % (path, r)
            if status != 500:
                assert r.body == b"" and r.header("transfer-encoding") is None, "%s: %r" % (path, r)
            nxt = c.read_response()
            assert nxt.status == 200 and nxt.body == b"next", \
                "response after %s is garbled: %r (first was %r)" % (path, nxt, r)


def test_handler_header_injection_refused():
    script = r'''
function on_get(req)
  if req.path == "/v" then return 200, "x", { ["x-evil"] = "a\r\nInjected: yes" } end
  if req.path == "/n" then return 200, "x", { ["x-evil\r\nInjected"] = "yes" } end
  return 200, "next"
end
'''
    with lp.Proxy(script) as p, lp.Conn(p.port) as c:
        for path in ("/v", "/n"):
            c.send(lp.build_request("GET", path) + lp.build_request("GET", "/next"))
            r = c.read_response()
            assert "injected" not in r.headers, "%s: header injected through a CR LF: %r" % (path, r)
            assert r.status == 500, "%s: a CR LF in a header is a script error (500): %r" % (path, r)
            lp.expect(c.read_response(), 200, b"next", what="after %s" % path)


def test_head_of_route_answer():
    script = 'function route(req) return 200, "route-body" end'
    with lp.Proxy(script) as p, lp.Conn(p.port) as c:
        c.send(lp.build_request("HEAD", "/") + lp.build_request("GET", "/"))
        h = c.read_response(head=True)
        assert h.status == 200 and h.headers.get("content-length") == "10", h
        lp.expect(c.read_response(), 200, b"route-body", what="GET after HEAD")
