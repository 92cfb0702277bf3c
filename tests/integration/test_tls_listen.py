"""SPEC §10, clients: HTTPS listeners (--tls-listen, --tls-cert), SNI, TLS
versions and ciphers, resumption across workers, bodies and keep-alive over
TLS, what the script sees (req.scheme, req.tls, X-Forwarded-Proto), bad
input on the TLS port, certificates refused at start, and /metrics.

Real clients: Python ssl (the same OpenSSL the server uses, but the client
side of it) and `openssl s_client`. Certificates: tests/helpers/tlscerts.py."""

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
import warnings

import lp
import tlscerts
from origin import Origin, pattern_chunks, upstream_script
from tlscerts import TLSConn, certs, client_context, https_request, served_fingerprint, tls_proxy

warnings.filterwarnings("ignore", category=DeprecationWarning, module=__name__)

# What the script sees, one line: scheme|version|cipher|sni (or scheme|nil).
SEES = '''
function on_get(req)
  local t = req.tls
  local s = req.scheme .. "|" .. (t and (t.version .. "|" .. t.cipher .. "|" .. tostring(t.sni)) or "nil")
  return 200, s, { ["content-type"] = "text/plain" }
end
function on_post(req)
  return 200, req.body, { ["content-type"] = "application/octet-stream" }
end
'''

TLS12 = ssl.TLSVersion.TLSv1_2
TLS13 = ssl.TLSVersion.TLSv1_3


def _ok(r, what):
    assert r.status == 200, "%s: %r" % (what, r)
    return r


def _handshake_fails(port, ctx, sni=None):
    """The ssl error of a handshake that must fail; AssertionError if it
    succeeds (naming what was negotiated)."""
    try:
        s = tlscerts.connect(port, sni=sni, ctx=ctx, timeout=5)
    except (ssl.SSLError, ConnectionError) as e:
        return e
    try:
        raise AssertionError("handshake succeeded (%s, %s), expected a refusal" % (s.version(), s.cipher()[0]))
    finally:
        s.close()


# --------------------------------------------------------------------------
# Serving HTTPS


def test_https_local_handler_scheme_and_tls_fields():
    """A local handler over TLS: verified against the root CA only (the
    intermediate comes from the served chain), ALPN http/1.1, and req.scheme
    / req.tls say what the client negotiated; the plain listener of the same
    server says http and nil."""
    c = certs()
    with tls_proxy(SEES, c.path("localhost")) as p:
        with TLSConn(p.tls_port, sni="localhost") as t:
            assert t.tls.selected_alpn_protocol() == "http/1.1", \
                "ALPN: server chose %r" % t.tls.selected_alpn_protocol()
            assert served_fingerprint(t.tls) == c.fingerprint("localhost"), "not the localhost certificate"
            r = _ok(t.request("GET", "/"), "GET over TLS")
            want = "https|%s|%s|localhost" % (t.tls.version(), t.tls.cipher()[0])
            assert r.body.decode() == want, "req.scheme|req.tls: %r, client negotiated %r" % (r.body, want)
        # No SNI (an IP address as host): req.tls.sni is nil.
        r, (version, cipher, _) = https_request(p.tls_port, "GET", "/")
        assert r.body.decode() == "https|%s|%s|nil" % (version, cipher), r.body
        # Pinned to TLS 1.2: OpenSSL's names for it.
        ctx = client_context(max_version=TLS12)
        with TLSConn(p.tls_port, sni="localhost", ctx=ctx) as t:
            r = _ok(t.request("GET", "/"), "GET over TLS 1.2")
            assert r.body.decode() == "https|TLSv1.2|%s|localhost" % t.tls.cipher()[0], r.body
        _ok(lp.get(p.port, "/"), "plain GET")
        assert lp.get(p.port, "/").body == b"http|nil", lp.get(p.port, "/").body


