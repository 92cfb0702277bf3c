"""strict_origin: a test backend that keeps every byte it receives and reads
it with the strictest reading of RFC 9112, for the smuggling corpus and the
backend-fault tests.

    with StrictOrigin() as o:
        ... proxy to o.addr, send things ...
        o.wait_quiet()
        o.assert_clean()                   # no violation, no leftover bytes
        reqs = o.requests_since(mark)      # what arrived, parsed

Per accepted connection it records the raw bytes (`o.conns[i].raw`) and
parses them as they come. Anything that is not exactly a well-formed
HTTP/1.1 request as a normalising proxy must send is a violation, recorded in
`o.errors` with the connection id and the bytes around it, after which the
connection is closed without an answer:

- request line `METHOD SP origin-form-or-* SP HTTP/1.1 CRLF` (absolute-form
  and authority-form must have been normalised away; `#`, controls, spaces
  and bytes >= 0x80 are not allowed in the target);
- header lines `token ":" OWS value OWS CRLF`, values of VCHAR, obs-text, SP
  and HTAB only; no obs-fold, no bare CR or LF, at most 128 lines;
- exactly one valid Host; no hop-by-hop header (Connection, Keep-Alive,
  Proxy-Connection, TE, Trailer, Upgrade, HTTP2-Settings);
- Transfer-Encoding only as exactly one `chunked`, never with
  Content-Length; Content-Length only once, digits only;
- chunks: hex size (at most 16 digits), extensions of `;token[=token or
  quoted-string]` only, CRLF after the size and after the data, a valid
  trailer section;
- at EOF, no byte left over that is not a complete request: the tail of a
  request hidden in a body shows up here.

Every request gets its own token (1, 2, ...). The default answer is `200`
with Content-Length, `X-Strict-Token: N` and the body
`token=N method=M target=T body_len=L\\n`, so a test can match what the
client was answered with what the origin received: a request the origin saw
whose token never reached a client was hidden from the proxy's framing.

`respond(req)` replaces the default answer (for the backend-fault tests): it
returns a list of steps, each `bytes` (sent), `("sleep", seconds)`,
`"close"` (FIN), `"reset"` (RST: SO_LINGER 0), `"hang"` (wait until stop()),
`("wait", event)` (until the threading.Event is set, or stop()) or `"keep"`
(read the next request; the default at the end of the list).
`early(req)`, when given, is called once the head is read and before the
body: steps it returns are the answer, sent without reading the body (the
connection then ends).
"""

import hashlib
import re
import socket
import struct
import threading
import time

from tcpserver import HOST, Closed as _Closed, SockReader, ThreadedServer

TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TOKEN = TCHAR + rb"+"
REQUEST_LINE = re.compile(rb"^(" + TOKEN + rb") ([^ ]+) HTTP/1\.1$")
ORIGIN_FORM = re.compile(rb"^/[!-~]*$")                 # visible ASCII, no space
HEADER_LINE = re.compile(rb"^(" + TOKEN + rb"):[ \t]*(.*?)[ \t]*$", re.S)
FIELD_VALUE = re.compile(rb"^[\t \x21-\x7e\x80-\xff]*$")
HOST_VALUE = re.compile(rb"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(:[0-9]*)?$")
QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
CHUNK_EXT = rb"(?:[ \t]*;[ \t]*" + TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + TOKEN + rb"|" + QUOTED + rb"))?)*"
CHUNK_LINE = re.compile(rb"^([0-9A-Fa-f]{1,16})(" + CHUNK_EXT + rb")$")
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade",
              b"http2-settings"}
MAX_LINE = 64 * 1024
MAX_HEADERS = 128


class Violation(Exception):
    pass


class Request:
    def __init__(self, token, conn_id, seq, method, target, headers):
        self.token = token
        self.conn_id = conn_id
        self.seq = seq                  # 0 for the first request of its connection
        self.method = method            # str
        self.target = target            # str
        self.headers = headers          # [(lower-case name, value)] as str (latin-1)
        self.body = b""
        self.chunked = False
        self.trailers = []
        self.raw = b""                  # the exact bytes of this request
        self.answered = False           # every step of its answer has run

    def getall(self, name):
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name, default=None):
        vals = self.getall(name)
        return ", ".join(vals) if vals else default

    def __repr__(self):
        return "<Request #%d conn %d.%d %s %s %r body=%r>" % (
            self.token, self.conn_id, self.seq, self.method, self.target, self.headers, self.body[:80])


