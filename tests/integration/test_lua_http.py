"""SPEC §8: proxy.http.request, the HTTP/1.1 client of scripts.

The origin here is a raw one (a thread per connection) so that each test
chooses the exact bytes of the response: Content-Length, chunked with
extensions and trailers, read-until-close, 1xx, 204/304, malformed, none at
all. It records what it received and on which connection, so keep-alive
reuse and the request's head are checked from the server's side."""

import threading
import time

import lp
from tcpserver import ThreadedServer

# A handler that turns a call's result into "status\nname=value;...\nbody"
# (or "ERR <err>"), so the Python side sees everything the script saw.
SHOW = r'''
local function show(res, err)
  if not res then return 200, "ERR " .. tostring(err) end
  local names = {}
  for k in pairs(res.headers) do names[#names + 1] = k end
  table.sort(names)
  local h = {}
  for _, k in ipairs(names) do h[#h + 1] = k .. "=" .. res.headers[k] end
  return 200, res.status .. "\n" .. table.concat(h, ";") .. "\n" .. res.body
end
'''


class Result:
    def __init__(self, text):
        self.err = None
        if text.startswith("ERR "):
            self.err = text[4:]
            return
        status, headers, self.body = text.split("\n", 2)
        self.status = int(status)
        self.headers = dict(kv.split("=", 1) for kv in headers.split(";") if kv)


def call(p, path="/"):
    r = lp.get(p.port, path, timeout=10)
    assert r.status == 200, (r.status, r.body)
    return Result(r.body.decode())


class RawOrigin(ThreadedServer):
    """respond(req) -> bytes to send, a function(sock) that sends them, or None to answer nothing (the
    connection is then held until the test ends); close(req) -> whether to
    close after the response. req: dict method, target, headers (list of
    (lower name, value)), body, conn (the connection's number)."""

    def __init__(self, respond, close=lambda req: False):
        ThreadedServer.__init__(self, "raw-origin")
        self.respond = respond
        self.close = close
        self.requests = []
        self.conns = 0
        self.start()

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
                self.socks.add(sock)
            self.spawn(self._serve, (sock, n), "raw-origin-conn")

    def _serve(self, sock, n):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                for line in lines[1:]:
                    name, value = line.split(":", 1)
                    headers.append((name.strip().lower(), value.strip()))
                length = int(dict(headers).get("content-length", "0"))
                while len(buf) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:length], buf[length:]
                req = {"method": method, "target": target, "headers": headers, "body": body, "conn": n}
                with self.lock:
                    self.requests.append(req)
                out = self.respond(req)
                if out is None:
                    self.stopping.wait(30)
                    return
                if callable(out):  # writes the response itself
                    out(sock)
                else:
                    sock.sendall(out)
                if self.close(req):
                    return
        except OSError:
            return
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def header(self, req, name):
        return [v for k, v in req["headers"] if k == name]


