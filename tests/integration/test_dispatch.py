"""SPEC §3: route(), on_<method> handlers, 405/Allow, HEAD, response
headers, and the fields of req."""

import lp

APP = r'''
function route(req)
  if req.path == "/route" then
    return 418, "teapot\n", { ["x-route"] = "yes", ["content-type"] = "text/plain" }
  end
  if req.path == "/route-status-only" then return 403 end
  if req.path == "/route-nil-body" then return 202, nil, { ["x-nil"] = "1" } end
  -- nothing returned: on_<method>
end

function on_get(req)
  if req.path == "/multi" then
    return 200, "m", { ["set-cookie"] = { "a=1", "b=2", "c=3" }, ["x-one"] = "1" }
  end
  if req.path == "/empty" then return 204 end
  return 200, "get " .. req.path, { ["x-handler"] = "on_get" }
end
function on_post(req)   return 201, "post " .. req.body end
function on_put(req)    return 200, "put " .. req.body end
function on_patch(req)  return 200, "patch " .. req.body end
function on_delete(req) return 204 end
function on_options(req) return 200, "", { ["x-options"] = "yes" } end
'''


def test_route_returns_status_body_headers():
    with lp.Proxy(APP) as p:
        r = lp.get(p.port, "/route")
        assert r.status == 418 and r.body == b"teapot\n", r
        assert r.headers.get("x-route") == "yes" and r.headers.get("content-type") == "text/plain", r
        # route() answers for every method, not only GET.
        r = lp.request(p.port, "POST", "/route", body=b"ignored")
        assert r.status == 418 and r.body == b"teapot\n", r


def test_route_status_only():
    with lp.Proxy(APP) as p:
        r = lp.get(p.port, "/route-status-only")
        assert r.status == 403, r
        assert r.headers.get("content-length") == "0" and r.body == b"", r
        r = lp.get(p.port, "/route-nil-body")
        assert r.status == 202 and r.body == b"" and r.headers.get("x-nil") == "1", r


def test_route_nothing_goes_to_handler():
    with lp.Proxy(APP) as p:
        r = lp.get(p.port, "/somewhere")
        assert r.status == 200 and r.body == b"get /somewhere", r
        assert r.headers.get("x-handler") == "on_get", r


def test_handlers_for_each_method():
    with lp.Proxy(APP) as p:
        r = lp.request(p.port, "POST", "/p", body=b"one")
        assert (r.status, r.body) == (201, b"post one"), r
        r = lp.request(p.port, "PUT", "/p", body=b"two")
        assert (r.status, r.body) == (200, b"put two"), r
        r = lp.request(p.port, "PATCH", "/p", body=b"three")
        assert (r.status, r.body) == (200, b"patch three"), r
        r = lp.request(p.port, "DELETE", "/p")
        assert (r.status, r.body) == (204, b""), r
        r = lp.request(p.port, "OPTIONS", "/p")
        assert r.status == 200 and r.headers.get("x-options") == "yes", r


def test_no_route_function_uses_handlers():
    with lp.Proxy('function on_get(req) return 200, "plain" end') as p:
        lp.expect(lp.get(p.port, "/x"), 200, b"plain")


def allow_set(r):
    assert "allow" in r.headers, "405 without Allow: %r" % r
    return {m.strip().upper() for m in r.headers["allow"].split(",") if m.strip()}


def test_405_allow_lists_handlers():
    with lp.Proxy('function on_get(req) return 200 end\nfunction on_post(req) return 200 end') as p:
        for m in ("DELETE", "PUT", "PATCH", "OPTIONS"):
            r = lp.request(p.port, m, "/x")
            assert r.status == 405, "%s: %r" % (m, r)
            assert allow_set(r) == {"GET", "HEAD", "POST"}, "%s: Allow %r" % (m, r.headers["allow"])
            assert int(r.headers.get("content-length", -1)) == len(r.body), r


def test_405_allow_without_get_has_no_head():
    with lp.Proxy('function on_post(req) return 200 end') as p:
        for m in ("GET", "HEAD"):
            r = lp.request(p.port, m, "/x")
            assert r.status == 405, "%s: %r" % (m, r)
            assert allow_set(r) == {"POST"}, "%s: Allow %r" % (m, r.headers["allow"])


