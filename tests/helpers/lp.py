"""lp: what the integration tests need to drive a real luaproxy.

- `Proxy(script)`: starts build/luaproxy (or $LUAPROXY) on a free 127.0.0.1
  port with the script written to a temporary directory, waits until it
  accepts connections, and always ends it (SIGKILL to its process group)
  when the `with` block or the test is over.
- `run_cli(args)`: a short-lived invocation (--check, --help, bad options).
- `Conn`: a raw client connection with an incremental HTTP/1.x response
  parser, for keep-alive, pipelining, 100-continue and "did the server close
  the connection?" questions. `send_raw()` and `parse_responses()` for the
  one-shot cases, `request()` (http.client) for the simple ones.

Standard library only. Every process started here is registered, so that
`cleanup_all()` (called by run.py after each test) ends whatever a failing
test left behind; nothing is ever killed by name.
"""

import atexit
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST = "127.0.0.1"


def binary():
    path = os.environ.get("LUAPROXY", "build/luaproxy")
    if not os.path.isabs(path):
        path = os.path.join(ROOT, path)
    return path


def repo_path(*parts):
    return os.path.join(ROOT, *parts)


# --------------------------------------------------------------------------
# Process bookkeeping


_live = []      # Proxy and _Cli objects that may still have processes
_tmpdirs = []   # removed by cleanup_all()
_started = []   # Proxy objects and CliResults of the current test, for sanitizer_findings()


def _register_tmpdir(path):
    _tmpdirs.append(path)
    return path


def make_tmpdir():
    return _register_tmpdir(tempfile.mkdtemp(prefix="lp-test-"))


def cleanup_all():
    """End every process a test started and remove its temporary files."""
    while _live:
        obj = _live.pop()
        try:
            obj.kill()
        except Exception:
            pass
    while _tmpdirs:
        shutil.rmtree(_tmpdirs.pop(), ignore_errors=True)
    del _started[:]


_SANITIZER = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|\.c:\d+:\d+: runtime error:")


_asan_builds = {}


def sanitized():
    """True when the binary under test is a sanitizer build (make SANITIZE=1)."""
    path = binary()
    if path not in _asan_builds:
        try:
            with open(path, "rb") as f:
                _asan_builds[path] = b"__asan_init" in f.read()
        except OSError:
            _asan_builds[path] = False
    return _asan_builds[path]


def sanitizer_findings():
    """Lines of AddressSanitizer/UBSan reports in the stderr of every process
    started since the last call (a SANITIZE=1 build reports there). Servers
    still running are ended first (see Proxy.kill: their leak check runs)."""
    for obj in list(_live):
        if isinstance(obj, Proxy):
            obj.kill()
            _live.remove(obj)
    found = []
    for obj in _started:
        text = obj.stderr_text() if isinstance(obj, Proxy) else obj.stderr
        lines = text.split("\n")
        for i, line in enumerate(lines):
            if _SANITIZER.search(line):
                found += lines[i:i + 8]
                break
    del _started[:]
    return found


# Scripts that use lp without run.py clean up too.
atexit.register(cleanup_all)


def started_proxies():
    """The servers started since the last sanitizer_findings() (this test's)."""
    return [o for o in _started if isinstance(o, Proxy)]


def _child_env(env):
    """The inherited environment without LUAPROXY_* options (so a developer's
    shell cannot change what a test means), plus the test's own."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("LUAPROXY_")}
    if env:
        out.update({k: str(v) for k, v in env.items()})
    return out


def _killpg(pid):
    # The process was started in its own session, so its pid is also the id of
    # its process group, which holds the master and every worker it forked.
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def proc_stat(pid):
    """(state, ppid) of a process from /proc/PID/stat, or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces or ')'.
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def children_of(ppid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st and st[1] == ppid and st[0] != "Z":
            out.append(int(name))
    return sorted(out)


def pid_alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] != "Z"


def wait_until(pred, timeout=5.0, interval=0.02, what="condition"):
    """Polls pred() until it returns something truthy; returns that value.
    Raises AssertionError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def cpu_ticks(pid):
    """User + system CPU time of a process, in clock ticks (1/100 s here)."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])     # utime, stime (fields 14 and 15)


def wait_cpu_busy(pid, ticks=2, timeout=3.0, what="the process to run"):
    """Waits until pid has used `ticks` more CPU ticks than at the call: it
    is running (say, a worker spinning in Lua), not merely about to."""
    start = cpu_ticks(pid)
    wait_until(lambda: cpu_ticks(pid) >= start + ticks, timeout, interval=0.005,
               what="%s (%d CPU ticks of pid %d)" % (what, ticks, pid))