def test_https_proxied_route_plain_backend_forwarded_proto():
    """A proxied route behind the TLS listener: the plain backend gets the
    request with X-Forwarded-Proto: https (http from the plain listener),
    and the response comes back intact."""
    with Origin() as o, tls_proxy(upstream_script([o]), certs().path("localhost")) as p:
        r, _ = https_request(p.tls_port, "GET", "/echo?tls=1", headers={"X-Forwarded-Proto": "spoofed"})
        _ok(r, "proxied GET over TLS")
        d = json.loads(r.body)
        assert d["target"] == "/echo?tls=1", d
        protos = [v for k, v in d["headers"] if k.lower() == "x-forwarded-proto"]
        assert protos == ["https"], "X-Forwarded-Proto the backend got over TLS: %r" % protos
        r = _ok(lp.get(p.port, "/echo?plain=1"), "proxied GET in plain HTTP")
        protos = [v for k, v in json.loads(r.body)["headers"] if k.lower() == "x-forwarded-proto"]
        assert protos == ["http"], "X-Forwarded-Proto the backend got in plain HTTP: %r" % protos
        r, _ = https_request(p.tls_port, "GET", "/size/300000")
        assert _ok(r, "proxied /size over TLS").body == b"".join(pattern_chunks(300000)), len(r.body)
        o.assert_clean()


def test_sni_chooses_certificate_first_is_default():
    """SNI picks the certificate whose names match (exact names, one
    wildcard label, any case); anything else, and no SNI, gets the first."""
    c = certs()
    with tls_proxy(SEES, [c.path("localhost"), c.path("wildcard"), c.path("ab")]) as p:
        cases = [("a.test", "ab"), ("b.test", "ab"), ("B.Test", "ab"), ("x.example.test", "wildcard"),
                 ("localhost", "localhost"), ("example.test", "localhost"),
                 ("deep.x.example.test", "localhost"), ("unknown.test", "localhost"), (None, "localhost")]
        wrong = []
        for sni, name in cases:
            with TLSConn(p.tls_port, sni=sni) as t:
                if served_fingerprint(t.tls) != c.fingerprint(name):
                    got = [n for n in ("localhost", "wildcard", "ab") if c.fingerprint(n) == served_fingerprint(t.tls)]
                    wrong.append("SNI %r: served %s, expected %s" % (sni, got, name))
                else:
                    _ok(t.request("GET", "/"), "GET with SNI %r" % sni)
        assert not wrong, wrong


def test_cert_directory_first_file_is_default():
    """--tls-cert DIR: every PEM in it is served by SNI, the first in name
    order is the default (whatever order the directory lists them in)."""
    c = certs()
    d = lp.make_tmpdir()
    c.copy({"wildcard": "30-wildcard.pem", "ab": "10-ab.pem", "localhost": "20-localhost.pem"}, d)
    with tls_proxy(SEES, d) as p:
        for sni, name in [(None, "ab"), ("nothing.test", "ab"), ("localhost", "localhost"),
                          ("w.example.test", "wildcard"), ("b.test", "ab")]:
            with TLSConn(p.tls_port, sni=sni) as t:
                assert served_fingerprint(t.tls) == c.fingerprint(name), "SNI %r: not %s's certificate" % (sni, name)


def test_tls12_and_tls13_work_older_refused():
    """TLS 1.2 and 1.3 both work; a client that offers only TLS 1.1 (or
    1.0) is refused by the server (the same client context completes TLS
    1.1 with a server that allows it: the refusal is luaproxy's)."""
    c = certs()
    legacy = client_context(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1,
                            ciphers="DEFAULT:@SECLEVEL=0")
    # The control: a Python server that allows TLS 1.1.
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.minimum_version = ssl.TLSVersion.TLSv1
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    sctx.load_cert_chain(c.path("localhost"))
    lst = socket.socket()
    lst.bind((lp.HOST, 0))
    lst.listen(1)

    def serve():
        s, _ = lst.accept()
        try:
            sctx.wrap_socket(s, server_side=True).close()
        except OSError:
            s.close()
    threading.Thread(target=serve, daemon=True).start()
    s = tlscerts.connect(lst.getsockname()[1], ctx=legacy)
    assert s.version() == "TLSv1.1", s.version()
    s.close()
    lst.close()

    with tls_proxy(SEES, c.path("localhost")) as p:
        for v in (TLS12, TLS13):
            ctx = client_context(min_version=v, max_version=v)
            with TLSConn(p.tls_port, ctx=ctx) as t:
                assert t.tls.version() == {TLS12: "TLSv1.2", TLS13: "TLSv1.3"}[v], t.tls.version()
                assert t.request("GET", "/").body.startswith(b"https|" + t.tls.version().encode()), v
        e = _handshake_fails(p.tls_port, legacy)
        assert "NO_PROTOCOLS_AVAILABLE" not in str(e), "the client refused by itself: %s" % e
        # openssl s_client agrees.
        out = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (lp.HOST, p.tls_port), "-tls1_1",
                              "-cipher", "DEFAULT@SECLEVEL=0"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=10)
        assert out.returncode != 0 and "Cipher is (NONE)" in out.stdout, \
            "s_client -tls1_1: exit %d %s %s" % (out.returncode, out.stdout[-600:], out.stderr[-600:])
        # The worker is fine.
        _ok(https_request(p.tls_port, "GET", "/")[0], "GET after the refusals")


