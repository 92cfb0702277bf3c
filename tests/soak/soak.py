#!/usr/bin/env python3
"""soak: mixed traffic against a real luaproxy for a bounded time, then
checks that nothing leaked.

    python3 tests/soak/soak.py            # SOAK_SECONDS (default 60); make soak
    SOAK_SEED=2 SOAK_CLIENTS=16 ...       # another mix, more connections at once
    LUAPROXY=build/asan/luaproxy ...      # the sanitizer build; make soak SANITIZE=1

tests/integration/test_soak.py runs the same soak for about 12 s inside
`make test`.

What runs: luaproxy -w 2 with --admin and --access-log in front of two test
origins (tests/helpers/origin.py). CLIENTS threads loop over a weighted mix
of operations until the deadline: keep-alive and fresh connections, local
Lua handlers and proxied routes (Content-Length and chunked, small uploads),
pipelined batches with HEAD among them, upgraded (tunnelled) connections,
aborted uploads (part of a Content-Length or chunked body, then close) and
aborted downloads (part of a 4 MiB proxied response, then close), backends
that reset or close in the middle of a response, a handler that fails one
call in three. Beside them, one thread sends a request that runs past
--lua-time-limit every SPIN_EVERY seconds, and one sends SIGHUP every
RELOAD_EVERY seconds, cycling through script versions B, broken, A.

What is measured, for the master and each worker: open descriptors
(/proc/PID/fd) and RSS (/proc/PID/status VmRSS), once after a warm-up with
the same mix (and two reloads) and the pool emptied, and once after the load
once things have settled; RSS also every second during the load.

Pass criteria:
- every normal request got its exact answer; the planned failures got one
  of their allowed outcomes; the origins saw nothing malformed (except the
  bodies cut short by the aborted uploads);
- descriptors: after the load, once backend connections idle in the pool
  have expired (keepalive_timeout is 500 ms in the soak script), every
  process holds exactly the descriptors of the baseline, except that a
  worker may hold more pipes: a worker keeps up to 64 idle splice pipes
  (core/splice.c PIPE_POOL_MAX) for reuse, and how many it has depends on
  how many transfers ran at once at the peak. Those must be pairs, at most
  128 descriptors, and every other descriptor (sockets, epoll, signalfd,
  files) must match the baseline exactly;
- RSS: after the load, each process is within RSS_SLACK (2 MiB) of its
  post-warm-up figure, and the last sample of the load is within RSS_SLACK
  of the sample at its middle. Malloc arenas, Lua states and connection
  buffers reach their working size during the warm-up; what remains is
  allocator and GC timing (a Lua state is garbage-collected in steps), a few
  hundred KiB in practice. A leak of 100 bytes per request or of one Lua
  state per reload goes past 2 MiB. In a sanitizer build the figures are
  printed but not judged: ASan's quarantine keeps freed memory (up to
  256 MiB) on purpose; LeakSanitizer judges instead, at the workers' exit;
- no worker restarted (luaproxy_worker_restarts_total == 0, same pids), the
  reload counters match the reloads sent, every worker ends on the last
  generation;
- the error log has only the lines the soak provokes (Lua errors, the
  failed reload, backend failures), no crash and no sanitizer report; the
  server stops with SIGTERM and exit status 0.
"""

import fcntl
import json
import os
import random
import re
import signal
import struct
import sys
import termios
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "helpers"))

import lp  # noqa: E402
from origin import Origin, pattern_bytes, pattern_sha256  # noqa: E402

CLIENTS = 8
RELOAD_EVERY = 2.5       # seconds between SIGHUPs
SPIN_EVERY = 1.5         # seconds between time-limit aborts
WARMUP = 3.0             # seconds of the same traffic before the baseline
SETTLE_LIMIT = 15.0      # seconds allowed for descriptors to come back
RSS_SLACK = 2 << 20      # bytes; see the module docstring
PIPE_POOL_MAX = 64       # core/splice.c
BIG = 4 << 20            # the response the aborted downloads cut short
TIMEOUT = 10.0           # per request: generous, two shared cores

