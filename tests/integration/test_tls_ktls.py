"""SPEC §10: where the kernel offers TLS offload (kTLS), bodies between a
TLS client and a plain backend keep moving with splice(). Only testable on
a kernel with the "tls" upper-layer protocol; elsewhere the test says why
it did not run (the relay through OpenSSL is what the other TLS tests
cover)."""

import hashlib
import os
import socket
import ssl
import subprocess

import lp
from origin import Origin, pattern_sha256, upstream_script


def kernel_has_ktls():
    try:
        with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
            ulps = f.read().split()
    except OSError as e:
        return False, "cannot read tcp_available_ulp: %s" % e
    if "tls" in ulps:
        return True, ""
    # The module may be loadable (as root), which makes it available.
    try:
        subprocess.run(["modprobe", "tls"], capture_output=True, timeout=10)
    except OSError:
        pass
    with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
        ulps = f.read().split()
    return "tls" in ulps, "the kernel offers no kTLS (tcp_available_ulp: %s)" % " ".join(ulps)


def spliced_total(admin_port):
    r = lp.get(admin_port, "/metrics")
    for line in r.body.decode().split("\n"):
        if line.startswith("luaproxy_spliced_bytes_total "):
            return int(line.split()[1])
    raise AssertionError("no luaproxy_spliced_bytes_total in /metrics")


def test_ktls_download_is_spliced():
    ok, why = kernel_has_ktls()
    if not ok:
        raise lp.Skip(why)
    tmp = lp.make_tmpdir()
    key, cert, pem = (os.path.join(tmp, n) for n in ("k.pem", "c.pem", "both.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    with open(pem, "wb") as f:
        f.write(open(cert, "rb").read() + open(key, "rb").read())
    tls_port, admin_port = lp.free_port(), lp.free_port()
    n = 4 * 1024 * 1024
    with Origin() as o, lp.Proxy(upstream_script([o]), workers=1,
                                 args=["--tls-listen", "127.0.0.1:%d" % tls_port, "--tls-cert", pem,
                                       "--tls-ciphers", "TLS_AES_128_GCM_SHA256",
                                       "--admin", "127.0.0.1:%d" % admin_port]) as p:
        lp.wait_until(lambda: lp.port_accepts(tls_port), what="the TLS listener")
        before = spliced_total(admin_port)
        ctx = ssl.create_default_context(cafile=cert)
        with socket.create_connection(("127.0.0.1", tls_port), timeout=10) as s:
            with ctx.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(b"GET /size/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % n)
                data = b""
                while True:
                    piece = t.recv(1 << 16)
                    if not piece:
                        break
                    data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:100]
        assert hashlib.sha256(body).hexdigest() == pattern_sha256(n), "the body arrived changed"
        moved = spliced_total(admin_port) - before
        assert moved >= n, "with kTLS, %d of %d body bytes were spliced" % (moved, n)