def test_min_version_13_refuses_12():
    c = certs()
    with tls_proxy(SEES, c.path("localhost"), args=["--tls-min-version", "1.3"]) as p:
        _handshake_fails(p.tls_port, client_context(max_version=TLS12))
        with TLSConn(p.tls_port, ctx=client_context(min_version=TLS13)) as t:
            assert t.tls.version() == "TLSv1.3", t.tls.version()
            _ok(t.request("GET", "/"), "GET over TLS 1.3")


def test_default_ciphers_intermediate_and_tls_ciphers():
    """TLS 1.2 by default: ECDHE with AES-GCM or ChaCha20 only, no CBC and
    no RSA key exchange. --tls-ciphers narrows it."""
    c = certs()
    with tls_proxy(SEES, c.path("localhost")) as p:
        for good in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                     "ECDHE-ECDSA-CHACHA20-POLY1305"):
            with TLSConn(p.tls_port, ctx=client_context(max_version=TLS12, ciphers=good)) as t:
                assert t.tls.cipher()[0] == good, t.tls.cipher()
        for bad in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA256"):
            _handshake_fails(p.tls_port, client_context(max_version=TLS12, ciphers=bad + ":@SECLEVEL=0"))
    with tls_proxy(SEES, c.path("localhost"), args=["--tls-ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305"]) as p:
        with TLSConn(p.tls_port, ctx=client_context(max_version=TLS12)) as t:
            assert t.tls.cipher()[0] == "ECDHE-ECDSA-CHACHA20-POLY1305", t.tls.cipher()
        _handshake_fails(p.tls_port, client_context(max_version=TLS12, ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))


