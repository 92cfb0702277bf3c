"""SPEC §10, backends: "https://" servers or `tls = true`, `sni` (default:
the host name; none for an IP address), `verify` (default true, against the
system store or `ca`), verified connections pooled and sessions resumed on
new ones, a failed verification is a 502 with one log line saying why.

The backend is tlscerts.TLSOrigin: origin.Origin over Python ssl, which
records the SNI of every handshake and counts handshakes and resumptions."""

import json

import lp
from origin import pattern_chunks, upstream_script
from tlscerts import TLSOrigin, big_bodies_both_ways, certs, https_request, tls_proxy


def _ok(r, what):
    assert r.status == 200, "%s: %r" % (what, r)
    return r


def _https(o):
    return "https://%s" % o.addr


def _opts(**kw):
    out = []
    for k, v in kw.items():
        out.append("%s = %s" % (k, json.dumps(v) if not isinstance(v, bool) else ("true" if v else "false")))
    return ", ".join(out)


def _header(r, name):
    return [v for k, v in json.loads(r.body)["headers"] if k.lower() == name]


def _verif_lines(p):
    return [l for l in p.stderr_text().split("\n") if "verif" in l.lower()]


def test_https_backend_verified_with_ca_no_sni_for_ip():
    """https://127.0.0.1:PORT with ca = the test root: 200, the request
    arrived intact over TLS, and no SNI was sent (an IP address is not a
    host name, RFC 6066 §3)."""
    c = certs()
    with TLSOrigin() as o, lp.Proxy(upstream_script([_https(o)], _opts(ca=c.ca))) as p:
        r = _ok(lp.post(p.port, "/echo?x=1", "hello over tls"), "POST to an https backend")
        d = json.loads(r.body)
        assert d["target"] == "/echo?x=1" and d["body"] == "hello over tls", d
        assert _header(r, "x-forwarded-proto") == ["http"], r.body
        assert o.handshakes >= 1 and o.requests == 1, (o.handshakes, o.requests)
        assert o.sni_names == [None] * len(o.sni_names), "SNI sent for an IP address: %r" % o.sni_names
        assert not o.handshake_errors, o.handshake_errors
        o.assert_clean()


def test_tls_option_with_sni_name():
    """A plain address with tls = true and sni = "backend.test": the
    backend receives that SNI on every handshake, and the certificate is
    verified against that name."""
    c = certs()
    with TLSOrigin() as o, lp.Proxy(upstream_script([o], _opts(tls=True, sni="backend.test", ca=c.ca))) as p:
        for i in range(3):
            _ok(lp.get(p.port, "/echo?i=%d" % i), "GET %d" % i)
        assert o.sni_names and set(o.sni_names) == {"backend.test"}, "SNI the backend received: %r" % o.sni_names
        o.assert_clean()


def test_sni_name_not_in_certificate_is_502():
    """sni = "wrong.test" (not a name of the backend's certificate), verify
    on: 502, the request never reaches the backend, one log line says why."""
    c = certs()
    with TLSOrigin() as o, lp.Proxy(upstream_script([_https(o)], _opts(sni="wrong.test", ca=c.ca))) as p:
        r = lp.get(p.port, "/echo")
        assert r.status == 502, "a certificate without the name wrong.test was accepted: %r" % r
        assert o.requests == 0, "the request reached a backend that failed verification"
        assert o.sni_names and set(o.sni_names) == {"wrong.test"}, o.sni_names
        lp.wait_until(lambda: _verif_lines(p), 2, what="a log line about the verification")


def test_wrong_ca_is_502_with_one_log_line():
    """ca = a CA that did not sign the backend's certificate: 502, no
    request reaches the backend, and one log line per failure says why
    ("verif..."). Without `ca` the system store is used, which does not
    know the test CA either: 502."""
    c = certs()
    for opts in (_opts(ca=c.other_ca), ""):
        with TLSOrigin() as o, lp.Proxy(upstream_script([_https(o)], opts)) as p:
            r = lp.get(p.port, "/echo")
            assert r.status == 502, "%s: a backend signed by an unknown CA was accepted: %r" % (opts or "system store", r)
            assert o.requests == 0, "the request reached the backend"
            lines = lp.wait_until(lambda: _verif_lines(p), 2,
                                  what="a log line about the verification; stderr:\n%s" % p.stderr_text())
            assert len(lines) == 1, "one failure, %d log lines: %r" % (len(lines), lines)
            r = lp.get(p.port, "/echo")
            assert r.status == 502, "second request: %r" % r
            lp.wait_until(lambda: len(_verif_lines(p)) == 2, 2, what="a second log line for the second failure")


def test_verify_false_accepts_any_certificate():
    c = certs()
    with TLSOrigin() as o, lp.Proxy(upstream_script([_https(o)], _opts(verify=False, ca=c.other_ca,
                                                                      sni="wrong.test"))) as p:
        for i in range(3):
            _ok(lp.get(p.port, "/echo?i=%d" % i), "verify = false, GET %d" % i)
        assert o.requests == 3, "the backend saw %d requests" % o.requests
        o.assert_clean()


