"""tcpserver: the lifecycle the test origins share: a listener on
127.0.0.1, a thread accepting on it, one thread per connection, and a stop
that shuts every socket down and joins the threads. A subclass writes
`_accept_loop` (using `self.listener`, `self.socks`, `self.threads` and
`self.lock`). `host` may be another loopback address (127.0.0.2: a second
machine) or a path (a unix socket; `addr` is then "unix:PATH")."""

import socket
import threading
import time

HOST = "127.0.0.1"


class ThreadedServer:
    backlog = 512

    def __init__(self, name, port=0, host=HOST):
        self.name = name
        self.host = host
        self.want_port = port
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.listener = None
        self.port = None
        self.socks = set()
        self.threads = []

    def start(self):
        unix = self.host.startswith("/")
        s = socket.socket(socket.AF_UNIX if unix else socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(self.host if unix else (self.host, self.want_port))
        s.listen(self.backlog)
        self.listener = s
        self.port = None if unix else s.getsockname()[1]
        self.spawn(self._accept_loop, (), "%s-accept" % self.name)
        return self

    def spawn(self, target, args, name):
        """A daemon thread, remembered (finished ones are forgotten)."""
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self.lock:
            self.threads = [x for x in self.threads if x.is_alive()]
            self.threads.append(t)
        t.start()
        return t

    @property
    def addr(self):
        if self.host.startswith("/"):
            return "unix:" + self.host
        return "%s:%d" % (self.host, self.port)

    def stop(self):
        self.stopping.set()
        with self.lock:
            socks = ([self.listener] if self.listener is not None else []) + list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.listener is not None:
            try:
                self.listener.close()
            except OSError:
                pass
        deadline = time.monotonic() + 3
        with self.lock:
            threads = list(self.threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self):
        if self.listener is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


class Closed(Exception):
    """The peer closed (or reset) the connection."""


class SockReader:
    """Buffered reads from a connection: fill() appends what one recv
    gives to self.buf (raising Closed at EOF) and passes it to received(),
    which a subclass may use to keep or count the bytes."""

    def __init__(self, sock, recv_size=65536):
        self.sock = sock
        self.recv_size = recv_size
        self.buf = bytearray()
        self.eof = False

    def received(self, data):
        pass

    def fill(self):
        if self.eof:
            raise Closed()
        try:
            data = self.sock.recv(self.recv_size)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            raise Closed()
        self.received(data)
        self.buf += data
