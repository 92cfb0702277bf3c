"""SPEC §9, active health checks: proxy.upstream's check = { path, interval,
timeout, rise, fall, expect, host }. One worker probes each server per
interval (the workers agree through shared memory), every worker sees the
same up/down state at once, a change is logged once and shown by
luaproxy_upstream_server_up and /status.

The backends are Origins whose /healthz answers a status the test changes
while they run; every probe they get is recorded (time, Host)."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import lp
from origin import Origin, dead_port, upstream_script

INTERVAL = 0.25  # seconds, the checks' interval in most tests


class HealthOrigin(Origin):
    """An Origin whose /healthz answers self.health (changed by the test)."""

    def __init__(self, name, health=200, keep=False, **kw):
        super().__init__(name=name, **kw)
        self.health = health
        self.keep = keep    # answer /healthz with keep-alive (else Connection: close)
        self.probes = []    # (time.monotonic(), Host header)

    def _handle(self, sock, rd, req):
        if req.path != "/healthz":
            return super()._handle(sock, rd, req)
        with self.lock:
            self.probes.append((time.monotonic(), req.header("host")))
        self._send_simple(sock, self.health, b"health\n", close=not self.keep)
        return self.keep

    def probe_count(self):
        with self.lock:
            return len(self.probes)

    def probes_since(self, t):
        with self.lock:
            return [p for p in self.probes if p[0] >= t]


def origins(*names, **kw):
    return [HealthOrigin(n, **kw).start() for n in names]


@contextlib.contextmanager
def running(*names, **kw):
    """HealthOrigins named names, stopped at the end."""
    os_ = origins(*names, **kw)
    try:
        yield os_
    finally:
        for o in os_:
            o.stop()


def check_script(servers, check, opts="", extra=""):
    return upstream_script(servers, "check = { %s }%s" % (check, ", " + opts if opts else ""), extra)


FAST = 'path = "/healthz", interval = "%dms", timeout = "200ms", rise = 2, fall = 2' % int(INTERVAL * 1000)


def admin_proxy(script, workers=2):
    admin = lp.free_port()
    p = lp.Proxy(script, workers=workers, args=["--admin", "127.0.0.1:%d" % admin])
    p.admin = admin
    p.wait_workers(workers)
    return p


def status(p):
    r = lp.get(p.admin, "/status")
    assert r.status == 200, r
    return json.loads(r.body)


def gauge(p):
    """{server: value} of every luaproxy_upstream_server_up sample (a
    server twice is an error: one sample per server, not per worker)."""
    r = lp.get(p.admin, "/metrics")
    assert r.status == 200, r
    out = {}
    for m in re.finditer(r'^luaproxy_upstream_server_up\{upstream="backend",server="([^"]+)"\} (\S+)$',
                         r.body.decode(), re.M):
        assert m.group(1) not in out, "two samples for %s:\n%s" % (m.group(1), r.body.decode())
        out[m.group(1)] = int(m.group(2))
    return out


def worker_conns(p):
    """One client connection held by each worker."""
    return [lp.conn_on_worker(p, pid) for pid in p.worker_pids()]


def served_by(conns, n=8):
    """For each connection (each worker), the set of origins that answered
    n requests on it."""
    out = []
    for c in conns:
        names = set()
        for i in range(n):
            r = c.request("GET", "/echo?i=%d" % i)
            assert r.status == 200, r
            names.add(r.header("x-origin"))
        out.append(names)
    return out


def wait_probed(os_, n=1, timeout=5.0):
    for o in os_:
        lp.wait_until(lambda: o.probe_count() >= n, timeout, what="%d probe(s) of %s" % (n, o.name))


# --------------------------------------------------------------------------


def test_a_failing_health_page_takes_a_server_out_of_every_worker_and_back():
    with running("a", "b") as os_:
        a, b = os_
        with admin_proxy(check_script([a, b], FAST)) as p:
            wait_probed(os_)
            conns = worker_conns(p)
            assert all(s == {"a", "b"} for s in served_by(conns)), served_by(conns)

            b.health = 503
            t0 = time.monotonic()
            lp.wait_until(lambda: all(s == {"a"} for s in served_by(conns, 4)), 5,
                          what="b to leave both workers' rotation")
            out_after = time.monotonic() - t0
            # fall probes, the first within an interval of the change, plus
            # the loop's 50 ms grid and a loaded machine's slack.
            assert out_after < 3 * INTERVAL + 1.0, "b left after %.2fs" % out_after
            assert all(s == {"a"} for s in served_by(conns, 20)), "b still served once out"
            assert gauge(p) == {a.addr: 1, b.addr: 0}

            b.health = 200
            t0 = time.monotonic()
            lp.wait_until(lambda: all("b" in s for s in served_by(conns, 4)), 5,
                          what="b to rejoin both workers' rotation")
            back_after = time.monotonic() - t0
            assert back_after < 3 * INTERVAL + 1.0, "b came back after %.2fs" % back_after
            assert gauge(p) == {a.addr: 1, b.addr: 1}
            for c in conns:
                c.close()
            # Logged once each, by whichever worker saw it, not by both.
            err = p.stderr_text()
            down = re.findall(r"\[warn\].*upstream backend: server %s is down: 2 health check\(s\) failed in a row "
                              r"\(last: status 503\)" % re.escape(b.addr), err)
            up = re.findall(r"\[info\].*upstream backend: server %s is up" % re.escape(b.addr), err)
            assert len(down) == 1 and len(up) == 1, err
            assert "server %s is" % a.addr not in err, err
        for o in os_:
            o.assert_clean()


def test_probes_do_not_multiply_with_workers():
    with running("a", "b") as os_:
        a, b = os_
        with admin_proxy(check_script([a, b], FAST)) as p:
            wait_probed(os_)
            t0 = time.monotonic()
            time.sleep(3.0)     # the window over which probes are counted
            for o in os_:
                times = [t for t, _ in o.probes_since(t0)]
                # one prober: about 3 / 0.25 = 12; two would make about 24
                assert 8 <= len(times) <= 15, "%s got %d probes in 3 s" % (o.name, len(times))
                gaps = [y - x for x, y in zip(times, times[1:])]
                assert min(gaps) >= 0.4 * INTERVAL, "%s: probes %.3fs apart" % (o.name, min(gaps))
            st = status(p)["health_checks"]
            assert {h["server"] for h in st} == {a.addr, b.addr}, st
            assert all(h["up"] and h["checks"] >= 8 and h["prober"] in (0, 1) for h in st), st


def _prober_pid(p, server):
    st = status(p)
    prober = [h["prober"] for h in st["health_checks"] if h["server"] == server][0]
    return [w["pid"] for w in st["workers"] if w["id"] == prober][0]


def live_prober_pid(p, server, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            st = json.loads(lp.request(p.admin, "GET", "/status", timeout=0.3).body)
        except OSError:
            continue
        prober = [h["prober"] for h in st["health_checks"] if h["server"] == server][0]
        return [w["pid"] for w in st["workers"] if w["id"] == prober][0]
    raise AssertionError("no worker answered /status")


def test_a_stopped_worker_s_probes_are_taken_over():
    with running("a") as os_:
        (a,) = os_
        with admin_proxy(check_script([a], FAST)) as p:
            wait_probed(os_, 2)
            prober = _prober_pid(p, a.addr)
            os.kill(prober, signal.SIGSTOP)
            try:
                t0 = time.monotonic()
                # The other worker notices the missed round within half an
                # interval and goes on probing at the same rate.
                lp.wait_until(lambda: len(a.probes_since(t0)) >= 6, 6 * INTERVAL + 3,
                              what="probes while the prober is stopped")
                # /status from the running worker (a connection that the
                # stopped one's listener took gets no answer: try another).
                assert live_prober_pid(p, a.addr) != prober
            finally:
                os.kill(prober, signal.SIGCONT)
            # Back again: still one probe per interval, not two.
            t1 = time.monotonic()
            time.sleep(2.0)
            n = len(a.probes_since(t1))
            assert 5 <= n <= 10, "%d probes in 2 s after the worker came back" % n


def test_a_killed_worker_is_restarted_and_state_and_probes_go_on():
    with running("a", "b") as os_:
        a, b = os_
        with admin_proxy(check_script([a, b], FAST)) as p:
            wait_probed(os_)
            b.health = 503
            lp.wait_until(lambda: gauge(p).get(b.addr) == 0, 5, what="b down")
            victim = _prober_pid(p, b.addr)
            os.kill(victim, signal.SIGKILL)
            lp.wait_until(lambda: victim not in p.worker_pids() and len(p.worker_pids()) == 2, 5,
                          what="the master to restart the worker")
            t0 = time.monotonic()
            lp.wait_until(lambda: len(b.probes_since(t0)) >= 4, 4 * INTERVAL + 3,
                          what="probes of b after the restart")
            # The restarted worker found b's state in shared memory: b stays out.
            for c in worker_conns(p):
                assert served_by([c], 10) == [{"a"}]
                c.close()
            assert "[warn]" in p.stderr_text() and p.stderr_text().count("server %s is down" % b.addr) == 1


def test_all_servers_down_gives_503():
    with running("a", "b", health=500) as os_:
        a, b = os_
        with admin_proxy(check_script([a, b], FAST)) as p:
            lp.wait_until(lambda: gauge(p) == {a.addr: 0, b.addr: 0}, 5, what="both servers down")
            for _ in range(4):
                assert lp.get(p.port, "/").status == 503
            assert a.requests == a.probe_count() and b.requests == b.probe_count(), "a request reached a server"


def test_expect_list_and_host():
    with running("a", "b", health=204) as os_:
        a, b = os_
        check = FAST + ', expect = { 200, 204 }, host = "health.example"'
        with admin_proxy(check_script([a, b], check)) as p:
            wait_probed(os_, 3)
            assert gauge(p) == {a.addr: 1, b.addr: 1}
            a.health = 200
            b.health = 418
            lp.wait_until(lambda: gauge(p) == {a.addr: 1, b.addr: 0}, 5, what="418 to count as a failure")
            assert {h for _, h in a.probes + b.probes} == {"health.example"}
        # expect a single status: anything else fails, 200 included.
        a.health = 200
        with admin_proxy(check_script([a], FAST + ", expect = 204"), workers=1) as p:
            lp.wait_until(lambda: gauge(p) == {a.addr: 0}, 5, what="200 to fail expect = 204")
        # By default: any 2xx or 3xx, and Host is the server's name.
        a.health, b.health = 302, 404
        n = a.probe_count()
        with admin_proxy(check_script([a, b], FAST), workers=1) as p:
            lp.wait_until(lambda: gauge(p) == {a.addr: 1, b.addr: 0}, 5, what="302 up, 404 down")
        assert {h for _, h in a.probes[n:]} == {a.addr}


@contextlib.contextmanager
def alive_and_dead():
    """An origin that answers and the address of a port nobody listens on."""
    with running("a") as (a,):
        yield a, "127.0.0.1:%d" % dead_port()


def test_timeouts_and_refusals_count_as_failures_and_never_block():
    with alive_and_dead() as (a, dead):
        # /hang is read and never answered: the probe must time out, while
        # the one worker goes on serving at once.
        check = 'path = "/hang", interval = "250ms", timeout = "200ms", fall = 2'
        script = ('local h = proxy.upstream("h", { "%s", "%s" }, { check = { %s } })\n'
                  'function on_get(req) return 200, "local\\n" end\n' % (a.addr, dead, check))
        with admin_proxy(script, workers=1) as p:
            lp.wait_until(lambda: "server %s is down" % dead in p.stderr_text(), 5, what="the dead server down")
            for _ in range(10):
                t = time.monotonic()
                assert lp.get(p.port, "/").status == 200
                assert time.monotonic() - t < 0.15, "a request waited on a probe"
            p.wait_stderr("server %s is down: 2 health check(s) failed in a row (last: timed out)" % a.addr, 5)
            assert "server %s is down: 2 health check(s) failed in a row (last: connect: Connection refused)" % dead \
                in p.stderr_text()


def test_passive_health_still_works_beside_active_checks():
    with alive_and_dead() as (a, dead):
        # Probes every 10 s: only max_fails can take the dead server out in time.
        check = 'path = "/healthz", interval = "10s", fall = 3'
        with admin_proxy(check_script([a, dead], check, "max_fails = 1, retries = 1"), workers=1) as p:
            for _ in range(6):
                assert lp.get(p.port, "/").status == 200
            w = status(p)["workers"][0]
            dead_state = [s for s in w["upstreams"][0]["servers"] if s["addr"] == dead][0]
            assert dead_state["up"] is False, w
            assert gauge(p)[dead] == 1   # the active check has not failed it yet


def test_reload_keeps_the_state_of_servers_that_stay():
    with running("a", "b", "c") as os_:
        a, b, c = os_
        d = lp.make_tmpdir()
        path = lp.write_script(check_script([a, b], FAST), directory=d)
        with admin_proxy(path) as p:
            b.health = 503
            lp.wait_until(lambda: gauge(p) == {a.addr: 1, b.addr: 0}, 5, what="b down")
            lp.write_script(check_script([a, b, c], FAST.replace("rise = 2", "rise = 20")), directory=d)
            p.send_signal(signal.SIGHUP)
            lp.wait_until(lambda: set(gauge(p)) == {a.addr, b.addr, c.addr}, 5, what="the new script's checks")
            lp.wait_until(lambda: all(w.get("generation") == 1 for w in status(p)["workers"]), 5,
                          what="both workers on the new script")
            # b stays out from the first request on: its state carried over.
            b.health = 200
            for conn in worker_conns(p):
                assert served_by([conn], 12) == [{"a", "c"}]
                conn.close()
            assert gauge(p)[b.addr] == 0
            wait_probed([c], 2)
            # A server the next script drops is no longer probed.
            lp.write_script(check_script([a, c], FAST), directory=d)
            p.send_signal(signal.SIGHUP)
            lp.wait_until(lambda: set(gauge(p)) == {a.addr, c.addr}, 5, what="b gone from the gauge")
            lp.wait_until(lambda: all(w.get("generation") == 2 for w in status(p)["workers"]), 5,
                          what="both workers on the third script")
            t0 = time.monotonic()
            wait_probed([a], a.probe_count() + 4)
            assert b.probes_since(t0 + INTERVAL) == [], "b still probed after it was removed"


def test_probes_reuse_a_kept_alive_connection():
    with running("a", keep=True) as os_:
        (a,) = os_
        with admin_proxy(check_script([a], FAST), workers=1) as p:
            wait_probed(os_, 8)
            assert a.connections <= 2, "%d connections for %d probes" % (a.connections, a.probe_count())
            assert gauge(p) == {a.addr: 1}


def test_a_kept_connection_the_server_closed_is_no_failure():
    # The server closes every connection 100 ms after its answer, before the
    # next probe: each probe finds its kept connection closed and starts
    # again on a fresh one; none counts as failed.
    with running("a", keep=True, idle_close_ms=100) as os_:
        (a,) = os_
        check = 'path = "/healthz", interval = "250ms", timeout = "200ms", fall = 1'
        with admin_proxy(check_script([a], check), workers=1) as p:
            wait_probed(os_, 10)
            assert a.connections >= 5, a.connections
            assert "is down" not in p.stderr_text(), p.stderr_text()
            assert gauge(p) == {a.addr: 1}


def test_the_cost_benchmark_runs():
    """scripts/bench/health_checks.py (make bench), small: 40 servers, 2 s."""
    out = lp.make_tmpdir()
    r = subprocess.run([sys.executable, lp.repo_path("scripts", "bench", "health_checks.py"), lp.binary(), out,
                        "40", "2", "2"], capture_output=True, text=True, timeout=50)
    m = re.search(r"^health checks: 40 servers, interval 1 s, 2 workers: (\d+) probes/s .* the checks cost "
                  r"[-0-9.]+ % of one core \(target < 1 %\): (PASS|MISS)$", r.stdout, re.M)
    assert m and r.returncode in (0, 1), r
    assert 30 <= int(m.group(1)) <= 50, r.stdout    # one probe per server per second
    with open(os.path.join(out, "health.md")) as f:
        assert m.group(0) in f.read()


def test_bad_check_options_fail_the_load():
    cases = [
        ('check = 5', "check must be a table"),
        ('check = { intervall = "1s" }', "check has no option 'intervall'"),
        ('check = { path = "healthz" }', "check.path must be a path starting with '/'"),
        ('check = { path = "/a b" }', "check.path must be"),
        ('check = { host = "a\\r\\nx: y" }', "check.host must be a host name"),
        ('check = { expect = 700 }', "check.expect must be a status"),
        ('check = { expect = { 200, "ok" } }', "check.expect must be a status"),
        ('check = { expect = {} }', "check.expect is an empty list"),
        ('check = { rise = 0 }', "rise must be a whole number >= 1"),
        ('check = { interval = "0s" }', "must be more than 0"),
        ('check = { timeout = "soon" }', "timeout: bad duration"),
    ]
    for opts, message in cases:
        path = lp.write_script(upstream_script(["127.0.0.1:1"], opts))
        r = lp.run_cli(["--check", path])
        assert r.returncode == 2 and message in r.stderr and "proxy.upstream" in r.stderr, (opts, r)
    ok = lp.write_script(upstream_script(["127.0.0.1:1"], 'check = {}'))
    r = lp.run_cli(["--check", ok])
    assert r.returncode == 0, r
