"""polledserver: a socket on 127.0.0.1 (a free port) served by one thread
that wakes every 0.2 s, so that close() ends it promptly. A subclass sets
its own attributes, then calls PolledServer.__init__, and writes
serve_one(): handle one datagram (UDP) or one connection (TCP), letting
socket.timeout through when none came."""

import socket
import threading


class PolledServer:
    def __init__(self, kind=socket.SOCK_DGRAM):
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        if kind == socket.SOCK_STREAM:
            self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def serve_one(self):
        raise NotImplementedError

    def _run(self):
        while not self._stop:
            try:
                self.serve_one()
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
