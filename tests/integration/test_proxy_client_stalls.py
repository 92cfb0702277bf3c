"""A client that stops reading a proxied response: the exchange makes no
progress, and read_timeout (which counts from the last byte moved) ends it.
The client connection is closed, and the log line blames the client (with
its address), not the backend; the backend is not marked failed for it."""

import re
import socket
import time

import lp
from origin import Origin, upstream_script

BIG = 64 << 20


def _stall(path):
    opts = 'read_timeout = "600ms", max_fails = 1, fail_timeout = "30s"'
    with Origin() as o, lp.Proxy(upstream_script([o], opts), workers=1) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            port = s.getsockname()[1]
            s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
            first = s.recv(4096)
            assert first.startswith(b"HTTP/1.1 200"), first[:100]
            # stop reading; the proxy must give up on us after read_timeout
            line = p.wait_stderr("stopped reading", timeout=5)
            assert line, "no log line saying the client stopped reading; stderr:\n%s" % p.stderr_text()[-2000:]
            text = p.stderr_text()
            blame = [l for l in text.splitlines() if "stopped reading" in l]
            assert re.search(r"client 127\.0\.0\.1:%d\b" % port, blame[0]), \
                "the line does not name the client %d: %r" % (port, blame[0])
            assert "read_timeout" in blame[0], "the line does not name the timeout: %r" % blame[0]
            assert "no response within read_timeout" not in text, \
                "the backend was blamed for a client that stopped reading:\n%s" % text[-2000:]
            # the connection is closed: reading on drains the buffers, then EOF
            s.settimeout(5)
            got, deadline = 0, time.monotonic() + 10
            while time.monotonic() < deadline:
                d = s.recv(1 << 20)
                if not d:
                    break
                got += len(d)
            else:
                raise AssertionError("the stalled client's connection was not closed")
            assert got < BIG, "the whole body arrived: the exchange was not ended"
            # the backend did nothing wrong: it still takes traffic
            r = lp.get(p.port, "/echo", timeout=5)
            assert r.status == 200, "the backend was marked down for a stalled client: %r" % r
        finally:
            s.close()


def test_client_that_stops_reading_a_spliced_body_is_blamed():
    _stall("/size/%d" % BIG)


def test_client_that_stops_reading_a_chunked_body_is_blamed():
    _stall("/chunked/%d" % BIG)


def test_client_that_stops_sending_its_upload_is_blamed():
    """A client that stops in the middle of a proxied upload: read_timeout
    ends it with 408 (the client's fault, as nginx's client_body_timeout),
    the log names the client, and the backend is not marked failed (one
    slow uploader must not take a server out with max_fails = 1)."""
    opts = 'read_timeout = "600ms", max_fails = 1, fail_timeout = "30s"'
    with Origin() as o, lp.Proxy(upstream_script([o], opts), workers=1) as p:
        for body in ("length", "chunked"):
            s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
            try:
                port = s.getsockname()[1]
                if body == "length":
                    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"u" * 1000)
                else:
                    s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                              b"3e8\r\n" + b"u" * 1000 + b"\r\n")
                t0 = time.monotonic()
                got = b""
                while True:
                    d = s.recv(65536)
                    if not d:
                        break
                    got += d
                dt = time.monotonic() - t0
            finally:
                s.close()
            assert got.startswith(b"HTTP/1.1 408"), "%s upload stalled by the client: got %r" % (body, got[:200])
            assert 0.5 <= dt < 2.5, "408 after %.2fs with read_timeout = 600ms" % dt
            text = p.wait_stderr("client 127.0.0.1:%d stopped sending" % port, timeout=3)
            assert "no response within read_timeout" not in text, text[-2000:]
            r = lp.get(p.port, "/echo", timeout=5)
            assert r.status == 200, "the backend was marked down for a client's stalled upload: %r" % r


def test_client_waiting_for_100_continue_is_not_blamed():
    """A client that asked for 100-continue waits for it: when the backend
    never sends it, the silence is the backend's (504), not the client's."""
    from strict_origin import StrictOrigin
    with StrictOrigin() as o, lp.Proxy(upstream_script([o.addr], 'read_timeout = "600ms"'), workers=1) as p:
        raw = lp.send_raw(p.port, b"POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                  b"Content-Length: 1000\r\n\r\n", timeout=5)
        assert raw.startswith(b"HTTP/1.1 504"), "no 100 Continue from the backend: got %r" % raw[:200]
        assert "stopped sending" not in p.stderr_text(), p.stderr_text()[-2000:]
