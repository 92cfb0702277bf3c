"""SPEC §9 (changes at run time, unix sockets): up:set_servers() from a
handler reaching every worker within a second without a reload, up:servers()
as balancing sees the servers, a reload going back to what the script
declares, bad lists refused, and "unix:/path" servers pooled like TCP ones."""

import os
import signal
import time

import lp
from dnsserver import DnsServer
from origin import Origin

SCRIPT = '''
local api = proxy.upstream("api", { "%s" }, { max_fails = 1, fail_timeout = "30s" })
function route(req)
  if req.path:sub(1, 2) ~= "/_" then return api end
end
function on_post(req)
  local list = {}
  for addr in req.body:gmatch("[^,]+") do
    local a, w = addr:match("^(.-)=(%%d+)$")
    list[#list + 1] = a and { addr = a, weight = tonumber(w) } or addr
  end
  local ok, err = pcall(api.set_servers, api, list)
  if not ok then return 400, tostring(err) .. "\\n" end
  return 200, "set\\n"
end
function on_get(req)
  local out = {}
  for _, s in ipairs(api:servers()) do
    out[#out + 1] = string.format("%%s %%s %%s %%s", s.addr, type(s.weight), s.weight, tostring(s.up))
  end
  return 200, table.concat(out, ";") .. "\\n"
end
'''


def listing(conn):
    r = conn.request("GET", "/_servers")
    assert r.status == 200, r
    return r.body.decode().strip()


def test_set_servers_reaches_both_workers_within_a_second():
    with Origin(name="a") as a, Origin(name="b") as b, lp.Proxy(SCRIPT % a.addr, workers=2) as p:
        w1, w2 = p.wait_workers(2)
        c1, c2 = lp.conn_on_worker(p, w1), lp.conn_on_worker(p, w2)
        assert listing(c1) == listing(c2) == "%s number 1 true" % a.addr
        r = c1.request("POST", "/_set", body=b.addr)
        assert r.status == 200, r
        t0 = time.monotonic()
        assert listing(c1) == "%s number 1 true" % b.addr  # the caller's worker: at once
        lp.wait_until(lambda: listing(c2) == "%s number 1 true" % b.addr, timeout=1.0, interval=0.02,
                      what="the other worker to take the new list")
        assert time.monotonic() - t0 < 1.0
        for c in (c1, c2):
            r = c.request("GET", "/x")
            assert r.status == 200 and r.header("X-Origin") == "b", r
        assert a.requests == 0
        c1.close()
        c2.close()


def test_servers_lists_addr_weight_and_up_as_balancing_sees_them():
    dead = "127.0.0.1:%d" % lp.free_port()
    with Origin(name="a") as a, lp.Proxy(SCRIPT % a.addr) as p:
        lp.expect(lp.post(p.port, "/_set", "%s=3,%s" % (a.addr, dead)), 200, b"set\n")
        before = lp.get(p.port, "/_servers").body.decode().strip()
        assert before == "%s number 3 true;%s number 1 true" % (a.addr, dead), before
        # Weights 3:1: one of four requests tries the dead one, whose failed
        # connect (max_fails = 1) takes it out; the request goes on to a.
        for _ in range(4):
            lp.expect(lp.get(p.port, "/x"), 200)
        after = lp.get(p.port, "/_servers").body.decode().strip()
        assert after == "%s number 3 true;%s number 1 false" % (a.addr, dead), after


def test_a_reload_goes_back_to_the_declared_servers():
    with Origin(name="a") as a, Origin(name="b") as b, lp.Proxy(SCRIPT % a.addr, workers=2) as p:
        lp.expect(lp.post(p.port, "/_set", b.addr), 200)
        w1, w2 = p.wait_workers(2)
        conns = [lp.conn_on_worker(p, w) for w in (w1, w2)]
        lp.wait_until(lambda: all(listing(c) == "%s number 1 true" % b.addr for c in conns), timeout=1.0,
                      what="both workers on b")
        for c in conns:
            c.close()
        p.send_signal(signal.SIGHUP)
        p.wait_stderr("generation 1 loaded")
        lp.wait_until(lambda: p.stderr_text().count("generation 1 loaded") == 2, what="both workers reloaded")
        conns = [lp.conn_on_worker(p, w) for w in (w1, w2)]
        for c in conns:
            assert listing(c) == "%s number 1 true" % a.addr
            r = c.request("GET", "/x")
            assert r.header("X-Origin") == "a", r
            c.close()