def ok(body, extra=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def url_script(origin_port, opts="", path_expr="req.path"):
    return SHOW + '''
function on_get(req)
  return show(proxy.http.request{ url = "http://127.0.0.1:%d" .. %s %s })
end
''' % (origin_port, path_expr, opts)


def test_get_with_url_sends_host_user_agent_and_keep_alive_and_joins_repeated_headers():
    with RawOrigin(lambda req: ok(b"hello", b"X-A: 1\r\nx-a: 2\r\nX-Mixed-Case: v\r\n")) as o, \
            lp.Proxy(url_script(o.port, path_expr='"/p/q?x=1&y=2"')) as p:
        res = call(p)
        assert res.err is None, res.err
        assert res.status == 200 and res.body == "hello"
        assert res.headers["x-a"] == "1, 2", res.headers
        assert res.headers["x-mixed-case"] == "v"
        assert res.headers["content-length"] == "5"
        req = o.requests[0]
        assert req["method"] == "GET" and req["target"] == "/p/q?x=1&y=2", req
        assert o.header(req, "host") == ["127.0.0.1:%d" % o.port]
        assert o.header(req, "user-agent") == ["luaproxy"]
        assert o.header(req, "connection") == ["keep-alive"]
        assert o.header(req, "content-length") == [], "a GET without a body got a Content-Length"


def test_post_with_body_and_headers():
    script = SHOW + '''
function on_get(req)
  return show(proxy.http.request{ url = "http://127.0.0.1:%d/submit", method = "POST",
    body = "name=value&x=1", headers = { ["X-Token"] = "secret", ["X-List"] = { "a", "b" },
    ["User-Agent"] = "mine", ["Content-Length"] = "999", Connection = "close" } })
end
'''
    with RawOrigin(lambda req: ok(b"got " + req["body"])) as o, lp.Proxy(script % o.port) as p:
        res = call(p)
        assert res.err is None, res.err
        assert res.body == "got name=value&x=1"
        req = o.requests[0]
        assert req["method"] == "POST" and req["target"] == "/submit"
        assert o.header(req, "content-length") == ["14"], "the client's own Content-Length is the one sent"
        assert o.header(req, "x-token") == ["secret"]
        assert o.header(req, "x-list") == ["a", "b"]
        assert o.header(req, "user-agent") == ["mine"], "a User-Agent of the script's replaces the default"
        assert o.header(req, "connection") == ["keep-alive"]


def upstream_script(*ports):
    return SHOW + '''
local up = proxy.upstream("two", { "127.0.0.1:%d", "127.0.0.1:%d" })
function on_get(req)
  return show(proxy.http.request{ upstream = up, path = "/api?v=1" })
end
''' % ports


def test_upstream_form_alternates_between_servers_and_sends_the_server_as_host():
    with RawOrigin(lambda req: ok(b"A")) as a, RawOrigin(lambda req: ok(b"B")) as b:
        with lp.Proxy(upstream_script(a.port, b.port)) as p:
            bodies = [call(p).body for _ in range(6)]
            assert bodies in (["A", "B"] * 3, ["B", "A"] * 3), bodies
            assert a.requests[0]["target"] == "/api?v=1"
            assert a.header(a.requests[0], "host") == ["127.0.0.1:%d" % a.port]
            assert b.header(b.requests[0], "host") == ["127.0.0.1:%d" % b.port]
            assert a.conns == 1 and b.conns == 1, "upstream calls did not reuse their connections"


def test_upstream_form_tries_the_next_server_when_one_refuses():
    dead = lp.free_port()
    with RawOrigin(lambda req: ok(b"live")) as o:
        with lp.Proxy(upstream_script(dead, o.port)) as p:
            for _ in range(4):
                res = call(p)
                assert res.err is None and res.body == "live", res.err


def test_a_server_that_answers_garbage_counts_as_failed_for_passive_health():
    with RawOrigin(lambda req: b"garbage\r\n\r\n") as bad, RawOrigin(lambda req: ok(b"good")) as good:
        script = upstream_script(bad.port, good.port).replace(
            '"127.0.0.1:%d" })' % good.port, '"127.0.0.1:%d" }, { max_fails = 1, fail_timeout = "60s" })' % good.port)
        assert "max_fails" in script
        with lp.Proxy(script) as p:
            results = [call(p) for _ in range(6)]
            errors = [r.err for r in results if r.err]
            assert errors == ["malformed response: bad status line"], errors
            assert len(bad.requests) == 1


def test_upstream_with_a_balance_function_takes_its_first_server_that_is_up():
    """The script's balance(req, servers) needs a request; a call has none
    (it may come from a timer), so the first server that is up serves."""
    with RawOrigin(lambda req: ok(b"first")) as a, RawOrigin(lambda req: ok(b"second")) as b:
        script = upstream_script(a.port, b.port).replace(
            '"127.0.0.1:%d" })' % b.port, '"127.0.0.1:%d" }, { balance = function(req, servers) return 2 end })' % b.port)
        assert "balance = function" in script
        with lp.Proxy(script) as p:
            assert [call(p).body for _ in range(3)] == ["first"] * 3


def test_a_call_counts_as_in_flight_on_its_server():
    """While a call waits on a server, the server's active count (what
    least_conn and balance functions see) includes it; afterwards not."""
    release = threading.Event()

    def respond(req):
        if req["target"] == "/slow":
            release.wait(10)
        return ok(b"done")
    with RawOrigin(respond) as o:
        script = '''
local d = proxy.shared("t")
local up = proxy.upstream("u", { "127.0.0.1:%d" },
  { balance = function(req, servers) d:set("active", servers[1].active) return 1 end })
function route(req)
  if req.path == "/proxied" then return up end
end
function on_get(req)
  if req.path == "/active" then return 200, tostring(d:get("active")) end
  local res, err = proxy.http.request{ upstream = up, path = "/slow" }
  return 200, res and res.body or err
end
''' % o.port
        with lp.Proxy(script) as p:
            done = []
            t = threading.Thread(target=lambda: done.append(lp.get(p.port, "/call", timeout=10)))
            t.start()
            try:
                lp.wait_until(lambda: any(r["target"] == "/slow" for r in o.requests), what="the call to arrive")
                assert lp.get(p.port, "/proxied").status == 200
                assert lp.get(p.port, "/active").body == b"1", "a call in flight was not counted"
            finally:
                release.set()
                t.join(10)
            assert done and done[0].body == b"done"
            assert lp.get(p.port, "/proxied").status == 200
            assert lp.get(p.port, "/active").body == b"0", "a finished call still counts"


def test_chunked_response_with_extensions_and_trailers_then_the_connection_is_reused():
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n1\r\n \r\n0005\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
    with RawOrigin(lambda req: chunked) as o, lp.Proxy(url_script(o.port)) as p:
        for _ in range(3):
            res = call(p)
            assert res.err is None, res.err
            assert res.body == "hello world"
            assert "x-trailer" not in res.headers
        assert o.conns == 1 and len(o.requests) == 3


def test_content_length_response_of_several_packets():
    body = bytes(range(65, 91)) * 5000  # 130 000 bytes
    with RawOrigin(lambda req: ok(body)) as o, lp.Proxy(url_script(o.port)) as p:
        res = call(p)
        assert res.err is None, res.err
        assert res.body.encode() == body


def test_read_until_close_response_and_no_reuse_after_it():
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 40000
    with RawOrigin(lambda req: resp, close=lambda req: True) as o, lp.Proxy(url_script(o.port)) as p:
        for _ in range(2):
            res = call(p)
            assert res.err is None, res.err
            assert res.body == "x" * 40000
        assert o.conns == 2, "a connection whose body ended at its close was reused"


def test_interim_1xx_skipped_and_204_304_have_no_body():
    def respond(req):
        if req["target"] == "/204":
            return b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-K: 1\r\n\r\n"
        if req["target"] == "/304":
            # A 304 may name the representation's length: still no body.
            return b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"e\"\r\n\r\n"
        return ok(b"after")
    with RawOrigin(respond) as o, lp.Proxy(url_script(o.port)) as p:
        res = call(p, "/204")
        assert res.err is None and res.status == 204 and res.body == "" and res.headers["x-k"] == "1", res.err
        res = call(p, "/304")
        assert res.err is None and res.status == 304 and res.body == "", res.err
        assert res.headers["etag"] == '"e"'
        res = call(p, "/next")
        assert res.err is None and res.body == "after", res.err
        assert o.conns == 1, "the connection was not reused after bodiless responses"


def test_head_response_has_no_body_whatever_its_content_length():
    script = SHOW + '''
function on_get(req)
  local method = req.path == "/head" and "HEAD" or "GET"
  return show(proxy.http.request{ url = "http://127.0.0.1:%d" .. req.path, method = method })
end
'''

    def respond(req):
        if req["method"] == "HEAD":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        return ok(b"after")
    with RawOrigin(respond) as o:
        with lp.Proxy(script % o.port) as p:
            res = call(p, "/head")
            assert res.err is None and res.status == 200 and res.body == "", res.err
            assert res.headers["content-length"] == "5"
            assert call(p, "/get").body == "after"
            assert o.conns == 1 and o.requests[0]["method"] == "HEAD"


def test_keep_alive_connection_is_pooled_and_reused_by_later_calls():
    with RawOrigin(lambda req: ok(b"r")) as o, lp.Proxy(url_script(o.port)) as p:
        for _ in range(5):
            assert call(p).body == "r"
        assert len(o.requests) == 5
        assert o.conns == 1, "%d connections for 5 keep-alive calls" % o.conns


def test_connection_close_from_the_server_is_not_reused():
    with RawOrigin(lambda req: ok(b"r", b"Connection: close\r\n")) as o, lp.Proxy(url_script(o.port)) as p:
        for _ in range(3):
            res = call(p)
            assert res.err is None and res.body == "r", res.err
        assert o.conns == 3


def assert_times_out(respond, timeout, within):
    with RawOrigin(respond) as o, lp.Proxy(url_script(o.port, ", timeout = %s" % timeout)) as p:
        t0 = time.monotonic()
        res = call(p)
        assert res.err == "timeout", res.err
        assert time.monotonic() - t0 < within


def test_timeout_bounds_the_call():
    assert_times_out(lambda req: None, 0.3, 2.5)


def test_timeout_covers_a_slow_drip_not_each_read():
    """A server that sends a byte every 100 ms never lets one read time out;
    the call's timeout still ends it."""
    stop = []

    def drip(sock):
        for ch in b"HTTP/1.1 200 " + b"a" * 100:  # one line that never ends in time
            if stop:
                return
            time.sleep(0.1)
            sock.sendall(bytes([ch]))
    try:
        assert_times_out(lambda req: drip, 0.5, 3.0)
    finally:
        stop.append(True)


def test_connection_refused():
    with lp.Proxy(url_script(lp.free_port())) as p:
        assert call(p).err == "connection refused"


def test_body_over_max_body_is_refused():
    big = b"y" * 2000
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
        b"64\r\n" + b"z" * 100 + b"\r\n" for _ in range(20)) + b"0\r\n\r\n"

    def respond(req):
        if req["target"] == "/chunked":
            return chunked
        if req["target"] == "/close":
            return b"HTTP/1.1 200 OK\r\n\r\n" + big
        return ok(big)
    with RawOrigin(respond, close=lambda req: req["target"] == "/close") as o:
        with lp.Proxy(url_script(o.port, ", max_body = 1000")) as p:
            for path in ("/cl", "/chunked", "/close"):
                assert call(p, path).err == "response body too large", path
        # The default is --max-body-size.
        with lp.Proxy(url_script(o.port), args=["--max-body-size", "1k"]) as p:
            assert call(p, "/cl").err == "response body too large"
        with lp.Proxy(url_script(o.port), args=["--max-body-size", "4k"]) as p:
            assert call(p, "/cl").body == big.decode()