def test_server_cipher_order_tls12():
    """TLS 1.2: the server's order decides (testssl.sh rates a server
    without one HIGH): a client that lists AES-256-GCM before AES-128-GCM
    gets AES-128-GCM, the first of the intermediate profile."""
    with tls_proxy(SEES, certs().path("localhost")) as p:
        ctx = client_context(max_version=TLS12,
                             ciphers="ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
        with TLSConn(p.tls_port, ctx=ctx) as t:
            assert t.tls.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256", \
                "the client's first choice won: %s (no server cipher order)" % t.tls.cipher()[0]


# --------------------------------------------------------------------------
# Resumption


def _tls_on_worker(p, pid, ctx, session=None, tries=64):
    """A TLS connection that worker `pid` accepted (others are closed
    before the handshake), resuming `session` if given."""
    for _ in range(tries):
        raw = socket.create_connection((lp.HOST, p.tls_port), timeout=5)
        holder = lp.wait_until(lambda: lp.holder_of(p.tls_port, raw, p.worker_pids()), 3, interval=0.002,
                               what="a worker to accept the TLS connection")
        if holder != pid:
            raw.close()
            continue
        return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    raise AssertionError("%d connections never reached worker %d" % (tries, pid))


def _session_from(p, pid, ctx):
    """A session (ticket) issued by worker `pid`: one request on a fresh
    connection, so that TLS 1.3's tickets, sent after the handshake, arrive."""
    s = _tls_on_worker(p, pid, ctx)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200"), "first request on worker %d" % pid
        assert s.session is not None and s.session.has_ticket, "worker %d issued no session ticket" % pid
        return s.session
    finally:
        s.close()


def test_resumption_across_two_workers():
    """-w 2: a ticket issued by one worker resumes on the other (and on
    itself), for TLS 1.3 and 1.2; each of 8 fresh connections per pair of
    workers offering the session reports session_reused."""
    c = certs()
    with tls_proxy(SEES, c.path("localhost"), workers=2) as p:
        a, b = p.wait_workers(2)
        for v in (TLS13, TLS12):
            ctx = client_context(min_version=v, max_version=v)
            for issuer, resumer in ((a, b), (b, a), (a, a)):
                sess = _session_from(p, issuer, ctx)
                for i in range(8 if issuer != resumer else 2):
                    s = _tls_on_worker(p, resumer, ctx, session=sess)
                    try:
                        assert s.session_reused, ("%s: a session of worker %d was not resumed on worker %d "
                                                  "(connection %d)" % (s.version(), issuer, resumer, i))
                        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                        assert s.recv(65536).startswith(b"HTTP/1.1 200"), "no 200 on a resumed connection"
                    finally:
                        s.close()


def test_resumption_with_openssl_s_client():
    """openssl s_client, -w 2: a session saved with -sess_out is reused by
    every later s_client that offers it with -sess_in ("Reused")."""
    c = certs()
    d = lp.make_tmpdir()
    sess = os.path.join(d, "session.pem")
    with tls_proxy(SEES, c.path("localhost"), workers=2) as p:
        p.wait_workers(2)

        def s_client(*extra):
            out = subprocess.run(["openssl", "s_client", "-connect", "%s:%d" % (lp.HOST, p.tls_port),
                                  "-servername", "localhost", "-CAfile", c.ca, "-verify_return_error",
                                  "-ign_eof"] + list(extra),
                                 input=b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                                 capture_output=True, timeout=10)
            text = out.stdout.decode("latin-1")
            assert out.returncode == 0 and "HTTP/1.1 200" in text, \
                "s_client %s: exit %d\n%s\n%s" % (" ".join(extra), out.returncode, text[-800:],
                                                  out.stderr.decode("latin-1")[-400:])
            return text
        for v in ("-tls1_3", "-tls1_2"):
            first = s_client(v, "-sess_out", sess)
            assert "New, TLSv1." in first, first[-800:]
            for i in range(6):
                text = s_client(v, "-sess_in", sess)
                assert "Reused, TLSv1." in text, "s_client %s -sess_in, connection %d: not reused\n%s" % (
                    v, i, "\n".join(l for l in text.split("\n") if "New" in l or "Reused" in l or "Protocol" in l))


# --------------------------------------------------------------------------
# Bodies and keep-alive


def test_8mib_bodies_both_ways_proxied():
    """8 MiB up (Content-Length and chunked) and 8 MiB down (Content-Length
    and chunked) through the TLS listener to a plain backend: every byte
    arrives, in order (sha256)."""
    n = 8 << 20
    with Origin() as o, tls_proxy(upstream_script([o]), certs().path("localhost")) as p:
        tlscerts.big_bodies_both_ways(p.tls_port, n)
        o.assert_clean()


def test_100_requests_on_one_keepalive_tls_connection():
    """100 requests on one TLS connection, local and proxied, GET and POST,
    some pipelined: all answered in order, the connection never closed."""
    with Origin() as o:
        script = ('local up = proxy.upstream("b", { "%s" })\n'
                  'function route(req)\n'
                  '  if req.path:find("^/up/") then req:set_path(req.path:sub(4)) return up end\n'
                  'end\n' % o.addr) + SEES
        with tls_proxy(script, certs().path("localhost")) as p, TLSConn(p.tls_port) as t:
            rnd = random.Random(7)
            i = 0
            while i < 100:
                kind = i % 4
                if kind == 0:
                    r = t.request("GET", "/")
                    assert r.status == 200 and r.body.startswith(b"https|TLSv1.3|"), (i, r)
                elif kind == 1:
                    body = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 5000)))
                    r = t.request("POST", "/", body=body)
                    assert r.status == 200 and r.body == body, (i, r.status, len(r.body))
                elif kind == 2:
                    r = t.request("GET", "/up/echo?i=%d" % i)
                    assert r.status == 200 and json.loads(r.body)["target"] == "/echo?i=%d" % i, (i, r)
                else:
                    # Three pipelined in one write.
                    t.send(b"".join(lp.build_request("GET", "/up/size/%d?i=%d" % (1000 * k, i)) for k in range(3)))
                    for k in range(3):
                        r = t.read_response()
                        assert r.status == 200 and len(r.body) == 1000 * k, (i, k, r)
                    i += 2
                i += 1
            assert not t.eof, "the server closed the keep-alive TLS connection"
        o.assert_clean()


