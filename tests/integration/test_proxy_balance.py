"""SPEC §3/§5: balancing policies (round_robin with weights, least_conn,
random, hash with hash_key, a custom Lua balance function)."""

import threading

import lp
from origin import Origin, start_origins, upstream_script


def _stop(origins):
    for o in origins:
        o.stop()


def _who(r, what=""):
    assert r.status == 200, "%s%r" % (what + ": " if what else "", r)
    name = r.header("x-origin")
    assert name, "no X-Origin in %r" % r
    return name


def _count(port, n, conns=4, headers=None, path="/echo"):
    counts = {}
    cs = [lp.Conn(port) for _ in range(conns)]
    try:
        for i in range(n):
            name = _who(cs[i % conns].request("GET", "%s?i=%d" % (path, i), headers=headers), "request %d" % i)
            counts[name] = counts.get(name, 0) + 1
    finally:
        for c in cs:
            c.close()
    return counts


def test_round_robin_weights_3_to_1():
    a, b = origins = start_origins(2)
    try:
        for workers in (1, 2):
            script = upstream_script([(a, 3), (b, 1)], 'balance = "round_robin"')
            with lp.Proxy(script, workers=workers) as p:
                counts = _count(p.port, 400)
            share = counts.get("a", 0) / 400.0
            assert 0.65 <= share <= 0.85, "weights 3:1 with -w %d gave %r (%.0f%% to a)" % (
                workers, counts, share * 100)
            assert counts.get("b", 0) > 0, counts
        # the default policy is round_robin: equal weights split evenly
        with lp.Proxy(upstream_script([a, b]), workers=1) as p:
            counts = _count(p.port, 100)
        assert 40 <= counts.get("a", 0) <= 60, "default round_robin gave %r" % counts
        for o in origins:
            o.assert_clean()
    finally:
        _stop(origins)


def test_least_conn_prefers_the_idle_server():
    a = Origin(name="a", delay_ms=150).start()      # slow: stays busy
    b = Origin(name="b", delay_ms=5).start()
    try:
        script = upstream_script([a, b], 'balance = "least_conn"')
        counts = {}
        errors = []
        lock = threading.Lock()
        with lp.Proxy(script, workers=1) as p:
            def client(k):
                try:
                    with lp.Conn(p.port, timeout=10) as c:
                        for i in range(15):
                            name = _who(c.request("GET", "/echo?c=%d&i=%d" % (k, i)))
                            with lock:
                                counts[name] = counts.get(name, 0) + 1
                except Exception as e:
                    with lock:
                        errors.append(repr(e))
            ts = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(6)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(30)
        assert not errors, "least_conn: %s" % errors[:3]
        assert sum(counts.values()) == 90, counts
        assert counts.get("a", 0) >= 1 and counts.get("b", 0) >= 1, "least_conn used one server only: %r" % counts
        assert counts["b"] > 2 * counts["a"], \
            "least_conn sent %r (the 150 ms server should get far fewer)" % counts
        a.assert_clean()
        b.assert_clean()
    finally:
        _stop([a, b])


def test_random_uses_both():
    origins = start_origins(2)
    try:
        with lp.Proxy(upstream_script(origins, 'balance = "random"'), workers=1) as p:
            counts = _count(p.port, 200)
        assert sum(counts.values()) == 200
        assert 0.25 <= counts.get("a", 0) / 200.0 <= 0.75, "random gave %r" % counts
    finally:
        _stop(origins)


HASH_OPTS = 'balance = "hash", hash_key = function(req) return req.headers["x-user"] end'


def _conns_on_two_workers(p):
    """Two client connections that two different workers hold."""
    workers = p.wait_workers(2)
    for _ in range(50):
        c1, c2 = lp.Conn(p.port), lp.Conn(p.port)
        for c in (c1, c2):
            _who(c.request("GET", "/h", headers={"X-User": "probe"}), "probe")
        w1, w2 = lp.holder_of(p.port, c1, workers), lp.holder_of(p.port, c2, workers)
        if w1 and w2 and w1 != w2:
            return c1, c2
        c1.close()
        c2.close()
    raise AssertionError("50 pairs of connections never landed on two different workers")