def test_malformed_responses_give_a_clear_error():
    answers = {
        "/status": b"HTTTP/1.1 200 OK\r\n\r\n",
        "/header": b"HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
        "/cl": b"HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n",
        "/two-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "/chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    }
    with RawOrigin(lambda req: answers[req["target"]], close=lambda req: True) as o, \
            lp.Proxy(url_script(o.port)) as p:
        assert call(p, "/status").err == "malformed response: bad status line"
        assert call(p, "/header").err == "malformed response: bad header line"
        assert call(p, "/cl").err == "malformed response: bad Content-Length"
        assert call(p, "/two-cl").err == "malformed response: conflicting Content-Length"
        assert call(p, "/chunk").err == "malformed response: bad chunk size"


def test_a_line_without_end_is_refused_before_it_fills_memory():
    def endless(sock):
        sock.sendall(b"HTTP/1.1 200 OK\r\nX-Big: ")
        for _ in range(64):  # 4 MiB, and the connection stays open
            sock.sendall(b"a" * 65536)
    with RawOrigin(lambda req: endless) as o, lp.Proxy(url_script(o.port)) as p:
        t0 = time.monotonic()
        assert call(p).err == "malformed response: line too long"
        assert time.monotonic() - t0 < 5


def test_https_and_bad_arguments_give_errors():
    script = SHOW + '''
function on_get(req)
  local t = {
    ["/https"] = { url = "https://127.0.0.1:1/" },
    ["/none"] = {},
    ["/ftp"] = { url = "ftp://127.0.0.1/" },
    ["/hdr"] = { url = "http://127.0.0.1:1/", headers = { ["X-Bad"] = "a\\r\\nInjected: 1" } },
  }
  return show(proxy.http.request(t[req.path]))
end
'''
    with lp.Proxy(script) as p:
        assert call(p, "/https").err == "https is not supported yet"
        assert call(p, "/none").err == "url or upstream is required"
        assert call(p, "/ftp").err.startswith("bad url")
        assert call(p, "/hdr").err == 'bad value for header "X-Bad"'


