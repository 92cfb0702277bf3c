"""SPEC §9 (names), §11 (--resolver, --resolve-interval): an upstream's
"name:port" servers, resolved through the test's own DNS server (never the
machine's resolver): at load (every address a server of its own; --check
resolves too; a name that does not resolve is a load error naming it, at
start and at a reload), again when the TTL runs out (a changed answer: the
new address gets traffic, the removed one drains), a resolver that stops
answering (the last addresses are kept, one warning), and
--resolve-interval capping a long TTL. Backends on 127.0.0.2 and 127.0.0.3
stand for the addresses of the name."""

import os
import signal
import threading

import lp
from dnsserver import DnsServer
from origin import Origin

SCRIPT = '''
local api = proxy.upstream("api", { "backend.test:%d" }, { keepalive = 8 })
function route(req)
  if req.path ~= "/_servers" then return api end
end
function on_get(req)
  local out = {}
  for _, s in ipairs(api:servers()) do out[#out + 1] = s.addr end
  table.sort(out)
  return 200, table.concat(out, " ") .. "\\n"
end
'''


class Pair:
    """Origins on 127.0.0.2 and 127.0.0.3, the same port: what a name
    resolving to both addresses stands for."""

    def __enter__(self):
        self.a = Origin(name="a", host="127.0.0.2").start()
        self.b = Origin(name="b", host="127.0.0.3", port=self.a.port).start()
        self.port = self.a.port
        return self

    def __exit__(self, *exc):
        self.a.stop()
        self.b.stop()
        return False


def servers(p):
    return lp.expect(lp.get(p.port, "/_servers"), 200).body.decode().split()


def start(dns, pair, args=(), workers=1):
    return lp.Proxy(SCRIPT % pair.port, args=["--resolver", dns.addr] + list(args), workers=workers)


def test_a_name_resolves_at_load_to_a_server_per_address():
    with Pair() as pair, DnsServer({"backend.test": ["127.0.0.2", "127.0.0.3"]}) as dns, start(dns, pair) as p:
        assert servers(p) == ["127.0.0.2:%d" % pair.port, "127.0.0.3:%d" % pair.port]
        for _ in range(20):
            lp.expect(lp.get(p.port, "/x"), 200)
        # Round robin over the two addresses, the same weight each.
        assert pair.a.requests == 10 and pair.b.requests == 10, (pair.a.requests, pair.b.requests)
        assert dns.a_questions("backend.test") >= 1


def test_etc_hosts_is_looked_at_first():
    # "localhost" is in /etc/hosts: no DNS question is asked for it.
    with Origin() as o, DnsServer({}) as dns:
        script = 'local u = proxy.upstream("u", { "localhost:%d" })\nfunction route() return u end\n' % o.port
        with lp.Proxy(script, args=["--resolver", dns.addr]) as p:
            lp.wait_until(lambda: lp.get(p.port, "/x").status == 200, what="a request through localhost")
        assert dns.a_questions("localhost") == 0, dns.questions


def test_a_name_that_does_not_resolve_at_load_is_an_error_naming_it():
    with Pair() as pair, DnsServer({"backend.test": "127.0.0.2"}) as dns:
        bad = lp.write_script(SCRIPT.replace("backend.test", "nosuch.test") % pair.port, directory=lp.make_tmpdir())
        r = lp.run_cli(["--check", "--resolver", dns.addr, bad])
        assert r.returncode == 2, r
        assert "nosuch.test:%d" % pair.port in r.stderr + r.stdout, r
        r = lp.run_cli(["--listen", "127.0.0.1:%d" % lp.free_port(), "--resolver", dns.addr, bad], timeout=15)
        assert r.returncode == 2, r
        assert "nosuch.test:%d does not resolve" % pair.port in r.stderr, r
        # A reload to such a script is refused; the running one serves on.
        with start(dns, pair) as p:
            os.rename(bad, p.script_path)
            p.send_signal(signal.SIGHUP)
            err = p.wait_stderr("reload failed", timeout=10)
            assert "nosuch.test" in err, err
            lp.expect(lp.get(p.port, "/x"), 200)
            assert servers(p) == ["127.0.0.2:%d" % pair.port]