class ConnRecord:
    def __init__(self, cid, peer):
        self.id = cid
        self.peer = peer
        self.raw = bytearray()          # every byte received, in order
        self.requests = []
        self.error = None
        self.closed = False


class _Reader(SockReader):
    """Keeps every byte of the connection in its record."""

    def __init__(self, sock, rec, origin):
        super().__init__(sock)
        self.rec = rec
        self.origin = origin

    def received(self, data):
        self.rec.raw += data
        self.origin._got(len(data))

    def line(self, what):
        """A line ended by CRLF (without it). A bare CR or LF is a violation."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                if i == 0 or self.buf[i - 1] != 0x0d:
                    raise Violation("bare LF in %s: %r" % (what, bytes(self.buf[:i + 1][-200:])))
                line = bytes(self.buf[:i - 1])
                del self.buf[:i + 1]
                if b"\r" in line:
                    raise Violation("bare CR in %s: %r" % (what, line[:200]))
                return line
            if len(self.buf) > MAX_LINE:
                raise Violation("%s longer than %d bytes" % (what, MAX_LINE))
            self.fill()

    def exact(self, n):
        out = bytearray()
        while len(out) < n:
            if not self.buf:
                self.fill()
            k = min(n - len(out), len(self.buf))
            out += self.buf[:k]
            del self.buf[:k]
        return bytes(out)


def parse_head(rd, token, cid, seq):
    """Reads and checks one request head; None on a clean EOF before it."""
    try:
        if not rd.buf:
            rd.fill()
    except _Closed:
        return None
    start = len(rd.rec.raw) - len(rd.buf)
    line = rd.line("request line")
    if line == b"":
        raise Violation("empty line where a request line belongs (stray CRLF)")
    m = REQUEST_LINE.match(line)
    if not m:
        raise Violation("bad request line %r" % line[:300])
    method, target = m.group(1), m.group(2)
    if target == b"*":
        if method != b"OPTIONS":
            raise Violation("asterisk-form with %r" % method)
    elif not ORIGIN_FORM.match(target) or b"#" in target:
        raise Violation("request target not in origin-form: %r" % target[:300])
    headers = []
    while True:
        hl = rd.line("header line")
        if hl == b"":
            break
        if hl[:1] in (b" ", b"\t"):
            raise Violation("obs-fold (a line starting with whitespace): %r" % hl[:200])
        hm = HEADER_LINE.match(hl)
        if not hm:
            raise Violation("bad header line %r" % hl[:300])
        if not FIELD_VALUE.match(hm.group(2)):
            raise Violation("control byte in the value of %r: %r" % (hm.group(1), hl[:300]))
        headers.append((hm.group(1).lower().decode("latin-1"), hm.group(2).decode("latin-1")))
        if len(headers) > MAX_HEADERS:
            raise Violation("more than %d header lines" % MAX_HEADERS)
    req = Request(token, cid, seq, method.decode(), target.decode("latin-1"), headers)
    req._start = start
    hosts = req.getall("host")
    if len(hosts) != 1:
        raise Violation("%d Host headers" % len(hosts))
    if not HOST_VALUE.match(hosts[0].encode("latin-1")):
        raise Violation("invalid Host %r" % hosts[0])
    for name, _ in headers:
        if name.encode() in HOP_BY_HOP:
            raise Violation("hop-by-hop header %r forwarded" % name)
    te, cl = req.getall("transfer-encoding"), req.getall("content-length")
    if te and cl:
        raise Violation("both Transfer-Encoding and Content-Length")
    if te:
        if len(te) != 1 or te[0].lower() != "chunked":
            raise Violation("Transfer-Encoding other than one 'chunked': %r" % te)
        req.chunked = True
    if cl and (len(cl) != 1 or not re.match(r"^[0-9]{1,18}$", cl[0])):
        raise Violation("bad Content-Length %r" % cl)
    req._cl = int(cl[0]) if cl else 0
    return req


def read_body(rd, req):
    if req.chunked:
        body = bytearray()
        while True:
            line = rd.line("chunk size line")
            m = CHUNK_LINE.match(line)
            if not m:
                raise Violation("bad chunk size line %r" % line[:200])
            size = int(m.group(1), 16)
            if size == 0:
                break
            body += rd.exact(size)
            if rd.exact(2) != b"\r\n":
                raise Violation("chunk data not followed by CRLF")
        while True:
            tl = rd.line("trailer line")
            if tl == b"":
                break
            tm = HEADER_LINE.match(tl)
            if not tm or not FIELD_VALUE.match(tm.group(2)):
                raise Violation("bad trailer line %r" % tl[:200])
            req.trailers.append((tm.group(1).lower().decode("latin-1"), tm.group(2).decode("latin-1")))
        req.body = bytes(body)
    else:
        req.body = rd.exact(req._cl)


def default_answer(req):
    body = ("token=%d method=%s target=%s body_len=%d\n"
            % (req.token, req.method, req.target, len(req.body))).encode("latin-1")
    return [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Strict-Token: %d\r\n"
            b"Content-Length: %d\r\n\r\n" % (req.token, len(body)) + body]


class StrictOrigin(ThreadedServer):
    backlog = 256

    def __init__(self, name="strict", respond=None, early=None):
        super().__init__(name)
        self.respond = respond or default_answer
        self.early = early
        self.conns = []
        self.requests = []
        self.errors = []
        self.bytes_in = 0
        self.last_byte = time.monotonic()
        self._token = 0

    # ---- what the tests look at

    def mark(self):
        """(requests so far, bytes so far), for requests_since/bytes_since."""
        with self.lock:
            return len(self.requests), self.bytes_in

    def requests_since(self, mark):
        with self.lock:
            return list(self.requests[mark[0]:])

    def bytes_since(self, mark):
        with self.lock:
            return self.bytes_in - mark[1]

    def errors_since(self, n):
        with self.lock:
            return list(self.errors[n:])

    def wait_quiet(self, quiet=0.05, timeout=2.0):
        """Waits until no byte arrived for `quiet` seconds (at most timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                idle = time.monotonic() - self.last_byte
            if idle >= quiet:
                return
            time.sleep(quiet - idle)

    def assert_clean(self):
        assert not self.errors, "strict origin %s: %s" % (self.name, self.errors)

    # ---- internals

    def _got(self, n):
        with self.lock:
            self.bytes_in += n
            self.last_byte = time.monotonic()

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                sock, peer = self.listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                rec = ConnRecord(len(self.conns) + 1, peer)
                self.conns.append(rec)
                self.socks.add(sock)
            self.spawn(self._serve, (sock, rec), "strict-%d" % rec.id)

    def _violation(self, rec, msg):
        rec.error = msg
        with self.lock:
            self.errors.append("connection %d (%d requests before): %s; bytes: %r"
                               % (rec.id, len(rec.requests), msg, bytes(rec.raw[-400:])))

    def _serve(self, sock, rec):
        rd = _Reader(sock, rec, self)
        seq = 0
        try:
            while not self.stopping.is_set():
                with self.lock:
                    self._token += 1
                    token = self._token
                start = len(rec.raw) - len(rd.buf)
                try:
                    req = parse_head(rd, token, rec.id, seq)
                    if req is None:
                        return
                    steps = self.early(req) if self.early else None
                    if steps:
                        with self.lock:
                            self.requests.append(req)
                        rec.requests.append(req)
                        self._run(sock, steps)
                        return
                    read_body(rd, req)
                except _Closed:
                    self._violation(rec, "connection closed inside a request (%d bytes of it "
                                    "received)" % (len(rec.raw) - start))
                    return
                except Violation as e:
                    self._violation(rec, str(e))
                    return
                end = len(rec.raw) - len(rd.buf)
                req.raw = bytes(rec.raw[req._start:end])
                with self.lock:
                    self.requests.append(req)
                rec.requests.append(req)
                kept = self._answer(sock, req)
                req.answered = True
                if not kept:
                    return
                seq += 1
        finally:
            rec.closed = True
            with self.lock:
                self.socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def _answer(self, sock, req):
        """Runs the steps of the answer; False when the connection ends."""
        return self._run(sock, self.respond(req))

    def _run(self, sock, steps):
        for step in steps:
            if isinstance(step, (bytes, bytearray)):
                try:
                    sock.sendall(step)
                except OSError:
                    return False
            elif step == "close":
                try:
                    sock.shutdown(socket.SHUT_WR)
                    # Drain until the peer closes, so no reset destroys the answer.
                    sock.settimeout(2)
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
                return False
            elif step == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            elif step == "hang":
                self.stopping.wait()
                return False
            elif step == "keep":
                return True
            elif isinstance(step, tuple) and step[0] == "wait":
                while not step[1].wait(0.05):
                    if self.stopping.is_set():
                        return False
            elif isinstance(step, tuple) and step[0] == "sleep":
                if self.stopping.wait(step[1]):
                    return False
            else:
                raise ValueError("unknown step %r" % (step,))
        return True
