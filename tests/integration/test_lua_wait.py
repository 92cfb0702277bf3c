"""SPEC §8: the hooks that may wait (route, the handlers, on_response)
suspend their request, not the worker; a client that goes away cancels the
waiting hook; a hook that fails after a wait answers 500."""

import socket
import threading
import time

import lp
from origin import Origin

SCRIPT = '''
local d = proxy.shared("w")
local app = proxy.upstream("app", {"%s"})
function route(req)
  if req.path == "/route-sleeps" then proxy.sleep(0.2); return 200, "route slept\\n" end
  if req.path == "/route-then-proxy" then proxy.sleep(0.05); return app end
  if req.path == "/route-fails" then proxy.sleep(0.05); error("failed after a wait") end
  if req.path:sub(1, 5) == "/resp" then return app end
end
function on_get(req)
  if req.path == "/handler-sleeps" then
    proxy.sleep(0.3)
    d:incr("handled", 1, 0)
    return 200, "handler slept\\n"
  end
  if req.path == "/count" then return 200, tostring(d:get("handled") or 0) end
  return 200, "fast\\n"
end
function on_post(req)
  proxy.sleep(0.05)
  return 200, "got " .. #req.body .. " bytes\\n"
end
function on_response(req, res)
  if req.path == "/resp-sleeps" then
    proxy.sleep(0.1)
    res:set_header("X-Waited", "yes")
  elseif req.path == "/resp-fails" then
    proxy.sleep(0.05)
    error("on_response failed after a wait")
  end
end
'''


def test_route_and_handlers_wait_without_blocking_the_worker():
    with Origin(name="app") as app, lp.Proxy(SCRIPT % app.addr) as p:
        result = {}

        def slow():
            result["r"] = lp.get(p.port, "/handler-sleeps")
        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.05)
        t0 = time.monotonic()
        lp.expect(lp.get(p.port, "/fast"), 200, b"fast\n")
        assert time.monotonic() - t0 < 0.2, "a waiting handler blocked the worker"
        t.join(5)
        lp.expect(result["r"], 200, b"handler slept\n")
        lp.expect(lp.get(p.port, "/route-sleeps"), 200, b"route slept\n")
        r = lp.expect(lp.get(p.port, "/route-then-proxy"), 200)
        assert r.headers.get("x-origin") == "app", r
        lp.expect(lp.request(p.port, "POST", "/p", body=b"hello"), 200, b"got 5 bytes\n")
        lp.expect(lp.get(p.port, "/route-fails"), 500)
        text = p.wait_stderr("failed after a wait")
        assert "lua error in route for GET /route-fails" in text, text


def test_on_response_waits_then_edits_the_head():
    with Origin(name="app") as app, lp.Proxy(SCRIPT % app.addr) as p:
        r = lp.expect(lp.get(p.port, "/resp-sleeps"), 200)
        assert r.headers.get("x-waited") == "yes", r
        assert r.headers.get("x-origin") == "app", r
        lp.expect(lp.get(p.port, "/resp-fails"), 500)
        p.wait_stderr("on_response failed after a wait")


def test_pipelined_requests_wait_their_turn():
    with Origin(name="app") as app, lp.Proxy(SCRIPT % app.addr) as p:
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /handler-sleeps HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        s.settimeout(5)
        while got.count(b"HTTP/1.1 200") < 2:
            chunk = s.recv(65536)
            assert chunk, got
            got += chunk
        s.close()
        assert got.index(b"handler slept") < got.index(b"fast"), got


def test_a_client_gone_while_its_handler_waits_cancels_it():
    with Origin(name="app") as app, lp.Proxy(SCRIPT % app.addr) as p:
        s = socket.create_connection(("127.0.0.1", p.port))
        s.sendall(b"GET /handler-sleeps HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        s.close()
        time.sleep(0.5)  # past the handler's sleep
        lp.expect(lp.get(p.port, "/count"), 200, b"0")
        # And one that stays counts.
        lp.expect(lp.get(p.port, "/handler-sleeps"), 200)
        lp.expect(lp.get(p.port, "/count"), 200, b"1")


def test_time_limit_adds_up_the_stretches_between_waits():
    # Each stretch runs 150 ms, under the 400 ms limit; waiting does not
    # count; but the third stretch takes the hook past it: added up, 450 ms.
    script = ('local function busy(s) local t = os.clock() while os.clock() - t < s do end end\n'
              'function on_get(req)\n'
              '  local n = tonumber(req.query) or 1\n'
              '  for i = 1, n do busy(0.15); proxy.sleep(0.3) end\n'
              '  return 200, "done " .. n\n'
              'end\n')
    with lp.Proxy(script, args=["--lua-time-limit", "400ms"]) as p:
        lp.expect(lp.get(p.port, "/?2"), 200, b"done 2")  # 300 ms of Lua, 600 of waiting
        lp.expect(lp.get(p.port, "/?3"), 500)             # 450 ms of Lua
        p.wait_stderr("lua time limit exceeded")