def test_a_changed_answer_is_taken_when_the_ttl_runs_out():
    with Pair() as pair, DnsServer({"backend.test": "127.0.0.2"}, ttl=1) as dns, start(dns, pair) as p:
        lp.expect(lp.get(p.port, "/x"), 200)
        assert pair.a.requests == 1 and pair.a.open_connections == 1  # pooled
        # A request in flight on the address that goes finishes there.
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=lp.get(p.port, "/slow/1500", timeout=10)))
        t.start()
        pair.a.wait_requests(2)
        dns.records["backend.test"] = "127.0.0.3"
        lp.wait_until(lambda: servers(p) == ["127.0.0.3:%d" % pair.port], timeout=6, what="the new answer")
        t.join(10)
        assert slow["r"].status == 200 and b'"method": "GET"' in slow["r"].body, slow
        for _ in range(5):
            lp.expect(lp.get(p.port, "/x"), 200)
        assert pair.b.requests == 5 and pair.a.requests == 2
        # The address that went has no connection of ours left.
        lp.wait_until(lambda: pair.a.open_connections == 0, what="the removed address's connections to close")
        p.wait_stderr("upstream api: servers now 127.0.0.3:%d" % pair.port)


def test_addresses_that_stay_keep_their_pooled_connections():
    with Pair() as pair, DnsServer({"backend.test": "127.0.0.2"}, ttl=1) as dns, start(dns, pair) as p:
        for _ in range(3):
            lp.expect(lp.get(p.port, "/x"), 200)
        assert pair.a.connections == 1
        dns.records["backend.test"] = ["127.0.0.2", "127.0.0.3"]
        lp.wait_until(lambda: len(servers(p)) == 2, timeout=6, what="the added address")
        for _ in range(6):
            lp.expect(lp.get(p.port, "/x"), 200)
        assert pair.b.requests == 3, pair.b.requests
        assert pair.a.connections == 1, "the address that stayed lost its pooled connection"


def test_a_resolver_that_stops_answering_keeps_the_last_addresses():
    with Pair() as pair, DnsServer({"backend.test": "127.0.0.2"}, ttl=1) as dns, start(dns, pair) as p:
        dns.answering = False
        p.wait_stderr("backend.test:%d could not be resolved again" % pair.port, timeout=10)
        assert servers(p) == ["127.0.0.2:%d" % pair.port]
        lp.expect(lp.get(p.port, "/x"), 200)
        # Two more attempts later (new queries, not retransmissions), still
        # one warning for the streak.
        asked = dns.queries("backend.test")
        lp.wait_until(lambda: dns.queries("backend.test") >= asked + 2, timeout=15, what="more attempts")
        assert p.stderr_text().count("could not be resolved again") == 1, p.stderr_text()
        dns.answering = True
        p.wait_stderr("backend.test:%d resolves again" % pair.port, timeout=10)
        lp.expect(lp.get(p.port, "/x"), 200)


def test_resolve_interval_caps_a_long_ttl():
    with Pair() as pair, DnsServer({"backend.test": "127.0.0.2"}, ttl=3600) as dns:
        with start(dns, pair, args=["--resolve-interval", "1s"]) as p:
            asked = dns.a_questions("backend.test")
            dns.records["backend.test"] = "127.0.0.3"
            lp.wait_until(lambda: servers(p) == ["127.0.0.3:%d" % pair.port], timeout=5, what="re-resolution")
            assert dns.a_questions("backend.test") > asked
        # The environment sets it as well (the name now answers .3).
        with lp.Proxy(SCRIPT % pair.port, args=["--resolver", dns.addr],
                      env={"LUAPROXY_RESOLVE_INTERVAL": "1s"}) as p:
            assert servers(p) == ["127.0.0.3:%d" % pair.port]
            dns.records["backend.test"] = "127.0.0.2"
            lp.wait_until(lambda: servers(p) == ["127.0.0.2:%d" % pair.port], timeout=5, what="re-resolution")
