"""SPEC §5 (proxying), through proxy.upstream(): what is forwarded (method,
target, headers without hop-by-hop ones, X-Forwarded-*), req:set_* rewrites,
on_response, response hop-by-hop removal, HEAD/204/304, backend
Connection: close and unframed bodies, pipelining, chunked bodies.

The origin (tests/helpers/origin.py) records every request it receives and
is strict: `o.assert_clean()` fails if anything it received on a connection
was not well-formed HTTP/1.1 (e.g. leftovers of a badly framed body)."""

import hashlib
import json
import time

import lp
from origin import Origin, StreamConn, pattern_bytes, pattern_chunks, pattern_sha256, upstream_script

HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade")


def echo_of(r):
    """The origin's JSON description of the request it received."""
    assert r.status == 200, "expected the origin's 200 echo, got %r" % r
    try:
        return json.loads(r.body)
    except ValueError:
        raise AssertionError("response is not the origin's echo: %r" % r)


def conn_tokens(values):
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def test_forward_method_target_host_and_body():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        target = "/a/b%20c/d;e?x=1&y=%2F&z=&q=a+b"
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            body = ("body of %s" % method).encode() if method in ("POST", "PUT", "PATCH") else None
            r = c.request(method, target, body=body, headers=[("Host", "example.test:8443")])
            d = echo_of(r)
            assert d["method"] == method, "%s forwarded as %s" % (method, d["method"])
            assert d["target"] == target, "target %r forwarded as %r" % (target, d["target"])
            rec = o.last()
            assert rec.getall("host") == ["example.test:8443"], \
                "Host not kept: origin saw %r" % rec.getall("host")
            assert rec.version == "1.1", "forwarded as HTTP/%s" % rec.version
            if body is not None:
                assert rec.body == body, "%s body forwarded as %r" % (method, rec.body)
            else:
                assert rec.body_len == 0, rec
        assert r.header("x-origin") == o.name, "origin's response header lost: %r" % r
        o.assert_clean()


def test_hop_by_hop_request_headers_removed():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/echo", headers=[
            ("Host", "example.test"),
            ("Connection", "keep-alive, X-Foo"),
            ("Connection", "x-bar"),
            ("Keep-Alive", "timeout=5, max=100"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Trail"),
            ("Upgrade", "h2c"),
            ("X-Foo", "named-in-connection"),
            ("X-Bar", "also-named"),
            ("X-Keep", "end-to-end"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("User-Agent", "lp-test/1"),
        ])
        echo_of(r)
        rec = o.last()
        names = rec.names()
        for h in ("keep-alive", "proxy-connection", "te", "trailer", "upgrade", "x-foo", "x-bar"):
            assert h not in names, "hop-by-hop request header %r forwarded: %r" % (h, rec.headers)
        extra = conn_tokens(rec.getall("connection")) - {"keep-alive", "close"}
        assert not extra, "Connection forwarded with the client's tokens %r: %r" % (extra, rec.headers)
        assert rec.header("x-keep") == "end-to-end", rec.headers
        assert rec.header("x-multi") == "a, b", "repeated header became %r" % rec.getall("x-multi")
        assert rec.header("user-agent") == "lp-test/1", rec.headers
        assert rec.getall("host") == ["example.test"], rec.headers
        o.assert_clean()


def test_kept_headers_keep_their_order_and_values_around_dropped_ones():
    """Kept header lines go out as received, in order, with the dropped
    ones (hop-by-hop, named in Connection, replaced) cut out wherever they
    sit: first, between kept ones, last."""
    sent = [("Keep-Alive", "timeout=5"), ("X-A", "1"), ("Connection", "x-drop"), ("X-B", "two words"),
            ("X-Drop", "gone"), ("X-C", ""), ("X-Forwarded-Proto", "https"), ("X-D", "d;q=1, e"),
            ("Host", "h.test"), ("TE", "trailers")]
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        echo_of(c.request("GET", "/echo", headers=sent))
        got = [(k.lower(), v) for k, v in o.last().headers]
        kept = [(k, v) for k, v in got if k.startswith("x-") and k not in ("x-forwarded-for", "x-forwarded-proto")]
        assert kept == [("x-a", "1"), ("x-b", "two words"), ("x-c", ""), ("x-d", "d;q=1, e")], got
        assert [k for k, _ in got[:5]] == ["x-a", "x-b", "x-c", "x-d", "host"], got
        q = ("Connection=x-foo&X-1=a&X-Foo=1&X-2=b%20c&Keep-Alive=timeout%3D5&X-3=&X-4=d"
             "&Proxy-Connection=keep-alive")
        r = c.request("GET", "/headers?" + q)
        echo_of(r)
        xs = [(k.lower(), v) for k, v in r.header_list if k.lower().startswith("x-") and k.lower() != "x-origin"]
        assert xs == [("x-1", "a"), ("x-2", "b c"), ("x-3", ""), ("x-4", "d")], r.header_list
        o.assert_clean()


