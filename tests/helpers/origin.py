"""origin: a strict HTTP/1.1 test origin (backend) server for the proxy tests.

    with Origin(name="a") as o:          # or o = Origin().start(); ...; o.stop()
        ... o.port, o.addr ("127.0.0.1:PORT") ...
        assert o.connections <= 4 and o.requests == 300
        o.assert_clean()                 # nothing malformed was received

Threaded (one thread per accepted connection), standard library sockets,
HTTP/1.1 keep-alive implemented here (not http.server). Every request is
recorded (`o.records`, a list of `Request`): method, target, version,
headers as [(name, value)] in received order with the original case, body
bytes (when at most `keep_body` bytes; the length and sha256 are always
recorded), trailers, the connection it came on and its position there.

Strict: anything on a connection that does not parse as well-formed HTTP/1.x
requests (a bad request line or header line, a bare LF, obs-fold, a stray CRLF
between requests, a missing Host, Content-Length and Transfer-Encoding
together, conflicting Content-Lengths, a bad chunk, bytes left at EOF that
are not a complete request: for example the tail of a smuggled request) is
appended to `o.errors` (answered 400 and the connection closed).

What a request gets is chosen by its path, or by the header X-Origin-Path
(which replaces the path for this choice, so a test can pick a behaviour
through a proxy that rewrites paths):

    /size/N         N bytes of `pattern` data with Content-Length
    /chunked/N      the same N bytes, chunked (chunks of varying size)
    /eof/N          the same N bytes with no framing, then the origin closes
    /status/N       status N (no body for 1xx, 204, 304; else "status N\\n")
    /slow/MS        waits MS milliseconds, then echoes
    /close-after    echoes with Connection: close, then closes
                    (?silent=1: closes without saying so)
    /hang           reads the request, never answers (until stop())
    /upload         streams the body (any size) through sha256; answers
                    {"len": N, "sha256": hex} (the body is not kept)
    /slow-upload/MS waits MS milliseconds before reading the body, then as
                    /upload (a backend that reads slowly)
    /ws             an Upgrade request gets 101 (Upgrade and Connection:
                    Upgrade echoed back), then every byte is echoed back
                    until the peer closes
    /headers?k=v&.. echoes, adding each query pair as a response header, in
                    order (repeats allowed), e.g. Connection=x-foo&X-Foo=1
    /many-headers/N echoes with N extra response headers X-H-i (?len=L:
                    values of L bytes, default 50)
    /truncate/N     Content-Length N, but only N/2 bytes, then closes
    /reset/N        Content-Length N, but only N/2 bytes, then resets (RST)
    /garbage        answers bytes that are not HTTP, then closes
    anything else   echoes: a JSON description of the request (see `echo`)

Per-request headers: X-Origin-Delay-Ms (wait first), X-Origin-Status
(status of an echo), X-Origin-Close ("1": close silently after the response,
"header": send Connection: close and close), X-Origin-Trickle: N (the whole
response is written in pieces of N bytes, 2 ms apart).
A request with Expect: 100-continue gets "100 Continue" before its body is
read (counted in `o.continues`).

Origin-wide modes (constructor), for the pool and retry tests:
    close_after_response=True  every connection is closed right after its
                               first response, without Connection: close
    idle_close_ms=K            a connection with no new request within K ms
                               of its last response is closed silently
    drop_reused=True           only the first request of a connection is
                               answered; a later one is read and the
                               connection closed without any response byte
                               (counted in `o.dropped`): a stale pooled
                               connection, deterministically
    delay_ms=MS                every request waits MS before its answer
    status=N                   echoes answer with status N

HEAD gets the head a GET would get (same Content-Length) and no body.
Every response carries X-Origin: NAME.

Also here: `pattern_chunks` / `pattern_sha256` (the deterministic data) and
`StreamConn`, a client connection that can send and receive bodies of any
size through sha256 without keeping them.
"""

import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
import urllib.parse

