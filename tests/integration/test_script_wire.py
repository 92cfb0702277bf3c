"""What a script puts on the wire is checked the same way by every call:
set_path/set_query percent-encode what a request line cannot carry, every
header-setting call (req:set_header, res:set_header, the headers a route or
a handler returns) refuses bad names and values, framing headers and a bad
Host (a 500 with the reason logged) and writes an array as repeated lines,
and a route or handler cannot answer with a 1xx."""

import lp
from origin import Origin, upstream_script


def logged_500(p, r, reason, what):
    assert r.status == 500, "%s: %r" % (what, r)
    text = p.wait_stderr(reason)
    [line] = [l for l in text.split("\n") if reason in l and "lua error" in l][-1:]
    assert "[error]" in line, line


def test_set_path_and_set_query_percent_encode():
    with Origin() as o:
        script = upstream_script([o], extra=r'''
function route(req)
  if req.path == "/p" then
    req:set_path("/a b#c\1\127/\195\169/%41")
    req:set_query("x=1 2#3&y=\195\169&z=a?b")
  end
  if req.path == "/q" then req:set_path("/x?y") end
  req:set_header("x-seen", req.path .. "|" .. tostring(req.query))
  return up
end''')
        with lp.Proxy(script) as p:
            lp.expect(lp.get(p.port, "/p"), 200)
            r = o.last()
            assert r.target == "/a%20b%23c%01%7F/%C3%A9/%41?x=1%202%233&y=%C3%A9&z=a?b", r.target
            # req.path and req.query read back what is sent.
            assert r.header("x-seen") == "/a%20b%23c%01%7F/%C3%A9/%41|x=1%202%233&y=%C3%A9&z=a?b", r.header("x-seen")
            logged_500(p, lp.get(p.port, "/q"), "use req:set_query", "set_path with '?'")
            assert o.requests == 1


def test_bad_header_values_and_host_are_errors_in_every_call():
    with Origin() as o:
        script = upstream_script([o], extra=r'''
function route(req)
  local p = req.path
  if p == "/host-space" then req:set_header("Host", "a b") end
  if p == "/host-user" then req:set_header("Host", "user@example.com") end
  if p == "/host-two" then req:set_header("Host", { "a.example", "b.example" }) end
  if p == "/host-ok" then req:set_header("Host", "example.com:8080") end
  if p == "/ctl" then req:set_header("x-a", "a\1b") end
  if p == "/crlf-array" then req:set_header("x-a", { "fine", "bad\r\nx: y" }) end
  if p == "/bad-name" then req:set_header("x a", "1") end
  if p == "/route-ctl" then return 200, "x", { ["x-a"] = { "ok", "a\0b" } } end
  if p == "/route-host" then return 200, "x", { Host = "a b" } end
  return up
end
function on_response(req, res)
  if req.path == "/res-ctl" then res:set_header("x-b", "a\127b") end
end''')
        with lp.Proxy(script) as p:
            for path, reason in (("/host-space", "Host must be host[:port]"),
                                 ("/host-user", "Host must be host[:port]"),
                                 ("/host-two", "Host takes one value"),
                                 ("/ctl", "control character"),
                                 ("/crlf-array", "control character"),
                                 ("/bad-name", "invalid header name"),
                                 ("/route-ctl", "control character"),
                                 ("/route-host", "Host must be host[:port]"),
                                 ("/res-ctl", "control character")):
                r = lp.get(p.port, path)
                assert r.status == 500, "%s: %r" % (path, r)
                text = p.wait_stderr("GET %s: " % path)
                [line] = [l for l in text.split("\n") if "GET %s: " % path in l]
                assert reason in line and "[error]" in line, "%s: %r" % (path, line)
            sent = o.requests
            assert sent == 1, "only /res-ctl reaches the origin, %d did" % sent
            lp.expect(lp.get(p.port, "/host-ok"), 200)
            assert o.last().getall("host") == ["example.com:8080"], o.last().headers