def test_x_forwarded_for_and_proto():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        echo_of(c.request("GET", "/one"))
        rec = o.last()
        assert rec.getall("x-forwarded-for") == ["127.0.0.1"], \
            "X-Forwarded-For without a client one: %r" % rec.getall("x-forwarded-for")
        assert rec.getall("x-forwarded-proto") == ["http"], \
            "X-Forwarded-Proto: %r" % rec.getall("x-forwarded-proto")

        echo_of(c.request("GET", "/two", headers=[("X-Forwarded-For", "127.1.2.3")]))
        xff = o.last().header("x-forwarded-for")
        assert xff is not None and [x.strip() for x in xff.split(",")] == ["127.1.2.3", "127.0.0.1"], \
            "existing X-Forwarded-For 127.1.2.3 became %r" % xff

        echo_of(c.request("GET", "/three", headers=[("X-Forwarded-For", "127.0.0.11, 127.0.0.12"),
                                                    ("X-Forwarded-For", "127.0.0.13")]))
        xff = o.last().header("x-forwarded-for")
        assert xff is not None and [x.strip() for x in xff.split(",")] == \
            ["127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.1"], "XFF chain became %r" % xff
        o.assert_clean()


REWRITE = r'''
function route(req)
  if req.path == "/rw" then
    req:set_header("X-Added", "added-value")
    req:set_header("X-Replace", "new")
    req:set_header("X-Remove", nil)
    req:set_path("/rewritten/path")
    req:set_query("a=1&b=two")
  elseif req.path == "/path-only" then
    req:set_path("/new-path")
  elseif req.path == "/query-only" then
    req:set_query("q=2")
  end
  return up
end
'''


def test_set_header_set_path_set_query():
    with Origin() as o, lp.Proxy(upstream_script([o], extra=REWRITE)) as p, lp.Conn(p.port) as c:
        d = echo_of(c.request("GET", "/rw?orig=1", headers=[
            ("X-Replace", "old"), ("X-Remove", "gone"), ("X-Keep", "k")]))
        assert d["target"] == "/rewritten/path?a=1&b=two", "rewritten target is %r" % d["target"]
        rec = o.last()
        assert rec.getall("x-added") == ["added-value"], rec.headers
        assert rec.getall("x-replace") == ["new"], "set_header did not replace: %r" % rec.headers
        assert not rec.has("x-remove"), "set_header(name, nil) did not remove: %r" % rec.headers
        assert rec.getall("x-keep") == ["k"], rec.headers

        d = echo_of(c.request("GET", "/path-only?keep=me"))
        assert d["target"] == "/new-path?keep=me", "set_path only: target %r" % d["target"]
        d = echo_of(c.request("GET", "/query-only?old=1"))
        assert d["target"] == "/query-only?q=2", "set_query only: target %r" % d["target"]
        d = echo_of(c.request("GET", "/untouched?x=%41"))
        assert d["target"] == "/untouched?x=%41", d["target"]
        o.assert_clean()


