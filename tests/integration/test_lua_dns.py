"""SPEC §8, §11: names in scripts' sockets resolved without blocking the
worker, through --resolver (here a tiny DNS server of the test): connect to
a name, a name that does not exist, a resolver that does not answer (the
connect timeout ends the wait; the worker serves others meanwhile),
/etc/hosts names without DNS, udp setpeername by name, and the per-worker
cache that honours the answer's TTL."""

import socket
import threading

import lp
from dnsserver import DnsServer
from polledserver import PolledServer


class LineServer(PolledServer):
    """TCP: answers each connection's first line with "got:" and the line,
    then closes."""

    def __init__(self):
        PolledServer.__init__(self, socket.SOCK_STREAM)

    def serve_one(self):
        c, _ = self.sock.accept()
        with c:
            c.settimeout(5)
            data = b""
            try:
                while not data.endswith(b"\n"):
                    chunk = c.recv(100)
                    if not chunk:
                        break
                    data += chunk
                c.sendall(b"got:" + data)
            except OSError:
                pass


SCRIPT = '''
local PORT = %d
function on_get(req)
  if req.path == "/fast" then return 200, "fast\\n" end
  local name = req.query or "backend.test"
  if req.path == "/udp" then
    local u = proxy.socket.udp()
    local ok, err = u:setpeername(name, PORT)
    return 200, tostring(ok) .. "|" .. tostring(err) .. "\\n"
  end
  local s = proxy.socket.tcp()
  s:settimeout(req.path == "/slow" and 500 or 5000)
  local ok, err = s:connect(name, PORT)
  if not ok then return 502, tostring(err) .. "\\n" end
  assert(s:send("hi " .. name .. "\\n"))
  local line, rerr = s:receive()
  s:close()
  return 200, tostring(line or rerr) .. "\\n"
end
'''


def proxy_for(dns, server):
    return lp.Proxy(SCRIPT % server.port, args=["--resolver", dns.addr])


def test_a_name_resolved_through_the_resolver_is_connected_to():
    with DnsServer({"backend.test": "127.0.0.1"}) as dns, LineServer() as srv, proxy_for(dns, srv) as p:
        lp.expect(lp.get(p.port, "/tcp?backend.test"), 200, b"got:hi backend.test\n")
        assert dns.a_questions("backend.test") >= 1
        # A udp socket's setpeername resolves the same way.
        lp.expect(lp.get(p.port, "/udp?backend.test"), 200, b"1|nil\n")


def test_a_name_that_does_not_exist():
    with DnsServer({"backend.test": "127.0.0.1"}) as dns, LineServer() as srv, proxy_for(dns, srv) as p:
        r = lp.expect(lp.get(p.port, "/tcp?nosuch.test"), 502)
        assert r.body == b"nosuch.test could not be resolved (Domain name not found)\n", r.body
        lp.expect(lp.get(p.port, "/udp?nosuch.test"), 200,
                  b"nil|nosuch.test could not be resolved (Domain name not found)\n")
        assert dns.a_questions("nosuch.test") >= 1


def test_a_resolver_that_does_not_answer_times_out_and_the_worker_serves_meanwhile():
    with DnsServer({"backend.test": "127.0.0.1"}) as dns, LineServer() as srv, proxy_for(dns, srv) as p:
        dns.answering = False
        result = {}

        def slow():
            result["r"] = lp.get(p.port, "/slow?quiet.test", timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        lp.wait_until(lambda: dns.a_questions("quiet.test") >= 1, what="the question to the resolver")
        # The only worker answers while the other request waits for DNS.
        lp.expect(lp.get(p.port, "/fast"), 200, b"fast\n")
        assert t.is_alive(), "the connect did not wait for the resolver"
        t.join(10)
        r = lp.expect(result["r"], 502)
        assert r.body == b"quiet.test could not be resolved (timeout)\n", r.body
        # A resolver that answers again is used again.
        dns.answering = True
        lp.expect(lp.get(p.port, "/tcp?backend.test"), 200, b"got:hi backend.test\n")


def test_client_gone_while_its_request_waits_for_an_answer():
    with DnsServer({"backend.test": "127.0.0.1"}) as dns, LineServer() as srv, proxy_for(dns, srv) as p:
        dns.answering = False
        c = socket.create_connection(("127.0.0.1", p.port))
        c.sendall(b"GET /tcp?backend.test HTTP/1.1\r\nHost: x\r\n\r\n")
        lp.wait_until(lambda: dns.a_questions("backend.test") >= 1, what="the question to the resolver")
        client_port = c.getsockname()[1]
        c.close()
        # The proxy drops the request (its side of the connection goes) ...
        lp.wait_until(lambda: (lp._sock_diag(p.port, client_port) or (0, 0))[1] == 0,
                      what="the proxy to close the gone client's connection")
        # ... then the answer comes, for nobody.
        dns.answering = True
        dns.release()
        lp.expect(lp.get(p.port, "/tcp?backend.test"), 200, b"got:hi backend.test\n")
        assert p.alive()


def test_etc_hosts_names_need_no_dns():
    with DnsServer({}) as dns, LineServer() as srv, proxy_for(dns, srv) as p:
        dns.answering = False
        lp.expect(lp.get(p.port, "/tcp?localhost"), 200, b"got:hi localhost\n")
        assert dns.questions == []


def test_answers_are_cached_for_their_ttl():
    with DnsServer({"backend.test": "127.0.0.1"}, ttl=60) as dns, LineServer() as srv, proxy_for(dns, srv) as p:
        for _ in range(3):
            lp.expect(lp.get(p.port, "/tcp?backend.test"), 200, b"got:hi backend.test\n")
        assert dns.a_questions("backend.test") == 1, dns.questions
    with DnsServer({"backend.test": "127.0.0.1"}, ttl=0) as dns, LineServer() as srv, proxy_for(dns, srv) as p:
        for _ in range(3):
            lp.expect(lp.get(p.port, "/tcp?backend.test"), 200, b"got:hi backend.test\n")
        assert dns.a_questions("backend.test") == 3, dns.questions


def test_a_resolver_that_is_not_an_address_is_refused_at_start():
    for bad in ("not an address", "dns.example:53", "127.0.0.1:0", ":53"):
        r = lp.run_cli(["--resolver", bad, "--check", lp.write_script("function route() end")])
        assert r.returncode == 2, (bad, r)
        assert "--resolver: bad value" in r.stderr, (bad, r)


def test_resolver_address_forms_are_accepted():
    for good in ("127.0.0.1", "[::1]:53", "::1"):
        with LineServer() as srv, lp.Proxy(SCRIPT % srv.port, args=["--resolver", good]) as p:
            r = lp.get(p.port, "/slow?nothing.test", timeout=10)
            # Nothing answers there: refused or timed out, but the option was used.
            assert r.body.startswith(b"nothing.test could not be resolved ("), (good, r.body)
            assert b"bad --resolver" not in r.body, (good, r.body)
