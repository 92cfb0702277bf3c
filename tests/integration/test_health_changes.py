"""Active health checks where the other upstream features meet them: a TLS
server is probed over TLS (verified as the pool verifies), and a server
list changed at run time (set_servers) is probed from then on, the servers
that left no longer."""

import re
import time

import lp
from origin import Origin, upstream_script
from tlscerts import TLSOrigin, certs

FAST = 'path = "/healthz", interval = "200ms", timeout = "500ms", rise = 1, fall = 2'


def gauge(admin):
    r = lp.get(admin, "/metrics")
    assert r.status == 200, r
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^luaproxy_upstream_server_up\{upstream="backend",server="([^"]+)"\} (\S+)$', r.body.decode(), re.M)}


def probes(o):
    with o.lock:
        return sum(1 for x in o.records if x.path == "/healthz")


def test_a_tls_server_is_probed_over_tls_and_verified():
    c = certs()
    admin = lp.free_port()
    with TLSOrigin() as good, TLSOrigin() as bad:
        script = ('local ok = proxy.upstream("backend", { "https://%s" }, { ca = "%s", check = { %s } })\n'
                  'local ko = proxy.upstream("other", { "https://%s" }, { check = { %s } })\n'
                  'function route(req) return ok end\n' % (good.addr, c.ca, FAST, bad.addr, FAST))
        with lp.Proxy(script, workers=1, args=["--admin", "127.0.0.1:%d" % admin]) as p:
            lp.wait_until(lambda: probes(good) >= 3, 5, what="three probes of the TLS server")
            assert gauge(admin) == {good.addr: 1}, gauge(admin)
            assert good.handshakes >= 1 and not good.handshake_errors, (good.handshakes, good.handshake_errors)
            assert lp.get(p.port, "/x").status == 200
            # The other is verified against the system store, which does not
            # know the test CA: down, and the log says why.
            p.wait_stderr("upstream other: server %s is down" % bad.addr, timeout=5)
            line = [l for l in p.stderr_text().split("\n") if "upstream other: server" in l][0]
            assert "verif" in line.lower(), line
            assert probes(bad) == 0, "a request reached a server whose certificate did not verify"


def test_servers_set_at_run_time_are_probed_and_the_old_ones_no_more():
    admin = lp.free_port()
    with Origin(name="a") as a, Origin(name="b") as b:
        extra = ('function on_post(req) backend:set_servers({ "%s" }) return 200, "set\\n" end\n' % b.addr)
        script = ('backend = proxy.upstream("backend", { "%s" }, { check = { %s } })\n'
                  'function route(req) if req.method == "GET" then return backend end end\n' % (a.addr, FAST)) + extra
        with lp.Proxy(script, workers=1, args=["--admin", "127.0.0.1:%d" % admin]) as p:
            lp.wait_until(lambda: probes(a) >= 2, 5, what="probes of the first server")
            assert lp.post(p.port, "/set", b"").status == 200
            lp.wait_until(lambda: probes(b) >= 2, 5, what="probes of the server set at run time")
            lp.wait_until(lambda: gauge(admin) == {b.addr: 1}, 5, what="the gauge to list the new server only")
            before = probes(a)
            time.sleep(0.6)  # three intervals: no probe of a may come
            assert probes(a) == before, "the server that left is still probed (%d more)" % (probes(a) - before)