def test_framing_headers_are_refused_by_every_call():
    with Origin() as o:
        script = upstream_script([o], extra=r'''
function route(req)
  if req.path == "/route-cl" then return 200, "abc", { ["Content-Length"] = "3" } end
  if req.path == "/route-conn" then return 200, "abc", { connection = "close" } end
  return up
end
function on_response(req, res) end''')
        with lp.Proxy(script) as p, lp.Conn(p.port) as c:
            for path, reason in (("/route-cl", "content-length is managed by the proxy"),
                                 ("/route-conn", "connection is managed by the proxy")):
                r = c.request("GET", path)
                assert r.status == 500, "%s: %r" % (path, r)
                p.wait_stderr(reason)
        handler = r'''
function on_get(req) return 200, "abc", { ["transfer-encoding"] = "chunked" } end'''
        with lp.Proxy(handler) as p:
            r = lp.get(p.port, "/")
            assert r.status == 500, r
            p.wait_stderr("transfer-encoding is managed by the proxy")


def test_array_values_are_repeated_lines_in_every_call():
    with Origin() as o:
        script = upstream_script([o], extra=r'''
function route(req)
  if req.path == "/local" then
    return 200, "x", { ["X-Rep"] = { "l1", "l2" }, ["x-none"] = {}, ["x-n"] = 5, ["x-s"] = "s" }
  end
  local t = { "a", "b" }
  req:set_header("X-Rep", t)
  t[1] = "changed\r\nafter: the check"   -- the call keeps a copy
  req:set_header("X-Num", { 1, 2.5 })
  req:set_header("x-gone", {})
  req:set_header("x-seen", req.headers["x-rep"] .. "|" .. req:header("x-num") .. "|"
                 .. tostring(req.headers["x-gone"]))
  return up
end
function on_response(req, res)
  res:set_header("X-Res-Rep", { "r1", "r2" })
end''')
        with lp.Proxy(script) as p:
            r = lp.get(p.port, "/up", headers={"X-Gone": "client's"})
            assert r.status == 200, r
            assert r.getall("x-res-rep") == ["r1", "r2"], r
            got = o.last()
            assert got.getall("x-rep") == ["a", "b"], got.headers
            assert got.getall("x-num") == ["1", "2.5"], got.headers
            assert got.getall("x-gone") == [], got.headers
            assert got.header("x-seen") == "a, b|1, 2.5|nil", got.headers
            # The names go out as the script wrote them.
            names = [k for k, _ in got.headers]
            assert "X-Rep" in names and "X-Num" in names, names
            r = lp.get(p.port, "/local")
            assert r.getall("x-rep") == ["l1", "l2"] and "x-none" not in r.headers, r
            assert r.getall("x-n") == ["5"] and r.getall("x-s") == ["s"], r


def test_a_1xx_answer_from_a_script_is_a_500():
    script = r'''
function route(req)
  if req.path == "/r100" then return 100 end
  if req.path == "/r101" then return 101, "", { upgrade = "x" } end
end
function on_get(req)
  if req.path == "/h103" then return 103 end
  if req.path == "/h199" then return 199, "x" end
  return 200, "fine"
end'''
    with lp.Proxy(script) as p, lp.Conn(p.port) as c:
        for path in ("/r100", "/r101", "/h103", "/h199"):
            r = c.request("GET", path)
            assert r.status == 500, "%s: %r" % (path, r)
            text = p.wait_stderr("GET %s: " % path)
            assert "status must be a whole number from 200 to 599" in text, text
            # The connection goes on: the 500 was a whole final answer.
            lp.expect(c.request("GET", "/"), 200, b"fine", what="after %s" % path)


def test_a_local_426_may_name_its_upgrade_but_a_forwarded_request_may_not():
    script = r'''
function route(req)
  if req.path == "/set" then req:set_header("Upgrade", "websocket") end
end
function on_get(req)
  if req.path == "/set" then return 200, "not reached" end
  return 426, "upgrade first\n", { Upgrade = "TLS/1.2, HTTP/1.1" }
end'''
    with lp.Proxy(script) as p:
        r = lp.get(p.port, "/")
        assert r.status == 426, r
        assert r.header("upgrade") == "TLS/1.2, HTTP/1.1", r
        assert r.body == b"upgrade first\n", r
        # the request side still refuses it: a backend would switch protocols
        logged_500(p, lp.get(p.port, "/set"), "upgrade is managed by the proxy", "req:set_header")