def wait_cpu_idle(pid, quiet=0.2, timeout=5.0, what="the process to go idle"):
    """Waits until pid has used no CPU for `quiet` seconds: whatever it would
    do with what it was given (buffer a body, say) it has done."""
    state = {"ticks": cpu_ticks(pid), "since": time.monotonic()}

    def still():
        t, now = cpu_ticks(pid), time.monotonic()
        if t != state["ticks"]:
            state["ticks"], state["since"] = t, now
        return now - state["since"] >= quiet
    wait_until(still, timeout, interval=0.02, what="%s (no CPU for %.1fs, pid %d)" % (what, quiet, pid))


def _proc_net_tcp(port, client_port):
    """_sock_diag from /proc/net/tcp (one regex search over the whole file)."""
    with open("/proc/net/tcp") as f:
        text = f.read()
    m = re.search(r"^.*:%04X [0-9A-F]{8}:%04X .*$" % (port, client_port), text, re.M)
    if not m:
        return None
    parts = m.group(0).split()
    return int(parts[4].split(":")[1], 16), int(parts[9])


def _sock_diag(port, client_port):
    """(unread bytes, inode) of the server side of a loopback connection
    (local port `port`, peer port `client_port`) through one exact
    NETLINK_SOCK_DIAG lookup (sub-millisecond, where /proc/net/tcp may hold
    thousands of lines), or None if there is no such socket."""
    import struct
    lo = socket.inet_aton(HOST) + b"\0" * 12
    sockid = struct.pack("!HH", port, client_port) + lo + lo + struct.pack("=III", 0, 0xFFFFFFFF, 0xFFFFFFFF)
    req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + sockid
    msg = struct.pack("=IHHII", 16 + len(req), 20, 1, 1, 0) + req    # SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, 4) as nl:   # NETLINK_SOCK_DIAG
            nl.sendto(msg, (0, 0))
            data = nl.recv(65536)
    except OSError:
        return _proc_net_tcp(port, client_port)     # no sock_diag here: the slow way
    _, mtype = struct.unpack_from("=IH", data)
    if mtype != 20:                     # NLMSG_ERROR: no such socket
        return None
    # No connection with that peer: the lookup may fall back to the listener.
    if struct.unpack_from("!HH", data, 16 + 4) != (port, client_port):
        return None
    rqueue, _wqueue, _uid, inode = struct.unpack_from("=IIII", data, 16 + 4 + 48 + 4)
    return rqueue, inode


def server_unread(port, client_port):
    """Bytes the server side of the loopback connection (local port `port`,
    peer port `client_port`) has received but its process has not read yet;
    None if there is no such socket."""
    d = _sock_diag(port, client_port)
    return d[0] if d else None


def holder_of(port, conn, pids):
    """Which of pids holds the server side of `conn` (a Conn or a socket,
    connected to `port`), or None: the worker a connection went to."""
    sock = getattr(conn, "sock", conn)
    d = _sock_diag(port, sock.getsockname()[1])
    if d is None or d[1] == 0:          # no inode yet: not accepted
        return None
    want = "socket:[%d]" % d[1]
    for pid in pids:
        try:
            fds = os.listdir("/proc/%d/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == want:
                    return pid
            except OSError:
                pass
    return None


def conn_on_worker(proxy, pid, tries=64, timeout=5.0):
    """A new Conn to proxy that worker `pid` holds (the connections that
    another worker took are closed unused), so that a test can say which
    worker serves what rather than hope both get a share."""
    for _ in range(tries):
        c = Conn(proxy.port, timeout=timeout)
        holder = wait_until(lambda: holder_of(proxy.port, c, proxy.worker_pids()), 3, interval=0.002,
                            what="a worker to accept the connection")
        if holder == pid:
            return c
        c.close()
    raise AssertionError("%d connections never reached worker %d" % (tries, pid))


def wait_server_read(port, conn, timeout=3.0, what="the server to read what the client sent"):
    """Waits until the server has read every byte sent on `conn` (a Conn or
    a socket): the request is in the server's hands, not in a queue."""
    sock = getattr(conn, "sock", conn)
    cport = sock.getsockname()[1]
    wait_until(lambda: server_unread(port, cport) == 0, timeout, interval=0.005,
               what="%s (port %d, client port %d)" % (what, port, cport))


# --------------------------------------------------------------------------
# Short-lived invocations


class CliResult:
    def __init__(self, returncode, stdout, stderr):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self):
        return "exit %r, stdout %r, stderr %r" % (self.returncode, self.stdout[-500:], self.stderr[-500:])