def test_called_from_a_timer_callback():
    with RawOrigin(lambda req: ok(b"from timer")) as o:
        script = '''
local d = proxy.shared("t")
proxy.timer.at(0, function(premature)
  local res, err = proxy.http.request{ url = "http://127.0.0.1:%d/tick" }
  d:set("got", res and (res.status .. " " .. res.body) or ("ERR " .. tostring(err)))
end)
function on_get(req)
  local v = d:get("got")
  if not v then return 404, "not yet" end
  return 200, v
end
''' % o.port
        with lp.Proxy(script) as p:
            def seen():
                r = lp.get(p.port, "/")
                return r.status == 200 and r.body.decode()
            got = lp.wait_until(seen, timeout=5, what="the timer's call")
            assert got == "200 from timer", got
            assert o.requests[0]["target"] == "/tick"


def test_called_from_route_decides_the_response():
    def auth(req):
        if req["target"] == "/auth?user=ok":
            return ok(b"yes")
        return b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    with RawOrigin(auth) as a, RawOrigin(lambda req: ok(b"backend")) as b:
        script = '''
local up = proxy.upstream("app", { "127.0.0.1:%d" })
function route(req)
  local res, err = proxy.http.request{ url = "http://127.0.0.1:%d/auth?user=" .. (req.query or ""), timeout = 2 }
  if not res then return 502 end
  if res.status ~= 200 then return res.status end
  return up
end
''' % (b.port, a.port)
        with lp.Proxy(script) as p:
            r = lp.get(p.port, "/x?ok")
            assert r.status == 200 and r.body == b"backend", (r.status, r.body)
            r = lp.get(p.port, "/x?no")
            assert r.status == 403, r.status
            assert len(b.requests) == 1
