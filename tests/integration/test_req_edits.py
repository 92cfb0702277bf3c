"""req.headers and res.headers show the set_header edits made before their
first read, not only those made after (docs/lua-api.md, "req")."""

import json

import lp
from origin import Origin, upstream_script


def test_req_headers_built_after_set_header_shows_the_edit():
    script = ('function route(req)\n'
              '  req:set_header("X-Added", "1")\n'
              '  req:set_header("x-gone", nil)\n'
              '  return 200, tostring(req.headers["x-added"]) .. " " .. tostring(req.headers["x-gone"])\n'
              'end\n')
    with lp.Proxy(script) as p:
        r = lp.get(p.port, "/", headers={"X-Gone": "still here"})
        assert r.status == 200 and r.body == b"1 nil", r


def test_res_headers_built_after_set_header_shows_the_edit():
    with Origin(name="o") as o:
        script = upstream_script([o], extra=(
            'function on_response(req, res)\n'
            '  res:set_header("x-later", "yes")\n'
            '  res:set_header("x-origin", nil)\n'
            '  res:set_header("x-seen", tostring(res.headers["x-later"]) .. "/"\n'
            '                 .. tostring(res.headers["x-origin"]))\n'
            'end\n'))
        with lp.Proxy(script) as p:
            r = lp.get(p.port, "/")
            assert r.status == 200, r
            assert r.headers.get("x-seen") == "yes/nil", r
            assert "x-origin" not in r.headers, r
            assert json.loads(r.body)["path"] == "/", r


def test_req_header_reads_one_header_with_edits():
    script = r'''
function on_get(req)
    local before = tostring(req:header("X-Multi")) .. "|" .. tostring(req:header("x-none"))
    req:set_header("x-multi", nil)
    req:set_header("X-Added", "yes")
    local after = tostring(req:header("x-multi")) .. "|" .. req:header("x-added") .. "|" .. req:header("HOST")
    return 200, before .. "/" .. after .. "/" .. tostring(req.path) .. "/" .. tostring(req.query)
end'''
    with lp.Proxy(script) as p:
        c = lp.Conn(p.port)
        c.send(b"GET /p?q=1 HTTP/1.1\r\nHost: h1\r\nx-multi: a\r\nX-Multi: b\r\n\r\n")
        r = c.read_response()
        assert r.body == b"a, b|nil/nil|yes|h1//p/q=1", r.body
        c.close()
