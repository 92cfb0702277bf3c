"""many: thousands of concurrent one-request connections, from one thread.

    with many.Clients(port, 10000, "GET /wait HTTP/1.1\\r\\nHost: t\\r\\n"
                      "Connection: close\\r\\n\\r\\n") as c:
        ...                                 # every request has been sent
        done = c.collect(timeout=10.0)      # {index: (status, body)}

Each connection is opened with a blocking connect (on loopback the kernel
completes the handshake before the server accepts, so this is quick while
the server's accept queue has room) and its request written at once; then
the sockets are non-blocking and one epoll loop reads every response until
the server closes the connection (the request says Connection: close).
`close(i, reset=False)` drops one connection early (reset: an RST, through
SO_LINGER 0). `request` may be a function of the index. Descriptors: one per connection; `fit()` says how many the
process's limit allows.

Standard library only.
"""

import errno
import resource
import select
import socket
import struct
import time

HOST = "127.0.0.1"


def fit(n, spare=256):
    """min(n, what RLIMIT_NOFILE leaves after `spare` descriptors), raising
    the soft limit to the hard one first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return max(0, min(n, soft - spare))


def status_of(raw):
    """(status, body) of a whole HTTP/1.x response, or (None, raw)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        return None, raw
    try:
        return int(parts[1]), body
    except ValueError:
        return None, raw


class Clients:
    def __init__(self, port, n, request, connect_timeout=10.0):
        self.port = port
        self.n = n
        self.socks = {}     # index -> socket, while open
        self.data = {}      # index -> bytes received
        self.done = {}      # index -> (status, body) once the server closed
        self.errors = {}    # index -> str
        self.ep = select.epoll()
        by_fd = {}
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.settimeout(connect_timeout)
                    s.connect((HOST, port))
                    req = request(i) if callable(request) else request
                    s.sendall(req if isinstance(req, bytes) else req.encode())
                    s.setblocking(False)
                except BaseException:
                    s.close()
                    raise
                self.socks[i] = s
                self.data[i] = b""
                by_fd[s.fileno()] = i
                self.ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        except BaseException:
            self.close_all()
            raise
        self.by_fd = by_fd

    def _finish(self, i):
        s = self.socks.pop(i)
        self.by_fd.pop(s.fileno(), None)
        try:
            self.ep.unregister(s.fileno())
        except (OSError, ValueError):
            pass
        s.close()
        self.done[i] = status_of(self.data.pop(i))

    def poll(self, timeout=0.0):
        """Reads whatever has come, for up to timeout seconds; returns the
        number of connections still open."""
        for fd, _ in self.ep.poll(timeout, maxevents=4096):
            i = self.by_fd.get(fd)
            if i is None:
                continue
            s = self.socks[i]
            while True:
                try:
                    chunk = s.recv(65536)
                except BlockingIOError:
                    break
                except OSError as e:
                    self.errors[i] = errno.errorcode.get(e.errno, str(e))
                    chunk = b""
                if not chunk:
                    self._finish(i)
                    break
                self.data[i] += chunk
        return len(self.socks)

    def collect(self, timeout):
        """Waits until every connection still open has been closed by the
        server, or until timeout; returns done ({index: (status, body)})."""
        deadline = time.monotonic() + timeout
        while self.socks:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.poll(min(left, 0.2))
        return self.done

    def is_open(self, i):
        """True until the server closed connection i (as far as read)."""
        return i in self.socks

    def close(self, i, reset=False):
        """The client goes away early."""
        s = self.socks.pop(i)
        self.by_fd.pop(s.fileno(), None)
        self.data.pop(i, None)
        try:
            self.ep.unregister(s.fileno())
        except (OSError, ValueError):
            pass
        if reset:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    def close_all(self):
        for s in getattr(self, "socks", {}).values():
            s.close()
        self.socks = {}
        self.ep.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close_all()
