"""Slow and many clients.

- 500 slowloris connections (one header byte a second) on one worker: a
  normal client's requests keep their latency meanwhile, and every slowloris
  gets 408 and a close at --header-timeout (2 s here);
- a client that does not read: the worker's output stays bounded (local
  pipelined answers stop at the output high-water mark; proxied chunked and
  unframed bodies stop being read from the backend), measured on its RSS;
- at --max-connections, and when the worker runs out of descriptors, new
  clients wait in the backlog and are served as soon as slots free.

The test process raises its own descriptor soft limit to the hard one."""

import resource
import selectors
import socket
import threading
import time

import lp
from origin import Origin, pattern_bytes, pattern_sha256, upstream_script

LOCAL = r'''
local big = string.rep("z", 65536)
function on_get(req)
  if req.path == "/big" then return 200, big end
  return 200, "ok\n"
end
'''


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert soft >= want, "descriptor limit %d < %d needed by this test (hard limit %r)" % (soft, want, hard)


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


# --------------------------------------------------------------------------
# slowloris

SLOW_COUNT = 500
HEADER_TIMEOUT = 2.0
SLOW_HEAD = b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slowloris: " + b"s" * 64 + b"\r\n\r\n"


class Loris:
    """One slowloris connection: a header byte a second, the first one at
    once or (late=True) after 1.5 s of silence."""

    def __init__(self, port, late):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.connected = time.monotonic()
        self.sock.setblocking(False)
        self.sent = 0
        self.first = None       # time of the first byte
        self.data = b""
        self.eof_at = None
        self.next_send = self.connected + (1.5 if late else 0.0)

    def tick(self, now):
        if self.eof_at is None and self.data == b"" and now >= self.next_send and self.sent < len(SLOW_HEAD):
            try:
                self.sock.send(SLOW_HEAD[self.sent:self.sent + 1])
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                return
            if self.first is None:
                self.first = now
            self.sent += 1
            self.next_send = now + 1.0

    def read(self, now):
        try:
            d = self.sock.recv(4096)
        except BlockingIOError:
            return
        except ConnectionResetError:
            d = b""
        if d:
            self.data += d
        else:
            self.eof_at = now