class _Cli:
    def __init__(self, proc):
        self.proc = proc

    def kill(self):
        if self.proc.poll() is None:
            _killpg(self.proc.pid)
            self.proc.wait(5)


def run_cli(args, env=None, timeout=5.0, cwd=None):
    """Runs luaproxy with args to completion. A run that is still going after
    `timeout` (for example a server that started when it should have refused
    its options) is killed and reported with returncode None."""
    proc = subprocess.Popen([binary()] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_child_env(env), cwd=cwd or ROOT, start_new_session=True)
    holder = _Cli(proc)
    _live.append(holder)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        _killpg(proc.pid)
        out, err = proc.communicate()
        rc = None
    _killpg(proc.pid)  # workers it may have left behind
    if holder in _live:
        _live.remove(holder)
    res = CliResult(rc, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
    _started.append(res)
    return res


def write_script(text, name="script.lua", directory=None):
    d = directory or make_tmpdir()
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# --------------------------------------------------------------------------
# A running server


class ProxyError(Exception):
    pass


class Skip(Exception):
    """Raised by a test whose subject this machine does not have (a kernel
    feature, say): the runner prints SKIP with the reason and counts it
    neither as passed nor as failed."""


_recent_ports = []


def free_port():
    """A port free now, and not one handed out lately: two calls in a row
    can get the same port from the kernel (it was closed at once), and a
    proxy given it twice refuses to start."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _recent_ports:
            break
    _recent_ports.append(port)
    del _recent_ports[:-256]
    return port


def port_accepts(port, timeout=0.5):
    try:
        s = socket.create_connection((HOST, port), timeout=timeout)
    except OSError:
        return False
    s.close()
    return True


class Proxy:
    """A luaproxy server for one test.

        with Proxy('function on_get(req) return 200, "hi" end') as p:
            lp.request(p.port, "GET", "/")

    `script` is Lua source, or the path of a .lua file (relative to the
    repository root). `workers` adds `-w N` (None: leave the default).
    `nofile=(soft, hard)` sets the server's descriptor limit.
    `listen=False` leaves out --listen (the port must then come from `env`,
    and `port` says which one to wait for)."""

    def __init__(self, script, args=(), env=None, workers=1, listen=True, port=None,
                 start_timeout=10.0, name="script.lua", nofile=None):
        self.dir = make_tmpdir()
        if "\n" not in script and script.endswith(".lua"):
            self.script_path = script if os.path.isabs(script) else repo_path(script)
        else:
            self.script_path = write_script(script, name=name, directory=self.dir)
        self.port = port or free_port()
        self.pid_file = os.path.join(self.dir, "luaproxy.pid")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        argv = [binary()]
        if listen:
            argv += ["--listen", "%s:%d" % (HOST, self.port)]
        argv += ["--pid-file", self.pid_file]
        if workers is not None:
            argv += ["-w", str(workers)]
        argv += [str(a) for a in args]
        argv.append(self.script_path)
        self.argv = argv
        self.nofile = nofile    # (soft, hard) RLIMIT_NOFILE for the server, or None
        self.proc = None
        self.returncode = None
        self._start(env, start_timeout)

    def _start(self, env, start_timeout):
        if not os.path.exists(self.argv[0]):
            raise ProxyError("binary %s does not exist (make it first, or set LUAPROXY)" % self.argv[0])
        self._err = open(self.stderr_path, "wb")
        self._out = open(self.stdout_path, "wb")
        limit = self.nofile

        def preexec():
            if limit:
                import resource
                resource.setrlimit(resource.RLIMIT_NOFILE, limit)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._err, env=_child_env(env), cwd=ROOT,
                                     start_new_session=True, preexec_fn=preexec if limit else None)
        _live.append(self)
        _started.append(self)
        deadline = time.monotonic() + start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise ProxyError("luaproxy exited with status %d during start-up; stderr:\n%s"
                                 % (rc, self.stderr_text().strip()))
            if port_accepts(self.port, timeout=0.2):
                return
            if time.monotonic() >= deadline:
                raise ProxyError("luaproxy did not accept connections on port %d within %.0fs; "
                                 "stderr:\n%s" % (self.port, start_timeout, self.stderr_text().strip()))
            time.sleep(0.02)

    @property
    def pid(self):
        return self.proc.pid

    def worker_pids(self):
        return children_of(self.proc.pid)

    def wait_workers(self, n, timeout=5.0):
        """Waits until the master has exactly n live children; returns them."""
        return wait_until(lambda: (lambda w: w if len(w) == n else None)(self.worker_pids()),
                          timeout, what="%d worker processes" % n)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_stderr(self, needle, timeout=3.0):
        """Waits until stderr contains needle; returns the whole text."""
        return wait_until(lambda: (lambda t: t if needle in t else None)(self.stderr_text()),
                          timeout, what="%r on stderr; stderr so far:\n%s" % (needle, self.stderr_text()))

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        """Exit status of the master, or None if it is still running."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig to the master and returns its exit status (negative:
        killed by that signal). Raises AssertionError if it has not exited
        within timeout (it is then killed)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            raise AssertionError("luaproxy did not exit within %.1fs of signal %d" % (timeout, sig))
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None and sanitized():
            # Workers run LeakSanitizer only when they exit cleanly
            # (core/master.c child_exit): let them drain for a moment.
            os.kill(self.proc.pid, signal.SIGTERM)
            self.wait(3.0)
        if self.proc is not None:
            _killpg(self.proc.pid)
            try:
                self.returncode = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for f in (getattr(self, "_err", None), getattr(self, "_out", None)):
            if f and not f.closed:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        if self in _live:
            _live.remove(self)
        return False


