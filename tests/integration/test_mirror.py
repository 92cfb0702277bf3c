"""SPEC §9, mirroring: `mirror = other_upstream` sends a copy of every
request (head and body) to another upstream and discards its answers. The
copies are the same bytes (hashed at both backends: spliced, with the head,
and chunked bodies); a mirror that reads nothing or refuses connections
costs the client nothing (each request timed), and the copies it could not
take are counted in luaproxy_mirror_dropped_total{upstream}."""

import hashlib
import os
import re
import signal
import socket
import threading
import time

import lp
from origin import Origin, StreamConn, dead_port, pattern_chunks, pattern_sha256
from tcpserver import HOST

BIG = 4 << 20
SMALL = 200000


def script(primary, mirror_addr, mirror_opts=""):
    return ('local shadow = proxy.upstream("shadow", { "%s" }, { %s })\n'
            'local up = proxy.upstream("app", { "%s" }, { mirror = shadow })\n'
            'function route(req) return up end\n' % (mirror_addr, mirror_opts, primary.addr))


def dropped(admin_port):
    r = lp.get(admin_port, "/metrics")
    assert r.status == 200, r
    m = re.search(rb'^luaproxy_mirror_dropped_total\{upstream="shadow"\} (\d+)$', r.body, re.M)
    return int(m.group(1)) if m else 0


def wait_records(o, n, what):
    lp.wait_until(lambda: o.requests >= n and all(x.complete for x in o.records[:n]), timeout=10,
                  what=what)


def same_request(a, b):
    assert (a.method, a.target, a.version) == (b.method, b.target, b.version), (a, b)
    assert a.headers == b.headers, "heads differ:\n%r\n%r" % (a.headers, b.headers)
    assert (a.body_len, a.body_sha256, a.chunked) == (b.body_len, b.body_sha256, b.chunked), (a, b)