def test_405_allow_many_handlers():
    with lp.Proxy(APP) as p:
        r = lp.request(p.port, "TRACE", "/x")
        assert r.status == 405, r
        assert allow_set(r) == {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, r


def test_405_when_route_returns_nothing_and_no_handler():
    with lp.Proxy('function route(req) end') as p:
        r = lp.get(p.port, "/")
        assert r.status == 405, r
        assert allow_set(r) == set(), r


def test_head_through_on_get():
    with lp.Proxy(APP) as p, lp.Conn(p.port) as c:
        g = c.request("GET", "/sized")
        assert g.status == 200 and g.body == b"get /sized", g
        # HEAD then GET on the same connection: if HEAD carried a body, the
        # GET's response would not parse.
        c.send(lp.build_request("HEAD", "/sized") + lp.build_request("GET", "/after"))
        h = c.read_response(head=True)
        assert h.status == 200, h
        assert h.headers.get("content-length") == str(len(g.body)), \
            "HEAD Content-Length %r, GET body is %d bytes" % (h.headers.get("content-length"), len(g.body))
        assert h.headers.get("x-handler") == "on_get", h
        r = c.read_response()
        assert r.status == 200 and r.body == b"get /after", "after HEAD: %r" % r


def test_head_uses_on_head_when_defined():
    script = ('function on_get(req) return 200, "body-of-get" end\n'
              'function on_head(req) return 200, "head-body", { ["x-from"] = "on_head" } end\n')
    with lp.Proxy(script) as p, lp.Conn(p.port) as c:
        # http.client drops a HEAD answer's body unread: on a raw connection
        # a body after the head would be read as the next response. on_head's
        # body is measured, not sent.
        c.send(lp.build_request("HEAD", "/") + lp.build_request("GET", "/"))
        r = c.read_response(head=True)
        assert r.status == 200 and r.headers.get("x-from") == "on_head", r
        assert r.headers.get("content-length") == "9", r
        lp.expect(c.read_response(), 200, b"body-of-get", what="GET after HEAD")


def test_array_header_values_repeat():
    with lp.Proxy(APP) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/multi")
        assert r.status == 200 and r.body == b"m", r
        assert r.getall("set-cookie") == ["a=1", "b=2", "c=3"], r.header_list
        assert r.getall("x-one") == ["1"], r.header_list


def test_204_has_no_body():
    with lp.Proxy(APP) as p, lp.Conn(p.port) as c:
        c.send(lp.build_request("GET", "/empty") + lp.build_request("GET", "/next"))
        r = c.read_response()
        assert r.status == 204, r
        r = c.read_response()
        assert r.status == 200 and r.body == b"get /next", "after 204: %r" % r


ECHO_REQ = r'''
local function dump(req)
  local out = {}
  local function add(k, v) out[#out + 1] = k .. "=" .. tostring(v) end
  add("method", req.method)
  add("path", req.path)
  add("query", req.query)
  add("querytype", type(req.query))
  add("uri", req.uri)
  add("version", req.version)
  add("body", req.body)
  add("bodytype", type(req.body))
  add("remote_addr", req.remote_addr)
  add("remote_port", req.remote_port)
  local names = {}
  for k in pairs(req.headers) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do add("h:" .. k, req.headers[k]) end
  return 200, table.concat(out, "\n") .. "\n"
end
on_get, on_post, on_put, on_delete = dump, dump, dump, dump
'''


def fields(body):
    out = {}
    for line in body.decode().split("\n"):
        if line:
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_req_fields():
    with lp.Proxy(ECHO_REQ) as p, lp.Conn(p.port) as c:
        c.send(b"POST /a%20b/c.txt?x=1&y=%41 HTTP/1.1\r\nHost: example.test\r\n"
               b"X-Mixed-Case: Value One\r\nX-Multi: a\r\nX-Multi: b\r\n"
               b"Content-Length: 7\r\n\r\npayload")
        r = lp.expect(c.read_response(), 200)
        f = fields(r.body)
        want = {
            "method": "POST", "path": "/a%20b/c.txt", "query": "x=1&y=%41",
            "uri": "/a%20b/c.txt?x=1&y=%41", "version": "1.1", "body": "payload",
            "remote_addr": "127.0.0.1", "remote_port": str(c.local_port),
            "h:host": "example.test", "h:x-mixed-case": "Value One", "h:x-multi": "a, b",
            "h:content-length": "7",
        }
        for k, v in want.items():
            assert f.get(k) == v, "req.%s: got %r, want %r (all: %r)" % (k, f.get(k), v, f)
        assert not any(k.startswith("h:") and k != k.lower() for k in f), f


def test_req_query_nil_without_question_mark():
    with lp.Proxy(ECHO_REQ) as p:
        f = fields(lp.expect(lp.get(p.port, "/plain"), 200).body)
        assert f["query"] == "nil" and f["querytype"] == "nil", f
        assert f["uri"] == "/plain" and f["path"] == "/plain", f
        assert f["body"] == "" and f["bodytype"] == "string", "GET body: %r" % f


def test_req_version_10():
    with lp.Proxy(ECHO_REQ) as p, lp.Conn(p.port) as c:
        r = lp.expect(c.request("GET", "/v?q", version="1.0"), 200)
        f = fields(r.body)
        assert f["version"] == "1.0" and f["query"] == "q", f


def test_req_method_put_delete():
    with lp.Proxy(ECHO_REQ) as p:
        f = fields(lp.expect(lp.request(p.port, "PUT", "/x", body=b"1"), 200).body)
        assert f["method"] == "PUT" and f["body"] == "1", f
        f = fields(lp.expect(lp.request(p.port, "DELETE", "/x"), 200).body)
        assert f["method"] == "DELETE", f


def test_bad_handler_status_is_500():
    script = ('function on_get(req)\n'
              '  if req.path == "/999" then return 999 end\n'
              '  if req.path == "/str" then return "abc" end\n'
              '  return 200, "ok"\n'
              'end\n')
    with lp.Proxy(script) as p:
        for path in ("/999", "/str"):
            r = lp.get(p.port, path)
            assert r.status == 500, "%s: %r" % (path, r)
        lp.expect(lp.get(p.port, "/"), 200)