# --------------------------------------------------------------------------
# HTTP responses


class Response:
    """status, reason, version, headers (lower-case name -> value, repeated
    ones joined with ", "), header_list [(lower-case name, value)], body.
    Unpacks as (status, headers, body)."""

    def __init__(self, version, status, reason, header_list, body, raw=b""):
        self.version = version
        self.status = status
        self.reason = reason
        self.header_list = header_list
        self.headers = {}
        for k, v in header_list:
            self.headers[k] = self.headers[k] + ", " + v if k in self.headers else v
        self.body = body
        self.raw = raw

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def getall(self, name):
        name = name.lower()
        return [v for k, v in self.header_list if k == name]

    def connection_tokens(self):
        return {t.strip().lower() for t in self.headers.get("connection", "").split(",") if t.strip()}

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def __repr__(self):
        return "<Response %s %d %r headers=%r body=%r>" % (self.version, self.status, self.reason,
                                                           self.header_list, self.body[:200])


class ProtocolError(Exception):
    pass


def _parse_chunked(buf, pos):
    """Returns (body, end) or None when incomplete."""
    body = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        line = buf[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(line, 16)
        except ValueError:
            raise ProtocolError("bad chunk size line %r" % buf[pos:eol])
        pos = eol + 2
        if size == 0:
            # Trailers, then the empty line.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(body), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        body.append(buf[pos:pos + size])
        if buf[pos + size:pos + size + 2] != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        pos += size + 2


def parse_response(buf, head=False, eof=False):
    """Parses one response at the start of buf. Returns (Response, consumed)
    or None if more bytes are needed. head=True: the response to a HEAD
    request (no body). eof=True: buf is all there will ever be (a body
    without framing then ends here)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if eof and buf:
            raise ProtocolError("incomplete response head: %r" % buf[:300])
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError("bad status line %r" % lines[0])
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    header_list = []
    for line in lines[1:]:
        if ":" not in line:
            raise ProtocolError("bad header line %r" % line)
        k, v = line.split(":", 1)
        header_list.append((k.strip().lower(), v.strip()))
    resp = Response(version, status, reason, header_list, b"")
    pos = end + 4
    te = resp.headers.get("transfer-encoding", "").lower()
    if head or status // 100 == 1 or status in (204, 304):
        body, stop = b"", pos
    elif "chunked" in te:
        r = _parse_chunked(buf, pos)
        if r is None:
            if eof:
                raise ProtocolError("incomplete chunked body")
            return None
        body, stop = r
    elif "content-length" in resp.headers:
        try:
            n = int(resp.headers["content-length"])
        except ValueError:
            raise ProtocolError("bad content-length %r" % resp.headers["content-length"])
        if len(buf) < pos + n:
            if eof:
                raise ProtocolError("body shorter than content-length (%d of %d bytes)"
                                    % (len(buf) - pos, n))
            return None
        body, stop = buf[pos:pos + n], pos + n
    else:
        if not eof:
            return None
        body, stop = buf[pos:], len(buf)
    resp.body = body
    resp.raw = buf[:stop]
    return resp, stop


def parse_responses(data, head_indexes=()):
    """Every response in data (all bytes of a connection). head_indexes: the
    positions of responses that answer HEAD requests."""
    out = []
    pos = 0
    while pos < len(data):
        r = parse_response(data[pos:], head=len(out) in head_indexes, eof=True)
        if r is None:
            break
        out.append(r[0])
        pos += r[1]
    return out


# --------------------------------------------------------------------------
# Clients


class Conn:
    """One raw client connection."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.reset = False

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _recv(self, deadline):
        """Reads more into buf; False at EOF/reset; raises socket.timeout."""
        if self.eof:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.eof = self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_response(self, head=False, timeout=None):
        """The next response (a 1xx is returned on its own). Raises
        socket.timeout, or ProtocolError if the server closed first."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            r = parse_response(self.buf, head=head, eof=self.eof)
            if r is not None:
                resp, n = r
                self.buf = self.buf[n:]
                return resp
            if self.eof:
                raise ProtocolError("connection closed%s before a complete response; got %r"
                                    % (" (reset)" if self.reset else "", self.buf[:300]))
            try:
                self._recv(deadline)
            except socket.timeout:
                raise socket.timeout("no complete response within %.1fs; got %r"
                                     % (self.timeout if timeout is None else timeout, self.buf[:300])) from None

    def request(self, method, path, body=None, headers=None, version="1.1", timeout=None):
        self.send(build_request(method, path, body, headers, version))
        return self.read_response(head=(method == "HEAD"), timeout=timeout)

    def read_until_close(self, timeout=None):
        """Everything up to EOF (or the timeout); buffered bytes included."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        try:
            while self._recv(deadline):
                pass
        except socket.timeout:
            pass
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, timeout=2.0):
        """True if the server closes (or resets) the connection within
        timeout, False if it stays open. Unexpected bytes raise."""
        deadline = time.monotonic() + timeout
        try:
            while self._recv(deadline):
                pass
        except socket.timeout:
            if self.buf:
                raise AssertionError("unexpected bytes from the server: %r" % self.buf[:300])
            return False
        if self.buf:
            raise AssertionError("unexpected bytes from the server before close: %r" % self.buf[:300])
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def build_request(method, path, body=None, headers=None, version="1.1"):
    """Request bytes. Adds Host (1.1) and Content-Length (when there is a
    body) unless the headers already name them (case-insensitively)."""
    if isinstance(body, str):
        body = body.encode()
    headers = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in headers}
    if version == "1.1" and "host" not in names:
        headers.insert(0, ("Host", "127.0.0.1"))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    head = "%s %s HTTP/%s\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in headers) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def _exchange(port, data, timeout):
    """(every byte received until the server closed or timeout passed,
    whether it closed)."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    c = Conn(port, timeout=timeout)
    try:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return c.read_until_close(timeout), c.eof
    finally:
        c.close()


def send_raw(port, data, timeout=3.0):
    """Sends data on a fresh connection and returns every byte received
    until the server closes the connection or timeout passes."""
    return _exchange(port, data, timeout)[0]


def send_raw_closed(port, data, timeout=3.0):
    """send_raw for an exchange the server must end (Connection: close, an
    HTTP/1.0 client, a rejection): every byte received, and an
    AssertionError if the server has not closed within timeout (send_raw
    would return what came by then, and a close that never happens pass)."""
    out, closed = _exchange(port, data, timeout)
    if not closed:
        raise AssertionError("the server kept the connection open %.1fs after %r; got %r"
                             % (timeout, data[:100], out[:300]))
    return out


def request(port, method, path, body=None, headers=None, timeout=5.0):
    """One request on a fresh connection through http.client."""
    if isinstance(body, str):
        body = body.encode()
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return Response("HTTP/%d.%d" % divmod(r.version, 10), r.status, r.reason,
                        [(k.lower(), v) for k, v in r.getheaders()], data)
    finally:
        c.close()


def get(port, path, **kw):
    return request(port, "GET", path, **kw)


def post(port, path, body, **kw):
    return request(port, "POST", path, body=body, **kw)


def expect(r, status, body=None, what=""):
    """Asserts a response's status (and body, if given); returns it."""
    if r.status != status or (body is not None and r.body != body):
        want = "%d" % status + ("" if body is None else " %r" % body[:200])
        raise AssertionError("%sexpected %s, got %r" % (what + ": " if what else "", want, r))
    return r


NOPE = Response("HTTP/1.1", 0, "no response", [], b"")


def try_get(port, path, timeout=2.0):
    """A GET that returns None instead of raising when the connection fails."""
    try:
        return request(port, "GET", path, timeout=timeout)
    except (OSError, http.client.HTTPException):
        return None