WS_HEAD = (b"GET /ws HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_upgrade_tunnel_over_tls():
    """Connection: Upgrade through the TLS listener to a plain backend: the
    101 arrives, then 1 MiB goes through the tunnel and back (the backend
    echoes), in pieces of varying size, intact and in order."""
    n = 1 << 20
    data = b"".join(pattern_chunks(n, offset=999))
    with Origin() as o, tls_proxy(upstream_script([o]), certs().path("localhost")) as p, \
            TLSConn(p.tls_port, timeout=10) as t:
        t.send(WS_HEAD)
        r = t.read_response(head=True)
        assert r.status == 101 and r.header("upgrade", "").lower() == "websocket", "expected a 101: %r" % r
        # One thread (an ssl socket is not for two): send a piece, read its echo.
        rnd = random.Random(5)
        off = 0
        got = bytearray(t.buf)
        t.buf = b""
        while off < n:
            k = min(rnd.randint(1, 60000), n - off)
            t.send(data[off:off + k])
            off += k
            while len(got) < off:
                t.sock.settimeout(10)
                d = t.sock.recv(65536)
                assert d, "tunnel closed after %d of %d bytes" % (len(got), n)
                got += d
        assert bytes(got) == data, "the tunnel over TLS changed the bytes (%d received)" % len(got)
        o.assert_clean()


def test_graceful_shutdown_with_tls_connections():
    """SIGTERM: an idle keep-alive TLS connection is closed, a request in
    flight over TLS completes (with Connection: close), exit 0."""
    with Origin() as o:
        p = tls_proxy(upstream_script([o]), certs().path("localhost"))
        idle = TLSConn(p.tls_port)
        busy = TLSConn(p.tls_port, timeout=10)
        try:
            _ok(idle.request("GET", "/echo?idle"), "idle connection's first request")
            busy.send(lp.build_request("GET", "/slow/600"))
            o.wait_requests(2)
            p.send_signal(signal.SIGTERM)
            r = busy.read_response()
            assert r.status == 200 and "close" in r.connection_tokens(), \
                "the request in flight at SIGTERM: %r" % r
            assert idle.closed_by_peer(timeout=3), "idle TLS keep-alive connection not closed on SIGTERM"
            assert p.wait(5) == 0, "exit status %r after SIGTERM" % p.returncode
        finally:
            idle.close()
            busy.close()
            p.kill()


# --------------------------------------------------------------------------
# Bad input on the TLS port


def _client_hello():
    """The bytes of a real ClientHello (from an SSLObject over memory BIOs)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context().wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def _closed_after(sock, timeout):
    """Seconds until the server closed `sock` (EOF or reset); None if it
    was still open after timeout."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - t0
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - t0
    except socket.timeout:
        return None


def test_stalled_handshakes_closed_in_header_timeout_worker_serves():
    """--header-timeout 1s covers the handshake: a connection that sends
    nothing, and one that sends half a ClientHello, are closed after about
    a second; while they stall, other clients are served at once."""
    with tls_proxy(SEES, certs().path("localhost"), args=["--header-timeout", "1s"]) as p:
        worker = p.wait_workers(1)
        silent = socket.create_connection((lp.HOST, p.tls_port))
        half = socket.create_connection((lp.HOST, p.tls_port))
        hello = _client_hello()
        half.sendall(hello[:len(hello) // 2])
        t0 = time.monotonic()
        r, _ = https_request(p.tls_port, "GET", "/", timeout=0.9)
        assert r.status == 200 and time.monotonic() - t0 < 0.9, "served in %.2fs" % (time.monotonic() - t0)
        for name, s in (("silent", silent), ("half ClientHello", half)):
            took = _closed_after(s, max(0.1, 4.0 - (time.monotonic() - t0)))
            took = None if took is None else time.monotonic() - t0
            assert took is not None, "%s connection still open 4 s after connecting (header timeout 1s)" % name
            assert took >= 0.7, "%s connection closed after %.2fs, before the 1 s timeout" % (name, took)
            s.close()
        assert p.worker_pids() == worker, "the worker was replaced: %r -> %r" % (worker, p.worker_pids())
        _ok(https_request(p.tls_port, "GET", "/")[0], "GET after the stalls")


def test_garbage_and_plain_http_on_tls_port():
    """Garbage and a plain HTTP request on the TLS port: the connection is
    closed promptly, well before the header timeout (a record that never
    completes: by the timeout), no request reaches the backend, no 200
    comes back, and the worker survives to serve TLS and plain clients."""
    with Origin() as o, tls_proxy(upstream_script([o]), certs().path("localhost"),
                                  args=["--header-timeout", "2s"]) as p:
        worker = p.wait_workers(1)
        rnd = random.Random(3)
        payloads = [("garbage", bytes(rnd.randrange(256) for _ in range(3000)), 1.5),
                    ("zeros", b"\0" * 600, 1.5),
                    ("plain HTTP", b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 1.5),
                    ("a TLS record header announcing 16 KiB, then 100 bytes", b"\x16\x03\x01\x40\x00" + b"x" * 100, 4.0)]
        socks = []
        for name, data, limit in payloads:
            s = socket.create_connection((lp.HOST, p.tls_port))
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            socks.append((name, s, limit, time.monotonic()))
        for name, s, limit, t0 in socks:
            got = b""
            closed = False
            try:
                while time.monotonic() - t0 < limit:
                    s.settimeout(max(0.01, limit - (time.monotonic() - t0)))
                    d = s.recv(65536)
                    if not d:
                        closed = True
                        break
                    got += d
            except ConnectionResetError:
                closed = True
            except socket.timeout:
                pass
            s.close()
            assert closed, "%s: connection still open after %.1fs (header timeout 2s); got %r" % (name, limit, got[:100])
            assert b" 200 " not in got[:20], "%s: answered %r" % (name, got[:200])
        assert o.requests == 0, "a request reached the backend from a non-TLS connection: %r" % o.records
        assert p.worker_pids() == worker, "the worker was replaced"
        _ok(https_request(p.tls_port, "GET", "/echo")[0], "TLS GET afterwards")
        _ok(lp.get(p.port, "/echo"), "plain GET afterwards")


# --------------------------------------------------------------------------
# Start-up checks


def test_bad_certificates_refused_at_start():
    """A mismatched key, an expired certificate, a missing file, a file that
    is not PEM, a directory holding a bad one: exit 2 with one line on
    stderr that names the file. Also --tls-listen without --tls-cert and a
    --tls-min-version below 1.2."""
    c = certs()
    d = lp.make_tmpdir()
    junk = os.path.join(d, "junk.pem")
    with open(junk, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    keyless = os.path.join(d, "keyless.pem")
    with open(keyless, "wb") as f:
        with open(c.cert_only("localhost"), "rb") as g:
            f.write(g.read())
    bad_dir = lp.make_tmpdir()
    files = c.copy({"localhost": "10-good.pem", "expired": "20-expired.pem"}, bad_dir)
    script = lp.write_script(SEES)
    port = lp.free_port()
    cases = [("mismatched key", c.path("mismatched"), c.path("mismatched")),
             ("expired", c.path("expired"), c.path("expired")),
             ("missing file", os.path.join(d, "nope.pem"), os.path.join(d, "nope.pem")),
             ("not PEM", junk, junk),
             ("no key", keyless, keyless),
             ("a directory with an expired file", bad_dir, files["expired"])]
    bad = []
    for what, arg, named in cases:
        r = lp.run_cli(["--listen", "%s:%d" % (lp.HOST, lp.free_port()), "--tls-listen", "%s:%d" % (lp.HOST, port),
                        "--tls-cert", c.path("localhost"), "--tls-cert", arg, "-w", "1", script])
        lines = [l for l in r.stderr.strip().split("\n") if l.strip()]
        if r.returncode != 2 or len(lines) != 1 or named not in lines[0]:
            bad.append("%s: %r" % (what, r))
    for what, args in (("--tls-listen without --tls-cert", ["--tls-listen", "%s:%d" % (lp.HOST, port)]),
                       ("--tls-min-version 1.1", ["--tls-listen", "%s:%d" % (lp.HOST, port), "--tls-cert",
                                                  c.path("localhost"), "--tls-min-version", "1.1"])):
        r = lp.run_cli(["--listen", "%s:%d" % (lp.HOST, lp.free_port()), "-w", "1"] + args + [script])
        lines = [l for l in r.stderr.strip().split("\n") if l.strip()]
        if r.returncode != 2 or len(lines) != 1:
            bad.append("%s: %r" % (what, r))
    assert not bad, "\n".join(bad)


def test_several_tls_and_plain_listeners():
    """--tls-listen and --listen both repeat: two TLS ports and two plain
    ports of one server each serve their scheme."""
    c = certs()
    t2, l2 = lp.free_port(), lp.free_port()
    with tls_proxy(SEES, c.path("localhost"), args=["--tls-listen", "%s:%d" % (lp.HOST, t2),
                                                    "--listen", "%s:%d" % (lp.HOST, l2)]) as p:
        tlscerts.wait_tls_port(p, t2)
        for port in (p.tls_port, t2):
            assert https_request(port, "GET", "/")[0].body.startswith(b"https|"), port
        for port in (p.port, l2):
            assert lp.get(port, "/").body == b"http|nil", port


# --------------------------------------------------------------------------
# Script and observability


def test_try_scheme_https():
    """--try runs a request as if it came over TLS with --scheme https."""
    script = lp.write_script('function on_get(req) return 200, "scheme=" .. req.scheme end\n')
    r = lp.run_cli(["--try", "GET /", "--scheme", "https", script])
    assert r.returncode == 0 and "scheme=https" in r.stdout, r
    r = lp.run_cli(["--try", "GET /", script])
    assert r.returncode == 0 and "scheme=http" in r.stdout and "scheme=https" not in r.stdout, r


def test_tls_metrics_handshakes_resumptions_failures():
    """/metrics counts full and resumed handshakes and failed ones by
    reason (summed over workers)."""
    c = certs()
    admin = lp.free_port()
    with tls_proxy(SEES, c.path("localhost"), workers=2, args=["--admin", "%s:%d" % (lp.HOST, admin)]) as p:
        lp.wait_until(lambda: lp.port_accepts(admin), what="the admin listener")
        m0 = tlscerts.metrics(admin)
        for name in ("luaproxy_tls_handshakes_total", "luaproxy_tls_resumptions_total"):
            assert any(k.split("{")[0] == name for k in m0), "%s missing from /metrics" % name
        ctx = client_context(min_version=TLS13)
        with TLSConn(p.tls_port, ctx=ctx) as t:
            _ok(t.request("GET", "/"), "first")
            sess = t.tls.session
        for _ in range(3):
            with TLSConn(p.tls_port, ctx=ctx, session=sess) as t:
                assert t.tls.session_reused, "a session of this server was not resumed"
                _ok(t.request("GET", "/"), "resumed")
        _handshake_fails(p.tls_port, client_context(max_version=TLS12, ciphers="ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"))
        with socket.create_connection((lp.HOST, p.tls_port)) as s:
            s.sendall(b"GET / HTTP/1.1\r\n\r\n")
            _closed_after(s, 3)

        def grown():
            m = tlscerts.metrics(admin)
            full = tlscerts.metric_sum(m, "luaproxy_tls_handshakes_total") - \
                tlscerts.metric_sum(m0, "luaproxy_tls_handshakes_total")
            res = tlscerts.metric_sum(m, "luaproxy_tls_resumptions_total") - \
                tlscerts.metric_sum(m0, "luaproxy_tls_resumptions_total")
            fail = tlscerts.metric_sum(m, "luaproxy_tls_handshake_failures_total") - \
                tlscerts.metric_sum(m0, "luaproxy_tls_handshake_failures_total")
            return (full >= 4 and res == 3 and fail >= 2) and m
        try:
            m = lp.wait_until(grown, 3, what="the TLS counters")
        except AssertionError:
            raise AssertionError("TLS counters after 4 handshakes (3 resumed) and 2 failures: %r"
                                 % {k: v for k, v in tlscerts.metrics(admin).items() if "tls" in k})
        reasons = [k for k, v in m.items() if k.startswith("luaproxy_tls_handshake_failures_total{reason=") and v]
        assert reasons, m