def test_a_bad_list_is_refused_naming_the_server():
    with Origin(name="a") as a, lp.Proxy(SCRIPT % a.addr) as p:
        r = lp.expect(lp.post(p.port, "/_set", "%s,nowhere" % a.addr), 400)
        assert b"set_servers: server 2: bad address 'nowhere'" in r.body, r.body
        assert lp.get(p.port, "/_servers").body.decode().strip() == "%s number 1 true" % a.addr


def test_set_servers_takes_names_resolved_on_the_loop():
    with Origin(name="a") as a, Origin(name="b") as b, DnsServer({"b.test": "127.0.0.1"}) as dns:
        with lp.Proxy(SCRIPT % a.addr, args=["--resolver", dns.addr]) as p:
            lp.expect(lp.post(p.port, "/_set", "b.test:%d" % b.port), 200)
            lp.wait_until(lambda: lp.get(p.port, "/_servers").body.decode().strip() ==
                          "%s number 1 true" % b.addr, timeout=3, what="the name resolved")
            assert lp.get(p.port, "/x").header("X-Origin") == "b"


def test_unix_socket_servers_are_pooled():
    path = os.path.join(lp.make_tmpdir(), "origin.sock")
    with Origin(name="u", host=path) as o, lp.Proxy(SCRIPT % ("unix:" + path)) as p:
        for _ in range(30):
            r = lp.get(p.port, "/size/1000")
            assert r.status == 200 and len(r.body) == 1000 and r.header("X-Origin") == "u", r
        assert o.requests == 30
        assert o.connections <= 2, o.connections
        o.assert_clean()


def test_set_servers_is_refused_inside_balance():
    # balance chooses over the very array a change would replace.
    with Origin(name="a") as a:
        script = '''
local api
api = proxy.upstream("api", { "%s" }, { balance = function(req, servers)
  api:set_servers({ "%s" })
  return 1
end })
function route(req) return api end
''' % (a.addr, a.addr)
        with lp.Proxy(script) as p:
            lp.expect(lp.get(p.port, "/x"), 500)
            p.wait_stderr("set_servers: not in balance")
            assert a.requests == 0


def test_requests_in_flight_survive_changes_of_the_list():
    # 20 changes while 6 clients keep slow requests in flight: every one is
    # answered, by one of the two (old arrays stay until their requests end).
    import threading
    with Origin(name="a") as a, Origin(name="b") as b, lp.Proxy(SCRIPT % a.addr, workers=2) as p:
        stop, bad, done = threading.Event(), [], []

        def client():
            c = lp.Conn(p.port)
            try:
                while not stop.is_set():
                    r = c.request("GET", "/slow/30")
                    if r.status != 200 or r.header("X-Origin") not in ("a", "b"):
                        bad.append(r)
                    done.append(1)
            finally:
                c.close()
        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            for i in range(20):
                lp.expect(lp.post(p.port, "/_set", (b if i % 2 == 0 else a).addr + ",127.0.0.1:%d=2" % (
                    b.port if i % 3 else a.port)), 200)
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        assert not bad, bad[:3]
        assert len(done) >= 20, len(done)
        a.assert_clean()
        b.assert_clean()


def test_a_restarted_worker_takes_the_changed_list():
    with Origin(name="a") as a, Origin(name="b") as b, lp.Proxy(SCRIPT % a.addr, workers=1) as p:
        lp.expect(lp.post(p.port, "/_set", b.addr), 200)
        (old,) = p.wait_workers(1)
        os.kill(old, signal.SIGKILL)
        lp.wait_until(lambda: (lambda w: len(w) == 1 and w[0] != old)(p.worker_pids()), what="a new worker")
        lp.wait_until(lambda: lp.get(p.port, "/_servers").body.decode().strip() == "%s number 1 true" % b.addr,
                      timeout=3, what="the new worker on b")
