"""SPEC §5: bodies stream in both directions (64 MiB each way, checked by
sha256, never held whole in the test either)."""

import hashlib
import json
import socket
import threading
import time

import lp
from origin import Origin, StreamConn, pattern_chunks, pattern_sha256, upstream_script

BIG = 64 * 1024 * 1024


# read_timeout = 5s: a transfer that stalls fails in 5 s instead of 30 (a
# working one takes well under a second here).
OPTS = 'read_timeout = "5s"'


def test_upload_64mib_content_length():
    """Three 64 MiB uploads (the first one with part of the body in the same
    write as the head); an upload that stalls shows how many bytes the origin
    got."""
    with Origin() as o, lp.Proxy(upstream_script([o], OPTS), workers=1) as p:
        for rnd in range(3):
            with StreamConn(p.port, timeout=30) as c:
                t0 = time.monotonic()
                head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BIG
                if rnd != 0:
                    c.send(head)
                for i, piece in enumerate(pattern_chunks(BIG, chunk=256 * 1024)):
                    c.send(head + piece if i == 0 and rnd == 0 else piece)
                r = c.read_response()
                dt = time.monotonic() - t0
                rec = o.last()
                assert r.status == 200, "64 MiB upload #%d: %r after %.1fs; origin received %d of %d body bytes" % (
                    rnd + 1, r, dt, rec.body_len, BIG)
                d = json.loads(r.body)
                assert d["len"] == BIG, "origin received %d of %d bytes" % (d["len"], BIG)
                assert d["sha256"] == pattern_sha256(BIG), "64 MiB upload corrupted (sha256 differs)"
                # the same connection goes on working
                c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                r = c.read_response()
                assert r.status == 200 and json.loads(r.body)["target"] == "/echo", r
                assert dt < 20, "64 MiB upload took %.1fs" % dt
        o.assert_clean()