def post_big(port, n, chunked=False, path="/upload"):
    with StreamConn(port) as c:
        if chunked:
            c.send(b"POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode())
            for piece in pattern_chunks(n, chunk=100000):
                c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            c.send(b"0\r\n\r\n")
        else:
            c.send(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (path.encode(), n))
            for piece in pattern_chunks(n):
                c.send(piece)
        return c.read_response()


class CountingMirror:
    """A mirror backend that says how many bytes it received so far, so a
    client can keep in step with it (a test that must see every copy
    cannot let the mirror fall behind: that is when copies are dropped).
    Reads one request with a Content-Length body per connection, records
    its head lines and the body's sha256, answers 200."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.addr = "%s:%d" % (HOST, self.sock.getsockname()[1])
        self.received = 0
        self.requests = []   # (head lines, body sha256)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += conn.recv(65536)
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            n = int([l.split(":", 1)[1] for l in lines if l.lower().startswith("content-length:")][0])
            h = hashlib.sha256(body)
            self.received = len(body)
            while self.received < n:
                data = conn.recv(1 << 20)
                if not data:
                    return
                h.update(data)
                self.received += len(data)
            self.requests.append((lines, h.hexdigest()))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def close(self):
        self.sock.close()


def test_a_spliced_body_reaches_the_mirror_whole():
    admin = lp.free_port()
    mirror = CountingMirror()
    try:
        with Origin(name="real", keep_body=0) as real, \
                lp.Proxy(script(real, mirror.addr), workers=1, args=["--admin", "127.0.0.1:%d" % admin]) as p, \
                StreamConn(p.port) as c:
            c.send(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % BIG)
            sent = 0
            for piece in pattern_chunks(BIG, chunk=65536):
                c.send(piece)
                sent += len(piece)
                lp.wait_until(lambda: mirror.received >= sent, timeout=10,
                              what="the mirror to get %d body bytes (it has %d)" % (sent, mirror.received))
            r = c.read_response()
            assert r.status == 200 and r.header("x-origin") == "real", r
            lp.wait_until(lambda: mirror.requests, timeout=5, what="the mirror's copy to end")
            lines, sha = mirror.requests[0]
            rec = real.records[0]
            assert sha == rec.body_sha256 == pattern_sha256(BIG), (sha, rec)
            assert lines[0] == "POST /upload HTTP/1.1", lines
            assert [tuple(l.split(": ", 1)) for l in lines[1:]] == rec.headers, (lines, rec.headers)
            assert dropped(admin) == 0
    finally:
        mirror.close()


def test_the_mirror_gets_the_same_requests():
    admin = lp.free_port()
    with Origin(name="real", keep_body=0) as real, Origin(name="copy", keep_body=0) as copy, \
            lp.Proxy(script(real, copy.addr), workers=1, args=["--admin", "127.0.0.1:%d" % admin]) as p:
        # a spliced body (smaller than what the pipe and the socket buffers
        # hold, so that a mirror slower than the real backend gets it all)
        r = post_big(p.port, SMALL, path="/upload?big")
        assert r.status == 200 and r.header("x-origin") == "real", r
        # a chunked one, relayed
        r = post_big(p.port, SMALL, chunked=True, path="/upload?chunked")
        assert r.status == 200 and r.header("x-origin") == "real", r
        # a body that came with its head, and none
        with lp.Conn(p.port) as c:
            c.send(lp.build_request("PUT", "/echo?small", b"x" * 5000))
            assert c.read_response().status == 200
            assert c.request("GET", "/echo?none", headers={"X-Test": "1"}).status == 200
        wait_records(copy, 4, "the mirror to get all four copies")
        assert real.requests == 4 and copy.requests == 4, (real.requests, copy.requests)
        # Copies run on their own: they may arrive in another order.
        by_target = {x.target: x for x in copy.records}
        for a in real.records:
            same_request(a, by_target[a.target])
        assert by_target["/upload?big"].body_sha256 == pattern_sha256(SMALL)
        chunked = by_target["/upload?chunked"]
        assert chunked.chunked and chunked.body_sha256 == pattern_sha256(SMALL)
        assert dropped(admin) == 0
        real.assert_clean()
        copy.assert_clean()


def test_the_copies_connections_are_pooled():
    with Origin(name="real") as real, Origin(name="copy") as copy, \
            lp.Proxy(script(real, copy.addr), workers=1) as p, lp.Conn(p.port) as c:
        for i in range(20):
            assert c.request("GET", "/echo?%d" % i).status == 200
            wait_records(copy, i + 1, "copy %d" % i)
        # Each copy's answer is read to its end and its connection pooled;
        # one may still be reading its answer when the next copy starts.
        assert copy.connections <= 10, "%d connections for 20 copies" % copy.connections


def test_the_mirror_name_may_be_a_string_and_its_answers_are_discarded():
    with Origin(name="real") as real, Origin(name="copy", status=500) as copy:
        text = ('proxy.upstream("shadow", { "%s" })\n'
                'local up = proxy.upstream("app", { "%s" }, { mirror = "shadow" })\n'
                'function route(req) return up end\n' % (copy.addr, real.addr))
        with lp.Proxy(text, workers=1) as p:
            for i in range(5):
                r = lp.get(p.port, "/echo?%d" % i)
                assert r.status == 200 and r.header("x-origin") == "real", r
            wait_records(copy, 5, "five copies")


class Sink:
    """Accepts connections (the kernel does, into the backlog) and never
    reads: a mirror that stalls. A tiny receive buffer fills at once."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.addr = "%s:%d" % (HOST, self.sock.getsockname()[1])

    def close(self):
        self.sock.close()


def timed_uploads(port, n, size):
    worst = 0.0
    for _ in range(n):
        t0 = time.monotonic()
        r = post_big(port, size)
        worst = max(worst, time.monotonic() - t0)
        assert r.status == 200 and r.header("x-origin") == "real", r
    return worst


def test_a_mirror_that_reads_nothing_costs_the_client_nothing():
    admin = lp.free_port()
    sink = Sink()
    try:
        # Were the real request held up by the mirror, it would wait for
        # the mirror's read_timeout (20 s) at least.
        with Origin(name="real", keep_body=0) as real, \
                lp.Proxy(script(real, sink.addr, 'read_timeout = "20s"'), workers=1,
                         args=["--admin", "127.0.0.1:%d" % admin]) as p:
            # 16 MiB: more than the mirror's socket buffers and pipe hold
            worst = timed_uploads(p.port, 3, 16 << 20)
            assert worst < 5, "an upload took %.1fs with a stalled mirror" % worst
            for rec in real.records:
                assert rec.body_sha256 == pattern_sha256(16 << 20)
            assert dropped(admin) == 3, "three copies dropped expected, metric says %d" % dropped(admin)
            # and small requests do not wait for it either
            t0 = time.monotonic()
            for i in range(20):
                assert lp.get(p.port, "/echo?%d" % i).status == 200
            assert time.monotonic() - t0 < 5
    finally:
        sink.close()


def test_a_dead_mirror_costs_the_client_nothing():
    admin = lp.free_port()
    with Origin(name="real", keep_body=0) as real, \
            lp.Proxy(script(real, "127.0.0.1:%d" % dead_port()), workers=1,
                     args=["--admin", "127.0.0.1:%d" % admin]) as p:
        worst = timed_uploads(p.port, 2, BIG)
        assert worst < 3, "an upload took %.1fs with a dead mirror" % worst
        with lp.Conn(p.port) as c:
            for i in range(10):
                t0 = time.monotonic()
                r = c.request("GET", "/echo?%d" % i)
                assert r.status == 200 and time.monotonic() - t0 < 1, r
        assert real.requests == 12
        lp.wait_until(lambda: dropped(admin) == 12, timeout=5,
                      what="12 drops counted (metric: %d)" % dropped(admin))


def test_a_mirror_that_is_not_an_upstream_is_a_load_error():
    for bad in ('mirror = "nowhere"', "mirror = 5", "mirror = {}"):
        text = 'proxy.upstream("u", { "127.0.0.1:1" }, { %s })\nfunction route() end\n' % bad
        r = lp.run_cli(["--check", lp.write_script(text)])
        assert r.returncode != 0 and "mirror" in r.stderr, (bad, r)


def test_copies_in_flight_outlive_a_reload():
    # The mirror answers late: when the reload retires the script, the
    # copies still wait for their answers, on servers of the old script's
    # upstream, which must stay until they are done.
    with Origin(name="real") as real, Origin(name="copy", delay_ms=700) as copy:
        with lp.Proxy(script(real, copy.addr), workers=1) as p:
            for i in range(3):
                assert lp.get(p.port, "/echo?before-%d" % i).status == 200
            lp.wait_until(lambda: copy.requests == 3, timeout=5, what="three copies at the mirror")
            assert copy.responses == 0, "the mirror answered before the reload"
            tmp = p.script_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(script(real, copy.addr) + "-- v2\n")
            os.rename(tmp, p.script_path)
            p.send_signal(signal.SIGHUP)
            p.wait_stderr("generation 1 loaded")
            lp.wait_until(lambda: copy.responses == 3, timeout=5, what="the mirror's three answers")
            # the copies read their answers and went; the new script mirrors
            for i in range(3):
                assert lp.get(p.port, "/echo?after-%d" % i).status == 200
            lp.wait_until(lambda: copy.requests == 6, timeout=5, what="three more copies")
            assert p.alive()
            assert p.stop() == 0


def test_a_body_relayed_from_a_tls_client_is_copied_too():
    """Over HTTPS the body cannot be tee()d (it is decrypted in user space):
    the relay shows each piece to the mirror's copy as it passes, so the
    mirror still gets the same request, body hashed."""
    from tlscerts import certs, wait_tls_port, TLSConn
    admin, tls_port = lp.free_port(), lp.free_port()
    with Origin(name="real", keep_body=0) as real, Origin(name="copy", keep_body=0) as copy, \
            lp.Proxy(script(real, copy.addr), workers=1,
                     args=["--admin", "127.0.0.1:%d" % admin, "--tls-listen", "127.0.0.1:%d" % tls_port,
                           "--tls-cert", certs().path("localhost")]) as p:
        wait_tls_port(p, tls_port)
        with TLSConn(tls_port, sni="localhost") as c:
            c.send(b"POST /upload?tls HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % SMALL)
            for piece in pattern_chunks(SMALL, chunk=16384):
                c.send(piece)
            r = c.read_response()
        assert r.status == 200 and r.header("x-origin") == "real", r
        wait_records(copy, 1, "the mirror to get the copy")
        same_request(real.records[0], copy.records[0])
        assert copy.records[0].body_sha256 == pattern_sha256(SMALL)
        assert dropped(admin) == 0
