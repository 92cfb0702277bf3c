"""The smuggling and malformed-input corpus
(tests/smuggling/corpus.py), each vector through a real luaproxy in front of
the strict origin (tests/helpers/strict_origin.py), and again through a
local Lua handler.

A rejected vector must get exactly its status with Connection: close, then
the close, and the origin must not receive one byte. A forwarded vector must
reach the origin as exactly the expected well-formed requests, each answered
to the client, with nothing hidden: every request the origin saw carries a
token that must come back to the client, in order, and when the connection
stays open a sentinel request must get the very next answer."""

import os
import time
import socket
import sys

import lp
from strict_origin import StrictOrigin

sys.path.insert(0, os.path.join(lp.ROOT, "tests", "smuggling"))
import corpus  # noqa: E402
from corpus import Forward, Reject  # noqa: E402

SENTINEL = b"GET /sentinel HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

LOCAL = r'''
local function echo(req)
  local body = req.body or ""
  return 200, "method=" .. req.method .. " target=" .. req.uri .. " body_len=" .. #body .. "\n" .. body
end
on_get, on_post, on_put, on_delete, on_options, on_patch = echo, echo, echo, echo, echo, echo
'''


def proxy_script(o):
    return 'local up = proxy.upstream("strict", { "%s" }, { retries = 0 })\n' \
           'function route(req) return up end\n' % o.addr


def fail(v, msg):
    return "%s/%s: %s" % (v.category, v.name, msg)


def read_answers(c, n):
    out = []
    for _ in range(n):
        out.append(c.read_response(timeout=3))
    return out


def check_reject(v, c, origin, mark):
    try:
        r = c.read_response(timeout=3)
    except (socket.timeout, lp.ProtocolError) as e:
        return [fail(v, "expected %d, got no response (%s)" % (v.expect.status, e))]
    errs = []
    if r.status != v.expect.status:
        errs.append(fail(v, "expected %d, got %d %r" % (v.expect.status, r.status, r.body[:80])))
    if "close" not in r.connection_tokens():
        errs.append(fail(v, "rejection without Connection: close: %r" % r))
    if int(r.header("content-length", "-1")) != len(r.body):
        errs.append(fail(v, "rejection with bad framing: %r" % r))
    try:
        if not c.closed_by_peer(3):
            errs.append(fail(v, "connection left open after the rejection"))
    except AssertionError as e:
        errs.append(fail(v, "bytes after the rejection: %s" % e))
    if origin is not None:
        origin.wait_quiet()
        n = origin.bytes_since(mark)
        if n:
            errs.append(fail(v, "rejected, yet %d bytes reached the backend: %r"
                             % (n, origin.requests_since(mark))))
    return errs


def check_forward_answer(v, want, r, mode):
    """The client's view of one answer. Returns (errors, origin token)."""
    if mode == "local" and want.local != 200:
        if r.status != want.local or (want.local == 405 and not r.header("allow")):
            return [fail(v, "expected %d locally for %r, got %r" % (want.local, want, r))], None
        return [], None
    if r.status != 200:
        return [fail(v, "expected 200 for %r, got %r" % (want, r))], None
    if mode == "proxy":
        tok = r.header("x-strict-token")
        if tok is None:
            return [fail(v, "answer without X-Strict-Token: %r" % r)], None
        return [], int(tok)
    first, _, body = r.body.partition(b"\n")
    exp = ("method=%s target=%s body_len=%d" % (want.method, want.target, len(want.body))).encode("latin-1")
    errs = []
    if first != exp or body != want.body:
        errs.append(fail(v, "local handler saw %r, expected %r + body %r" % (r.body[:200], exp, want.body)))
    return errs, None


