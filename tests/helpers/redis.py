"""redis: a real redis-server for one test, and the Lua libraries that talk to it.

- `start()`: a `redis-server` of the test's own on a free 127.0.0.1 port
  (optionally also a unix socket), nothing persisted (`--save ""
  --appendonly no`, its own temporary directory), ready when it answers
  PING. The object it returns has `port`, `pid`, `command(*args)` (one RESP
  request and its reply, on a connection of its own), `stop()`, `kill()`,
  `pause()`/`resume()` (SIGSTOP/SIGCONT) and `restart()` on the same port.
  Every signal goes to the server's own pid; it is registered with lp, so
  that a failing test's server is killed after it like any proxy.
- `lua_env()`: the environment that lets a luaproxy script `require
  "nginx.redis"` and `"nginx.redis.connector"`. scripts/deps.sh unpacks those
  two Debian packages into build/lua-libs rather than installing them
  (their nginx-extras dependency would bring an nginx of its own); the
  standard LUA_PATH points LuaJIT at them, and luaproxy keeps it after the
  script's own directory. `lua-nginx-dns` and `lua-resty-lrucache` are
  installed packages, on the system path already.

A system redis (Debian starts one on 6379 when the service may run) is
never used nor touched: the tests' servers are on ports of their own.

Standard library only.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

import lp

HOST = "127.0.0.1"
LUA_LIBS = lp.repo_path("build", "lua-libs", "usr", "share", "lua", "5.1")


class RedisError(Exception):
    """An error reply (`-ERR ...`) from the server."""


class RedisGone(Exception):
    """The server closed the connection without a reply."""


def lua_path():
    """The LUA_PATH value: the unpacked libraries, then LuaJIT's defaults
    (the ';;'), which hold the system paths /usr/share/lua/5.1/..."""
    if not os.path.isfile(os.path.join(LUA_LIBS, "nginx", "redis.lua")):
        raise AssertionError("no nginx/redis.lua in %s: run `bash scripts/deps.sh` (make does "
                             "it when scripts/deps.sh changes or build/ is new)" % LUA_LIBS)
    return "{0}/?.lua;{0}/?/init.lua;;".format(LUA_LIBS)


def lua_env(extra=None):
    """env for lp.Proxy(..., env=lua_env()), plus extra."""
    env = {"LUA_PATH": lua_path()}
    env.update(extra or {})
    return env


# --------------------------------------------------------------------------
# RESP


def _encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, bytes):
            b = a
        elif isinstance(a, str):
            b = a.encode()
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            b = repr(a).encode()
        else:
            raise TypeError("a redis argument must be bytes, str or a number, not %r" % (a,))
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise RedisGone("redis closed the connection before its reply was complete")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self, raw):
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest if raw else rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.exact(n)
            return data if raw else data.decode("utf-8", "surrogateescape")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply(raw) for _ in range(n)]
        raise RedisGone("not a RESP reply: %r" % line[:80])


def command_at(where, *args, timeout=2.0, raw=False):
    """One command on a new connection to 127.0.0.1:where (a port) or to
    the unix socket where (a path); its reply: str (bytes if raw) for status
    and bulk replies, int, list, None for nil. Raises RedisError for an
    error reply, TimeoutError when no reply comes in time."""
    if isinstance(where, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect(where)
        except BaseException:
            s.close()
            raise
    else:
        s = socket.create_connection((HOST, where), timeout=timeout)
    with s:
        s.settimeout(timeout)
        s.sendall(_encode(args))
        r = _Reader(s).reply(raw)
    if isinstance(r, RedisError):
        raise r
    return r


# --------------------------------------------------------------------------
# The server


def _state(pid):
    st = lp.proc_stat(pid)
    return st[0] if st else None


class Redis:
    def __init__(self, unix=False, start_timeout=10.0):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise AssertionError("redis-server is not installed: run `bash scripts/deps.sh`")
        self.dir = lp.make_tmpdir()
        self.unix_path = os.path.join(self.dir, "redis.sock") if unix else None
        self.log_path = os.path.join(self.dir, "redis.log")
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.paused = False
        lp._live.append(self)   # lp.cleanup_all() ends it after the test
        # A port found free may be taken before redis binds it: try others.
        for attempt in range(5):
            self.port = lp.free_port()
            if self._start(give_up=attempt == 4):
                break

    @property
    def pid(self):
        return self.proc.pid

    def _argv(self):
        argv = [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                "--logfile", "", "--databases", "1"]
        if self.unix_path:
            argv += ["--unixsocket", self.unix_path, "--unixsocketperm", "700"]
        return argv

    def _start(self, give_up=True):
        """Starts the server on self.port and waits for PONG. False if it
        exited because the port is taken (and give_up is false)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self._argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.dir,
                                         start_new_session=True)
        self.paused = False
        deadline = time.monotonic() + self.start_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                text = self.log_text()
                if not give_up and "Address already in use" in text:
                    return False
                raise AssertionError("redis-server exited with status %d during start-up on port "
                                     "%d; its log:\n%s" % (rc, self.port, text[-2000:]))
            try:
                if command_at(self.port, "PING", timeout=0.5) == "PONG":
                    return True
            except (OSError, RedisGone, RedisError):
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise AssertionError("redis-server did not answer PING on port %d within %.0fs; "
                                     "its log:\n%s" % (self.port, self.start_timeout,
                                                       self.log_text()[-2000:]))
            time.sleep(0.02)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def command(self, *args, timeout=2.0, raw=False):
        """One command and its reply (see command_at)."""
        return command_at(self.port, *args, timeout=timeout, raw=raw)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig):
        # Popen.send_signal does nothing once the process has been reaped,
        # so a pid the kernel may have given to another process is never hit.
        self.proc.send_signal(sig)

    def _wait_state(self, want_stopped, timeout=5.0):
        what = "stopped" if want_stopped else "running"
        lp.wait_until(lambda: self.proc.poll() is not None or
                      (_state(self.pid) == "T") == want_stopped,
                      timeout, what="redis-server (pid %d) %s" % (self.pid, what))

    def pause(self):
        """SIGSTOP: the server keeps its sockets (connections are accepted by
        the kernel) but answers nothing until resume()."""
        assert self.alive(), "redis-server is not running"
        self._signal(signal.SIGSTOP)
        self._wait_state(True)
        self.paused = True

    def resume(self):
        assert self.alive(), "redis-server is not running"
        self._signal(signal.SIGCONT)
        self._wait_state(False)
        self.paused = False

    def stop(self, timeout=5.0):
        """SIGTERM (with SIGCONT, so a paused server can act on it), then
        SIGKILL if it has not exited by the deadline. Returns its status."""
        if self.alive():
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def kill(self):
        """SIGKILL (works on a paused server too); returns its status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
        self.paused = False
        return self.proc.wait(5)

    def restart(self):
        """A new server on the same port, empty (nothing persists); the old
        one is stopped first if it still runs."""
        self.stop()
        self._start(give_up=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(unix=False, start_timeout=10.0):
    return Redis(unix=unix, start_timeout=start_timeout)