def test_slowloris_500_get_408_and_do_not_delay_others():
    raise_fd_limit(SLOW_COUNT + 200)
    with lp.Proxy(LOCAL, args=["--header-timeout", "%dms" % (HEADER_TIMEOUT * 1000)], workers=1) as p:
        [w] = p.wait_workers(1)
        lp.expect(lp.get(p.port, "/"), 200)
        latencies = []
        stop = threading.Event()
        errors = []

        def normal_client():
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    r = lp.get(p.port, "/", timeout=5)
                    if r.status != 200:
                        errors.append(r)
                except OSError as e:
                    errors.append(e)
                latencies.append(time.monotonic() - t0)
                stop.wait(0.05)

        sel = selectors.DefaultSelector()
        lorises = []
        try:
            for i in range(SLOW_COUNT):
                lo = Loris(p.port, late=i % 2 == 1)
                lorises.append(lo)
                sel.register(lo.sock, selectors.EVENT_READ, lo)
            t_start = time.monotonic()
            for lo in lorises:
                lo.tick(t_start)
            th = threading.Thread(target=normal_client, daemon=True)
            th.start()
            deadline = time.monotonic() + HEADER_TIMEOUT + 4.0
            while time.monotonic() < deadline and any(lo.eof_at is None for lo in lorises):
                now = time.monotonic()
                for key, _ in sel.select(timeout=0.05):
                    key.data.read(time.monotonic())
                now = time.monotonic()
                for lo in lorises:
                    lo.tick(now)
            stop.set()
            th.join(10)
        finally:
            for lo in lorises:
                lo.sock.close()
            sel.close()

        not_closed = [lo for lo in lorises if lo.eof_at is None]
        assert not not_closed, "%d of %d slowloris connections still open %.1fs after the header timeout" % (
            len(not_closed), SLOW_COUNT, deadline - t_start - HEADER_TIMEOUT)
        wrong = [lo.data[:80] for lo in lorises if not lo.data.startswith(b"HTTP/1.1 408")]
        assert not wrong, "%d slowloris connections got no 408, e.g. %r" % (len(wrong), wrong[:3])
        no_close = [lo for lo in lorises if b"connection: close" not in lo.data.lower()]
        assert not no_close, "408 without Connection: close: %r" % no_close[0].data
        # The header timeout counts from the accept: silence before the
        # first byte buys nothing.
        waits = sorted(lo.eof_at - lo.connected for lo in lorises)
        assert waits[0] >= HEADER_TIMEOUT - 0.2, "a slowloris was cut after %.2fs, before the %.1fs header " \
                                                 "timeout" % (waits[0], HEADER_TIMEOUT)
        late = sorted(lo.eof_at - lo.connected for lo in lorises[1::2])
        assert waits[-1] <= HEADER_TIMEOUT + 1.2, "a slowloris was closed only %.2fs after it connected " \
            "(header timeout %.1fs; those silent for their first 1.5 s: %.2f-%.2fs)" % (
                waits[-1], HEADER_TIMEOUT, late[0], late[-1])
        assert max(lo.sent for lo in lorises) < len(SLOW_HEAD), "a slowloris finished its head"
        assert not errors, "normal requests failed during the slowloris: %r" % errors[:3]
        assert len(latencies) >= 10, "only %d normal requests in %.1fs" % (len(latencies), HEADER_TIMEOUT)
        lat = sorted(latencies)
        median, worst = lat[len(lat) // 2], lat[-1]
        assert median < 0.1 and worst < 1.0, \
            "normal requests slowed by %d slowloris connections: median %.0f ms, worst %.0f ms" % (
                SLOW_COUNT, median * 1000, worst * 1000)
        print("    slowloris: %d connections, 408 after %.2f-%.2fs; normal requests: %d, median %.1f ms, "
              "worst %.1f ms" % (SLOW_COUNT, waits[0], waits[-1], len(lat), median * 1000, worst * 1000))
        assert p.worker_pids() == [w], "the worker was replaced"


def test_header_timeout_of_a_later_request_counts_from_its_start():
    with lp.Proxy(LOCAL, args=["--header-timeout", "1s"], workers=1) as p, lp.Conn(p.port, timeout=5) as c:
        lp.expect(c.request("GET", "/"), 200)
        time.sleep(1.2)         # idle keep-alive time is not head time
        t0 = time.monotonic()
        c.send(b"GET / HTTP/1.1\r\nHo")
        r = c.read_response(timeout=4)
        dt = time.monotonic() - t0
        assert r.status == 408 and 0.8 <= dt <= 1.8, "second head: %r after %.2fs (--header-timeout 1s)" % (r, dt)


# --------------------------------------------------------------------------
# clients that do not read


def _pipelined_answers_bounded(p, w):
    n = 400                                     # 400 x 64 KiB = 25 MiB if all were buffered
    s = socket.create_connection(("127.0.0.1", p.port), timeout=20)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        base = rss(w)
        req = b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        s.sendall(req * n)
        # Whatever the worker does with answers nobody reads, it has done
        # once it stops using CPU.
        lp.wait_cpu_idle(w, what="the worker to stop answering the unread pipeline")
        grown = rss(w) - base
        assert grown < 8 * 1024 * 1024, "worker RSS grew by %.1f MiB with %d pipelined 64 KiB answers " \
                                        "unread" % (grown / 1048576, n)
        # Then the client reads, and every answer arrives, in order, whole.
        c = lp.Conn.__new__(lp.Conn)
        c.sock, c.timeout, c.buf, c.eof, c.reset = s, 20.0, b"", False, False
        for i in range(n):
            r = c.read_response()
            assert r.status == 200 and len(r.body) == 65536, "answer %d: %r" % (i, r)
        return grown
    finally:
        s.close()


def test_unread_pipelined_local_answers_stay_bounded():
    with lp.Proxy(LOCAL, workers=1) as p:
        [w] = p.wait_workers(1)
        lp.expect(lp.get(p.port, "/big"), 200)  # warm up the Lua state and buffers
        grown = _pipelined_answers_bounded(p, w)
        print("    400 unread pipelined 64 KiB answers: worker RSS +%.1f MiB" % (grown / 1048576))


def _unread_download_bounded(path, n):
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1) as p:
        [w] = p.wait_workers(1)
        lp.expect(lp.get(p.port, "/size/100"), 200)
        s = socket.create_connection(("127.0.0.1", p.port), timeout=20)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            base = rss(w)
            s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path.encode())
            first = s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first[:100]
            lp.wait_cpu_idle(w, what="the worker to stop moving %s" % path)
            grown = rss(w) - base
            assert grown < 12 * 1024 * 1024, "worker RSS grew by %.1f MiB while the client did not read " \
                                             "a %d MiB %s" % (grown / 1048576, n >> 20, path)
            # Backpressure reached the backend: only the warm-up was sent whole.
            assert o.responses == 1, "the origin sent all of %s to a client that did not read" % path
            # Both come re-framed as chunked to this HTTP/1.1 client.
            data = bytearray(first)
            while not data.endswith(b"\r\n0\r\n\r\n"):
                d = s.recv(1 << 20)
                if not d:
                    break
                data += d
            rs = lp.parse_responses(bytes(data))
            assert len(rs) == 1 and len(rs[0].body) == n and rs[0].body == pattern_bytes(n), \
                "%s: the download after the pause is not whole" % path
            return grown
        finally:
            s.close()
            o.assert_clean()