def test_response_hop_by_hop_headers_removed():
    q = ("Connection=x-foo&X-Foo=1&Keep-Alive=timeout%3D5&Proxy-Connection=keep-alive"
         "&Trailer=X-T&Upgrade=foo%2F1&X-Keep=yes&Set-Cookie=a%3D1&Set-Cookie=b%3D2")
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/headers?" + q)
        echo_of(r)
        names = [k for k, _ in r.header_list]
        for h in ("keep-alive", "proxy-connection", "trailer", "upgrade", "x-foo"):
            assert h not in names, "hop-by-hop response header %r passed on: %r" % (h, r.header_list)
        extra = conn_tokens(r.getall("connection")) - {"keep-alive", "close"}
        assert not extra, "response Connection carries the backend's tokens %r: %r" % (extra, r.header_list)
        assert r.header("x-keep") == "yes", r.header_list
        assert r.getall("set-cookie") == ["a=1", "b=2"], "Set-Cookie: %r" % r.getall("set-cookie")
        assert "close" not in r.connection_tokens(), r
        echo_of(c.request("GET", "/after"))   # the client connection still works
        o.assert_clean()


ON_RESPONSE = r'''
function on_response(req, res)
  res:set_header("X-Status", tostring(res.status))
  res:set_header("X-Server", res.server)
  res:set_header("X-Seen-Origin", res.headers["x-origin"] or "none")
  res:set_header("X-Seen-Path", req.path)
  res:set_header("X-Secret", nil)
end
'''


def test_on_response_reads_and_sets_headers():
    with Origin(name="resp") as o, lp.Proxy(upstream_script([o], extra=ON_RESPONSE)) as p, \
            lp.Conn(p.port) as c:
        r = c.request("GET", "/headers?X-Secret=s&X-Public=p")
        d = echo_of(r)
        assert d["target"] == "/headers?X-Secret=s&X-Public=p"
        assert r.header("x-status") == "200", r
        assert r.header("x-server") == o.addr, "res.server %r, expected %r" % (r.header("x-server"), o.addr)
        assert r.header("x-seen-origin") == "resp", "res.headers[\"x-origin\"]: %r" % r.header("x-seen-origin")
        assert r.header("x-seen-path") == "/headers", r
        assert "x-secret" not in r.headers, "res:set_header(name, nil) did not remove: %r" % r
        assert r.header("x-public") == "p", r
        assert int(r.header("content-length", len(r.body))) == len(r.body)

        r = c.request("GET", "/status/404")
        assert r.status == 404 and r.body == b"status 404\n", r
        assert r.header("x-status") == "404", r
        r = c.request("GET", "/chunked/5000")
        assert r.status == 200 and r.body == pattern_bytes(5000), r
        assert r.header("x-status") == "200", r
        o.assert_clean()


def test_head_204_304_carry_no_body():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        r = c.request("HEAD", "/size/1000")
        assert r.status == 200 and r.body == b"", r
        assert r.header("content-length") == "1000", "HEAD: the backend's Content-Length 1000 became %r" % r
        r = c.request("GET", "/status/204")
        assert r.status == 204 and r.body == b"", r
        assert "transfer-encoding" not in r.headers, "204 with Transfer-Encoding: %r" % r
        r = c.request("GET", "/status/304")
        assert r.status == 304 and r.body == b"", r
        assert "transfer-encoding" not in r.headers, "304 with Transfer-Encoding: %r" % r
        r = c.request("HEAD", "/chunked/5000")
        assert r.status == 200 and r.body == b"", r
        r = c.request("HEAD", "/echo")
        assert r.status == 200 and r.body == b"", r
        # Nothing stray on the client connection, and it still works.
        d = echo_of(c.request("GET", "/after"))
        assert d["target"] == "/after"
        assert not c.closed_by_peer(timeout=0.2), "client connection closed"
        o.assert_clean()


def test_backend_connection_close_keeps_client_connection():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/close-after")
        echo_of(r)
        assert "close" not in r.connection_tokens(), \
            "backend's Connection: close passed on to the client: %r" % r
        echo_of(c.request("GET", "/close-after?silent=1"))
        d = echo_of(c.request("GET", "/second"))
        assert d["target"] == "/second"
        # Each close-after answer ends its backend connection: three requests, three connections.
        assert o.connections == 3, "origin saw %d connections, expected 3" % o.connections
        o.assert_clean()


