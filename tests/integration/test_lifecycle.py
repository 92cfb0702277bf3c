"""SPEC §2: graceful shutdown, worker supervision, the pid file."""

import os
import signal
import socket
import time

import lp

ECHO = r'''
function on_get(req) return 200, "get " .. req.path end
function on_post(req) return 200, "got " .. #req.body .. " bytes" end
'''


def assert_refused(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=1)
    except ConnectionRefusedError:
        return
    s.close()
    raise AssertionError("port %d still accepts connections" % port)


def test_sigterm_completes_request_in_flight():
    with lp.Proxy(ECHO, workers=2) as p:
        workers = p.wait_workers(2)
        with lp.Conn(p.port, timeout=5) as c:
            c.send(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello")
            lp.wait_server_read(p.port, c, what="a worker to read the head (the request is in flight)")
            p.send_signal(signal.SIGTERM)
            # One worker drains our connection, the other none: both have
            # closed their listeners.
            lp.wait_until(lambda: (lambda t: "draining 1 connection(s)" in t and "draining 0 connection(s)" in t)(
                p.stderr_text()), what="both workers draining, ours with the request in flight; stderr:\n%s"
                % p.stderr_text())
            assert p.alive(), "master exited with a request in flight (status %r)" % p.wait(0)
            assert_refused(p.port)      # both listeners are closed: refused, not left hanging
            c.send(b"world")
            r = c.read_response(timeout=5)
            assert r.status == 200 and r.body == b"got 10 bytes", r
            assert "close" in r.connection_tokens(), "no Connection: close while draining: %r" % r
            assert c.closed_by_peer(timeout=3), "connection left open after a Connection: close response"
        rc = p.wait(5)
        assert rc == 0, "master exit status %r after SIGTERM" % rc
        assert_refused(p.port)
        for w in workers:
            assert not lp.pid_alive(w), "worker %d outlived the master" % w


def test_sigterm_closes_idle_keep_alive_quickly():
    with lp.Proxy(ECHO) as p, lp.Conn(p.port) as c:
        lp.expect(c.request("GET", "/"), 200)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        assert c.closed_by_peer(timeout=3), "idle keep-alive connection not closed on SIGTERM"
        assert not c.reset, "idle keep-alive connection reset, not closed, on SIGTERM"
        rc = p.wait(3)
        assert rc == 0, "master status %r (or still running) after SIGTERM with an idle connection" % rc
        assert time.monotonic() - t0 < 2.5, "shutdown took %.2fs" % (time.monotonic() - t0)


def test_sigint_is_graceful_too():
    with lp.Proxy(ECHO, workers=2) as p:
        workers = p.wait_workers(2)
        lp.expect(lp.get(p.port, "/"), 200)
        rc = p.stop(signal.SIGINT, timeout=5)
        assert rc == 0, "exit status %r after SIGINT" % rc
        for w in workers:
            assert not lp.pid_alive(w), "worker %d outlived the master" % w


def test_shutdown_timeout_bounds_the_drain():
    with lp.Proxy(ECHO, args=["--shutdown-timeout", "500ms"]) as p, lp.Conn(p.port) as c:
        c.send(b"POST /stuck HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
        lp.wait_server_read(p.port, c, what="the worker to read the partial request")
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(5)
        dt = time.monotonic() - t0
        assert rc is not None, "master still running 5s after SIGTERM with --shutdown-timeout 500ms"
        assert rc == 0, "exit status %r when the drain timed out" % rc
        assert 0.3 < dt < 3, "exited %.2fs after SIGTERM with --shutdown-timeout 500ms" % dt


def test_killed_worker_is_replaced():
    with lp.Proxy(ECHO, workers=2) as p:
        before = p.wait_workers(2)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        after = lp.wait_until(lambda: (lambda w: w if len(w) == 2 and victim not in w else None)(
            p.worker_pids()), 5, what="a replacement worker")
        assert before[1] in after, "the other worker changed too: %r -> %r" % (before, after)
        for i in range(40):
            r = lp.get(p.port, "/%d" % i)
            assert r.status == 200 and r.body == b"get /%d" % i, r
        text = p.wait_stderr("(pid %d)" % victim)
        assert p.alive(), "master exited (%r) after a worker died" % p.wait(0)
        # The exact signal, and that it was idle (not running Lua for a request).
        assert "(pid %d) killed by signal 9 (Killed) with no request in Lua; restarting" % victim in text, \
            "worker death not logged with its signal:\n%s" % text


def test_worker_replaced_after_several_deaths():
    with lp.Proxy(ECHO, workers=1) as p:
        for _ in range(3):
            [w] = p.wait_workers(1)
            os.kill(w, signal.SIGKILL)
            lp.wait_until(lambda: (lambda ws: ws if len(ws) == 1 and w not in ws else None)(
                p.worker_pids()), 5, what="a replacement for worker %d" % w)
        lp.wait_until(lambda: (lp.try_get(p.port, "/") or lp.NOPE).status == 200, 3, what="a 200 after the restarts")


def test_shared_dict_survives_worker_restart():
    script = ('local d = proxy.shared("s")\n'
              'function on_post(req) d:set("k", req.body) return 200 end\n'
              'function on_get(req) return 200, tostring(d:get("k")) end\n')
    with lp.Proxy(script, workers=1) as p:
        [w] = p.wait_workers(1)
        lp.expect(lp.post(p.port, "/", b"kept"), 200)
        os.kill(w, signal.SIGKILL)
        lp.wait_until(lambda: (lambda ws: ws if len(ws) == 1 and w not in ws else None)(
            p.worker_pids()), 5, what="a replacement worker")
        r = lp.wait_until(lambda: lp.try_get(p.port, "/"), 3, what="service after the restart")
        assert r.body == b"kept", r


def test_pid_file_has_master_pid():
    with lp.Proxy(ECHO) as p:
        with open(p.pid_file) as f:
            content = f.read()
        assert content.strip() == str(p.pid), "pid file says %r, master is %d" % (content, p.pid)
        assert content.endswith("\n"), "pid file should end with a newline: %r" % content


def test_clean_stop_exit_0_no_orphans():
    with lp.Proxy(ECHO, workers=2) as p:
        workers = p.wait_workers(2)
        t0 = time.monotonic()
        rc = p.stop(timeout=5)
        assert rc == 0, "exit status %r after SIGTERM" % rc
        assert time.monotonic() - t0 < 2, "an idle server took %.1fs to stop" % (time.monotonic() - t0)
        for w in workers:
            assert not lp.pid_alive(w), "worker %d still running" % w
