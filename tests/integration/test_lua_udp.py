"""SPEC §8: proxy.socket.udp() (and ngx.socket.udp through the shim)
against an echo server of the test on loopback: send and receive, the
receive timeout (the socket stays usable), nested tables as one datagram,
the size argument, and the worker serving others while a receive waits."""

import socket
import threading

import lp
from polledserver import PolledServer


class Echo(PolledServer):
    """A UDP server that answers each datagram with "echo:" and the
    datagram, unless it starts with "quiet" (then no answer)."""

    def __init__(self):
        self.seen = []
        PolledServer.__init__(self, socket.SOCK_DGRAM)

    def serve_one(self):
        data, peer = self.sock.recvfrom(70000)
        self.seen.append(data)
        if not data.startswith(b"quiet"):
            self.sock.sendto(b"echo:" + data, peer)


SCRIPT = '''
local PORT = %d
function on_get(req)
  local u = proxy.socket.udp()
  u:settimeout(tonumber((req.query or ""):match("t=(%%d+)") or "1000"))
  assert(u:setpeername("127.0.0.1", PORT))
  if req.path == "/echo" then
    assert(u:send("hello"))
    local d, err = u:receive()
    u:close()
    return 200, tostring(d) .. "|" .. tostring(err) .. "\\n"
  elseif req.path == "/nested" then
    assert(u:send({"a", {"b", {"c", 1}}, "d"}))
    return 200, tostring(u:receive()) .. "\\n"
  elseif req.path == "/size" then
    assert(u:send("0123456789"))
    return 200, tostring(u:receive(7)) .. "\\n"
  elseif req.path == "/quiet" then
    assert(u:send("quiet"))
    local d, err = u:receive()
    -- the socket is still usable after a timeout
    assert(u:send("again"))
    local d2, err2 = u:receive()
    return 200, tostring(d) .. "|" .. tostring(err) .. "|" .. tostring(d2) .. "\\n"
  elseif req.path == "/ngx" then
    local s = ngx.socket.udp()
    assert(s:setpeername("127.0.0.1", PORT))
    assert(s:send("via ngx"))
    return 200, tostring(s:receive()) .. "\\n"
  elseif req.path == "/closed" then
    u:close()
    local ok, err = u:send("x")
    return 200, tostring(ok) .. "|" .. tostring(err) .. "\\n"
  end
  return 200, "fast\\n"
end
'''


def test_udp_send_and_receive():
    with Echo() as echo, lp.Proxy(SCRIPT % echo.port) as p:
        lp.expect(lp.get(p.port, "/echo"), 200, b"echo:hello|nil\n")
        lp.expect(lp.get(p.port, "/ngx"), 200, b"echo:via ngx\n")
        assert b"hello" in echo.seen


def test_udp_nested_table_is_one_datagram():
    with Echo() as echo, lp.Proxy(SCRIPT % echo.port) as p:
        lp.expect(lp.get(p.port, "/nested"), 200, b"echo:abc1d\n")
        assert b"abc1d" in echo.seen


def test_udp_receive_size_cuts_the_datagram():
    with Echo() as echo, lp.Proxy(SCRIPT % echo.port) as p:
        lp.expect(lp.get(p.port, "/size"), 200, b"echo:01\n")


def test_udp_receive_timeout_keeps_the_socket_and_the_worker_serves_others():
    with Echo() as echo, lp.Proxy(SCRIPT % echo.port) as p:
        result = {}

        def slow():
            result["r"] = lp.get(p.port, "/quiet?t=1500", timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        lp.wait_until(lambda: b"quiet" in echo.seen, what="the quiet datagram")
        # The only worker answers while the other request's receive waits.
        lp.expect(lp.get(p.port, "/fast"), 200, b"fast\n")
        assert t.is_alive(), "the receive did not wait for its timeout"
        t.join(10)
        lp.expect(result["r"], 200, b"nil|timeout|echo:again\n")


def test_udp_send_on_a_closed_socket():
    with Echo() as echo, lp.Proxy(SCRIPT % echo.port) as p:
        lp.expect(lp.get(p.port, "/closed"), 200, b"nil|closed\n")
