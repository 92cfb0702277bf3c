"""tlscerts: certificates and TLS clients/servers for the TLS tests.

    c = tlscerts.certs()       # made once per test session (openssl command)
    c.path("localhost")        # PEM: leaf + intermediate + key, for --tls-cert
    c.ca                       # the root CA the clients trust
    c.fingerprint("ab")        # sha256 of the leaf's DER, to say which was served

Certificates (ECDSA P-256, made with the `openssl` command in a temporary
directory removed at exit):

    localhost    DNS:localhost, IP:127.0.0.1, signed by an intermediate CA
                 (the PEM carries the intermediate: a client that trusts only
                 the root verifies it only if the chain is served)
    localhost2   the same names, another key: the "new" certificate of a reload
    wildcard     DNS:*.example.test
    ab           DNS:a.test, DNS:b.test
    backend      DNS:backend.test, DNS:localhost, IP:127.0.0.1 (for TLS origins)
    expired      localhost's names, valid 2020-01-01 .. 2021-01-01
    mismatched   localhost's certificate with the private key of another
    c.other_ca   a CA that signed none of them (a backend verified against
                 it must fail)

Clients: `client_context()`, `connect()` (an ssl socket), `TLSConn` (lp.Conn
over TLS, same response parser), `https_request()`, `served_fingerprint()`.
Servers: `TLSOrigin`, an origin.Origin speaking TLS that records the SNI
name of every handshake (`o.sni_names`) and its handshake failures.
"""

import atexit
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading

import lp
from origin import Origin, pattern_chunks, pattern_sha256

HOST = lp.HOST
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed: %s" % (" ".join(args), r.stderr.decode(errors="replace")))


