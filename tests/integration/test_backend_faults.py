"""Backends that break. Each fault is served by the strict
origin (tests/helpers/strict_origin.py) for one request; what the client
gets must be a clean 502/504, or, once the response head went out, a clean
close (never a hang, never a body that looks complete). Then the worker must
go on serving, and the backend connection of the fault must never be handed
out again: the next request must arrive at the origin on another connection
and be answered with its own response, not with bytes the broken one left.

Connect failures, retries, plain 504 and health checks are in
test_proxy_failures.py; truncated and garbage responses from the ordinary
test origin in test_proxy_edge.py."""

import socket
import time

import lp
from strict_origin import StrictOrigin, default_answer

POISON = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Poison: 1\r\n\r\nPOISON"


def head(status=200, headers=(), length=None, chunked=False):
    h = b"HTTP/1.1 %d X\r\n" % status
    for k, v in headers:
        h += k + b": " + v + b"\r\n"
    if length is not None:
        h += b"Content-Length: %d\r\n" % length
    if chunked:
        h += b"Transfer-Encoding: chunked\r\n"
    return h + b"\r\n"


# name -> steps the origin runs for GET /fault/<name>
FAULTS = {
    "reset_before_head": ["reset"],
    "close_before_head": ["close"],
    "reset_mid_head": [b"HTTP/1.1 200 OK\r\nContent-Le", ("sleep", 0.05), "reset"],
    "reset_mid_body": [head(length=100000) + b"x" * 30000, ("sleep", 0.05), "reset"],
    "garbage_status_line": [b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok"],
    "not_http": [b"SSH-2.0-OpenSSH_9.2\r\n\r\n"],
    "unknown_version": [b"HTTP/3.7 200 OK\r\nContent-Length: 2\r\n\r\nok"],
    "bare_lf_head": [b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"],
    "nul_in_header": [b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok"],
    "obs_fold_header": [b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok"],
    "oversized_head": [head(headers=[(b"X-Big-%d" % i, b"v" * 1000) for i in range(70)], length=2) + b"ok"],
    "too_many_headers": [head(headers=[(b"X-H-%d" % i, b"v") for i in range(150)], length=2) + b"ok"],
    "cl_and_te": [head(length=5, chunked=True) + b"5\r\nhello\r\n0\r\n\r\n"],
    "cl_conflict": [head(headers=[(b"Content-Length", b"6")], length=5) + b"hello!"],
    "cl_negative": [head(headers=[(b"Content-Length", b"-1")]) + b"x"],
    "cl_too_short": [head(length=5) + b"hello" + POISON],
    "cl_too_short_late": [head(length=5) + b"hello", ("sleep", 0.1), POISON, "keep"],
    "cl_too_long_close": [head(length=100) + b"y" * 50, "close"],
    "cl_too_long_hang": [head(length=100) + b"y" * 50, "hang"],
    "body_on_204": [head(204, length=6) + b"POISON"],
    "chunked_bad_size": [head(chunked=True) + b"zz\r\nhello\r\n0\r\n\r\n"],
    "chunked_bad_later": [head(chunked=True) + b"5\r\nhello\r\n", ("sleep", 0.05), b"zz\r\n"],
    "chunked_truncated": [head(chunked=True) + b"5\r\nhello\r\n", ("sleep", 0.05), "close"],
    "chunked_extra_after_end": [head(chunked=True) + b"5\r\nhello\r\n0\r\n\r\n" + POISON],
    "hang_before_head": ["hang"],
    "hang_mid_head": [b"HTTP/1.1 200 OK\r\n", "hang"],
    "connection_names_content_length": [head(headers=[(b"Connection", b"content-length")], length=5) + b"hello"],
    "connection_names_transfer_encoding": [
        head(headers=[(b"Connection", b"transfer-encoding")], chunked=True) + b"5\r\nhello\r\n0\r\n\r\n"],
    "interim_and_final_in_one_read": [b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + head(length=5) + b"hello"],
    "interim_flood": [b"HTTP/1.1 100 Continue\r\n\r\n" * 200 + head(length=5) + b"hello"],
    "te_gzip": [head(headers=[(b"Transfer-Encoding", b"gzip")]) + b"\x1f\x8b gzip bytes", "close"],
    "te_gzip_chunked": [head(headers=[(b"Transfer-Encoding", b"gzip, chunked")]) + b"3\r\nabc\r\n0\r\n\r\n"],
}

# Faults after which the backend connection is in a known state and may be
# reused: the answer was malformed in a way the proxy repaired.
REUSABLE = {"connection_names_content_length", "connection_names_transfer_encoding",
            "interim_and_final_in_one_read", "interim_flood"}

# What the client must see: ("status", N), ("cut",) = a head then a close
# before the body is complete, ("ok", body) = a clean, complete answer.
OUTCOME = {
    "reset_before_head": ("status", 502),
    "close_before_head": ("status", 502),
    "reset_mid_head": ("status", 502),
    "reset_mid_body": ("cut",),
    "garbage_status_line": ("status", 502),
    "not_http": ("status", 502),
    "unknown_version": ("status", 502),
    "bare_lf_head": ("status", 502),
    "nul_in_header": ("status", 502),
    "obs_fold_header": ("status", 502),
    "oversized_head": ("status", 502),
    "too_many_headers": ("status", 502),
    "cl_and_te": ("status", 502),
    "cl_conflict": ("status", 502),
    "cl_negative": ("status", 502),
    "cl_too_short": ("ok", b"hello"),
    "cl_too_short_late": ("ok", b"hello"),
    "cl_too_long_close": ("cut",),
    "cl_too_long_hang": ("cut",),
    "body_on_204": ("ok", b""),
    "chunked_bad_size": ("status", 502),
    "chunked_bad_later": ("cut",),
    "chunked_truncated": ("cut",),
    "chunked_extra_after_end": ("ok", b"hello"),
    "hang_before_head": ("status", 504),
    "hang_mid_head": ("status", 504),
    "connection_names_content_length": ("ok", b"hello"),
    "connection_names_transfer_encoding": ("ok", b"hello"),
    "interim_and_final_in_one_read": ("ok", b"hello"),
    "interim_flood": ("ok", b"hello"),
    "te_gzip": ("status", 502),
    "te_gzip_chunked": ("status", 502),
}


def respond(req):
    if req.target.startswith("/fault/"):
        return FAULTS[req.target[len("/fault/"):]]
    return default_answer(req)


SCRIPT = '''local up = proxy.upstream("faulty", { "%s" }, { retries = 0, read_timeout = "500ms",
                                                   max_fails = 0 })
function route(req) return up end
'''


def read_outcome(c, want, name):
    """Checks what the client got for the fault; returns whether the client
    connection may still be used."""
    t0 = time.monotonic()
    if want[0] == "status":
        r = c.read_response(timeout=5)
        assert r.status == want[1], "%s: expected %d, got %r" % (name, want[1], r)
        assert int(r.header("content-length", "-1")) == len(r.body), "%s: bad framing %r" % (name, r)
        return "close" not in r.connection_tokens()
    if want[0] == "ok":
        r = c.read_response(timeout=5)
        while r.status // 100 == 1:
            r = c.read_response(timeout=5)
        status = 204 if name == "body_on_204" else 200
        assert r.status == status and r.body == want[1], "%s: expected %d %r, got %r" % (name, status, want[1], r)
        assert r.header("x-poison") is None
        return "close" not in r.connection_tokens()
    # cut: a response head, then the connection ends before the body does.
    data = c.read_until_close(timeout=5)
    dt = time.monotonic() - t0
    assert c.eof, "%s: the client connection stayed open %.1fs after the backend broke (%d bytes)" % (
        name, dt, len(data))
    assert data.startswith(b"HTTP/1.1 200"), "%s: expected a response head, got %r" % (name, data[:200])
    try:
        rs = lp.parse_responses(data)
    except lp.ProtocolError:
        rs = []
    assert not rs, "%s: a broken body reached the client as a complete response: %r" % (name, rs)
    return False


def check_next(c, o, fault_conn, name):
    """The next request gets its own answer, on another backend connection."""
    mark = o.mark()
    r = c.request("GET", "/next")
    assert r.status == 200 and r.header("x-poison") is None, "%s: request after the fault got %r" % (name, r)
    got = o.requests_since(mark)
    assert len(got) == 1 and got[0].target == "/next", "%s: origin got %r" % (name, got)
    assert r.header("x-strict-token") == str(got[0].token), \
        "%s: answer %r is not the one for %r (desynchronised)" % (name, r, got[0])
    if fault_conn is not None:
        assert got[0].conn_id != fault_conn, \
            "%s: the backend connection of the fault was reused for the next request" % name


def run_fault(p, o, name):
    mark = o.mark()
    kept = False
    with lp.Conn(p.port, timeout=6) as c:
        c.send(lp.build_request("GET", "/fault/" + name))
        kept = read_outcome(c, OUTCOME[name], name)
        reqs = o.requests_since(mark)
        assert reqs and reqs[0].target == "/fault/" + name, "%s: origin got %r" % (name, reqs)
        fault_conn = None if name in REUSABLE else reqs[0].conn_id
        if name.endswith("_late"):
            # The stray bytes have been sent while the connection is idle in the pool.
            lp.wait_until(lambda: reqs[0].answered, what="%s: the origin to send its stray bytes" % name)
        if kept:
            check_next(c, o, fault_conn, name)
    with lp.Conn(p.port, timeout=6) as c2:
        check_next(c2, o, fault_conn, name)


def test_backend_faults():
    assert set(FAULTS) == set(OUTCOME)
    with StrictOrigin(respond=respond) as o, lp.Proxy(SCRIPT % o.addr, workers=1) as p:
        pids = p.wait_workers(1)
        failures = []
        for name in FAULTS:
            try:
                run_fault(p, o, name)
            except (AssertionError, OSError, lp.ProtocolError, socket.timeout) as e:
                failures.append("%s: %s: %s" % (name, type(e).__name__, e))
        assert not failures, "%d of %d backend faults handled wrong:\n  %s" % (
            len(failures), len(FAULTS), "\n  ".join(failures))
        assert p.worker_pids() == pids, "the worker was replaced during the faults"
        # The origin's own view: every request it got was well-formed.
        o.assert_clean()