def check_forward(v, c, origin, mark, mode):
    exp = v.expect
    errs = []
    tokens = []
    try:
        answers = read_answers(c, len(exp.reqs))
    except (socket.timeout, lp.ProtocolError) as e:
        return [fail(v, "expected %d answers: %s" % (len(exp.reqs), e))]
    for want, r in zip(exp.reqs, answers):
        e, tok = check_forward_answer(v, want, r, mode)
        errs += e
        tokens.append(tok)
    last_close = "close" in answers[-1].connection_tokens() or answers[-1].version == "HTTP/1.0" \
        and "keep-alive" not in answers[-1].connection_tokens()
    sentinel = None
    if exp.close:
        if not last_close:
            errs.append(fail(v, "expected the connection to close after %r" % answers[-1]))
        try:
            if not c.closed_by_peer(3):
                errs.append(fail(v, "connection not closed"))
        except AssertionError as e:
            errs.append(fail(v, "hidden answer: %s" % e))
    else:
        if last_close:
            errs.append(fail(v, "connection closed after a forwarded request: %r" % answers[-1]))
        else:
            try:
                c.send(SENTINEL)
                sentinel = c.read_response(timeout=3)
            except (OSError, socket.timeout, lp.ProtocolError) as e:
                errs.append(fail(v, "no answer to the sentinel request: %s" % e))
            if sentinel is not None:
                ok = sentinel.status == 200 and (
                    b"target=/sentinel" in sentinel.body if mode == "local"
                    else sentinel.header("x-strict-token") is not None)
                if not ok:
                    errs.append(fail(v, "the answer after the vector is not the sentinel's "
                                     "(desynchronised): %r" % sentinel))
                elif mode == "proxy":
                    tokens.append(int(sentinel.header("x-strict-token")))
    if origin is None:
        return errs
    origin.wait_quiet()
    got = origin.requests_since(mark)
    want_n = len(exp.reqs) + (1 if sentinel is not None else 0)
    got_tokens = [r.token for r in got]
    if got_tokens != tokens:
        errs.append(fail(v, "origin received %d requests %r, client was answered for tokens %r "
                         "(a hidden or lost request)" % (len(got), got, tokens)))
    if len(got) != want_n:
        errs.append(fail(v, "origin received %d requests, expected %d: %r" % (len(got), want_n, got)))
    for want, r in zip(exp.reqs, got):
        if r.method != want.method or r.target != want.target or r.body != want.body:
            errs.append(fail(v, "origin received %r, expected %r" % (r, want)))
        if want.chunked is not None and r.chunked != want.chunked:
            errs.append(fail(v, "origin received chunked=%r, expected %r" % (r.chunked, want.chunked)))
        for k, val in want.headers.items():
            if r.header(k) != val:
                errs.append(fail(v, "origin received %s: %r, expected %r" % (k, r.header(k), val)))
        for k in want.absent:
            if r.header(k) is not None:
                errs.append(fail(v, "origin received %s: %r, which must be removed" % (k, r.header(k))))
    if sentinel is not None and len(got) == want_n and got[-1].target != "/sentinel":
        errs.append(fail(v, "last request at the origin is not the sentinel: %r" % got[-1]))
    return errs