def test_unframed_backend_body():
    n = 300000
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        with lp.Conn(p.port) as c:
            r = c.request("GET", "/eof/%d" % n)
            assert r.status == 200, r
            assert len(r.body) == n, "unframed body: %d of %d bytes" % (len(r.body), n)
            assert r.body == pattern_bytes(n), "unframed body corrupted"
            # HTTP/1.1 client: its connection stays usable.
            d = echo_of(c.request("GET", "/after-eof"))
            assert d["target"] == "/after-eof"
        # HTTP/1.0 client: the body may end with the close.
        raw = lp.send_raw_closed(p.port, "GET /eof/%d HTTP/1.0\r\n\r\n" % n, timeout=5)
        rs = lp.parse_responses(raw)
        assert len(rs) == 1 and rs[0].status == 200, raw[:300]
        assert rs[0].body == pattern_bytes(n), "HTTP/1.0 unframed body: %d bytes" % len(rs[0].body)
        o.assert_clean()


def test_pipelined_requests_answered_in_order():
    reqs = [("GET", "/slow/150?i=0", None), ("GET", "/size/70000?i=1", None),
            ("POST", "/echo?i=2", b"pipelined-body"), ("HEAD", "/size/10?i=3", None),
            ("GET", "/chunked/20000?i=4", None), ("GET", "/slow/20?i=5", None),
            ("GET", "/echo?i=6", None)]
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port, timeout=10) as c:
        c.send(b"".join(lp.build_request(m, t, b) for m, t, b in reqs))
        out = [c.read_response(head=(m == "HEAD")) for m, _, _ in reqs]
        for (m, t, b), r in zip(reqs, out):
            assert r.status == 200, "%s %s: %r" % (m, t, r)
        for i in (0, 2, 5, 6):
            d = echo_of(out[i])
            assert d["target"] == reqs[i][1], "response %d answers %r" % (i, d["target"])
        assert json.loads(out[2].body)["body"] == "pipelined-body"
        assert out[1].body == pattern_bytes(70000), "response 1 body"
        assert out[3].body == b"", out[3]
        assert out[4].body == pattern_bytes(20000), "response 4 body"
        assert [r.target for r in o.records] == [t for _, t, _ in reqs], \
            "origin saw %r" % [r.target for r in o.records]
        o.assert_clean()


def _chunked_body(total, sizes=(1, 17, 4096, 100000, 65536, 3)):
    """Chunked encoding of pattern bytes, as a generator of wire pieces."""
    off = 0
    i = 0
    while off < total:
        k = min(sizes[i % len(sizes)], total - off)
        i += 1
        yield b"%x\r\n" % k + b"".join(pattern_chunks(k, off)) + b"\r\n"
        off += k
    yield b"0\r\n\r\n"


def test_chunked_request_body_passes_through():
    total = 3 * 1024 * 1024 + 7
    want = hashlib.sha256(pattern_bytes(total)).hexdigest()
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, StreamConn(p.port) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in _chunked_body(total):
            c.send(piece)
        r = c.read_response()
        assert r.status == 200, r
        d = json.loads(r.body)
        assert d["len"] == total and d["sha256"] == want, \
            "chunked upload arrived as %d bytes, sha %s (want %d, %s)" % (d["len"], d["sha256"], total, want)
        assert d["chunked"], "chunked request body did not keep its framing"
        # a small chunked body with an extension, then a normal request
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["body"] == "hello world", r.body
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["target"] == "/echo", r.body
        o.assert_clean()


def test_chunked_response_body_passes_through():
    n = 3 * 1024 * 1024 + 11
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, StreamConn(p.port) as c:
        c.send(b"GET /chunked/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        r = c.read_response(keep=0)
        assert r.status == 200, r
        assert r.body_len == n and r.sha256 == pattern_sha256(n), \
            "chunked response: %d bytes (want %d), sha match %s" % (r.body_len, n, r.sha256 == pattern_sha256(n))
        c.send(b"GET /chunked/0 HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.body_len == 0, r
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["target"] == "/echo"
        o.assert_clean()


def test_http10_client_proxied():
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        raw = lp.send_raw_closed(p.port, "GET /v10 HTTP/1.0\r\nHost: h10.test\r\n\r\n", timeout=5)
        rs = lp.parse_responses(raw)
        assert len(rs) == 1, raw[:300]
        d = echo_of(rs[0])
        assert d["target"] == "/v10"
        assert o.last().getall("host") == ["h10.test"], o.last().headers
        o.assert_clean()