SCRIPT = r'''
-- soak script, version %(v)s
local up = proxy.upstream("origin", { %(servers)s }, {
    keepalive = %(keepalive)d, keepalive_timeout = "500ms", max_fails = 0,
    read_timeout = "5s", connect_timeout = "2s", retries = 1 })
local soak = proxy.shared("soak")
soak:add("boot", "kept")

function route(req)
    local p = req.path
    if p:sub(1, 3) == "/p/" then
        req:set_path(p:sub(3))
        return up
    end
end

function on_response(req, res)
    res:set_header("X-Soak", "%(v)s")
end

function on_get(req)
    local p = req.path
    if p == "/lua/maybe-error" then
        if soak:incr("calls", 1, 0) %% 3 == 0 then error("soak: planned error") end
        return 200, "no error\n"
    elseif p == "/lua/spin" then
        while true do end
    end
    return 200, "%(v)s gen=" .. proxy.generation .. " boot=" .. tostring(soak:get("boot")) .. "\n",
        { ["X-Version"] = "%(v)s" }
end

function on_post(req)
    return 200, "%(v)s " .. #req.body .. "\n"
end
'''

BROKEN = "-- soak script, broken\nfunction on_get(req) return 200, \"never\" end\nlocal x = = 1\n"

LOCAL_BODY = re.compile(rb"^[AB] gen=(\d+) boot=kept\n$")

# Error-log lines the soak provokes on purpose (anything else at warn or
# error level fails it).
EXPECTED_LOG = [
    re.compile(r"^lua error in on_get for GET /lua/maybe-error: .*soak: planned error"),
    re.compile(r"^lua error in on_get for GET /lua/spin: .*time limit"),
    re.compile(r"^reload failed, keeping the running script: .*script\.lua:3:"),
    # Backends that reset or close early, clients that leave mid-upload.
    re.compile(r"^origin 127\.0\.0\.1:\d+: (client closed during the upload|backend closed before the end "
               r"of the body|Connection reset by peer|Broken pipe)( after the response head was sent)?; closing the "
               r"client connection$"),
    re.compile(r"^upstream origin server 127\.0\.0\.1:\d+: (backend closed before the end of the body|"
               r"Connection reset by peer|backend closed before the response head)(: answering 502)?$"),
]
KIND_NAMES = ["planned lua error", "time limit", "failed reload", "exchange cut short (client gone or backend fault)",
              "502 from a backend fault"]
CRASH_LOG = re.compile(r"killed by signal|exited with status|Sanitizer|runtime error|panic|"
                       r"out of memory|restarting")


def script_text(version, origins):
    if version == "broken":
        return BROKEN
    servers = origins if version == "A" else origins[:1]   # B drops a server
    return SCRIPT % {"v": version, "servers": ", ".join('"%s"' % o.addr for o in servers),
                     "keepalive": 8 if version == "A" else 16}


