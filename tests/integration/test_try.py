"""luaproxy --try: the routing dry run (docs/configuration.md, "Dry run").

Each test runs the real binary once per request; nothing listens, and the
upstream servers named in the scripts are real origins that must never see
a request."""

import socket

import lp
from origin import Origin

ROUTER = '''
local api = proxy.upstream("api", { "%(a)s", "%(b)s" })
local users = proxy.upstream("users", { "%(a)s", "%(b)s", "%(c)s" }, {
  balance = "hash",
  hash_key = function(req) return req.headers["x-user"] end,
})
local picky = proxy.upstream("picky", { "%(a)s", "%(b)s", "%(c)s" }, {
  balance = function(req, servers)
    for i, s in ipairs(servers) do
      if s.addr == req.headers["x-want"] then return s end
    end
    return nil
  end,
})

function route(req)
  if req.path:find("^/api/") then
    req:set_path(req.path:sub(5))
    req:set_header("X-Api-Version", "2")
    req:set_header("cookie", nil)
    return api
  end
  if req.path == "/users" then return users end
  if req.path == "/picky" then return picky end
  if req.path == "/forbidden" then return 403, "no\\n", { ["x-reason"] = "policy" } end
  if req.path == "/boom" then
    local t = nil
    return t.field
  end
end

function on_get(req)
  return 200, table.concat({ req.method, req.path, tostring(req.query), req.uri, req.version,
                             tostring(req.headers["x-user"]), tostring(req.remote_addr),
                             tostring(req.body) }, "|") .. "\\n",
         { ["content-type"] = "text/plain", ["x-multi"] = { "1", "2" } }
end

function on_post(req)
  return 201, "got " .. req.body, { ["content-type"] = "text/plain" }
end
'''


def one_line(text):
    lines = [l for l in text.strip().split("\n") if l.strip()]
    assert len(lines) == 1, "expected one line on stderr, got %d: %r" % (len(lines), text)
    return lines[0]


def fields(stdout):
    """The 'key: value' lines before a blank line or a status line."""
    out = {}
    for line in stdout.split("\n"):
        if not line or line.startswith("HTTP/"):
            break
        k, _, v = line.partition(": ")
        out.setdefault(k, []).append(v)
    return out


class Setup:
    """Three origins (never contacted) and the router script naming them."""

    def __enter__(self):
        self.origins = [Origin(name=n).start() for n in "abc"]
        a, b, c = (o.addr for o in self.origins)
        self.path = lp.write_script(ROUTER % {"a": a, "b": b, "c": c}, name="router.lua")
        return self

    def run(self, request, *opts):
        return lp.run_cli(["--try", request] + list(opts) + [self.path])

    def __exit__(self, *exc):
        for o in self.origins:
            assert o.requests == 0 and o.connections == 0, \
                "--try connected to origin %s (%d connections)" % (o.name, o.connections)
            o.stop()
        return False


def test_upstream_decision_names_upstream_server_and_rewrites():
    with Setup() as s:
        r = s.run("GET /api/users?page=2", "-H", "Cookie: session=1", "--header", "X-User: 42")
        assert r.returncode == 0, r
        f = fields(r.stdout)
        assert f["upstream"] == ["api"], r
        assert f["balance"] == ["round_robin"], r
        assert f["server"] == [s.origins[0].addr], r
        assert f["forward"] == ["GET /users?page=2 HTTP/1.1"], r
        assert f["set-header"] == ["X-Api-Version: 2"], r
        assert f["remove-header"] == ["cookie"], r
        assert r.stderr == "", r


def test_hash_policy_is_stable_per_key_and_spreads_keys():
    with Setup() as s:
        seen = {}
        for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
            picks = set()
            for _ in range(2):
                r = s.run("GET /users", "-H", "X-User: %s" % user)
                assert r.returncode == 0, r
                f = fields(r.stdout)
                assert f["upstream"] == ["users"] and f["balance"] == ["hash"], r
                picks |= set(f["server"])
            assert len(picks) == 1, "user %s went to %r" % (user, picks)
            seen[user] = picks.pop()
        addrs = {o.addr for o in s.origins}
        assert set(seen.values()) <= addrs, seen
        assert len(set(seen.values())) >= 2, "six users all hashed to one server: %r" % seen


def test_lua_balancer_runs_and_its_choice_is_printed():
    with Setup() as s:
        want = s.origins[2].addr
        r = s.run("GET /picky", "-H", "X-Want: %s" % want)
        assert r.returncode == 0, r
        f = fields(r.stdout)
        assert f["balance"] == ["lua"] and f["server"] == [want], r
        r = s.run("GET /picky")  # the balancer returns nil: the client would get 503
        assert r.returncode == 0, r
        assert "503" in fields(r.stdout)["server"][0], r


def test_local_handler_prints_status_headers_and_body():
    with Setup() as s:
        r = s.run("GET /hello?x=1", "-H", "X-User: 42")
        assert r.returncode == 0, r
        lines = r.stdout.split("\n")
        assert lines[0] == "local: handler", r
        assert lines[1] == "HTTP/1.1 200 OK", r
        head, _, body = r.stdout.partition("\n\n")
        assert "content-type: text/plain" in head.split("\n"), r
        assert "x-multi: 1" in head.split("\n") and "x-multi: 2" in head.split("\n"), r
        assert "Server: luaproxy" in head and "Content-Length: %d" % len(body) in head, r
        # The req object a worker would build: the body is a string in handlers.
        assert body == "GET|/hello|x=1|/hello?x=1|1.1|42|127.0.0.1|\n", r