from tcpserver import HOST, Closed as _Closed, SockReader, ThreadedServer

# --------------------------------------------------------------------------
# Deterministic data

_P = 65521                                     # a prime, so the data has no short period
PATTERN = random.Random(20240521).randbytes(_P)
_BIG = PATTERN * 18                            # > 1 MiB + _P
CHUNK = 1 << 20


def pattern_chunks(n, offset=0, chunk=CHUNK):
    """Yields the bytes [offset, offset + n) of the endless pattern, in
    pieces of at most `chunk` (<= 1 MiB) bytes."""
    chunk = min(chunk, CHUNK)
    while n > 0:
        k = min(n, chunk)
        s = offset % _P
        yield _BIG[s:s + k]
        offset += k
        n -= k


def pattern_bytes(n, offset=0):
    return b"".join(pattern_chunks(n, offset))


_sha_cache = {}


def pattern_sha256(n):
    if n not in _sha_cache:
        h = hashlib.sha256()
        for c in pattern_chunks(n):
            h.update(c)
        _sha_cache[n] = h.hexdigest()
    return _sha_cache[n]


# --------------------------------------------------------------------------
# Requests as received

TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
REQUEST_LINE = re.compile(r"^(" + TOKEN + r") (\S+) HTTP/(1\.[01])$")
HEADER_LINE = re.compile(r"^(" + TOKEN + r"):[ \t]*(.*?)[ \t]*$")
CHUNK_LINE = re.compile(rb"^([0-9A-Fa-f]+)[ \t]*(;.*)?$")
MAX_HEAD = 64 * 1024


class Request:
    def __init__(self, method, target, version, headers, conn_id, seq, peer):
        self.method = method
        self.target = target
        self.path, _, q = target.partition("?")
        self.query = q if "?" in target else None
        self.version = version
        self.headers = headers          # [(name as received, value)]
        self.conn_id = conn_id          # which accepted connection (1, 2, ...)
        self.seq = seq                  # 0 for the first request on it
        self.peer = peer                # (ip, port) of the proxy's side
        self.body = b""                 # None when longer than keep_body
        self.body_len = 0
        self.body_sha256 = hashlib.sha256(b"").hexdigest()
        self.chunked = False
        self.trailers = []
        self.complete = False           # body fully read
        self.time = time.monotonic()

    def getall(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def header(self, name, default=None):
        vals = self.getall(name)
        return ", ".join(vals) if vals else default

    def has(self, name):
        return bool(self.getall(name))

    def names(self):
        return [k.lower() for k, _ in self.headers]

    def tokens(self, name):
        """The comma-separated tokens of a header, lower-cased."""
        return [t.strip().lower() for v in self.getall(name) for t in v.split(",") if t.strip()]

    def describe(self):
        d = {"method": self.method, "target": self.target, "path": self.path,
             "query": self.query, "version": self.version,
             "headers": [[k, v] for k, v in self.headers],
             "body_len": self.body_len, "body_sha256": self.body_sha256,
             "chunked": self.chunked, "trailers": [[k, v] for k, v in self.trailers],
             "conn": self.conn_id, "seq": self.seq, "peer_port": self.peer[1]}
        if self.body is not None:
            d["body"] = self.body.decode("latin-1")
        return d

    def __repr__(self):
        return "<Request #%d.%d %s %s HTTP/%s %r body_len=%d>" % (
            self.conn_id, self.seq, self.method, self.target, self.version, self.headers,
            self.body_len)


class BadRequest(Exception):
    pass


class _Reader(SockReader):
    def __init__(self, sock):
        super().__init__(sock, 262144)

    def wait_data(self, timeout):
        """True if bytes are (or become) available within timeout; False on
        timeout. Raises _Closed at EOF."""
        if self.buf:
            return True
        self.sock.settimeout(timeout)
        try:
            self.fill()
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(None)

    def read_head(self):
        """The head (without the final CRLFCRLF), or None on a clean EOF."""
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self.buf[:end])
                del self.buf[:end + 4]
                return head
            if len(self.buf) > MAX_HEAD:
                raise BadRequest("request head longer than %d bytes: %r" % (MAX_HEAD, bytes(self.buf[:200])))
            try:
                self.fill()
            except _Closed:
                if not self.buf:
                    return None
                raise BadRequest("connection closed with %d bytes that are not a complete "
                                 "request: %r" % (len(self.buf), bytes(self.buf[:300])))

    def read_line(self, what):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                if b"\n" in line or b"\r" in line:
                    raise BadRequest("bare CR or LF in %s %r" % (what, line))
                return line
            if len(self.buf) > 8192:
                raise BadRequest("%s too long: %r" % (what, bytes(self.buf[:200])))
            try:
                self.fill()
            except _Closed:
                raise BadRequest("connection closed inside %s (%r)" % (what, bytes(self.buf[:200])))

    def read_exact(self, n, what="body"):
        """Yields exactly n bytes in pieces."""
        while n > 0:
            if not self.buf:
                try:
                    self.fill()
                except _Closed:
                    raise BadRequest("connection closed with %d %s bytes missing" % (n, what))
            k = min(n, len(self.buf))
            piece = bytes(self.buf[:k])
            del self.buf[:k]
            n -= k
            yield piece