def replace_script(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


# --------------------------------------------------------------------------
# /proc


def fd_links(pid):
    """[(descriptor, target)] of /proc/PID/fd."""
    out = []
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            out.append((os.path.join(d, name), os.readlink(os.path.join(d, name))))
        except FileNotFoundError:
            pass
    return out


def fd_targets(pid):
    """The targets of /proc/PID/fd, with socket/pipe inode numbers removed."""
    return sorted(re.sub(r":\[\d+\]$", "", t) for _, t in fd_links(pid))


TCP_STATES = {"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
              "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
              "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}


def tcp_sockets(pid):
    """One line per TCP socket the process holds (from /proc/net/tcp), for
    diagnosing descriptors that did not come back."""
    inodes = {t[8:-1] for _, t in fd_links(pid) if t.startswith("socket:[")}

    def addr(h):
        ip, port = h.split(":")
        return "%s:%d" % (".".join(str(int(ip[i:i + 2], 16)) for i in (6, 4, 2, 0)), int(port, 16))

    out = []
    with open("/proc/%d/net/tcp" % pid) as f:
        for line in f.readlines()[1:]:
            x = line.split()
            if x[9] in inodes:
                tx, rx = x[4].split(":")
                out.append("tcp %s -> %s %s send-q %d recv-q %d"
                           % (addr(x[1]), addr(x[2]), TCP_STATES.get(x[3], x[3]), int(tx, 16), int(rx, 16)))
    return sorted(out)


def pipe_problems(pid):
    """A worker's pipes at rest are its pool of splice pipes: each one held
    by both ends (an inode seen exactly twice) and empty (a pipe with bytes
    in it belongs to a transfer and never goes back to the pool)."""
    seen = {}
    for path, t in fd_links(pid):
        if t.startswith("pipe:["):
            seen.setdefault(t, []).append(path)
    problems = []
    for t, fds in sorted(seen.items()):
        if len(fds) != 2:
            problems.append("%s held by %d descriptors" % (t, len(fds)))
            continue
        try:
            # Opening the /proc link opens the same pipe, like a FIFO.
            fd = os.open(fds[0], os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            n = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        finally:
            os.close(fd)
        if n:
            problems.append("%s holds %d unread bytes" % (t, n))
    return problems


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mib(n):
    return "%.1f MiB" % (n / 1048576.0)


# --------------------------------------------------------------------------
# Traffic


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}       # kind -> {outcome: n}
        self.requests = 0
        self.failures = []     # unexpected outcomes

    def add(self, kind, outcome, requests=1):
        with self.lock:
            d = self.counts.setdefault(kind, {})
            d[outcome] = d.get(outcome, 0) + 1
            self.requests += requests

    def fail(self, kind, what):
        with self.lock:
            self.failures.append("%s: %s" % (kind, what))
            d = self.counts.setdefault(kind, {})
            d["UNEXPECTED"] = d.get("UNEXPECTED", 0) + 1


def check_local(r):
    if r.status != 200 or not LOCAL_BODY.match(r.body):
        raise AssertionError("local GET answered %r" % r)


def check_size(r, n):
    if r.status != 200 or len(r.body) != n or r.body != pattern_bytes(n):
        raise AssertionError("proxied /size/%d answered %d with %d bytes" % (n, r.status, len(r.body)))
    if r.header("x-soak") not in ("A", "B"):
        raise AssertionError("on_response header missing: %r" % r.header_list)


def check_upload(r, n):
    if r.status != 200:
        raise AssertionError("proxied upload answered %r" % r)
    d = json.loads(r.body)
    if d["len"] != n or d["sha256"] != pattern_sha256(n):
        raise AssertionError("the origin received %r for a %d-byte upload" % (d, n))


def one_request(c, rng):
    """One normal request on connection c: local or proxied. Returns its name."""
    k = rng.random()
    if k < 0.35:
        check_local(c.request("GET", "/local/%d" % rng.randint(0, 999), timeout=TIMEOUT))
        return "local"
    if k < 0.45:
        n = rng.randint(0, 20000)
        r = c.request("POST", "/lua/post", body=pattern_bytes(n), timeout=TIMEOUT)
        if r.status != 200 or not re.match(rb"^[AB] %d\n$" % n, r.body):
            raise AssertionError("local POST of %d bytes answered %r" % (n, r))
        return "local"
    if k < 0.65:
        n = rng.choice([0, 1, 100, 5000, 70000, 200000])
        check_size(c.request("GET", "/p/size/%d" % n, timeout=TIMEOUT), n)
        return "proxied"
    if k < 0.75:
        n = rng.choice([1, 3000, 100000])
        r = c.request("GET", "/p/chunked/%d" % n, timeout=TIMEOUT)
        check_size(r, n)
        return "proxied"
    if k < 0.85:
        n = rng.choice([0, 10, 10000, 150000])
        check_upload(c.request("POST", "/p/upload", body=pattern_bytes(n), timeout=TIMEOUT), n)
        return "proxied"
    r = c.request("GET", "/p/echo?x=%d" % rng.randint(0, 999), timeout=TIMEOUT)
    if r.status != 200 or json.loads(r.body)["origin"] not in ("a", "b"):
        raise AssertionError("proxied echo answered %r" % r)
    return "proxied"


def op_keepalive(port, rng, tally):
    with lp.Conn(port, timeout=TIMEOUT) as c:
        for _ in range(rng.randint(3, 15)):
            tally.add("keep-alive", one_request(c, rng))


def op_fresh(port, rng, tally):
    with lp.Conn(port, timeout=TIMEOUT) as c:
        tally.add("fresh", one_request(c, rng))


def op_abort_upload(port, rng, tally):
    """Part of a body, then close: no answer is waited for."""
    with lp.Conn(port, timeout=TIMEOUT) as c:
        where = rng.choice(["proxied", "proxied-chunked", "local"])
        total = 1 << 20 if where != "local" else 200000
        sent = rng.randint(1, total // 4)
        if where == "proxied-chunked":
            c.send(b"POST /p/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n" % total + pattern_bytes(sent))
        else:
            path = "/p/upload" if where == "proxied" else "/lua/post"
            c.send(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n"
                   % (path.encode(), total) + pattern_bytes(sent))
        time.sleep(rng.random() * 0.05)
    tally.add("aborted upload", where)


def op_abort_download(port, rng, tally):
    path = rng.choice(["/p/size/%d" % BIG, "/p/chunked/%d" % BIG])
    want = rng.randint(1, 512 * 1024)
    with lp.Conn(port, timeout=TIMEOUT) as c:
        c.send(lp.build_request("GET", path))
        got = 0
        c.sock.settimeout(TIMEOUT)
        while got < want:
            data = c.sock.recv(65536)
            if not data:
                raise AssertionError("%s closed after %d bytes" % (path, got))
            if got == 0 and not data.startswith(b"HTTP/1.1 200 "):
                raise AssertionError("%s answered %r" % (path, data[:200]))
            got += len(data)
    tally.add("aborted download", path.split("/")[2])


def op_backend_fault(port, rng, tally):
    """The origin resets or closes in the middle of its response: the client
    gets a 502 (nothing sent yet) or the head and a connection closed
    before the end of the body."""
    kind = rng.choice(["reset", "truncate"])
    n = rng.choice([1000, 100000, 1000000])
    with lp.Conn(port, timeout=TIMEOUT) as c:
        c.send(lp.build_request("GET", "/p/%s/%d" % (kind, n)))
        data = c.read_until_close(timeout=TIMEOUT)
        if not c.eof:
            raise AssertionError("/%s/%d: the connection stayed open" % (kind, n))
    if data.startswith(b"HTTP/1.1 502 "):
        tally.add("backend " + kind, "502")
        return
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200 ") or len(body) >= n:
        raise AssertionError("/%s/%d answered %r (%d body bytes)" % (kind, n, head[:200], len(body)))
    tally.add("backend " + kind, "cut short")


def op_lua_error(port, rng, tally):
    with lp.Conn(port, timeout=TIMEOUT) as c:
        for _ in range(rng.randint(1, 4)):
            r = c.request("GET", "/lua/maybe-error", timeout=TIMEOUT)
            if (r.status, r.body) == (200, b"no error\n"):
                tally.add("lua error route", "200")
            elif r.status == 500:
                tally.add("lua error route", "500")
            else:
                raise AssertionError("/lua/maybe-error answered %r" % r)


def op_pipelined(port, rng, tally):
    """Local and proxied requests sent at once, HEAD among them: answered
    in order, on one connection."""
    reqs = []
    for _ in range(rng.randint(2, 6)):
        k = rng.random()
        if k < 0.4:
            reqs.append(("GET", "/local/p"))
        elif k < 0.8:
            reqs.append(("GET", "/p/size/%d" % rng.choice([0, 300, 70000])))
        else:
                reqs.append(("HEAD", rng.choice(["/local/h", "/p/size/5000"])))
    with lp.Conn(port, timeout=TIMEOUT) as c:
        c.send(b"".join(lp.build_request(m, path) for m, path in reqs))
        for m, path in reqs:
            r = c.read_response(head=(m == "HEAD"), timeout=TIMEOUT)
            if m == "HEAD":
                if r.status != 200 or r.body:
                    raise AssertionError("pipelined HEAD %s answered %r" % (path, r))
                tally.add("pipelined", "HEAD")
            elif path.startswith("/p/size/"):
                check_size(r, int(path.rsplit("/", 1)[1]))
                tally.add("pipelined", "proxied")
            else:
                check_local(r)
                tally.add("pipelined", "local")


WS_HEAD = (b"GET /p/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")


def op_tunnel(port, rng, tally):
    """An upgraded connection: bytes echoed through the tunnel, then the
    client closes (half the time in the middle of an echo)."""
    with lp.Conn(port, timeout=TIMEOUT) as c:
        c.send(WS_HEAD)
        c.sock.settimeout(TIMEOUT)
        buf = b""
        while b"\r\n\r\n" not in buf:
            data = c.sock.recv(65536)
            if not data:
                raise AssertionError("tunnel: closed before the 101; got %r" % buf[:200])
            buf += data
        if not buf.startswith(b"HTTP/1.1 101 "):
            raise AssertionError("tunnel: answered %r" % buf[:200])
        rest = buf.partition(b"\r\n\r\n")[2]
        data = pattern_bytes(rng.choice([10, 5000, 200000]))
        c.send(data)
        if rng.random() < 0.5:
            tally.add("tunnel", "closed mid-echo")
            return
        got = len(rest)
        while got < len(data):
            piece = c.sock.recv(65536)
            if not piece:
                raise AssertionError("tunnel: closed after %d of %d echoed bytes" % (got, len(data)))
            got += len(piece)
        tally.add("tunnel", "echoed")


OPS = [(op_keepalive, 30), (op_fresh, 30), (op_pipelined, 6), (op_tunnel, 4), (op_abort_upload, 8),
       (op_abort_download, 6), (op_backend_fault, 8), (op_lua_error, 8)]


def client_loop(port, seed, deadline, tally):
    rng = random.Random(seed)
    fns = [f for f, _ in OPS]
    weights = [w for _, w in OPS]
    while time.monotonic() < deadline:
        fn = rng.choices(fns, weights)[0]
        try:
            fn(port, rng, tally)
        except Exception as e:  # recorded, the soak fails at the end
            tally.fail(fn.__name__, "%s: %s" % (type(e).__name__, str(e)[:300]))


def spin_loop(port, deadline, tally, stop):
    while not stop.wait(SPIN_EVERY) and time.monotonic() < deadline:
        try:
            r = lp.request(port, "GET", "/lua/spin", timeout=TIMEOUT)
            if r.status != 500:
                raise AssertionError("/lua/spin answered %r" % r)
            tally.add("time limit", "500")
        except Exception as e:
            tally.fail("time limit", "%s: %s" % (type(e).__name__, e))


class Reloader:
    """SIGHUP every RELOAD_EVERY seconds with versions B, broken, A, ..."""

    CYCLE = ["B", "broken", "A"]

    def __init__(self, proxy, origins):
        self.proxy = proxy
        self.origins = origins
        self.sent = {"ok": 0, "failed": 0}
        self.n = 0

    def once(self):
        v = self.CYCLE[self.n % len(self.CYCLE)]
        self.n += 1
        replace_script(self.proxy.script_path, script_text(v, self.origins))
        self.proxy.send_signal(signal.SIGHUP)
        if v == "broken":
            self.sent["failed"] += 1
        else:
            self.sent["ok"] += 1

    def loop(self, deadline, stop):
        while not stop.wait(RELOAD_EVERY) and time.monotonic() < deadline:
            self.once()


def run_traffic(port, seconds, seed, tally, reloader=None, rss_pids=(), samples=None):
    deadline = time.monotonic() + seconds
    stop = threading.Event()
    threads = [threading.Thread(target=client_loop, args=(port, seed * 1000 + i, deadline, tally),
                                daemon=True) for i in range(CLIENTS)]
    threads.append(threading.Thread(target=spin_loop, args=(port, deadline, tally, stop), daemon=True))
    if reloader:
        threads.append(threading.Thread(target=reloader.loop, args=(deadline, stop), daemon=True))
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        if samples is not None:
            samples.append((time.monotonic() - t0, {pid: rss(pid) for pid in rss_pids}))
    stop.set()
    for t in threads:
        t.join(TIMEOUT + 5)
        if t.is_alive():
            raise AssertionError("a soak thread did not finish within %.0fs of the deadline" % (TIMEOUT + 5))


# --------------------------------------------------------------------------
# The soak


def metrics(admin_port):
    r = lp.get(admin_port, "/metrics")
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def status(admin_port):
    r = lp.get(admin_port, "/status")
    assert r.status == 200, r
    return json.loads(r.body)


def wait_generation(admin_port, gen):
    lp.wait_until(lambda: all(w["generation"] == gen for w in status(admin_port)["workers"]), 5.0,
                  what="generation %d in every worker's /status" % gen)


def snapshot(pids):
    return {pid: (fd_targets(pid), rss(pid)) for pid in pids}


def fd_problems(before, after, pipe_pool):
    """How a process's descriptors differ from its baseline, beyond what a
    worker's pipe pool may hold (pipe_pool: the process is a worker)."""
    def count(ts, pipes):
        d = {}
        for t in ts:
            if (t == "pipe") == pipes:
                d[t] = d.get(t, 0) + 1
        return d
    problems = []
    b, a = count(before, False), count(after, False)
    if not pipe_pool:
        b.update(count(before, True))
        a.update(count(after, True))
    if a != b:
        extra = sorted("%s x%d" % (t, a.get(t, 0) - b.get(t, 0)) for t in a if a.get(t, 0) > b.get(t, 0))
        missing = sorted("%s x%d" % (t, b[t] - a.get(t, 0)) for t in b if b[t] > a.get(t, 0))
        problems.append("extra %s; missing %s" % (extra or "none", missing or "none"))
    if pipe_pool:
        pa = sum(1 for t in after if t == "pipe")
        if pa > 2 * PIPE_POOL_MAX:
            problems.append("%d pipe descriptors (the pool keeps at most %d pairs)" % (pa, PIPE_POOL_MAX))
    return problems


def rest_problems(pid):
    """What no process may hold at rest, whatever its baseline: a TCP
    socket that is not a listener, or a pipe that is not an idle pool pair."""
    return ["socket %s" % x for x in tcp_sockets(pid) if " LISTEN " not in x] + pipe_problems(pid)


def wait_settled(admin_port, master, workers, baseline, limit):
    """Waits until no client or backend connection is open and every
    process's descriptors match the baseline (or, without a baseline, stay
    the same for two polls in a row). Returns the last snapshot and the
    problems left when the time limit passed."""
    deadline = time.monotonic() + limit
    time.sleep(1.5)   # keepalive_timeout (500 ms) and the 1 s /status refresh
    prev = None
    while True:
        st = status(admin_port)
        busy = sum(w.get("connections", 0) for w in st["workers"]) > 1   # this /status request
        pooled = sum(s.get("idle", 0) + s.get("active", 0)
                     for w in st["workers"] for u in w.get("upstreams", []) for s in u["servers"])
        time.sleep(0.3)   # let the admin connection close
        snap = snapshot([master] + workers)
        problems = {}
        for pid in snap:
            ref = baseline[pid][0] if baseline else (prev[pid][0] if prev else [])
            pr = fd_problems(ref, snap[pid][0], pid != master and baseline is not None) + rest_problems(pid)
            if pr:
                problems[pid] = pr
        if (not busy and not pooled and not problems) or time.monotonic() > deadline:
            return snap, problems
        prev = snap
        time.sleep(0.5)


def soak(seconds, seed=1, out=print):
    """Runs the soak; returns the summary text. Raises AssertionError (with
    the summary) when a criterion fails."""
    sanitized = lp.sanitized()
    origins = [Origin(name="a").start(), Origin(name="b").start()]
    failures = []
    lines = []
    try:
        admin = lp.free_port()
        with lp.Proxy(script_text("A", origins), workers=2, name="script.lua",
                      # --max-connections that the descriptor limit holds (6 per connection):
                      # any warn line is a finding here.
                      args=["--admin", "127.0.0.1:%d" % admin, "--lua-time-limit", "200ms", "--max-connections", "1000",
                            "--access-log", os.path.join(lp.make_tmpdir(), "access.log")]) as p:
            master = p.pid
            st = lp.wait_until(lambda: (lambda s: s if len(s["workers"]) == 2 else None)(status(admin)),
                               5.0, what="two workers in /status")
            workers = sorted(w["pid"] for w in st["workers"])

            # Warm-up: the same mix and two reloads (B, then A again), so that
            # allocators, pools and caches reach their working size.
            warm = Tally()
            rel = Reloader(p, origins)
            for v in ("B", "A", None):
                run_traffic(p.port, WARMUP / 3, seed + 7777, warm)
                if v:
                    replace_script(p.script_path, script_text(v, origins))
                    p.send_signal(signal.SIGHUP)
            wait_generation(admin, 2)
            if warm.failures:
                failures.append("warm-up: %d unexpected outcomes: %s" % (len(warm.failures), warm.failures[:5]))
            before, unsettled = wait_settled(admin, master, workers, None, SETTLE_LIMIT)
            if unsettled:
                failures.append("no stable baseline after the warm-up: %s"
                                % {pid: probs[:10] for pid, probs in unsettled.items()})
            m0 = metrics(admin)

            # The load.
            tally = Tally()
            samples = []
            t0 = time.monotonic()
            run_traffic(p.port, seconds, seed, tally, reloader=rel, rss_pids=workers + [master],
                        samples=samples)
            took = time.monotonic() - t0
            after, fd_left = wait_settled(admin, master, workers, before, SETTLE_LIMIT)
            m1 = metrics(admin)
            st = status(admin)

            # ---- judge
            if tally.failures:
                failures.append("%d unexpected outcomes, first ones:\n    %s"
                                % (len(tally.failures), "\n    ".join(tally.failures[:10])))
            for pid, probs in fd_left.items():
                failures.append("pid %d descriptors not back to the baseline %.0fs after the load: %s"
                                % (pid, SETTLE_LIMIT, "\n    ".join([""] + probs[:20])))
            restarts = m1.get("luaproxy_worker_restarts_total", -1)
            if restarts != 0:
                failures.append("luaproxy_worker_restarts_total is %r" % restarts)
            now_workers = sorted(w["pid"] for w in st["workers"])
            if now_workers != workers or sorted(lp.children_of(master)) != workers:
                failures.append("worker pids changed: %s -> %s" % (workers, now_workers))
            for res in ("ok", "failed"):
                key = 'luaproxy_reloads_total{result="%s"}' % res
                want = rel.sent[res] + (2 if res == "ok" else 0)
                if m1.get(key) != want:
                    failures.append("%s is %r, %d reloads were sent" % (key, m1.get(key), want))
            try:
                wait_generation(admin, 2 + rel.sent["ok"])
            except AssertionError as e:
                failures.append(str(e))
            if rel.sent["failed"] == 0 and seconds > 2 * RELOAD_EVERY + 1:
                failures.append("no broken reload was tried")

            rss_lines = []
            for pid in [master] + workers:
                b, a = before[pid][1], after[pid][1]
                mid, last = (samples[len(samples) // 2][1][pid], samples[-1][1][pid]) if samples else (b, a)
                rss_lines.append("  %-12s pid %-6d fds %3d -> %3d   RSS %s -> %s (%+d KiB); "
                                 "load mid %s, end %s"
                                 % ("master" if pid == master else "worker", pid, len(before[pid][0]),
                                    len(after[pid][0]), mib(b), mib(a), (a - b) // 1024, mib(mid), mib(last)))
                if not sanitized:
                    if a > b + RSS_SLACK:
                        failures.append("pid %d RSS grew from %s to %s" % (pid, mib(b), mib(a)))
                    if last > mid + RSS_SLACK:
                        failures.append("pid %d RSS still growing late in the load: %s at mid, %s at end"
                                        % (pid, mib(mid), mib(last)))

            # Origins: only the bodies the aborted uploads cut short.
            cut = 0
            odd = []
            for o in origins:
                for e in o.errors:
                    if re.search(r"\(POST /upload\): connection closed (with \d+ (body|chunk) bytes missing|"
                                 r"inside chunk)", e):
                        cut += 1
                    else:
                        odd.append("origin %s: %s" % (o.name, e[:300]))
            if odd:
                failures.append("%d malformed requests at the origins, first ones:\n    %s"
                                % (len(odd), "\n    ".join(odd[:8])))

            try:
                rc = p.stop(signal.SIGTERM, timeout=15)
            except AssertionError as e:
                rc = None
                failures.append(str(e))
            if rc != 0:
                failures.append("luaproxy exited with status %r after SIGTERM" % rc)
            err = p.stderr_text()
            unexpected = []
            counted = {"warn": 0, "error": 0}
            by_kind = {}
            for line in err.splitlines():
                if CRASH_LOG.search(line):
                    unexpected.append(line)
                    continue
                m = re.search(r"\[(warn|error)\] \d+: (.*)$", line)
                if not m:
                    continue
                counted[m.group(1)] += 1
                kind = next((x for x in EXPECTED_LOG if x.search(m.group(2))), None)
                if kind is None:
                    unexpected.append(line)
                else:
                    k = "%s %s" % (m.group(1), KIND_NAMES[EXPECTED_LOG.index(kind)])
                    by_kind[k] = by_kind.get(k, 0) + 1
            if unexpected:
                kinds = {}
                for line in unexpected:
                    k = re.sub(r"\d+", "N", line.split("] ", 1)[-1])
                    kinds[k] = kinds.get(k, 0) + 1
                failures.append("%d unexpected error-log lines, by kind:\n    %s"
                                % (len(unexpected), "\n    ".join("%5d  %s" % (n, k[:300]) for k, n in
                                                                   sorted(kinds.items(), key=lambda kv: -kv[1]))))

            # ---- summary
            total_codes = {k: int(m1[k] - m0.get(k, 0)) for k in m1 if k.startswith("luaproxy_requests_total{")}
            lines.append("soak: %.0f s of load (%s build), %d client threads, %d reloads (%d ok, %d broken), "
                         "seed %d" % (took, "sanitizer" if sanitized else "normal", CLIENTS,
                                      rel.n, rel.sent["ok"], rel.sent["failed"], seed))
            lines.append("client requests: %d (%.0f/s); by kind:" % (tally.requests, tally.requests / took))
            for kind in sorted(tally.counts):
                lines.append("  %-18s %s" % (kind, ", ".join("%s %d" % kv for kv in sorted(tally.counts[kind].items()))))
            lines.append("server: requests by status during the load: %s" % ", ".join(
                "%s %d" % (re.sub(r'.*code="(\d+)".*', r"\1", k), v) for k, v in sorted(total_codes.items()) if v))
            lines.append("  lua errors %d, spliced %s, pool reuses %d, origin connections %d, "
                         "aborted uploads seen by origins %d, error log: %d warn, %d error"
                         % (m1.get("luaproxy_lua_errors_total", 0) - m0.get("luaproxy_lua_errors_total", 0),
                            mib(m1.get("luaproxy_spliced_bytes_total", 0) - m0.get("luaproxy_spliced_bytes_total", 0)),
                            m1.get("luaproxy_pool_reuses_total", 0) - m0.get("luaproxy_pool_reuses_total", 0),
                            sum(o.connections for o in origins), cut, counted["warn"], counted["error"]))
            lines.append("  error log by kind: %s" % ", ".join("%s %d" % kv for kv in sorted(by_kind.items())))
            lines.append("descriptors and RSS, baseline (after warm-up) -> after the load:")
            lines += rss_lines
            for pid in workers:
                pb = sum(1 for t in before[pid][0] if t == "pipe")
                pa = sum(1 for t in after[pid][0] if t == "pipe")
                if pa != pb:
                    lines.append("  worker %d pooled pipe descriptors %d -> %d" % (pid, pb, pa))
            if samples:
                marks = sorted({min(len(samples) - 1, round(i * (len(samples) - 1) / 6)) for i in range(7)})
                lines.append("RSS during the load (MiB) at %s s:" % ", ".join("%.0f" % samples[i][0] for i in marks))
                for pid in workers:
                    lines.append("  worker %-6d %s" % (pid, " ".join("%.2f" % (samples[i][1][pid] / 1048576.0)
                                                                   for i in marks)))
            lines.append("worker restarts %d; exit status %r; %s" % (restarts, rc,
                         "RSS not judged (ASan quarantine); LeakSanitizer ran at the workers' exit"
                         if sanitized else "RSS slack %s" % mib(RSS_SLACK)))
    finally:
        for o in origins:
            o.stop()
    findings = lp.sanitizer_findings()
    if findings:
        failures.append("sanitizer report:\n    " + "\n    ".join(findings))
    text = "\n".join(lines)
    out(text)
    if failures:
        raise AssertionError("soak failed:\n- " + "\n- ".join(failures) + "\n" + text)
    return text


def main():
    seconds = float(os.environ.get("SOAK_SECONDS", "60"))
    seed = int(os.environ.get("SOAK_SEED", "1"))
    global CLIENTS
    CLIENTS = int(os.environ.get("SOAK_CLIENTS", CLIENTS))
    try:
        soak(seconds, seed)
    except AssertionError as e:
        print(str(e))
        print("soak: FAILED")
        return 1
    print("soak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