def test_post_body_reaches_the_handler():
    with Setup() as s:
        r = s.run("POST /things", "--body", "payload")
        assert r.returncode == 0, r
        assert r.stdout.split("\n")[1] == "HTTP/1.1 201 Created", r
        assert r.stdout.endswith("\n\ngot payload"), r


def test_route_answer_and_405_and_head():
    with Setup() as s:
        r = s.run("GET /forbidden")
        assert r.returncode == 0, r
        assert r.stdout.startswith("local: route\nHTTP/1.1 403 Forbidden\n"), r
        assert "x-reason: policy" in r.stdout and r.stdout.endswith("\n\nno\n"), r
        r = s.run("DELETE /x")
        assert r.returncode == 0, r
        assert "HTTP/1.1 405 Method Not Allowed" in r.stdout, r
        assert "Allow: GET, HEAD, POST" in r.stdout, r
        r = s.run("HEAD /x")
        assert r.returncode == 0, r
        assert "HTTP/1.1 200 OK" in r.stdout and r.stdout.endswith("\n\n"), r


def test_size_limits_as_the_server_applies_them():
    with Setup() as s:
        # A handler's body over --max-body-size: the 413 a client would get.
        r = s.run("POST /things", "--body", "0123456789", "--max-body-size", "8")
        assert r.returncode == 0, r
        assert r.stdout.startswith("local: rejected") and "HTTP/1.1 413" in r.stdout, r
        # A proxied body is not limited.
        r = s.run("POST /api/things", "--body", "0123456789", "--max-body-size", "8")
        assert r.returncode == 0 and r.stdout.startswith("upstream: api\n"), r
        # A head over --max-header-size is refused before the script runs.
        r = s.run("GET /hello", "-H", "X-Big: " + "x" * 600, "--max-header-size", "512")
        assert r.returncode == 2 and "431" in one_line(r.stderr), r


def test_runtime_error_in_route_exits_2_with_file_and_line():
    with Setup() as s:
        r = s.run("GET /boom")
        assert r.returncode == 2, r
        line = one_line(r.stderr)
        lineno = [l.strip() for l in ROUTER.split("\n")].index("return t.field") + 1
        assert "router.lua:%d:" % lineno in line and "route" in line, line
        assert r.stdout == "", r


def test_runtime_error_in_handler_and_balancer():
    script = ('local u = proxy.upstream("u", { "127.0.0.1:9" }, {\n'
              '  balance = function(req, servers) error("no servers for you") end })\n'
              'function route(req) if req.path == "/lb" then return u end end\n'
              'function on_get(req)\n'
              '  return 200, nil .. "x"\n'
              'end\n')
    path = lp.write_script(script, name="errs.lua")
    r = lp.run_cli(["--try", "GET /x", path])
    assert r.returncode == 2, r
    line = one_line(r.stderr)
    assert "errs.lua:5" in line and "on_get" in line, line
    r = lp.run_cli(["--try", "GET /lb", path])
    assert r.returncode == 2, r
    line = one_line(r.stderr)
    assert "errs.lua:2" in line and "no servers for you" in line, line


def test_script_load_error_exits_2_with_file_and_line():
    path = lp.write_script("function route(req)\n  return 200\n", name="unclosed.lua")
    r = lp.run_cli(["--try", "GET /", path])
    assert r.returncode == 2, r
    assert "unclosed.lua:3" in one_line(r.stderr), r
    assert r.stdout == "", r


def test_runaway_route_is_stopped_by_the_time_limit():
    path = lp.write_script("function route(req)\n  while true do end\nend\n", name="spin.lua")
    r = lp.run_cli(["--try", "GET /", "--lua-time-limit", "200ms", path], timeout=10)
    assert r.returncode == 2, r
    assert "time limit" in one_line(r.stderr), r


def test_bad_try_syntax_exits_2_with_one_line():
    with Setup() as s:
        for args, needle in ((["GET"], "--try"),
                             (["GET /a /b /c"], "--try"),
                             (["F@O /x"], "method"),  # not a token (FETCH would be a 405)
                             (["GET /x HTTP/3.0"], "505"),
                             (["GET /x", "-H", "no colon here"], "--header"),
                             (["GET /x", "-H", "bad name: v"], "--header")):
            r = s.run(*args)
            assert r.returncode == 2, (args, r)
            line = one_line(r.stderr)
            assert needle in line, "%r: stderr does not mention %r: %r" % (args, needle, line)
            assert r.stdout == "", r


def test_header_and_body_need_try():
    path = lp.write_script("function on_get(req) return 200 end\n", name="plain.lua")
    for args in (["-H", "X-A: 1"], ["--body", "x"]):
        r = lp.run_cli(args + [path])
        assert r.returncode == 2, r
        assert "--try" in one_line(r.stderr), r


def test_try_opens_no_listener():
    # The --listen port is taken: a run that tried to listen would fail.
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        path = lp.write_script('function on_get(req) return 200, "fine\\n" end\n', name="l.lua")
        r = lp.run_cli(["--try", "GET /", "--listen", "127.0.0.1:%d" % port, path])
        assert r.returncode == 0, r
        assert "HTTP/1.1 200 OK" in r.stdout and r.stdout.endswith("fine\n"), r
    finally:
        holder.close()