def test_download_64mib_content_length():
    with Origin() as o, lp.Proxy(upstream_script([o], OPTS)) as p, StreamConn(p.port, timeout=30) as c:
        t0 = time.monotonic()
        c.send(b"GET /size/%d HTTP/1.1\r\nHost: x\r\n\r\n" % BIG)
        r = c.read_response(keep=0)
        dt = time.monotonic() - t0
        assert r.status == 200, r
        assert r.header("content-length") == str(BIG), "the backend's Content-Length became %r" % r
        assert r.body_len == BIG, "client received %d of %d bytes" % (r.body_len, BIG)
        assert r.sha256 == pattern_sha256(BIG), "64 MiB download corrupted (sha256 differs)"
        c.send(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and json.loads(r.body)["target"] == "/echo", r
        assert dt < 20, "64 MiB download took %.1fs" % dt
        o.assert_clean()


def test_chunked_16mib_both_ways():
    n = 16 * 1024 * 1024 + 5
    with Origin() as o, lp.Proxy(upstream_script([o], OPTS)) as p, StreamConn(p.port, timeout=30) as c:
        c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        off = 0
        sizes = (65536, 1, 300000, 4095)
        i = 0
        while off < n:
            k = min(sizes[i % 4], n - off)
            i += 1
            c.send(b"%x\r\n" % k + b"".join(pattern_chunks(k, off)) + b"\r\n")
            off += k
        c.send(b"0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        d = json.loads(r.body)
        assert d["len"] == n and d["sha256"] == pattern_sha256(n), \
            "16 MiB chunked upload: %d bytes, sha ok %s" % (d["len"], d["sha256"] == pattern_sha256(n))
        c.send(b"GET /chunked/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n)
        r = c.read_response(keep=0)
        assert r.status == 200, r
        assert r.body_len == n and r.sha256 == pattern_sha256(n), \
            "16 MiB chunked download: %d bytes, sha ok %s" % (r.body_len, r.sha256 == pattern_sha256(n))
        o.assert_clean()


def test_two_concurrent_large_transfers():
    """Two 16 MiB downloads at once on two client connections (the pipe of
    one splice transfer must not be shared with another)."""
    import threading
    n = 16 * 1024 * 1024
    results = {}
    with Origin() as o, lp.Proxy(upstream_script([o])) as p:
        def one(i):
            try:
                with StreamConn(p.port, timeout=30) as c:
                    c.send(b"GET /size/%d?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % (n, i))
                    r = c.read_response(keep=0)
                    results[i] = (r.status, r.body_len, r.sha256)
            except Exception as e:
                results[i] = repr(e)
        ts = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(40)
        for i in range(2):
            assert results.get(i) == (200, n, pattern_sha256(n)), \
                "download %d: %r" % (i, results.get(i))
        o.assert_clean()


def _rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def test_slow_client_download_not_buffered():
    """A client that stops reading a 64 MiB download: the worker must not
    read the whole body into memory meanwhile."""
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p:
        [w] = p.wait_workers(1)
        s = socket.create_connection(("127.0.0.1", p.port), timeout=20)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            base = _rss(w)
            s.sendall(b"GET /size/%d HTTP/1.1\r\nHost: x\r\n\r\n" % BIG)
            first = s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first[:100]
            # Whatever the worker does with a client that does not read, it
            # has done once it stops using CPU.
            lp.wait_cpu_idle(w, what="the worker to stop moving the download")
            grown = _rss(w) - base
            assert grown < 24 * 1024 * 1024, \
                "worker RSS grew by %d MiB while the client was not reading" % (grown >> 20)
            # Backpressure reached the backend: it could not send it all.
            assert o.responses == 0, "the origin sent all 64 MiB to a client that was not reading"
            h = hashlib.sha256()
            head, _, rest = first.partition(b"\r\n\r\n")
            h.update(rest)
            got = len(rest)
            while got < BIG:
                d = s.recv(1 << 20)
                if not d:
                    break
                h.update(d)
                got += len(d)
            assert got == BIG and h.hexdigest() == pattern_sha256(BIG), "download after the pause: %d bytes" % got
        finally:
            s.close()
        o.assert_clean()


def test_slow_backend_upload_not_buffered():
    """A backend that does not read for 1.5 s while the client sends 64 MiB:
    the worker must not take the whole body into memory meanwhile."""
    with Origin() as o, lp.Proxy(upstream_script([o], OPTS), workers=1) as p, \
            StreamConn(p.port, timeout=30) as c:
        [w] = p.wait_workers(1)
        base = _rss(w)
        err = []
        sent = [0]

        def send():
            try:
                c.send(b"POST /slow-upload/1500 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % BIG)
                for piece in pattern_chunks(BIG, chunk=256 * 1024):
                    c.send(piece)
                    sent[0] += len(piece)
            except Exception as e:
                err.append(repr(e))
        t = threading.Thread(target=send, daemon=True)
        t.start()
        # The client has pushed what it could and the worker stopped taking
        # more; all of it within the second the backend does not read.
        lp.wait_until(lambda: sent[0] > 0 and o.requests == 1, 1, what="the upload to start at the origin")
        lp.wait_cpu_idle(w, quiet=0.15, timeout=1.2, what="the worker to stop taking the upload")
        grown = _rss(w) - base
        assert o.last().body_len == 0, "the origin started reading before the measure: it says nothing"
        assert grown < 24 * 1024 * 1024, \
            "worker RSS grew by %d MiB while the backend was not reading" % (grown >> 20)
        assert sent[0] < 32 * 1024 * 1024, "the client sent %d MiB into a backend that was not reading" % (
            sent[0] >> 20)
        t.join(30)
        assert not err, err
        r = c.read_response()
        assert r.status == 200, "64 MiB upload to a backend that reads late: %r; origin received %d of %d " \
                                "body bytes" % (r, o.last().body_len, BIG)
        d = json.loads(r.body)
        assert d["len"] == BIG and d["sha256"] == pattern_sha256(BIG), d
        o.assert_clean()
