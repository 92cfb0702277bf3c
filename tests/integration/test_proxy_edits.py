"""req/res:set_header limits: the proxy's own headers (framing, connection,
X-Forwarded-*) and what a Lua balancer learns on a retry."""

import lp
from origin import Origin, dead_port, upstream_script


def test_script_x_forwarded_for_replaces_the_proxys():
    with Origin() as o:
        script = upstream_script([o], extra='''
function route(req)
    req:set_header("x-forwarded-for", "127.0.0.7")
    req:set_header("x-forwarded-proto", nil)
    return up
end''')
        with lp.Proxy(script) as p:
            lp.expect(lp.get(p.port, "/", headers={"X-Forwarded-For": "127.0.0.9"}), 200)
            r = o.last()
            assert r.getall("x-forwarded-for") == ["127.0.0.7"], r.describe()
            assert r.getall("x-forwarded-proto") == [], r.describe()
            lp.expect(lp.get(p.port, "/"), 200)


def test_default_x_forwarded_headers_still_added():
    with Origin() as o:
        with lp.Proxy(upstream_script([o])) as p:
            lp.expect(lp.get(p.port, "/", headers={"X-Forwarded-For": "127.0.0.9"}), 200)
            r = o.last()
            assert r.getall("x-forwarded-for") == ["127.0.0.9, 127.0.0.1"], r.describe()
            assert r.getall("x-forwarded-proto") == ["http"], r.describe()


def test_framing_headers_cannot_be_set_from_lua():
    for name in ("Content-Length", "transfer-encoding", "Connection", "upgrade", "TE"):
        with Origin() as o:
            script = upstream_script([o], extra='''
function route(req) req:set_header("%s", "5") return up end''' % name)
            with lp.Proxy(script) as p:
                lp.expect(lp.post(p.port, "/", "hello world"), 500)
                assert "is managed by the proxy" in p.stderr_text(), p.stderr_text()
                assert o.requests == 0


def test_response_framing_headers_cannot_be_set_from_lua():
    with Origin() as o:
        script = upstream_script([o], extra='''
function on_response(req, res) res:set_header("content-length", "1") end''')
        with lp.Proxy(script) as p:
            lp.expect(lp.get(p.port, "/size/10"), 500)
            assert "content-length is managed by the proxy" in p.stderr_text()


def test_lua_balancer_sees_tried_servers_on_retry():
    dead = dead_port()
    with Origin() as o:
        script = '''
local seen = {}
local up = proxy.upstream("b", { "127.0.0.1:%d", "%s" }, { retries = 1, balance = function(req, servers)
    local t = {}
    for i, s in ipairs(servers) do t[#t + 1] = s.addr .. "=" .. tostring(s.tried) end
    seen[#seen + 1] = table.concat(t, ",")
    for _, s in ipairs(servers) do if not s.tried then return s end end
end })
function route(req)
    if req.path == "/seen" then return 200, table.concat(seen, ";") end
    return up
end''' % (dead, o.addr)
        with lp.Proxy(script) as p:
            lp.expect(lp.get(p.port, "/x"), 200)
            body = lp.get(p.port, "/seen").body.decode()
            first, second = body.split(";")
            assert first == "127.0.0.1:%d=false,%s=false" % (dead, o.addr), body
            assert second == "127.0.0.1:%d=true,%s=false" % (dead, o.addr), body