def _hash_map(port, keys, p=None):
    """key -> origin name, each key asked twice on different connections
    (on two different workers when p, the Proxy, is given); both must agree."""
    out = {}
    c1, c2 = _conns_on_two_workers(p) if p else (lp.Conn(port), lp.Conn(port))
    try:
        for k in keys:
            n1 = _who(c1.request("GET", "/h", headers={"X-User": k}), "key %s" % k)
            n2 = _who(c2.request("GET", "/h", headers={"X-User": k}), "key %s" % k)
            assert n1 == n2, "key %s went to %s and then to %s" % (k, n1, n2)
            out[k] = n1
    finally:
        c1.close()
        c2.close()
    return out


def test_hash_consistent_and_minimal_remap():
    origins = start_origins(4)
    keys = ["user-%d" % i for i in range(200)]
    try:
        with lp.Proxy(upstream_script(origins[:3], HASH_OPTS), workers=2) as p:
            m3 = _hash_map(p.port, keys, p)
        used = set(m3.values())
        assert len(used) == 3, "200 keys over 3 servers used only %r" % used
        for name in used:
            share = sum(1 for v in m3.values() if v == name) / 200.0
            assert share >= 0.1, "hash put %.0f%% of keys on %s: %r" % (share * 100, name, m3)
        with lp.Proxy(upstream_script(origins, HASH_OPTS), workers=2) as p:
            m4 = _hash_map(p.port, keys, p)
        moved = [k for k in keys if m3[k] != m4[k]]
        frac = len(moved) / 200.0
        assert 0.10 <= frac <= 0.45, "adding a 4th server moved %d of 200 keys (%.0f%%); expected about 25%%" % (
            len(moved), frac * 100)
        for o in origins:
            o.assert_clean()
    finally:
        _stop(origins)


BALANCER = r'''
local fields = proxy.shared("fields")
local up = proxy.upstream("custom", { { addr = "%(a)s", weight = 2 }, "%(b)s" }, {
  balance = function(req, servers)
    local s = servers[1]
    fields:set("desc", string.format("%%d|%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s|%%s",
      #servers, type(s.addr), tostring(s.addr), type(s.weight), tostring(s.weight),
      type(s.active), type(s.fails), tostring(s.fails), type(s.up), tostring(s.up)))
    fields:set("addr2", tostring(servers[2].addr))
    local pick = req.headers["x-pick"]
    if pick == nil or pick == "none" then return nil end
    if pick:sub(1, 1) == "#" then return tonumber(pick:sub(2)) end
    for _, srv in ipairs(servers) do
      if srv.addr == pick then return srv end
    end
    return nil
  end,
})
function route(req)
  if req.path == "/fields" then return end
  return up
end
function on_get(req)
  return 200, (fields:get("desc") or "none") .. "|" .. (fields:get("addr2") or "none")
end
'''


def test_custom_balancer_function():
    a, b = origins = start_origins(2)
    try:
        with lp.Proxy(BALANCER % {"a": a.addr, "b": b.addr}, workers=1) as p, lp.Conn(p.port) as c:
            for pick, want in ((a.addr, "a"), (b.addr, "b"), ("#1", "a"), ("#2", "b"), (b.addr, "b")):
                r = c.request("GET", "/echo", headers={"X-Pick": pick})
                assert r.status == 200 and r.header("x-origin") == want, \
                    "balance returning %s should reach %s: %r" % (pick, want, r)
            for pick in ("none", None):
                r = c.request("GET", "/echo", headers={"X-Pick": pick} if pick else {})
                assert r.status == 503, "balance returning nil: expected 503, got %r" % r
            r = c.request("GET", "/fields")
            assert r.status == 200, r
            f = r.body.decode().split("|")
            want = ["2", "string", a.addr, "number", "2", "number", "number", "0", "boolean", "true", b.addr]
            assert f == want, "servers table fields (n|type(addr)|addr|type(weight)|weight|type(active)|" \
                              "type(fails)|fails|type(up)|up|addr2): got %r, want %r" % (f, want)
        assert a.requests == 2 and b.requests == 3, "a saw %d, b saw %d" % (a.requests, b.requests)
    finally:
        _stop(origins)
