"""Crashers found by the fuzz targets (tests/fuzz/regressions/), replayed
against the real binary over real sockets: the stream of each (without the
target's control bytes) as the client or the backend sent it. The same
files also go through the fuzz harness itself in test_fuzz_replay (Check)."""

import os
import lp
from origin import Origin, upstream_script
from raw_origin import RawOrigin

REGRESSIONS = lp.repo_path("tests", "fuzz", "regressions")


def crasher(target, name):
    """The stream of a kept crasher: fuzz_client inputs start with 4 control
    bytes, fuzz_backend inputs with 5 (see the top of each target)."""
    with open(os.path.join(REGRESSIONS, target, name), "rb") as f:
        data = f.read()
    return data[4:] if target == "client" else data[5:]


def test_obs_fold_does_not_smuggle_a_second_request():
    # "Host:Connection: upgrade\r\n h": the slice of the folded value took in
    # the line break, the forwarded head ended there and the rest of it
    # reached the backend as another request.
    data = crasher("client", "obs-fold-ends-forwarded-head")
    assert b"\r\n h\r\n" in data
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        out = lp.send_raw_closed(p.port, data)
        rs = lp.parse_responses(out)
        assert len(rs) == 1 and rs[0].status == 400, "obs-fold: expected one 400, got %r" % out[:300]
        assert rs[0].header("connection") == "close", rs[0]
        for folded in (b"X-A: a\r\n b", b"X-A: a\r\n\t\tb", b"Transfer-Encoding:\r\n chunked"):
            req = b"POST /p HTTP/1.1\r\nHost: h\r\n" + folded + b"\r\nContent-Length: 5\r\n\r\nhello"
            rs = lp.parse_responses(lp.send_raw_closed(p.port, req))
            assert [r.status for r in rs] == [400], "%r: %r" % (folded, rs)
        assert o.requests == 0, "the origin received %d request(s)" % o.requests
        o.assert_clean()
        # A value split across two reads is not a fold.
        with lp.Conn(p.port) as c:
            c.send(b"GET /p HTTP/1.1\r\nHost: h\r\nX-A: abc")
            lp.wait_server_read(p.port, c, what="the worker to read the first half of the value")
            c.send(b" def\r\n\r\n")
            r = c.read_response()
            assert r.status == 200, r
        assert o.requests == 1


def test_error_answer_to_head_has_no_body():
    # A 502 to a pipelined HEAD carried "bad gateway\n" after its head: the
    # client read it as the start of the next response.
    answer = crasher("backend", "head-error-answer-has-body")
    assert answer.startswith(b"HTTP/1.1 20OK")
    with RawOrigin(answer) as o, \
            lp.Proxy(upstream_script(["%s:%d" % (lp.HOST, o.port)], "retries = 0, max_fails = 0")) as p, \
            lp.Conn(p.port) as c:
        c.send(lp.build_request("HEAD", "/a") + lp.build_request("GET", "/b"))
        first = c.read_response(head=True)
        assert first.status == 502 and first.body == b"", first
        assert first.header("content-length") == "12", first
        second = c.read_response()
        assert second.status == 502 and second.body == b"bad gateway\n", \
            "the response after a HEAD's 502: %r (buffer %r)" % (second, c.buf[:200])


def upgrade_script(port):
    return upstream_script(["%s:%d" % (lp.HOST, port)], "retries = 0, max_fails = 0")


def test_101_without_upgrade_headers_is_a_502():
    # The backend's "101 ...\r?\n" ended its head early (llhttp's loose mode
    # took any byte after a CR for the LF): the client got a 101 with no
    # Upgrade and then the tunnel's bytes, which it read as responses.
    # llhttp is built strict now, and a 101 must name the protocol.
    # The same for a 101 with Upgrade but without Connection: upgrade (the
    # third crasher: its status line runs into the Connection header).
    for answer in (crasher("backend", "101-loose-status-line-no-upgrade"),
                   crasher("backend", "101-without-upgrade-header"),
                   crasher("backend", "101-without-connection-upgrade")):
        with RawOrigin(answer) as o, lp.Proxy(upgrade_script(o.port)) as p, lp.Conn(p.port) as c:
            c.send(lp.build_request("GET", "/ws", headers={"Connection": "upgrade", "Upgrade": "websocket"}))
            r = c.read_response()
            assert r.status == 502, "backend answered %r: expected 502, got %r" % (answer[:40], r)
            assert r.body == b"bad gateway\n", r


