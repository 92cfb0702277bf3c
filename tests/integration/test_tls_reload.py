"""SPEC §10: SIGHUP reloads the certificates with the script. They are
checked first; a bad or unreadable one keeps every old one in service
(the error is logged, naming the file); a good one is served by every
worker after the reload, connections already open keep working, and
session tickets issued before the reload still resume after it."""

import os
import signal

import lp
import tlscerts
from tlscerts import TLSConn, certs, served_fingerprint, tls_proxy

SCRIPT = 'function on_get(req) return 200, "gen=" .. proxy.generation end\n'


def _replace(path, source):
    """Replaces path's contents with source's at once (rename), as a
    deployment tool would."""
    tmp = path + ".tmp"
    with open(source, "rb") as f, open(tmp, "wb") as g:
        g.write(f.read())
    os.replace(tmp, path)


def _served(p, sni=None):
    with TLSConn(p.tls_port, sni=sni) as t:
        return served_fingerprint(t.tls)


def _name_of(fp):
    c = certs()
    names = [n for n in ("localhost", "localhost2", "ab", "wildcard") if c.fingerprint(n) == fp]
    return names[0] if names else fp[:16]


def _all_serve(p, name, sni=None, n=12):
    """True when n fresh connections in a row (spread over the workers by
    the kernel) are all served `name`'s certificate."""
    want = certs().fingerprint(name)
    return all(_served(p, sni) == want for _ in range(n))


def _hup_and_wait_logged(p, needle):
    """SIGHUP, then wait until stderr mentions needle once more than before."""
    before = p.stderr_text().count(needle)
    p.send_signal(signal.SIGHUP)
    lp.wait_until(lambda: p.stderr_text().count(needle) > before, 5,
                  what="a log line naming %s after SIGHUP; stderr:\n%s" % (needle, p.stderr_text()[-2000:]))


def test_reload_serves_new_certificate_open_connections_survive():
    """-w 2: the certificate file is replaced and SIGHUP sent; every worker
    then serves the new one, and a keep-alive connection opened before the
    reload still gets answers."""
    c = certs()
    path = c.copy(["localhost"])["localhost"]
    with tls_proxy(SCRIPT, path, workers=2) as p:
        p.wait_workers(2)
        assert _all_serve(p, "localhost"), "not serving the first certificate"
        old = TLSConn(p.tls_port)
        try:
            assert old.request("GET", "/").body == b"gen=0"
            _replace(path, c.path("localhost2"))
            p.send_signal(signal.SIGHUP)
            lp.wait_until(lambda: _all_serve(p, "localhost2"), 5,
                          what="every worker to serve the new certificate after SIGHUP")
            r = old.request("GET", "/")
            assert r.status == 200 and r.body == b"gen=1", \
                "a keep-alive TLS connection opened before the reload: %r" % r
            assert served_fingerprint(old.tls) == c.fingerprint("localhost"), "the old connection's certificate"
        finally:
            old.close()


def test_reload_with_broken_certificate_keeps_every_old_one():
    """A mismatched key, an expired certificate, then a missing file at
    SIGHUP: each time the error is logged naming the file and every old
    certificate (the broken one's predecessor and the others) keeps being
    served; a good file afterwards is taken at the next SIGHUP."""
    c = certs()
    files = c.copy(["localhost", "ab"])
    path = files["ab"]
    with tls_proxy(SCRIPT, [files["localhost"], path], workers=2) as p:
        p.wait_workers(2)
        assert _all_serve(p, "ab", sni="a.test"), "SNI a.test before any reload: not ab's certificate"
        assert _all_serve(p, "localhost", sni="localhost"), "SNI localhost before any reload: not localhost's"
        for broken in ("mismatched", "expired", None):
            if broken is None:
                os.unlink(path)
            else:
                _replace(path, c.path(broken))
            _hup_and_wait_logged(p, path)
            line = [l for l in p.stderr_text().split("\n") if path in l][-1]
            assert p.alive(), "luaproxy exited after a reload with a broken certificate"
            for sni, name in (("a.test", "ab"), ("b.test", "ab"), ("localhost", "localhost"), (None, "localhost")):
                fps = {_served(p, sni) for _ in range(8)}
                assert fps == {c.fingerprint(name)}, \
                    "after a reload with %s (logged: %r), SNI %r got %s, expected the old %s" % (
                        broken or "a missing file", line, sni, [_name_of(f) for f in fps], name)
            assert tlscerts.https_request(p.tls_port, "GET", "/")[0].body == b"gen=0", \
                "the reload with a broken certificate went through"
        # Fixed: the next reload serves the new file.
        _replace(path, c.path("wildcard"))
        p.send_signal(signal.SIGHUP)
        lp.wait_until(lambda: _all_serve(p, "wildcard", sni="w.example.test"), 5,
                      what="the fixed certificate to be served after SIGHUP")
        assert _all_serve(p, "localhost", sni="a.test"), "a.test is no longer in any certificate: the default"


def test_reload_adds_directory_certificate_tickets_survive():
    """--tls-cert DIR: a file added to the directory is served after SIGHUP;
    a session ticket issued before the reload resumes after it (on either
    worker)."""
    c = certs()
    d = lp.make_tmpdir()
    c.copy({"localhost": "10-localhost.pem"}, d)
    with tls_proxy(SCRIPT, d, workers=2) as p:
        p.wait_workers(2)
        assert _all_serve(p, "localhost", sni="a.test"), "SNI a.test with only the default loaded"
        with TLSConn(p.tls_port, sni="localhost") as t:
            assert t.request("GET", "/").status == 200
            sess = t.tls.session
        c.copy({"ab": "20-ab.pem"}, d)
        p.send_signal(signal.SIGHUP)
        lp.wait_until(lambda: _all_serve(p, "ab", sni="a.test"), 5,
                      what="the certificate added to the directory to be served after SIGHUP")
        assert _all_serve(p, "localhost"), "the default changed"
        for i in range(8):
            with TLSConn(p.tls_port, sni="localhost", session=sess) as t:
                assert t.tls.session_reused, "connection %d: a ticket from before the reload was refused" % i
                assert t.request("GET", "/").body == b"gen=1"