def _serial():
    """A random positive 127-bit serial number, as public CAs use."""
    return "0x" + (bytes([os.urandom(1)[0] & 0x7F | 0x10]) + os.urandom(15)).hex()


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class Certs:
    LEAVES = {
        # name: (subject CN, SANs, signed by intermediate?)
        "localhost": ("localhost", "DNS:localhost,IP:127.0.0.1", True),
        "localhost2": ("localhost", "DNS:localhost,IP:127.0.0.1", True),
        "wildcard": ("*.example.test", "DNS:*.example.test", False),
        "ab": ("a.test", "DNS:a.test,DNS:b.test", False),
        "backend": ("backend.test", "DNS:backend.test,DNS:localhost,IP:127.0.0.1", False),
    }

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="lp-tls-")
        atexit.register(shutil.rmtree, self.dir, True)
        d = self.dir
        os.makedirs(os.path.join(d, "db"))
        open(os.path.join(d, "db", "index.txt"), "w").close()
        with open(os.path.join(d, "db", "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca = tca\n[tca]\ndatabase = db/index.txt\nnew_certs_dir = db\n"
                    "serial = db/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n"
                    "copy_extensions = none\n[any]\ncommonName = supplied\n")
        self._ca("ca", "luaproxy test root CA")
        self._ca("other_ca", "luaproxy unrelated CA")
        # The intermediate: signed by the root, may sign leaves only.
        _openssl(["req", "-new"] + _EC + ["-keyout", "inter.key", "-out", "inter.csr",
                                          "-subj", "/CN=luaproxy test intermediate CA"], d)
        self._ext("inter.ext", "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                               "keyUsage=critical,keyCertSign,cRLSign\n")
        _openssl(["x509", "-req", "-in", "inter.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", _serial(),
                  "-days", "3650", "-extfile", "inter.ext", "-out", "inter.pem"], d)
        for name, (cn, sans, inter) in self.LEAVES.items():
            self._leaf(name, cn, sans, "inter" if inter else "ca")
        # Expired: `openssl ca` is the one that takes explicit dates in OpenSSL 3.0.
        _openssl(["req", "-new"] + _EC + ["-keyout", "expired.key", "-out", "expired.csr", "-subj", "/CN=localhost"], d)
        self._ext("expired.ext", self._leaf_ext("DNS:localhost,IP:127.0.0.1"))
        _openssl(["ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in", "expired.csr",
                  "-out", "expired.crt", "-startdate", "20200101000000Z", "-enddate", "20210101000000Z",
                  "-extfile", "expired.ext", "-notext"], d)
        self._bundle("expired", [_read(os.path.join(d, "expired.crt"))], "expired.key")
        # Mismatched: localhost's certificate chain, localhost2's key.
        self._bundle("mismatched", [_read(os.path.join(d, "localhost.crt")), _read(os.path.join(d, "inter.pem"))],
                     "localhost2.key")
        self.ca = os.path.join(d, "ca.pem")
        self.other_ca = os.path.join(d, "other_ca.pem")

    def _ext(self, name, text):
        with open(os.path.join(self.dir, name), "w") as f:
            f.write(text)

    @staticmethod
    def _leaf_ext(sans):
        # A CRL location, as a public CA's certificate has (testssl.sh rates a
        # certificate without one HIGH; nothing here fetches it).
        return ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n"
                "crlDistributionPoints=URI:http://crl.invalid/luaproxy-test.crl\n" % sans)

    def _ca(self, name, cn):
        _openssl(["req", "-x509"] + _EC + ["-keyout", name + ".key", "-out", name + ".pem", "-days", "3650",
                                           "-subj", "/CN=" + cn,
                                           "-addext", "basicConstraints=critical,CA:TRUE",
                                           "-addext", "keyUsage=critical,keyCertSign,cRLSign"], self.dir)

    def _leaf(self, name, cn, sans, signer):
        d = self.dir
        _openssl(["req", "-new"] + _EC + ["-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn], d)
        self._ext(name + ".ext", self._leaf_ext(sans))
        _openssl(["x509", "-req", "-in", name + ".csr", "-CA", signer + ".pem", "-CAkey", signer + ".key",
                  "-set_serial", _serial(), "-days", "825", "-extfile", name + ".ext", "-out", name + ".crt"], d)
        chain = [_read(os.path.join(d, name + ".crt"))]
        if signer == "inter":
            chain.append(_read(os.path.join(d, "inter.pem")))
        self._bundle(name, chain, name + ".key")

    def _bundle(self, name, chain, key):
        with open(os.path.join(self.dir, name + ".pem"), "wb") as f:
            f.write(b"".join(chain) + _read(os.path.join(self.dir, key)))

    def path(self, name):
        """The PEM (chain + key) of a certificate, for --tls-cert."""
        p = os.path.join(self.dir, name + ".pem")
        if not os.path.exists(p):
            raise KeyError("no test certificate %r" % name)
        return p

    def cert_only(self, name):
        """The leaf certificate alone (PEM), without key or chain."""
        return os.path.join(self.dir, name + ".crt")

    def key(self, name):
        return os.path.join(self.dir, name + ".key")

    def fingerprint(self, name):
        """sha256 (hex) of the DER of a certificate's leaf."""
        pem = _read(self.cert_only(name)).decode()
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()

    def copy(self, names, directory=None):
        """A fresh directory (removed after the test) holding copies of the
        named PEMs, as {name: path}; `names` may map name -> file name."""
        d = directory or lp.make_tmpdir()
        items = names.items() if isinstance(names, dict) else [(n, n + ".pem") for n in names]
        out = {}
        for name, fname in items:
            out[name] = os.path.join(d, fname)
            shutil.copyfile(self.path(name), out[name])
        return out


_certs = None
_certs_lock = threading.Lock()


def certs():
    """The session's certificates (made on first use, then reused)."""
    global _certs
    with _certs_lock:
        if _certs is None:
            _certs = Certs()
        return _certs


# --------------------------------------------------------------------------
# Clients


def client_context(ca=None, min_version=None, max_version=None, check_hostname=False, ciphers=None):
    """A client context that verifies against the test root CA (or `ca`).
    Hostname checks are off by default: the tests ask which certificate
    was served with served_fingerprint() and say so when it is wrong."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca or certs().ca)
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


_default_ctx = None


def default_context():
    """One shared client_context(): a session can be resumed only through
    the context that made it."""
    global _default_ctx
    if _default_ctx is None:
        _default_ctx = client_context()
    return _default_ctx


def connect(port, sni=None, ctx=None, session=None, timeout=5.0):
    """A TLS connection to 127.0.0.1:port (handshake done), offering `sni`
    (None: no SNI) and resuming `session` if given (a session made through
    the same `ctx`; default_context() when None)."""
    ctx = ctx or default_context()
    raw = socket.create_connection((HOST, port), timeout=timeout)
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(raw, server_hostname=sni, session=session)
    except BaseException:
        raw.close()
        raise


def served_fingerprint(s):
    return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


class TLSConn(lp.Conn):
    """lp.Conn over TLS: request(), read_response(), closed_by_peer() ...
    `tls` is the ssl socket (version(), cipher(), session_reused)."""

    def __init__(self, port, sni=None, ctx=None, session=None, timeout=5.0):
        self.sock = connect(port, sni=sni, ctx=ctx, session=session, timeout=timeout)
        self.tls = self.sock
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.reset = False

    def _recv(self, deadline):
        try:
            return super()._recv(deadline)
        except ssl.SSLError as e:
            # A peer that closes without close_notify, or sends an alert: EOF here.
            self.eof = True
            self.reset = "alert or unclean close: %s" % e
            return False


def https_request(port, method, path, body=None, headers=None, sni=None, ctx=None, timeout=5.0):
    """One request over a fresh TLS connection through http.client; returns
    (lp.Response, the ssl socket's (version, cipher name, session_reused))."""
    if isinstance(body, str):
        body = body.encode()
    ctx = ctx or default_context()
    c = http.client.HTTPSConnection(HOST, port, timeout=timeout, context=ctx)
    if sni is not None:
        # http.client sends the connection's host as SNI; a test that names
        # another must connect itself.
        c.sock = connect(port, sni=sni, ctx=ctx, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        info = (c.sock.version(), c.sock.cipher()[0], c.sock.session_reused)
        return lp.Response("HTTP/%d.%d" % divmod(r.version, 10), r.status, r.reason,
                           [(k.lower(), v) for k, v in r.getheaders()], data), info
    finally:
        c.close()


def big_bodies_both_ways(port, n):
    """n bytes up (Content-Length, then chunked) to an origin's /upload and
    n bytes down (/size/n, /chunked/n), on one TLS connection to port
    (a route proxied to an origin.Origin): every byte arrives (sha256)."""
    with TLSConn(port, timeout=30) as t:
        want = {"len": n, "sha256": pattern_sha256(n)}

        def got(r):
            d = json.loads(r.body)
            return {"len": d.get("len"), "sha256": d.get("sha256")}
        t.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n)
        for piece in pattern_chunks(n):
            t.send(piece)
        r = t.read_response(timeout=30)
        assert r.status == 200 and got(r) == want, "%d bytes up: %r" % (n, r)
        t.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pattern_chunks(n, chunk=200000):
            t.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        t.send(b"0\r\n\r\n")
        r = t.read_response(timeout=30)
        assert r.status == 200 and got(r) == want, "%d bytes up, chunked: %r" % (n, r)
        for path in ("/size/%d" % n, "/chunked/%d" % n):
            r = t.request("GET", path, timeout=30)
            assert r.status == 200 and len(r.body) == n and hashlib.sha256(r.body).hexdigest() == want["sha256"], \
                "GET %s: status %d, %d bytes, sha256 %s" % (path, r.status, len(r.body),
                                                            "differs" if len(r.body) == n else "-")


def wait_tls_port(proxy, port, timeout=5.0):
    """Waits until port accepts TCP connections (a TLS listener of `proxy`,
    which lp.Proxy does not wait for)."""
    lp.wait_until(lambda: lp.port_accepts(port) or (not proxy.alive() and "dead"), timeout,
                  what="the TLS listener on port %d" % port)
    if not proxy.alive():
        raise lp.ProxyError("luaproxy exited during start-up; stderr:\n%s" % proxy.stderr_text())


def tls_proxy(script, certs_paths, workers=1, args=(), **kw):
    """lp.Proxy with a plain listener (p.port) and a TLS one (p.tls_port)
    serving `certs_paths` (a path or a list of them)."""
    if isinstance(certs_paths, str):
        certs_paths = [certs_paths]
    tport = lp.free_port()
    argv = ["--tls-listen", "%s:%d" % (HOST, tport)]
    for c in certs_paths:
        argv += ["--tls-cert", c]
    p = lp.Proxy(script, args=argv + list(args), workers=workers, **kw)
    p.tls_port = tport
    wait_tls_port(p, tport)
    return p


def metrics(port):
    """{ 'name{labels}': value } of an admin listener's /metrics."""
    r = lp.get(port, "/metrics")
    assert r.status == 200, "GET /metrics: %r" % r
    out = {}
    for line in r.body.decode().split("\n"):
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def metric_sum(m, name):
    """The sum of every series of metric `name` (any labels)."""
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


# --------------------------------------------------------------------------
# A TLS origin


class TLSOrigin(Origin):
    """An Origin whose connections are TLS (certificate `cert`, a PEM with
    chain + key). `sni_names` lists the SNI of every handshake (None when
    the client sent none), `handshakes` counts completed ones,
    `handshake_errors` lists failed ones, `resumed` counts resumed ones."""

    def __init__(self, cert=None, name="tls-origin", **kw):
        super().__init__(name=name, **kw)
        self.sni_names = []
        self.handshakes = 0
        self.resumed = 0
        self.handshake_errors = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert or certs().path("backend"))
        ctx.sni_callback = self._sni
        self.ctx = ctx

    def _sni(self, sslobj, name, ctx):
        with self.lock:
            self.sni_names.append(name)

    def _conn_main(self, sock, peer, cid):
        try:
            sock.settimeout(5)
            tls = self.ctx.wrap_socket(sock, server_side=True)
            tls.settimeout(None)
        except (OSError, ssl.SSLError) as e:
            with self.lock:
                self.handshake_errors.append(repr(e))
                self.socks.discard(sock)
                self.open_connections -= 1
            sock.close()
            return
        with self.lock:
            self.handshakes += 1
            self.resumed += 1 if tls.session_reused else 0
            # The plain socket is detached now: stop() must shut the TLS one.
            self.socks.discard(sock)
            self.socks.add(tls)
        super()._conn_main(tls, peer, cid)