def test_tls_backend_pooled():
    """300 requests over 3 keep-alive client connections, -w 1: the TLS
    backend sees a handful of connections and handshakes."""
    c = certs()
    with TLSOrigin() as o, lp.Proxy(upstream_script([_https(o)], _opts(ca=c.ca)), workers=1) as p:
        conns = [lp.Conn(p.port) for _ in range(3)]
        try:
            for i in range(300):
                r = _ok(conns[i % 3].request("GET", "/echo?i=%d" % i), "request %d" % i)
                assert json.loads(r.body)["target"] == "/echo?i=%d" % i, r.body[:100]
        finally:
            for k in conns:
                k.close()
        assert o.requests == 300, o.requests
        assert o.connections <= 4 and o.handshakes <= 4, \
            "300 requests: %d backend connections, %d handshakes" % (o.connections, o.handshakes)
        o.assert_clean()


def test_tls_backend_sessions_resumed_on_new_connections():
    """A backend that closes every connection after its response: each
    request needs a new connection, and after the first they resume the
    TLS session instead of a full handshake."""
    c = certs()
    with TLSOrigin(close_after_response=True) as o, \
            lp.Proxy(upstream_script([_https(o)], _opts(ca=c.ca)), workers=1) as p, lp.Conn(p.port) as cl:
        for i in range(10):
            _ok(cl.request("GET", "/echo?i=%d" % i), "request %d" % i)
        assert o.connections == 10, o.connections
        assert o.resumed >= 8, "10 connections to the same TLS backend, %d resumed sessions" % o.resumed
        o.assert_clean()


def test_stale_pooled_tls_connection_retried():
    """The TLS backend answers only the first request of a connection and
    closes on the next: the GET is retried on a fresh connection."""
    c = certs()
    with TLSOrigin(drop_reused=True) as o, \
            lp.Proxy(upstream_script([_https(o)], _opts(ca=c.ca)), workers=1) as p, lp.Conn(p.port) as cl:
        bad = []
        for i in range(20):
            r = cl.request("GET", "/echo?i=%d" % i)
            if r.status != 200:
                bad.append((i, r.status))
        assert not bad, bad
        assert o.dropped >= 1, "no pooled TLS connection was reused"
        o.assert_clean()


def test_tls_both_sides_bodies_and_forwarded_proto():
    """TLS listener to TLS backend: X-Forwarded-Proto: https, 8 MiB up and
    8 MiB down (Content-Length and chunked) intact."""
    c = certs()
    n = 8 << 20
    with TLSOrigin() as o, tls_proxy(upstream_script([_https(o)], _opts(ca=c.ca)), c.path("localhost")) as p:
        r, _ = https_request(p.tls_port, "GET", "/echo")
        assert _header(_ok(r, "GET"), "x-forwarded-proto") == ["https"], r.body
        big_bodies_both_ways(p.tls_port, n)
        o.assert_clean()


def test_tls_backend_pooled_mixed_framing():
    """One pooled TLS backend connection stays in step through every kind of
    framing (Content-Length, chunked, HEAD, 204, 304, bodies up), a
    response written in 100-byte pieces (many TLS records), and a body
    that ends when the backend closes."""
    c = certs()
    seq = [("GET", "/size/1000", None, 200, 1000), ("HEAD", "/size/5000", None, 200, 0),
           ("POST", "/echo", b"x" * 3000, 200, None), ("GET", "/status/204", None, 204, 0),
           ("GET", "/chunked/70000", None, 200, 70000), ("GET", "/status/304", None, 304, 0),
           ("HEAD", "/chunked/100", None, 200, 0), ("GET", "/status/404", None, 404, None)]
    with TLSOrigin() as o, lp.Proxy(upstream_script([_https(o)], _opts(ca=c.ca)), workers=1) as p, \
            lp.Conn(p.port) as cl:
        for rnd in range(3):
            for m, t, b, status, n in seq:
                r = cl.request(m, t, body=b)
                assert r.status == status, "round %d %s %s: %r" % (rnd, m, t, r)
                if n is not None:
                    assert len(r.body) == n, "round %d %s %s: %d body bytes" % (rnd, m, t, len(r.body))
        assert o.connections == 1, "%d requests in step used %d backend connections" % (o.requests, o.connections)
        r = cl.request("GET", "/size/20000", headers={"X-Origin-Trickle": "100"})
        assert r.status == 200 and r.body == b"".join(pattern_chunks(20000)), (r.status, len(r.body))
        r = cl.request("GET", "/eof/100000")
        assert r.status == 200 and r.body == b"".join(pattern_chunks(100000)), \
            "a body ended by the TLS backend's close: %d of 100000 bytes" % len(r.body)
        o.assert_clean()


def test_https_name_resolved_sends_the_name_as_sni():
    """"https://backend.test:PORT", the name resolved by the test's DNS
    server: every address is a TLS server whose SNI and verified name are
    the name (not the address it resolved to)."""
    from dnsserver import DnsServer
    c = certs()
    with TLSOrigin() as o, DnsServer({"backend.test": "127.0.0.1"}) as dns:
        script = upstream_script(["https://backend.test:%d" % o.port], _opts(ca=c.ca))
        with lp.Proxy(script, args=["--resolver", dns.addr]) as p:
            for i in range(2):
                _ok(lp.get(p.port, "/echo?i=%d" % i), "GET %d through a name" % i)
            assert o.sni_names and set(o.sni_names) == {"backend.test"}, "SNI the backend received: %r" % o.sni_names
            o.assert_clean()
