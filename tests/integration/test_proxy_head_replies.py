"""Replies to HEAD never carry a body, whoever produces them: the
rejections, a script error (500), the handlers (on_get answering a HEAD, a
route returning status and body), the --admin endpoints, and the proxy's
own 502/503/504. Every test reads the raw bytes: after the head of the HEAD
answer comes either the end of the connection or the next response of the
pipeline, nothing else. Where SPEC says so (HEAD through on_get, a route's
answer, admin), Content-Length is the one the GET gets."""

import socket
import time

import lp
from origin import Origin, dead_port, upstream_script

AFTER = b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def read_all(port, data, timeout=5.0, pause=None):
    """Sends data (and `pause`, after a delay, if given); every byte until
    the server closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if pause:
            time.sleep(pause[0])
            try:
                s.sendall(pause[1])
            except OSError:
                pass
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                return out
            out += d
        raise AssertionError("the connection was not closed within %.1fs; got %r" % (timeout, out[:300]))
    finally:
        s.close()


def split_head(raw):
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, "no complete response head in %r" % raw[:300]
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], headers, rest


def head_then_close(port, request, status, pause=None, timeout=5.0):
    """A HEAD the server answers and then closes: nothing after the head."""
    raw = read_all(port, request, timeout=timeout, pause=pause)
    line, headers, rest = split_head(raw)
    assert line.startswith("HTTP/1.1 %d" % status), "expected %d, got %r" % (status, raw[:300])
    assert rest == b"", "a %d answer to HEAD carried body bytes %r (head %r)" % (status, rest[:200], line)
    return headers


def head_then_next(port, path, status, extra=b""):
    """A HEAD pipelined with a GET: the bytes after the HEAD's head must be
    the GET's response. Returns the HEAD's headers."""
    raw = read_all(port, b"HEAD %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path.encode(), extra) + AFTER)
    line, headers, rest = split_head(raw)
    assert line.startswith("HTTP/1.1 %d" % status), "HEAD %s: expected %d, got %r" % (path, status, raw[:300])
    assert rest.startswith(b"HTTP/1.1 "), \
        "HEAD %s (%d): body bytes before the next response: %r" % (path, status, rest[:200])
    return headers


SCRIPT = r'''
function route(req)
  if req.path == "/routed" then return 200, "answered by route\n", { ["x-r"] = "1" } end
  if req.path == "/route-error" then error("route failed") end
end
function on_get(req)
  if req.path == "/handler-error" then error("handler failed") end
  return 200, "hello from on_get, a body of some length\n"
end
function on_post(req) return 200, "posted\n" end
'''


def test_handler_replies_to_head_have_no_body_and_the_get_length():
    with lp.Proxy(SCRIPT, args=["--max-body-size", "1k"]) as p:
        for path in ("/anything", "/routed"):
            get = lp.get(p.port, path)
            assert get.status == 200 and get.body, get
            h = head_then_next(p.port, path, 200)
            assert h.get("content-length") == str(len(get.body)), \
                "HEAD %s: Content-Length %r, the GET's is %d" % (path, h.get("content-length"), len(get.body))
        for path in ("/route-error", "/handler-error"):
            head_then_next(p.port, path, 500)


def test_rejections_of_head_have_no_body():
    args = ["--max-body-size", "1k", "--max-header-size", "4k", "--header-timeout", "300ms",
            "--idle-timeout", "300ms"]
    with lp.Proxy(SCRIPT, args=args) as p:
        base = b"HEAD / HTTP/1.1\r\nHost: x\r\n"
        head_then_close(p.port, base + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400)
        head_then_close(p.port, base + b"Transfer-Encoding: gzip\r\n\r\n", 501)
        head_then_close(p.port, base + b"Content-Length: 100000\r\n\r\n", 413)
        head_then_close(p.port, base + b"X-Big: " + b"a" * 8000 + b"\r\n\r\n", 431)
        # the head is complete, the body it announced never comes
        head_then_close(p.port, base + b"Content-Length: 10\r\n\r\nab", 408)
        # a bad header line: the request line said HEAD
        head_then_close(p.port, base + b"Bad Header: y\r\n\r\n", 400)
        # the head never completes
        head_then_close(p.port, base + b"X-A: 1\r\n", 408)
        # the same rejections of a GET do carry their body
        raw = read_all(p.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        assert split_head(raw)[2] == b"bad request\n", raw
        # a HEAD answered, then a request line that is not one: its 400 has
        # a body (the method of the request before does not count)
        raw = read_all(p.port, base + b"\r\n" + b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n")
        line, _, rest = split_head(raw)
        assert line.startswith("HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 400"), raw
        assert split_head(rest)[2] == b"bad request\n", raw


def test_admin_replies_to_head_have_no_body():
    admin = lp.free_port()
    with lp.Proxy(SCRIPT, args=["--admin", "127.0.0.1:%d" % admin]) as p:
        lp.wait_until(lambda: lp.port_accepts(admin), 5, what="the admin port")
        for path in ("/metrics", "/status"):
            head_then_next(admin, path, 200)
        head_then_next(admin, "/nothing-here", 404)


def test_proxy_errors_to_head_have_no_body():
    with lp.Proxy(upstream_script([dead_port()], "retries = 0, max_fails = 1000")) as p:
        head_then_next(p.port, "/x", 502)
    with Origin() as o, lp.Proxy(upstream_script([o], 'read_timeout = "300ms"')) as p:
        head_then_close(p.port, b"HEAD /hang HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 504)
        # a backend's own answer to HEAD: the GET's length, no body
        get = lp.get(p.port, "/size/1000")
        h = head_then_next(p.port, "/size/1000", 200)
        assert h.get("content-length") == "1000" and len(get.body) == 1000, h


def test_try_prints_no_body_for_head():
    path = lp.write_script(SCRIPT)
    get = lp.run_cli(["--try", "GET /anything", path])
    head = lp.run_cli(["--try", "HEAD /anything", path])
    assert get.returncode == 0 and head.returncode == 0, (get, head)
    body = "hello from on_get, a body of some length\n"
    assert get.stdout.endswith("\n\n" + body), get.stdout
    assert head.stdout.endswith("\n\n"), "--try printed a body for HEAD: %r" % head.stdout
    assert "Content-Length: %d\n" % len(body) in head.stdout, head.stdout
