"""SPEC §5: Connection: Upgrade: the backend's 101 reaches the client with
Connection and Upgrade, then bytes are tunnelled both ways until a side
closes."""

import random
import socket
import threading
import time

import lp
from origin import Origin, pattern_bytes, upstream_script

WS_HEAD = (b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def _read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise AssertionError("connection closed before the 101; got %r" % buf[:300])
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return lp.parse_response(head + b"\r\n\r\n", head=True)[0], rest


def test_websocket_upgrade_tunnel_1mib():
    n = 1024 * 1024
    data = pattern_bytes(n, offset=12345)
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            s.sendall(WS_HEAD)
            r, rest = _read_head(s)
            assert r.status == 101, "Upgrade request: expected 101, got %r" % r
            assert r.header("upgrade", "").lower() == "websocket", "101 without Upgrade: %r" % r
            assert "upgrade" in r.connection_tokens(), "101 without Connection: Upgrade: %r" % r
            assert rest == b"", "bytes after the 101 head before we sent any: %r" % rest[:100]
            rec = o.last()
            assert rec.header("upgrade") == "websocket", "Upgrade not forwarded: %r" % rec.headers
            assert "upgrade" in rec.tokens("connection"), "Connection: Upgrade not forwarded: %r" % rec.headers
            assert rec.header("sec-websocket-key") == "dGhlIHNhbXBsZSBub25jZQ==", rec.headers

            err = []

            def sender():
                try:
                    rnd = random.Random(7)
                    off = 0
                    while off < n:
                        k = min(rnd.randint(1, 65536), n - off)
                        s.sendall(data[off:off + k])
                        off += k
                except Exception as e:
                    err.append(repr(e))

            t = threading.Thread(target=sender, daemon=True)
            t.start()
            got = bytearray()
            deadline = time.monotonic() + 20
            while len(got) < n and time.monotonic() < deadline:
                d = s.recv(262144)
                if not d:
                    break
                got += d
            t.join(10)
            assert not err, "sending through the tunnel: %s" % err
            assert len(got) == n, "tunnel echoed %d of %d bytes" % (len(got), n)
            assert bytes(got) == data, "tunnelled bytes differ (first at %d)" % next(
                i for i in range(n) if got[i] != data[i])
            # the client half-closes: the origin sees EOF and closes; the proxy
            # closes the client side
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                tail = s.recv(65536)
            except ConnectionResetError:
                tail = b""
            assert tail == b"", "bytes after the echo: %r" % tail[:100]
        finally:
            s.close()
        o.assert_clean()


def test_upgrade_bytes_sent_with_the_request():
    """Bytes the client sends right behind the Upgrade request head reach the
    backend after its 101 (they must not be taken for a second request)."""
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        s = socket.create_connection(("127.0.0.1", p.port), timeout=10)
        try:
            s.sendall(WS_HEAD + b"early-bytes")
            r, rest = _read_head(s)
            assert r.status == 101, r
            got = rest
            deadline = time.monotonic() + 5
            while len(got) < len(b"early-bytes") and time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            assert got == b"early-bytes", "early tunnel bytes came back as %r" % got
        finally:
            s.close()
        o.assert_clean()