def parse_head(head, conn_id, seq, peer):
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    for l in lines:
        if "\n" in l or "\r" in l:
            raise BadRequest("bare CR or LF in the request head: %r" % head[:300])
    if lines[0] == "":
        raise BadRequest("empty line before the request line (stray CRLF): %r" % head[:300])
    m = REQUEST_LINE.match(lines[0])
    if not m:
        raise BadRequest("bad request line %r" % lines[0][:300])
    method, target, version = m.groups()
    if not (target.startswith("/") or target == "*" or method == "CONNECT"
            or target.startswith("http://")):
        raise BadRequest("bad request target %r" % target)
    headers = []
    for l in lines[1:]:
        if l[:1] in (" ", "\t"):
            raise BadRequest("obs-fold (continuation line) %r" % l)
        hm = HEADER_LINE.match(l)
        if not hm:
            raise BadRequest("bad header line %r" % l[:300])
        headers.append((hm.group(1), hm.group(2)))
    req = Request(method, target, version, headers, conn_id, seq, peer)
    if version == "1.1" and len(req.getall("host")) != 1:
        raise BadRequest("HTTP/1.1 request with %d Host headers: %r" % (len(req.getall("host")), head[:300]))
    te = req.getall("transfer-encoding")
    cl = req.getall("content-length")
    if te and cl:
        raise BadRequest("both Transfer-Encoding and Content-Length: %r" % head[:300])
    if te:
        if [t.strip().lower() for t in ",".join(te).split(",")] != ["chunked"]:
            raise BadRequest("Transfer-Encoding other than chunked: %r" % te)
        req.chunked = True
    if cl:
        vals = {v.strip() for c in cl for v in c.split(",")}
        if len(vals) != 1 or not next(iter(vals)).isdigit():
            raise BadRequest("bad or conflicting Content-Length %r" % cl)
    return req


def _reason(status):
    return {100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created",
            204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
            400: "Bad Request", 404: "Not Found", 426: "Upgrade Required",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}.get(status, "Status")


# --------------------------------------------------------------------------
# The server


