"""What a backend receives, byte for byte, for the framing and header rules
of core/http.c: names keep the case each side sent, framing goes on in one
canonical form, names with '_' stay behind, an absolute-form target's
authority becomes Host, unknown methods are forwarded as sent, and trailer
fields that frame or route never reach the backend."""

import re
import time

import lp
from raw_origin import RawOrigin, request_complete


def RecordingOrigin(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"):
    """Connection: close, so that each request's bytes are final once the
    proxy closes the backend connection."""
    return RawOrigin(answer, complete=request_complete)


def proxy(o, extra=""):
    return ('local up = proxy.upstream("rec", { "%s" }, { retries = 0 })\n'
            'function route(req) return up end\n%s\n' % (o.addr, extra))


def one(o, p, raw):
    """Sends raw, returns (the client's responses, the bytes the origin got)."""
    out = lp.send_raw(p.port, raw)
    [got] = o.wait(1)
    return lp.parse_responses(out), got


def head_lines(data):
    return data[:data.index(b"\r\n\r\n")].split(b"\r\n")


def test_header_names_keep_their_case_both_ways():
    answer = (b"HTTP/1.1 200 OK\r\nX-Backend-CaSe: b\r\nCONTENT-TYPE: text/plain\r\n"
              b"Content-Length: 2\r\nConnection: close\r\n\r\nok")
    extra = '''
function route(req)
  req:set_header("X-Script-Set", "1")
  req:set_header("X-Seen", tostring(req.headers["x-mixed-case"]) .. "/" .. tostring(req:header("X-MIXED-CASE")))
  return up
end
function on_response(req, res)
  res:set_header("X-Resp-Script", "2")
  res:set_header("X-Res-Seen", tostring(res.headers["x-backend-case"]))
end
'''
    with RecordingOrigin(answer) as o, lp.Proxy(proxy(o, extra), workers=1) as p:
        [r], got = one(o, p, b"GET /c HTTP/1.1\r\nHOST: 127.0.0.1\r\nX-MiXed-Case: a\r\n"
                               b"content-TYPE: text/plain\r\nConnection: close\r\n\r\n")
        lines = head_lines(got)
        for want in (b"HOST: 127.0.0.1", b"X-MiXed-Case: a", b"content-TYPE: text/plain",
                     b"X-Script-Set: 1", b"X-Seen: a/a"):
            assert want in lines, "%r not in the forwarded head %r" % (want, lines)
        assert r.status == 200, r
        rlines = r.raw.split(b"\r\n")
        for want in (b"X-Backend-CaSe: b", b"CONTENT-TYPE: text/plain", b"X-Resp-Script: 2",
                     b"X-Res-Seen: b"):
            assert want in rlines, "%r not in the response head %r" % (want, rlines)


def test_framing_goes_on_in_one_canonical_form():
    cases = [
        # (framing the client sent, body, the one framing line the backend must get)
        ([b"Content-Length: 010"], b"0123456789", b"Content-Length: 10"),
        ([b"content-length:  0000"], b"", b"content-length: 0"),
        ([b"Content-Length: 5, 5"], b"hello", b"Content-Length: 5"),
        ([b"Content-Length: 5", b"Content-Length: 5"], b"hello", b"Content-Length: 5"),
        ([b"Content-Length: 5\t"], b"hello", b"Content-Length: 5"),
        ([b"Transfer-Encoding: chunked "], b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
        ([b"Transfer-Encoding: cHuNkeD"], b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
        ([b"Transfer-Encoding:\tchunked\t"], b"5\r\nhello\r\n0\r\n\r\n", b"Transfer-Encoding: chunked"),
        ([b"Transfer_Encoding: chunked", b"Content-Length: 5"], b"hello", b"Content-Length: 5"),
    ]
    for framing, body, want in cases:
        with RecordingOrigin() as o, lp.Proxy(proxy(o), workers=1) as p:
            raw = (b"POST /f HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(f + b"\r\n" for f in framing)
                   + b"Connection: close\r\n\r\n" + body)
            rs, got = one(o, p, raw)
            assert [r.status for r in rs] == [200], "%r: %r" % (framing, rs)
            lines = head_lines(got)
            framing_lines = [ln for ln in lines if re.match(rb"(?i)(content.length|transfer.encoding)", ln)]
            assert framing_lines == [want], "%r: the backend got framing %r" % (framing, framing_lines)
            assert got.endswith(b"\r\n\r\n" + body), "%r: body %r" % (framing, got[-40:])


def test_underscore_names_stay_behind():
    with RecordingOrigin() as o, lp.Proxy(proxy(o), workers=1) as p:
        rs, got = one(o, p, b"GET /u HTTP/1.1\r\nHost: 127.0.0.1\r\nX_Forwarded_For: 6.6.6.6\r\n"
                            b"Content_Length: 5\r\nX-Kept: 1\r\nConnection: close\r\n\r\n")
        assert [r.status for r in rs] == [200], rs
        assert b"_" not in got.split(b"\r\n", 1)[1], "a name with '_' was forwarded: %r" % got
        assert b"6.6.6.6" not in got and b"\r\nX-Kept: 1\r\n" in got, got


def test_absolute_form_authority_replaces_host():
    with RecordingOrigin() as o, lp.Proxy(proxy(o, '''
function route(req)
  req:set_header("X-Host-Seen", req.headers["host"])
  return up
end'''), workers=1) as p:
        rs, got = one(o, p, b"GET http://a.example:81/p?q HTTP/1.1\r\nHost: b.example\r\n"
                            b"Connection: close\r\n\r\n")
        assert [r.status for r in rs] == [200], rs
        lines = head_lines(got)
        assert lines[0] == b"GET /p?q HTTP/1.1", lines
        hosts = [ln for ln in lines if ln.lower().startswith(b"host:")]
        assert hosts == [b"Host: a.example:81"], lines
        assert b"X-Host-Seen: a.example:81" in lines and b"b.example" not in got, lines


def test_unknown_methods_forwarded_and_405_locally():
    with RecordingOrigin() as o, lp.Proxy(proxy(o), workers=1) as p:
        rs, got = one(o, p, b"FOO /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
                            b"Connection: close\r\n\r\nab")
        assert [r.status for r in rs] == [200], rs
        assert got.startswith(b"FOO /x HTTP/1.1\r\n") and got.endswith(b"\r\n\r\nab"), got
    # Arriving in pieces: the method, then the rest of the head, then the body.
    with RecordingOrigin() as o, lp.Proxy(proxy(o), workers=1) as p, lp.Conn(p.port) as c:
        for piece in (b"PROPF", b"INDX /y HTTP/1.1\r\nHo", b"st: 127.0.0.1\r\nContent-Length: 3\r\n\r\n", b"abc"):
            c.send(piece)
            time.sleep(0.05)
        r = c.read_response()
        assert r.status == 200, r
        [got] = o.wait(1)
        assert got.startswith(b"PROPFINDX /y HTTP/1.1\r\n") and got.endswith(b"\r\n\r\nabc"), got
        # The connection goes on with a known method.
        r = c.request("GET", "/next")
        assert r.status == 200, r
        assert o.wait(2)[1].startswith(b"GET /next HTTP/1.1\r\n")
    local = 'function on_get(req) return 200, "get" end\nfunction on_post(req) return 200, "post" end\n'
    with lp.Proxy(local, workers=1) as p, lp.Conn(p.port) as c:
        c.send(b"FOO / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
        r = c.read_response()
        assert r.status == 405 and r.header("allow") == "GET, HEAD, POST", r
        r = c.request("GET", "/")
        assert (r.status, r.body) == (200, b"get"), r


def test_forbidden_trailer_never_reaches_the_backend():
    with RecordingOrigin() as o, lp.Proxy(proxy(o), workers=1) as p, lp.Conn(p.port) as c:
        c.send(b"POST /t HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        time.sleep(0.1)
        c.send(b"0\r\nX-Ok: 1\r\nHost: evil\r\n\r\n")
        r = c.read_response()
        assert r.status == 400 and "close" in r.connection_tokens(), r
        assert c.closed_by_peer(3)
        [got] = o.wait(1)
        assert b"evil" not in got and not got.endswith(b"\r\n\r\n"), got


def test_content_length_over_int64_is_refused():
    with RecordingOrigin() as o, lp.Proxy(proxy(o), workers=1) as p:
        rs = lp.parse_responses(lp.send_raw(p.port, b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                            b"Content-Length: 9223372036854775808\r\n\r\nx"))
        assert [r.status for r in rs] == [400], rs
        # The origin serves one connection at a time, in order: the next
        # request is the first it sees.
        assert lp.get(p.port, "/after").status == 200
        got = o.wait(1)
        assert len(got) == 1 and got[0].startswith(b"GET /after "), got


def test_chunk_extension_bws_removed_even_in_pieces():
    body = b"5 ; a = \"x ; y\"\r\nhello\r\n1\t;\tb\r\n!\r\n0\r\nX-T: 1 ; 2\r\n\r\n"
    sent = b"5;a=\"x ; y\"\r\nhello\r\n1;b\r\n!\r\n0\r\nX-T: 1 ; 2\r\n\r\n"
    head = b"POST /c HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    with RecordingOrigin() as o, lp.Proxy(proxy(o), workers=1) as p:
        for n, pieces in enumerate(([body], [body[:3], body[3:9], body[9:25], body[25:]])):
            with lp.Conn(p.port) as c:
                c.send(head)
                for piece in pieces:
                    time.sleep(0.05)
                    c.send(piece)
                r = c.read_response()
                assert r.status == 200, r
            got = o.wait(n + 1)[n]
            assert got.endswith(b"\r\n\r\n" + sent), got
    local = 'function on_post(req) return 200, req.body end\n'
    with lp.Proxy(local, workers=1) as p, lp.Conn(p.port) as c:
        c.send(head + body[:4])
        time.sleep(0.05)
        c.send(body[4:])
        r = c.read_response()
        assert (r.status, r.body) == (200, b"hello!"), r
        assert c.request("GET", "/x").status == 405  # the connection goes on


def test_unknown_method_named_in_the_error_log_and_by_tostring():
    # llhttp_method_name() aborts on a method it does not know: every name
    # of the method goes through http_method_name().
    script = 'function route(req) error("boom " .. tostring(req)) end\n'
    with lp.Proxy(script, workers=1) as p:
        rs = lp.parse_responses(lp.send_raw(p.port, b"FOO /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"))
        assert [r.status for r in rs] == [500], rs
        p.wait_stderr("lua error in route for FOO /x: ")
        assert "boom req (FOO)" in p.stderr_text(), p.stderr_text()


def test_absolute_form_without_host_and_a_script_host():
    with RecordingOrigin() as o, lp.Proxy(proxy(o, '''
function route(req)
  req:set_header("Host", "script.example")
  return up
end'''), workers=1) as p:
        rs, got = one(o, p, b"GET http://a.example:81/p HTTP/1.0\r\n\r\n")
        assert [r.status for r in rs] == [200], rs
        hosts = [ln for ln in head_lines(got) if ln.lower().startswith(b"host:")]
        assert hosts == [b"Host: script.example"], head_lines(got)
