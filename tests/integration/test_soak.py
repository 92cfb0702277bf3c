"""The soak (tests/soak/soak.py), shortened for make test
(SOAK_TEST_SECONDS, default 12; make soak runs the long one), and
regressions for what the soak found."""

import os
import socket
import sys
import threading
import time

import lp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "soak"))

import soak  # noqa: E402


def client_sockets(pid):
    """The TCP sockets a process holds that are not listening."""
    return [x for x in soak.tcp_sockets(pid) if " LISTEN " not in x]


def test_client_gone_mid_body_seen_while_worker_busy():
    """Head, part of the body and the FIN all arrive while the worker is
    busy: it then reads the body in buffer-sized steps, and the last short
    read must not hide the FIN (edge-triggered epoll reports it once).
    Before the fix the connection sat in CLOSE_WAIT until --idle-timeout."""
    script = ('function on_get(req) while true do end end\n'
              'function on_post(req) return 200, #req.body .. "\\n" end\n')
    with lp.Proxy(script, args=["--lua-time-limit", "500ms"]) as p:
        worker = p.wait_workers(1)[0]
        lp.expect(lp.post(p.port, "/warm", "abc"), 200, b"3\n")
        lp.wait_until(lambda: not client_sockets(worker), 2.0, what="the warm-up connection to close")
        spun = []
        t = threading.Thread(target=lambda: spun.append((lp.get(p.port, "/spin", timeout=5), time.monotonic())))
        t.start()
        lp.wait_cpu_busy(worker, what="the worker to spin in /spin")   # inside the 500 ms spin
        s = socket.create_connection((lp.HOST, p.port))
        s.sendall(b"POST /up HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 200000\r\n\r\n" + b"x" * 100000)
        s.close()
        t_closed = time.monotonic()
        t.join(5)
        assert spun and spun[0][0].status == 500, spun
        assert spun[0][1] > t_closed, "the spin ended before the upload and its FIN were sent: " \
            "the worker was not busy when they arrived"
        lp.wait_until(lambda: not client_sockets(worker), 2.0,
                      what="the worker to close the upload's connection")


def test_soak_short():
    soak.soak(float(os.environ.get("SOAK_TEST_SECONDS", "12")), out=lambda text: None)