def test_unread_chunked_and_unframed_downloads_stay_bounded():
    n = 32 << 20
    g1 = _unread_download_bounded("/chunked/%d" % n, n)
    g2 = _unread_download_bounded("/eof/%d" % n, n)
    print("    unread 32 MiB downloads: chunked RSS +%.1f MiB, unframed RSS +%.1f MiB"
          % (g1 / 1048576, g2 / 1048576))


# --------------------------------------------------------------------------
# --max-connections and the descriptor limit


def _hold(port, n):
    """n keep-alive connections, each with one answered request."""
    out = []
    for i in range(n):
        c = lp.Conn(port, timeout=5)
        lp.expect(c.request("GET", "/"), 200, what="holder %d" % i)
        out.append(c)
    return out


def _waits_then_served(port, release, what):
    late = lp.Conn(port, timeout=5)        # connect() succeeds: the kernel queues it
    try:
        late.send(lp.build_request("GET", "/"))
        try:
            r = late.read_response(timeout=0.7)
            raise AssertionError("%s: a client past the limit was served at once: %r" % (what, r))
        except socket.timeout:
            pass
        t0 = time.monotonic()
        release()
        r = late.read_response(timeout=3)
        dt = time.monotonic() - t0
        assert r.status == 200, "%s: %r" % (what, r)
        assert dt < 1.0, "%s: the waiting client was served %.2fs after slots freed" % (what, dt)
        return dt
    finally:
        late.close()


def test_max_connections_backlog():
    with lp.Proxy(LOCAL, args=["--max-connections", "10"], workers=1) as p:
        [w] = p.wait_workers(1)
        held = _hold(p.port, 10)
        try:
            dt = _waits_then_served(p.port, lambda: [c.close() for c in held[:3]], "--max-connections 10")
            # The worker stays healthy: the rest of the slots serve, requests on held ones too.
            for c in held[3:]:
                lp.expect(c.request("GET", "/"), 200)
        finally:
            for c in held:
                c.close()
        for i in range(20):
            lp.expect(lp.get(p.port, "/"), 200)
        assert p.worker_pids() == [w]
        print("    at --max-connections: served %.0f ms after slots freed" % (dt * 1000))


def test_out_of_descriptors_waits_in_backlog():
    """The worker's descriptor limit is reached before --max-connections:
    accept fails with EMFILE, and the queued clients must be served once
    descriptors free, not only when yet another client connects."""
    with lp.Proxy(LOCAL, workers=1, nofile=(40, 40)) as p:
        [w] = p.wait_workers(1)
        held = []
        try:
            # Fill the worker's descriptors with kept-alive clients.
            for i in range(60):
                c = lp.Conn(p.port, timeout=5)
                c.send(lp.build_request("GET", "/"))
                try:
                    c.read_response(timeout=0.5)
                except socket.timeout:
                    c.close()
                    break
                held.append(c)
            assert 10 < len(held) < 40, "%d clients served under a limit of 40 descriptors" % len(held)
            dt = _waits_then_served(p.port, lambda: [c.close() for c in held[:5]], "out of descriptors")
        finally:
            for c in held:
                c.close()
        for i in range(10):
            lp.expect(lp.get(p.port, "/"), 200)
        assert p.worker_pids() == [w]
        p.wait_stderr("new connections wait in the backlog")
        print("    out of descriptors: served %.0f ms after descriptors freed" % (dt * 1000))