def test_chunk_without_crlf_is_not_relayed():
    # Before LLHTTP_STRICT_MODE, llhttp skipped the two bytes after a chunk's
    # data without looking at them, and a chunked body is relayed raw: "XX"
    # for "\r\n" reached the backend, which may frame it otherwise.
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    with RawOrigin(ok) as o, lp.Proxy(upgrade_script(o.port)) as p:
        for bad in (b"5\r\nhelloXX0\r\n\r\n", b"5\rXhello\r\n0\r\n\r\n", b"5\r\nhello\rX0\r\n\r\n"):
            req = b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" + bad
            out = lp.send_raw_closed(p.port, req)
            assert b"200 OK" not in out, "%r was answered %r" % (bad, out[:200])
            assert out.startswith(b"HTTP/1.1 400 "), "%r was answered %r" % (bad, out[:200])
        # Chunks that come with the head are checked before the backend is
        # contacted (and later ones before they are relayed).
        assert b"X" not in o.received, "bytes after a malformed chunk reached the backend: %r" % o.received


def test_status_out_of_range_is_a_502():
    # "HTTP/1.1 000 OK" with Content-Length: 4 went out as status 0 with its
    # Content-Length but no body (below 200 means no body to us): the client
    # took the next response's first bytes for that body.
    for answer in (crasher("backend", "status-000-with-length"),
                   b"HTTP/1.1 099 Low\r\nContent-Length: 2\r\n\r\nok",
                   b"HTTP/1.1 600 High\r\nContent-Length: 2\r\n\r\nok"):
        with RawOrigin(answer) as o, lp.Proxy(upgrade_script(o.port)) as p, lp.Conn(p.port) as c:
            r = c.request("GET", "/a")
            assert r.status == 502 and r.body == b"bad gateway\n", "backend answered %r: got %r" % (answer[:30], r)