class Origin(ThreadedServer):
    def __init__(self, name=None, port=0, close_after_response=False, idle_close_ms=None,
                 drop_reused=False, delay_ms=0, status=200, keep_body=1 << 20, host=None):
        super().__init__(name or "origin", port, **({"host": host} if host else {}))
        self.close_after_response = close_after_response
        self.idle_close_ms = idle_close_ms
        self.drop_reused = drop_reused
        self.delay_ms = delay_ms
        self.status = status
        self.keep_body = keep_body
        self.connections = 0        # TCP connections accepted
        self.requests = 0           # request heads parsed
        self.responses = 0          # responses completely sent
        self.dropped = 0            # requests read and then dropped (drop_reused/idle modes)
        self.in_flight = 0
        self.max_in_flight = 0
        self.open_connections = 0
        self.continues = 0          # 100 Continue sent
        self.records = []
        self.errors = []

    # ---- assertions

    def reset_stats(self):
        with self.lock:
            self.connections = self.requests = self.responses = self.dropped = 0
            self.max_in_flight = 0
            self.records = []
            self.errors = []

    def assert_clean(self):
        assert not self.errors, "origin %s received malformed HTTP: %s" % (self.name, self.errors)

    def last(self):
        with self.lock:
            assert self.records, "origin %s received no request" % self.name
            return self.records[-1]

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.requests < n:
            if time.monotonic() > deadline:
                raise AssertionError("origin %s saw %d requests, expected %d" % (self.name, self.requests, n))
            time.sleep(0.01)

    # ---- internals

    def _error(self, msg):
        with self.lock:
            self.errors.append(msg)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                sock, peer = self.listener.accept()
            except OSError:
                return
            if self.stopping.is_set():
                sock.close()
                return
            if sock.family == socket.AF_UNIX:
                peer = ("unix", 0)
            else:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections += 1
                cid = self.connections
                self.socks.add(sock)
                self.open_connections += 1
            self.spawn(self._conn_main, (sock, peer, cid), "origin-%s-%d" % (self.name, cid))

    def _conn_main(self, sock, peer, cid):
        try:
            self._serve(sock, peer, cid)
        except (_Closed, BrokenPipeError, ConnectionResetError):
            pass
        except OSError:
            if not self.stopping.is_set():
                pass
        except Exception as e:  # a bug here must show up in the test
            self._error("origin internal error on connection %d: %r" % (cid, e))
        finally:
            with self.lock:
                self.socks.discard(sock)
                self.open_connections -= 1
            try:
                sock.close()
            except OSError:
                pass

    def _serve(self, sock, peer, cid):
        rd = _Reader(sock)
        seq = 0
        while not self.stopping.is_set():
            if seq > 0 and self.idle_close_ms is not None:
                if not rd.wait_data(self.idle_close_ms / 1000.0):
                    return                      # idle: close silently
            try:
                head = rd.read_head()
                if head is None:
                    return                      # clean EOF between requests
                req = parse_head(head, cid, seq, peer)
            except BadRequest as e:
                self._error("connection %d, request %d: %s" % (cid, seq, e))
                self._send_simple(sock, 400, b"bad request\n", close=True)
                return
            if seq > 0 and self.drop_reused:
                with self.lock:
                    self.dropped += 1
                    self.requests += 1
                    self.records.append(req)
                return                          # no response byte; unread bytes -> RST
            with self.lock:
                self.requests += 1
                self.records.append(req)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                keep = self._handle(sock, rd, req)
            except BadRequest as e:
                self._error("connection %d, request %d (%s %s): %s" % (cid, seq, req.method, req.target, e))
                try:
                    self._send_simple(sock, 400, b"bad request body\n", close=True)
                except OSError:
                    pass
                return
            finally:
                with self.lock:
                    self.in_flight -= 1
            if not keep or self.close_after_response:
                return
            seq += 1

    # ---- bodies

    def _read_body(self, rd, req, sink=None):
        """Reads the request body; feeds `sink(piece)` if given; keeps it on
        req if short enough; always records length and sha256."""
        h = hashlib.sha256()
        kept = []
        n = 0
        keep = sink is None

        def take(piece):
            nonlocal n, keep
            h.update(piece)
            n += len(piece)
            req.body_len = n            # live, for diagnosing stalls
            if sink is not None:
                sink(piece)
            if keep:
                if n > self.keep_body:
                    keep = False
                    kept.clear()
                else:
                    kept.append(piece)

        if req.chunked:
            while True:
                line = rd.read_line("chunk size line")
                m = CHUNK_LINE.match(line)
                if not m:
                    raise BadRequest("bad chunk size line %r" % line[:100])
                size = int(m.group(1), 16)
                if size == 0:
                    break
                for piece in rd.read_exact(size, "chunk"):
                    take(piece)
                crlf = b"".join(rd.read_exact(2, "chunk CRLF"))
                if crlf != b"\r\n":
                    raise BadRequest("chunk data not followed by CRLF (got %r)" % crlf)
            while True:
                line = rd.read_line("trailer")
                if not line:
                    break
                hm = HEADER_LINE.match(line.decode("latin-1"))
                if not hm:
                    raise BadRequest("bad trailer line %r" % line)
                req.trailers.append((hm.group(1), hm.group(2)))
        else:
            cl = req.getall("content-length")
            length = int(cl[0].split(",")[0].strip()) if cl else 0
            for piece in rd.read_exact(length):
                take(piece)
        req.body_len = n
        req.body_sha256 = h.hexdigest()
        req.body = b"".join(kept) if keep else None
        req.complete = True

    # ---- responses

    def _head_bytes(self, status, headers, close=False):
        lines = ["HTTP/1.1 %d %s" % (status, _reason(status)), "X-Origin: %s" % self.name]
        lines += ["%s: %s" % (k, v) for k, v in headers]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_simple(self, sock, status, body, headers=(), close=False, head_only=False):
        hdrs = list(headers)
        if status // 100 != 1 and status not in (204, 304):
            hdrs.append(("Content-Length", str(len(body))))
        else:
            body = b""
        data = self._head_bytes(status, hdrs, close)
        if not head_only:
            data += body
        sock.sendall(data)
        with self.lock:
            self.responses += 1

    def _handle(self, sock, rd, req):
        """Answers one request; returns whether the connection may be kept."""
        path = req.header("x-origin-path") or req.path
        bpath, _, bquery = path.partition("?")
        if bquery == "" and req.query and not req.has("x-origin-path"):
            bquery = req.query
        query = urllib.parse.parse_qsl(bquery or "", keep_blank_values=True)
        qd = dict(query)
        head_only = req.method == "HEAD"
        ctl = (req.header("x-origin-close") or "").strip().lower()
        wants_close = (req.version == "1.0" and "keep-alive" not in req.tokens("connection")) \
            or "close" in req.tokens("connection")
        parts = bpath.strip("/").split("/")
        kind = parts[0]
        arg = parts[1] if len(parts) > 1 else ""

        if kind == "ws":
            return self._websocket(sock, rd, req)

        if "100-continue" in req.tokens("expect") and req.version == "1.1":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            with self.lock:
                self.continues += 1

        if req.header("x-origin-trickle"):
            sock = _Trickle(sock, int(req.header("x-origin-trickle")))

        if kind == "slow-upload":
            if self.stopping.wait(int(arg or "0") / 1000.0):
                return False
            kind = "upload"
        if kind == "upload":
            self._read_body(rd, req, sink=lambda piece: None)
        else:
            self._read_body(rd, req)

        delay = self.delay_ms
        if req.header("x-origin-delay-ms"):
            delay = int(req.header("x-origin-delay-ms"))
        if kind == "slow":
            delay = int(arg or "0")
        if kind == "hang":
            self.stopping.wait()
            return False
        if delay:
            if self.stopping.wait(delay / 1000.0):
                return False

        close_hdr = wants_close or ctl == "header" or (kind == "close-after" and qd.get("silent") != "1")
        close = close_hdr or ctl == "1" or kind == "close-after"
        extra = [("Content-Type", "application/octet-stream")]

        if kind in ("size", "chunked", "eof"):
            n = int(arg or "0")
            if kind == "size":
                hdrs = extra + [("Content-Length", str(n))]
            elif kind == "chunked":
                hdrs = extra + [("Transfer-Encoding", "chunked")]
            else:
                hdrs = extra
            sock.sendall(self._head_bytes(200, hdrs, close_hdr))
            if not head_only:
                if kind == "chunked":
                    self._send_chunked(sock, n)
                else:
                    for c in pattern_chunks(n):
                        sock.sendall(c)
            with self.lock:
                self.responses += 1
            if kind == "eof" and not head_only:
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return False
            return not close

        if kind == "truncate":
            n = int(arg or "0")
            sock.sendall(self._head_bytes(200, extra + [("Content-Length", str(n))]))
            for c in pattern_chunks(n // 2):
                sock.sendall(c)
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False

        if kind == "reset":
            n = int(arg or "0")
            sock.sendall(self._head_bytes(200, extra + [("Content-Length", str(n))]))
            for c in pattern_chunks(n // 2):
                sock.sendall(c)
            # Linger 0: the close in _conn_main sends RST instead of FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False

        if kind == "garbage":
            sock.sendall(b"THIS IS NOT HTTP AT ALL\r\n\r\n")
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return False

        if kind == "status":
            st = int(arg or "200")
            if st in (204, 304) or st // 100 == 1:
                hdrs = [("ETag", '"x"')] if st == 304 else []
                sock.sendall(self._head_bytes(st, hdrs, close_hdr))
                with self.lock:
                    self.responses += 1
            else:
                self._send_simple(sock, st, b"status %d\n" % st, [("Content-Type", "text/plain")],
                                  close=close_hdr, head_only=head_only)
            return not close

        if kind == "upload":
            body = json.dumps({"len": req.body_len, "sha256": req.body_sha256,
                               "chunked": req.chunked}).encode()
            self._send_simple(sock, 200, body, [("Content-Type", "application/json")],
                              close=close_hdr, head_only=head_only)
            return not close

        # echo (also /headers, /slow, /close-after)
        status = self.status
        if req.header("x-origin-status"):
            status = int(req.header("x-origin-status"))
        hdrs = [("Content-Type", "application/json")]
        if kind == "headers":
            hdrs += query
        if kind == "many-headers":
            hdrs += [("X-H-%d" % i, "v" * int(qd.get("len", "50"))) for i in range(int(arg or "0"))]
            if any(k.lower() == "connection" and "close" in v.lower() for k, v in query):
                close = True
        d = req.describe()
        d["origin"] = self.name
        body = json.dumps(d).encode()
        self._send_simple(sock, status, body, hdrs, close=close_hdr, head_only=head_only)
        return not close

    def _send_chunked(self, sock, n):
        sizes = [1, 10, 1000, 8192, 65536, 300000, 7, 4096]
        i = 0
        offset = 0
        while offset < n:
            k = min(sizes[i % len(sizes)], n - offset)
            i += 1
            data = b"".join(pattern_chunks(k, offset))
            sock.sendall(b"%x\r\n" % k + data + b"\r\n")
            offset += k
        sock.sendall(b"0\r\n\r\n")

    def _websocket(self, sock, rd, req):
        self._read_body(rd, req)
        if "upgrade" not in req.tokens("connection") or not req.has("upgrade"):
            self._send_simple(sock, 426, b"upgrade required\n", [("Content-Type", "text/plain")])
            return True
        proto = req.header("upgrade")
        sock.sendall(self._head_bytes(101, [("Upgrade", proto), ("Connection", "Upgrade")]))
        with self.lock:
            self.responses += 1
        if rd.buf:
            sock.sendall(bytes(rd.buf))
            rd.buf.clear()
        while True:
            try:
                data = sock.recv(262144)
            except OSError:
                break
            if not data:
                break
            sock.sendall(data)
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return False


class _Trickle:
    """A socket stand-in that writes in small pieces, with pauses."""

    def __init__(self, sock, n):
        self.sock = sock
        self.n = max(1, n)

    def sendall(self, data):
        for i in range(0, len(data), self.n):
            self.sock.sendall(data[i:i + self.n])
            time.sleep(0.002)

    def shutdown(self, how):
        self.sock.shutdown(how)


def start_origins(n, **kw):
    """n started origins named a, b, c, ..."""
    out = []
    try:
        for i in range(n):
            out.append(Origin(name=chr(ord("a") + i), **kw).start())
    except Exception:
        for o in out:
            o.stop()
        raise
    return out


def dead_port():
    """A 127.0.0.1 port with nothing listening (connections are refused)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------
# A streaming client


class StreamResponse:
    def __init__(self, status, headers, body_len, sha256, body):
        self.status = status
        self.headers = headers      # [(lower-case name, value)]
        self.body_len = body_len
        self.sha256 = sha256
        self.body = body            # None when it was not kept

    def header(self, name, default=None):
        vals = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(vals) if vals else default

    def __repr__(self):
        return "<StreamResponse %d %r len=%d>" % (self.status, self.headers, self.body_len)


class StreamConn:
    """A client connection for large bodies: sends bodies from generators
    and reads response bodies through sha256, keeping at most `keep` bytes."""

    def __init__(self, port, timeout=20.0):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False

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

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        data = self.sock.recv(1 << 20)
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if not self._fill():
                raise AssertionError("connection closed inside a line; got %r" % bytes(self.buf[:200]))

    def _exact(self, n):
        while n > 0:
            if not self.buf and not self._fill():
                raise AssertionError("connection closed with %d body bytes missing" % n)
            k = min(n, len(self.buf))
            piece = bytes(self.buf[:k])
            del self.buf[:k]
            n -= k
            yield piece

    def read_response(self, head=False, keep=1 << 20):
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if not self._fill():
                raise AssertionError("connection closed before a complete response head; got %r"
                                     % bytes(self.buf[:300]))
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        status = int(lines[0].split(" ")[1])
        headers = []
        for l in lines[1:]:
            k, v = l.split(":", 1)
            headers.append((k.strip().lower(), v.strip()))
        hd = {}
        for k, v in headers:
            hd[k] = hd[k] + ", " + v if k in hd else v
        h = hashlib.sha256()
        kept = []
        total = 0

        def take(p):
            nonlocal total
            h.update(p)
            total += len(p)
            if total <= keep:
                kept.append(p)

        if head or status // 100 == 1 or status in (204, 304):
            pass
        elif "chunked" in hd.get("transfer-encoding", "").lower():
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                for p in self._exact(size):
                    take(p)
                if b"".join(self._exact(2)) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
        elif "content-length" in hd:
            for p in self._exact(int(hd["content-length"])):
                take(p)
        else:
            while True:
                if self.buf:
                    take(bytes(self.buf))
                    self.buf.clear()
                if not self._fill():
                    break
        return StreamResponse(status, headers, total, h.hexdigest(),
                              b"".join(kept) if total <= keep else None)


# --------------------------------------------------------------------------
# Lua scripts for the proxy tests


def lua_server(s):
    """An entry of proxy.upstream's server list: an Origin, "addr:port",
    (addr or Origin, weight) or a ready Lua table text."""
    if isinstance(s, Origin):
        return '"%s"' % s.addr
    if isinstance(s, tuple):
        addr, weight = s
        if isinstance(addr, Origin):
            addr = addr.addr
        return '{ addr = "%s", weight = %d }' % (addr, weight)
    if isinstance(s, int):
        return '"%s:%d"' % (HOST, s)
    s = str(s)
    return s if s.startswith("{") else '"%s"' % s


def upstream_script(servers, opts="", extra="", name="backend"):
    """A script that proxies every request to one upstream (`up`); `opts` is
    the Lua text inside the options table; `extra` is appended (a `route`
    defined there replaces the default one)."""
    return ('local up = proxy.upstream("%s", { %s }, { %s })\n'
            'function route(req) return up end\n%s\n'
            % (name, ", ".join(lua_server(s) for s in servers), opts, extra))
