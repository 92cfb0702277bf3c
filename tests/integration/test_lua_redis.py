"""SPEC §8 with a real redis-server: proxy.socket.tcp, and Debian's
lua-nginx-redis (`require "nginx.redis"`) running unchanged on the ngx
shim. The headline: two luaproxy instances enforce one rate limit through
one Redis. Then Redis killed, stopped with SIGSTOP (the script's timeout
fires while the worker serves everything else), and back."""

import threading
import time

import lp
import redis


def line_server(handle, accepted=None):
    """A TCP server on 127.0.0.1 calling handle(conn) in a thread per
    connection; returns (port, stop)."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    stop_flag = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop_flag.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            if accepted is not None:
                accepted.append(c)
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    th = threading.Thread(target=serve, daemon=True)
    th.start()

    def stop():
        stop_flag.set()
        th.join(2)
        srv.close()
    return srv.getsockname()[1], stop

LIMITER = '''
local redis = require "nginx.redis"
local PORT = %d

local function conn()
  local r = redis:new()
  r:set_timeout(300)
  local ok, err = r:connect("127.0.0.1", PORT)
  if not ok then return nil, err end
  return r
end

function route(req)
  if req.path == "/fast" then return 200, "fast\\n" end
  local r, err = conn()
  if not r then return 503, "redis: " .. tostring(err) .. "\\n" end
  if req.path == "/limited" then
    local key = "rl:" .. (req.headers["x-client"] or "anon")
    local n, err = r:incr(key)
    if not n then return 503, "redis: " .. tostring(err) .. "\\n" end
    if n == 1 then r:expire(key, 60) end
    r:set_keepalive(10000, 16)
    if n > 10 then return 429, "over the limit\\n" end
    return 200, "ok " .. n .. "\\n"
  end
  if req.path == "/set" then
    local ok, err = r:set("shared", req.query)
    r:set_keepalive(10000, 16)
    return ok and 200 or 503, tostring(ok or err) .. "\\n"
  end
  if req.path == "/get" then
    local v, err = r:get("shared")
    r:set_keepalive(10000, 16)
    if v == ngx.null then return 404, "null\\n" end
    return v and 200 or 503, tostring(v or err) .. "\\n"
  end
end
'''


def test_two_instances_share_one_rate_limit_through_redis():
    with redis.start() as rd:
        script = LIMITER % rd.port
        env = redis.lua_env()
        with lp.Proxy(script, env=env) as a, lp.Proxy(script, env=env) as b:
            statuses = []
            for i in range(20):
                p = a if i % 2 == 0 else b
                r = lp.get(p.port, "/limited", headers={"X-Client": "c1"})
                statuses.append(r.status)
            assert statuses.count(200) == 10, statuses
            assert statuses.count(429) == 10, statuses
            assert statuses[:10] == [200] * 10, statuses
            # Another client has its own budget.
            lp.expect(lp.get(b.port, "/limited", headers={"X-Client": "c2"}), 200, b"ok 1\n")
            # Written through one, read through the other.
            lp.expect(lp.get(a.port, "/set?v42"), 200, b"OK\n")
            lp.expect(lp.get(b.port, "/get"), 200, b"v42\n")
            assert str(rd.command("GET", "rl:c1")) == "20"


def test_pooled_redis_connections_are_reused():
    with redis.start() as rd:
        script = ('local redis = require "nginx.redis"\n'
                  'function on_get(req)\n'
                  '  local r = redis:new()\n'
                  '  assert(r:connect("127.0.0.1", %d))\n'
                  '  local reused = r:get_reused_times()\n'
                  '  assert(r:incr("n"))\n'
                  '  r:set_keepalive(10000, 4)\n'
                  '  return 200, tostring(reused)\n'
                  'end\n') % rd.port
        with lp.Proxy(script, env=redis.lua_env()) as p:
            seen = [int(lp.get(p.port, "/").body) for _ in range(8)]
        assert seen == list(range(8)), seen
        assert str(rd.command("GET", "n")) == "8"


def test_redis_killed_stopped_and_back():
    rd = redis.start()
    try:
        with lp.Proxy(LIMITER % rd.port, env=redis.lua_env()) as p:
            lp.expect(lp.get(p.port, "/limited"), 200, b"ok 1\n")
            rd.kill()
            r = lp.get(p.port, "/limited")
            assert r.status == 503 and b"redis:" in r.body, r
            rd.restart()
            lp.expect(lp.get(p.port, "/limited"), 200, b"ok 1\n")
            # Stopped: the script's 300 ms timeout fires; meanwhile the
            # worker serves everything else at once.
            rd.pause()
            result = {}

            def slow():
                t0 = time.monotonic()
                result["r"] = lp.get(p.port, "/limited")
                result["t"] = time.monotonic() - t0
            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.05)
            t0 = time.monotonic()
            for _ in range(5):
                lp.expect(lp.get(p.port, "/fast"), 200, b"fast\n")
            assert time.monotonic() - t0 < 0.25, "a request waiting on Redis blocked the worker"
            t.join(5)
            assert result["r"].status == 503 and b"timeout" in result["r"].body, result
            assert 0.25 <= result["t"] < 2.0, result["t"]
            rd.resume()
            # The INCR that timed out was sent: Redis counts it once it runs.
            lp.expect(lp.get(p.port, "/limited"), 200, b"ok 3\n")
            assert p.alive()
    finally:
        rd.stop()


def test_socket_calls_and_their_failures():
    # A tiny line server: echoes "got <line>", closes on "bye", sends a
    # partial line then closes on "partial".
    def handle(c):
        f = c.makefile("rb")
        for line in f:
            line = line.strip()
            if line == b"bye":
                break
            if line == b"partial":
                c.sendall(b"half a li")
                break
            if line == b"silent":
                continue
            if line == b"boundary":
                c.sendall(b"hello, world\r\n--abcedhb")
                time.sleep(0.05)
                c.sendall(b"next part\r\n--abcedhbtail")
                continue
            c.sendall(b"got " + line + b"\r\n--END--tail")
        c.close()

    port, stop = line_server(handle)
    dead = lp.free_port()
    script = ('local PORT, DEAD = %d, %d\n'
              'function on_get(req)\n'
              '  local s = proxy.socket.tcp()\n'
              '  s:settimeout(200)\n'
              '  if req.path == "/refused" then\n'
              '    local ok, err = s:connect("127.0.0.1", DEAD)\n'
              '    return 200, tostring(ok) .. " " .. tostring(err)\n'
              '  end\n'
              '  assert(s:connect("127.0.0.1", PORT))\n'
              '  if req.path == "/nested" then\n'
              '    local n = assert(s:send({"he", {"ll", {"o"}}, "\\n"}))\n'
              '    local line = s:receive("*l")\n'
              '    local rest = s:receiveuntil("--END--")()\n'
              '    local tail = s:receive(4)\n'
              '    s:close()\n'
              '    return 200, n .. "|" .. line .. "|" .. rest .. "|" .. tail\n'
              '  end\n'
              '  if req.path == "/timeout" then\n'
              '    s:send("silent\\n")\n'
              '    local data, err, partial = s:receive()\n'
              '    return 200, tostring(data) .. " " .. err .. " [" .. tostring(partial) .. "]"\n'
              '  end\n'
              '  if req.path == "/partial" then\n'
              '    s:send("partial\\n")\n'
              '    local data, err, partial = s:receive()\n'
              '    return 200, tostring(data) .. " " .. err .. " [" .. partial .. "]"\n'
              '  end\n'
              '  if req.path == "/chunks" then\n'
              '    s:send("boundary\\n")\n'
              '    local incl = req.query == "inclusive"\n'
              '    local reader = s:receiveuntil("\\r\\n--abcedhb", {inclusive = incl})\n'
              '    local out = {}\n'
              '    for part = 1, 2 do\n'
              '      while true do\n'
              '        local data, err = reader(4)\n'
              '        if not data then\n'
              '          if err then return 200, "error " .. err end\n'
              '          out[#out + 1] = "|"\n'
              '          break\n'
              '        end\n'
              '        out[#out + 1] = "[" .. data .. "]"\n'
              '      end\n'
              '    end\n'
              '    return 200, table.concat(out) .. s:receive(4)\n'
              '  end\n'
              '  if req.path == "/all" then\n'
              '    s:send("x\\nbye\\n")\n'
              '    return 200, s:receive("*a")\n'
              '  end\n'
              '  if req.path == "/unread" then\n'
              '    s:send("x\\n")\n'
              '    s:receive(2)\n'
              '    local ok, err = s:setkeepalive()\n'
              '    return 200, tostring(ok) .. " " .. tostring(err)\n'
              '  end\n'
              'end\n') % (port, dead)
    try:
        with lp.Proxy(script) as p:
            lp.expect(lp.get(p.port, "/refused"), 200, b"nil connection refused")
            lp.expect(lp.get(p.port, "/nested"), 200, b"6|got hello||tail")
            lp.expect(lp.get(p.port, "/timeout"), 200, b"nil timeout []")
            lp.expect(lp.get(p.port, "/partial"), 200, b"nil closed [half a li]")
            lp.expect(lp.get(p.port, "/all"), 200, b"got x\r\n--END--tail")
            # OpenResty's documented example of the iterator with a size.
            lp.expect(lp.get(p.port, "/chunks"), 200, b"[hell][o, w][orld]|[next][ par][t]|tail")
            lp.expect(lp.get(p.port, "/chunks?inclusive"), 200,
                      b"[hell][o, w][orld][\r\n--abcedhb]|[next][ par][t][\r\n--abcedhb]|tail")
            lp.expect(lp.get(p.port, "/unread"), 200, b"nil unread data in buffer")
    finally:
        stop()


def test_unix_socket_redis():
    with redis.start(unix=True) as rd:
        script = ('local redis = require "nginx.redis"\n'
                  'function on_get(req)\n'
                  '  local r = redis:new()\n'
                  '  assert(r:connect("unix:%s"))\n'
                  '  local v = assert(r:incr("u"))\n'
                  '  r:set_keepalive()\n'
                  '  return 200, tostring(v)\n'
                  'end\n') % rd.unix_path
        with lp.Proxy(script, env=redis.lua_env()) as p:
            lp.expect(lp.get(p.port, "/"), 200, b"1")
            lp.expect(lp.get(p.port, "/"), 200, b"2")


def test_client_gone_while_its_request_waits_on_a_socket():
    rd = redis.start()
    try:
        script = ('function on_get(req)\n'
                  '  local s = proxy.socket.tcp()\n'
                  '  s:settimeout(3000)\n'
                  '  assert(s:connect("127.0.0.1", %d))\n'
                  '  s:send("BLPOP never 0\\r\\n")\n'
                  '  local line = s:receive()\n'
                  '  proxy.shared("x"):set("answered", "yes")\n'
                  '  return 200, "late"\n'
                  'end\n') % rd.port
        with lp.Proxy(script) as p:
            import socket
            c = socket.create_connection(("127.0.0.1", p.port))
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            lp.wait_until(lambda: "cmd=blpop" in str(rd.command("CLIENT", "LIST")), what="the BLPOP to arrive")
            c.close()
            # The proxy's socket to Redis goes with the cancelled request.
            lp.wait_until(lambda: "cmd=blpop" not in str(rd.command("CLIENT", "LIST")),
                          what="the waiting request's socket to close")
            assert p.alive()
    finally:
        rd.stop()


def test_connect_backlog_queues_past_the_pool_size():
    # A line server that answers each line after 300 ms, on one connection
    # after another; it counts the connections it accepts.
    accepted = []

    def handle(c):
        f = c.makefile("rb")
        for line in f:
            time.sleep(0.3)
            c.sendall(b"ok " + line.strip() + b"\r\n")
        c.close()

    port, stop = line_server(handle, accepted)
    script = ('function on_get(req)\n'
              '  local s = proxy.socket.tcp()\n'
              '  s:settimeouts(tonumber(req.query) or 2000, 2000, 2000)\n'
              '  local ok, err = s:connect("127.0.0.1", %d, {pool_size = 1, backlog = 1})\n'
              '  if not ok then return 200, "connect: " .. err end\n'
              '  local reused = s:getreusedtimes()\n'
              '  s:send("x\\n")\n'
              '  local line = s:receive()\n'
              '  s:setkeepalive()\n'
              '  return 200, line .. " reused=" .. reused\n'
              'end\n') % port
    try:
        with lp.Proxy(script) as p:
            results = [None] * 3

            def call(i, q=""):
                results[i] = lp.get(p.port, "/" + q, timeout=10).body.decode()
            ts = [threading.Thread(target=call, args=(i,)) for i in range(3)]
            for t in ts:
                t.start()
                time.sleep(0.05)
            for t in ts:
                t.join(10)
            assert sorted(results) == sorted(["ok x reused=0", "ok x reused=1",
                                              "connect: too many waiting connect operations"]), results
            assert len(accepted) == 1, "the pool of size 1 opened %d connections" % len(accepted)
            # Queued longer than its connect timeout: "timeout".
            t = threading.Thread(target=call, args=(0,))
            t.start()
            time.sleep(0.05)
            call(1, "?100")
            t.join(10)
            assert results[1] == "connect: timeout", results
            assert results[0] == "ok x reused=2", results
    finally:
        stop()