def test_no_content_length_on_1xx_and_204():
    # A backend's "100 OK" with Content-Length: 20 was passed on as it was;
    # a client that believes the header (llhttp does) reads the next
    # response as that body.
    assert crasher("backend", "100-with-content-length").startswith(b"HTTP/1.1 100 OK\r\nContent-Length: 20")
    answer = (b"HTTP/1.1 100 Continue\r\nContent-Length: 20\r\n\r\n"
              b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-A: 1\r\n\r\n")
    with RawOrigin(answer) as o, lp.Proxy(upgrade_script(o.port)) as p, lp.Conn(p.port) as c:
        c.send(lp.build_request("GET", "/a"))
        interim = c.read_response()
        final = c.read_response()
        assert interim.status == 100 and interim.header("content-length") is None, interim
        assert final.status == 204 and final.header("content-length") is None, final
        assert final.header("x-a") == "1", final


def test_final_response_in_the_same_read_as_an_interim_one():
    # Bytes that followed a 1xx in the same read were never parsed: the
    # final response stalled until more bytes came, or read_timeout (504).
    answer = crasher("backend", "interim-and-final-in-one-read")
    assert answer.startswith(b"HTTP/1.1 103 Early Hints\r\n") and b"HTTP/1.1 200 OK" in answer
    with RawOrigin(answer) as o, \
            lp.Proxy(upstream_script(["%s:%d" % (lp.HOST, o.port)], 'retries = 0, read_timeout = "3s"')) as p, \
            lp.Conn(p.port) as c:
        c.send(lp.build_request("GET", "/a"))
        hints = c.read_response(timeout=2)
        final = c.read_response(timeout=2)
        assert hints.status == 103 and hints.header("link") == "</s>", hints
        assert final.status == 200 and final.body == b"ok", final


def test_malformed_chunked_upload_gets_a_400():
    # A proxied chunked body that failed to parse (here: more than 100
    # trailer lines) closed the client without a word, though no response
    # had begun. Now it is a 400 (and the backend connection is dropped).
    data = crasher("client", "many-trailers-no-answer")
    assert data.startswith(b"POST /p HTTP/1.1\r\n")
    with Origin() as o, lp.Proxy(upstream_script([o], "retries = 0")) as p:
        for stream in (data, b"POST /hang HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5\r\nhelloXX0\r\n\r\n"):
            rs = lp.parse_responses(lp.send_raw_closed(p.port, stream))
            # The fuzzer's stream is a valid request (its trailers go through
            # with the raw chunked body) followed by garbage: an answer for
            # the request, then a 400 and the close for the rest, never a
            # silent close.
            assert rs and rs[-1].status == 400, "%r...: %r" % (stream[:40], rs)
            assert all(r.status in (200, 400) for r in rs[:-1]), rs
            if stream is not data:  # one request, malformed: its 400 is the only answer
                assert [r.status for r in rs] == [400], rs
            assert rs[-1].header("connection") == "close", rs[-1]


def test_connect_is_refused():
    # "CONNECT /k" with Transfer-Encoding: chunked waited for a body that
    # llhttp, for which a CONNECT ends at its head, would never parse.
    data = crasher("client", "connect-with-chunked-waits")
    assert data.startswith(b"CONNECT /k HTTP/1.1\r\n")
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        for stream in (data, b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n"):
            rs = lp.parse_responses(lp.send_raw_closed(p.port, stream, timeout=3))
            assert [r.status for r in rs] == [501], "%r: %r" % (stream[:30], rs)
        assert o.requests == 0


def test_connection_cannot_remove_framing_headers():
    # "Connection: ... transfer-encoding" made the proxy drop
    # Transfer-Encoding from the forwarded head while it relayed the chunked
    # body as it came: the backend took the body for the next request.
    data = crasher("client", "connection-names-transfer-encoding")
    assert b"transfer-encoding wso" in data
    hidden = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
    smuggle = (b"POST /p HTTP/1.1\r\nHost: h\r\nConnection: transfer-encoding\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n" % len(hidden) + hidden + b"\r\n0\r\n\r\n")
    with Origin() as o, lp.Proxy(upstream_script([o])) as p, lp.Conn(p.port) as c:
        c.send(smuggle)
        r = c.read_response()
        assert r.status == 200, r
        assert c.closed_by_peer(0.3) is False and c.buf == b"", "a second response: %r" % c.buf
        lp.wait_until(lambda: o.requests >= 1, what="the request at the origin")
        assert o.requests == 1 and o.last().target == "/p", [r.describe() for r in o.records]
        assert o.last().header("transfer-encoding") == "chunked", o.last().describe()
        o.assert_clean()
    # And the other way: a backend's "Connection: content-length" made the
    # client's response unframed on a connection kept open.
    answer = crasher("backend", "connection-names-content-length")
    with RawOrigin(answer) as o, lp.Proxy(upgrade_script(o.port)) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/a")
        assert r.status == 200 and r.header("content-length") == "5" and r.body == b"hello", r


def test_no_interim_response_to_an_http10_client():
    # A 103 (or 100) was relayed to HTTP/1.0 clients, which RFC 9110 forbids
    # and which such a client reads as its final answer.
    answer = (b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    with RawOrigin(answer) as o, \
            lp.Proxy(upstream_script(["%s:%d" % (lp.HOST, o.port)], 'retries = 0, read_timeout = "3s"')) as p:
        out = lp.send_raw_closed(p.port, b"GET /a HTTP/1.0\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"ok"), out
        assert b"103" not in out.split(b"\r\n", 1)[0], out
