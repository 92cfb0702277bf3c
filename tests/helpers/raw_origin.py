"""raw_origin: a backend that records every byte it receives and answers
fixed bytes. Each connection is read until `complete(bytes so far)` says a
whole request is there (by default: a request head), answered with
`answer`, shut down for writing, and read to EOF; its bytes are then kept
in `requests` (and in `received`, all connections in order)."""

import re
import socket
import threading

import lp


def head_complete(data):
    return b"\r\n\r\n" in data


def request_complete(data):
    """A whole request: its head, and the body its framing announces."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head, body = data[:end + 2].lower(), data[end + 4:]
    m = re.search(rb"\r\ncontent-length: *([0-9]+)\r\n", head)
    if m:
        return len(body) >= int(m.group(1))
    if b"\r\ntransfer-encoding:" in head:
        return body.startswith(b"0\r\n") and body.endswith(b"\r\n\r\n") or \
            b"\r\n0\r\n" in body and body.endswith(b"\r\n\r\n")
    return True


class RawOrigin:
    def __init__(self, answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", complete=head_complete):
        self.answer = answer
        self.complete = complete
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((lp.HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.addr = "%s:%d" % (lp.HOST, self.port)
        self.lock = threading.Lock()
        self.connections = 0
        self.received = b""  # every byte of every connection, in order
        self.requests = []   # the bytes of each finished connection
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()

    def _recv(self, c, mine):
        data = c.recv(65536)
        mine += data
        self.received += data
        return data

    def _loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            mine = bytearray()
            with c:
                c.settimeout(3)
                try:
                    while not self.complete(bytes(mine)):
                        if not self._recv(c, mine):
                            break
                    else:
                        c.sendall(self.answer)
                        c.shutdown(socket.SHUT_WR)
                        while self._recv(c, mine):
                            pass
                except OSError:
                    pass
            with self.lock:
                self.requests.append(bytes(mine))

    def wait(self, n=1, timeout=3.0):
        """The bytes of the first n connections, once they are over (bounded)."""
        return lp.wait_until(lambda: list(self.requests) if len(self.requests) >= n else None,
                             timeout=timeout, what="%d connection(s) at the origin" % n)