def run_vector(port, v, mode, origin):
    mark = origin.mark() if origin else None
    nerr = len(origin.errors) if origin else 0
    c = lp.Conn(port, timeout=3)
    try:
        try:
            c.send(v.raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if isinstance(v.expect, Reject):
            errs = check_reject(v, c, origin, mark)
        else:
            errs = check_forward(v, c, origin, mark, mode)
    finally:
        c.close()
    if origin is not None:
        origin.wait_quiet()
        errs += [fail(v, "strict origin: " + e) for e in origin.errors_since(nerr)]
    return errs


def still_serving(port, mode):
    r = lp.get(port, "/health")
    assert r.status == 200, "%s: the worker does not serve after the corpus: %r" % (mode, r)


def run_corpus(port, mode, origin, proxy):
    failures = []
    for v in corpus.VECTORS:
        failures += run_vector(port, v, mode, origin)
    still_serving(port, mode)
    before = proxy.worker_pids()
    assert before, "no worker"
    r, f = corpus.counts()
    assert not failures, "%d of %d vectors (%d rejected, %d forwarded) failed in %s mode:\n  %s" % (
        len(failures), len(corpus.VECTORS), r, f, mode, "\n  ".join(failures))


def test_corpus_is_big_and_covers_every_category():
    names = [v.name for v in corpus.VECTORS]
    assert len(names) == len(set(names)), "duplicate vector names"
    assert len(corpus.VECTORS) >= 70, len(corpus.VECTORS)
    cats = {v.category for v in corpus.VECTORS}
    want = {"cl-te", "te", "cl", "colon", "fold", "eol", "ctl", "chunk", "target", "version", "limits",
            "host", "upgrade", "hop", "pipeline"}
    assert want <= cats, "missing categories: %r" % (want - cats)


def test_corpus_through_the_proxy():
    with StrictOrigin() as o, lp.Proxy(proxy_script(o), workers=1) as p:
        pids = p.wait_workers(1)
        run_corpus(p.port, "proxy", o, p)
        assert p.worker_pids() == pids, "a worker died during the corpus"
        o.assert_clean()


def test_corpus_through_a_local_handler():
    with lp.Proxy(LOCAL, workers=1) as p:
        pids = p.wait_workers(1)
        run_corpus(p.port, "local", None, p)
        assert p.worker_pids() == pids, "a worker died during the corpus"


EDITING = r'''
local up = proxy.upstream("strict", { "%s" }, { retries = 0 })
-- Each attempt must raise "<name> is managed by the proxy"; the request
-- then goes on with the proxy's own framing.
local function refused(obj, name, value)
  local ok, err = pcall(obj.set_header, obj, name, value)
  assert(not ok and err:find("managed by the proxy", 1, true), name .. " was accepted")
end
function route(req)
  refused(req, "Content-Length", "0")
  refused(req, "Transfer-Encoding", "chunked")
  refused(req, "Connection", "close")
  refused(req, "Upgrade", "h2c")
  req:set_header("X-Edited", "1")
  return up
end
function on_response(req, res)
  refused(res, "content-length", "1")
  refused(res, "transfer-encoding", "chunked")
  refused(res, "connection", "close")
  res:set_header("x-edited", "1")
end
'''


def test_script_cannot_edit_the_framing():
    """A script's set_header of Content-Length, Transfer-Encoding or a
    hop-by-hop header raises an error both ways (and forward.c ignores such
    edits as well): the framing stays the proxy's."""
    with StrictOrigin() as o, lp.Proxy(EDITING % o.addr, workers=1) as p, lp.Conn(p.port) as c:
        for body in (b"hello", b"0123456789" * 100):
            c.send(lp.build_request("POST", "/e", body=body))
            r = c.read_response()
            assert r.status == 200 and r.header("x-edited") == "1", r
            assert r.header("transfer-encoding") is None and "close" not in r.connection_tokens(), r
            assert r.body.startswith(b"token="), r
        c.send(lp.build_request("POST", "/chunked", body=b"5\r\nhello\r\n0\r\n\r\n",
                                headers={"Transfer-Encoding": "chunked"}))
        r = c.read_response()
        assert r.status == 200, r
        lp.expect(c.request("GET", "/after"), 200)
        o.wait_quiet()
        got = o.requests_since((0, 0))
        assert [(q.target, q.body) for q in got] == [("/e", b"hello"), ("/e", b"0123456789" * 100),
                                                     ("/chunked", b"hello"), ("/after", b"")], got
        assert all(q.header("x-edited") == "1" for q in got), got
        o.assert_clean()


def test_malformed_chunk_arriving_later():
    """A bad chunk that comes after the head was forwarded: the client gets
    400 and the close, the backend connection (holding half a request) is
    closed, never reused, and the backend never sees a complete request."""
    with StrictOrigin() as o, lp.Proxy(proxy_script(o), workers=1) as p:
        for bad in (b"zz\r\n", b"5\r\nhelloXX", b"1;=x\r\n"):
            mark = o.mark()
            nerr = len(o.errors)
            with lp.Conn(p.port) as c:
                c.send(b"POST /late HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n")
                # The head and the good chunk are at the backend before the bad one is sent.
                lp.wait_until(lambda: any(not rec.closed and rec.raw.endswith(b"\r\n\r\n5\r\nhello\r\n")
                                          for rec in list(o.conns)),
                              what="the head and first chunk of /late at the backend")
                c.send(bad)
                r = c.read_response(timeout=3)
                assert r.status == 400 and "close" in r.connection_tokens(), "%r: %r" % (bad, r)
                assert c.closed_by_peer(3), "connection left open after %r" % bad
            o.wait_quiet()
            assert not o.requests_since(mark), "the backend saw a complete request: %r" % o.requests_since(mark)
            # The origin notices the close in its own thread: wait for it.
            errs = lp.wait_until(lambda: o.errors_since(nerr) or None, timeout=3,
                                 what="the backend connection closed inside the request")
            assert len(errs) == 1 and "closed inside a request" in errs[0], errs
            with lp.Conn(p.port) as c:
                r = c.request("GET", "/next")
                assert r.status == 200, r
            got = o.requests_since(mark)
            broken = [rec.id for rec in o.conns if rec.error]
            assert [q.target for q in got] == ["/next"] and got[0].conn_id not in broken, \
                "after %r: %r (broken backend connections %r)" % (bad, got, broken)
    with lp.Proxy(LOCAL, workers=1) as p, lp.Conn(p.port) as c:
        c.send(b"POST /late HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        lp.wait_server_read(p.port, c, what="the worker to read the head and first chunk")
        c.send(b"zz\r\n")
        r = c.read_response(timeout=3)
        assert r.status == 400 and c.closed_by_peer(3), r


TRAILERS = r'''
function on_post(req)
  return 200, "host=" .. tostring(req.headers["host"]) .. " x-admin=" .. tostring(req.headers["x-admin"])
end
'''


def test_trailers_never_become_headers():
    """Trailer fields pass through to the backend as trailers, but the script
    never sees them as headers (a trailer 'X-Admin' would reach it unchecked
    by whatever sits in front). A trailer 'Host' is refused outright (see the
    corpus' trailer_* vectors)."""
    wire = (b"POST /t HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Admin: 1\r\n\r\n")
    with lp.Proxy(TRAILERS, workers=1) as p, lp.Conn(p.port) as c:
        c.send(wire)
        r = c.read_response()
        assert r.status == 200 and r.body == b"host=127.0.0.1 x-admin=nil", "trailers read as headers: %r" % r
    with StrictOrigin() as o, lp.Proxy(proxy_script(o), workers=1) as p, lp.Conn(p.port) as c:
        c.send(wire)
        r = c.read_response()
        assert r.status == 200, r
        o.wait_quiet()
        [q] = o.requests_since((0, 0))
        assert q.body == b"hello" and q.header("x-admin") is None and q.getall("host") == ["127.0.0.1"], q
        assert ("x-admin", "1") in q.trailers, q.trailers
        o.assert_clean()
