"""SPEC §2 and §6: hot reload under load, graceful shutdown of a
proxied upload, crash-loop backoff, /metrics, /status and the access log."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import lp
from origin import Origin, upstream_script

LOCAL_V = r'''
local data = proxy.shared("ops")
data:add("boot", "kept")
function on_get(req)
    return 200, "%s gen=" .. proxy.generation .. " boot=" .. tostring(data:get("boot")) .. "\n"
end
function on_post(req)
    data:set("boot", req.body)
    return 200, "set\n"
end
'''

BROKEN = "function on_get(req) return 200, \"never\" \nlocal x = = 1\n"


def replace_script(path, text):
    """Atomically, as an editor or a deploy tool does (rename over)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def wrk(port, path, seconds, conns=50):
    exe = shutil.which("wrk")
    assert exe, "wrk is not installed (scripts/deps.sh installs it)"
    out = subprocess.run([exe, "-t2", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s",
                          "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=seconds + 30)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    m = re.search(r"(\d+) requests in", text)
    assert m, text
    return int(m.group(1)), text


def metrics(admin_port):
    """Parses the Prometheus text format strictly: every line is a comment
    (# HELP / # TYPE) or `name{labels} value`. Returns {(name, labels): value}."""
    r = lp.get(admin_port, "/metrics")
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/plain"), r.header("content-type")
    out = {}
    typed = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                        r'(-?[0-9.e+]+|\+Inf|NaN)$')
    for line in r.body.decode().splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            typed[name] = kind
            continue
        m = sample.match(line)
        assert m, "not Prometheus text: %r" % line
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, "sample before its # TYPE: %r" % line
        key = (name, labels)
        assert key not in out, "duplicate series %r" % (key,)
        out[key] = float(value)
    return out


def metric(m, name, labels=""):
    return m.get((name, labels), 0.0)


# ---------------------------------------------------------------------------
# reload


def test_reload_swaps_script_keeps_shared_dict_and_counts_generation():
    with lp.Proxy(LOCAL_V % "v1", workers=2) as p:
        lp.expect(lp.post(p.port, "/", "set-before"), 200)
        assert lp.get(p.port, "/").body == b"v1 gen=0 boot=set-before\n"
        replace_script(p.script_path, LOCAL_V % "v2")
        p.send_signal(signal.SIGHUP)
        p.wait_stderr("generation 1 loaded")
        lp.wait_until(lambda: all(lp.get(p.port, "/").body == b"v2 gen=1 boot=set-before\n"
                                  for _ in range(10)), what="v2 on every worker")
        # A broken script: logged with file:line, the old one keeps serving.
        replace_script(p.script_path, BROKEN)
        p.send_signal(signal.SIGHUP)
        err = p.wait_stderr("reload failed")
        assert re.search(r"script\.lua:2:", err), err
        for _ in range(10):
            assert lp.get(p.port, "/").body == b"v2 gen=1 boot=set-before\n"
        replace_script(p.script_path, LOCAL_V % "v3")
        p.send_signal(signal.SIGHUP)
        p.wait_stderr("generation 2 loaded")
        lp.wait_until(lambda: lp.get(p.port, "/").body == b"v3 gen=2 boot=set-before\n", what="v3")
        assert p.worker_pids() and len(p.worker_pids()) == 2
        assert p.stop() == 0


def _reload_storm(p, versions_seen, stop, path, version_of):
    """20 SIGHUPs, ~0.25 s apart, cycling v2, v1, broken; records the
    version each probe request sees."""
    texts = []
    order = ["v2", "v1", "broken"]
    for i in range(20):
        texts.append(order[i % 3])
    good = 0
    last_good = "v1"
    for name in texts:
        replace_script(p.script_path, BROKEN if name == "broken" else p.versions[name])
        p.send_signal(signal.SIGHUP)
        if name != "broken":
            good += 1
            last_good = name
        t_end = time.monotonic() + 0.25
        while time.monotonic() < t_end:
            try:
                versions_seen.append(version_of(path))
            except Exception as e:  # noqa: BLE001 - any failure of a probe is a finding
                versions_seen.append("error: %r" % e)
            time.sleep(0.02)
    stop.set()
    return good, last_good


def _reload_under_load(p, path, version_of, admin_port):
    seen = []
    stop = threading.Event()
    result = {}

    def storm():
        # The reloads begin once wrk's load is there, not after a guess.
        try:
            lp.wait_until(lambda: metric(metrics(admin_port), "luaproxy_requests_total", '{code="200"}') > 200,
                          5, interval=0.05, what="wrk's load on the server")
        except AssertionError as e:
            result["error"] = str(e)
            stop.set()
            return
        result["good"], result["last"] = _reload_storm(p, seen, stop, path, version_of)

    t = threading.Thread(target=storm)
    t.start()
    total, text = wrk(p.port, path, 7)
    t.join(30)
    assert "error" not in result, result.get("error")
    assert "Socket errors" not in text, "socket errors during reloads:\n" + text
    assert "Non-2xx" not in text, "non-2xx responses during reloads:\n" + text
    assert total > 1000, text
    errors = [v for v in seen if v.startswith("error")]
    assert not errors, errors[:5]
    assert "v1" in seen and "v2" in seen, set(seen)
    # Both workers end on the last good version.
    lp.wait_until(lambda: all(version_of(path) == result["last"] for _ in range(10)),
                  what="the last good version everywhere")
    m = metrics(admin_port)
    assert metric(m, "luaproxy_reloads_total", '{result="ok"}') == result["good"]
    assert metric(m, "luaproxy_reloads_total", '{result="failed"}') == 20 - result["good"]
    assert metric(m, "luaproxy_generation") == result["good"]
    assert "restarting" not in p.stderr_text(), "a worker died during reloads"


def test_reload_under_load_local_handler():
    admin = lp.free_port()
    versions = {v: LOCAL_V % v for v in ("v1", "v2")}
    with lp.Proxy(versions["v1"], workers=2, args=["--admin", "127.0.0.1:%d" % admin]) as p:
        p.versions = versions
        lp.post(p.port, "/", "survives")

        def version_of(path):
            r = lp.get(p.port, path)
            assert r.status == 200, r
            assert r.body.endswith(b" boot=survives\n"), r.body
            return r.body.split(b" ")[0].decode()

        _reload_under_load(p, "/", version_of, admin)
        assert p.stop() == 0


def test_reload_under_load_proxied_route():
    admin = lp.free_port()
    with Origin() as o:
        def version(v):
            return upstream_script([o], extra='function on_response(req, res) res:set_header("x-v", "%s") end' % v)
        versions = {v: version(v) for v in ("v1", "v2")}
        with lp.Proxy(versions["v1"], workers=2, args=["--admin", "127.0.0.1:%d" % admin]) as p:
            p.versions = versions

            def version_of(path):
                r = lp.get(p.port, path)
                assert r.status == 200, r
                return r.header("x-v")

            _reload_under_load(p, "/size/100", version_of, admin)
            m = metrics(admin)
            # The pool stayed warm: most requests went on reused connections.
            assert metric(m, "luaproxy_pool_reuses_total") > 1000, m
            assert p.stop() == 0
        o.assert_clean()


def test_reload_keeps_pooled_connections_of_servers_that_remain():
    with Origin(name="a") as a, Origin(name="b") as b:
        with lp.Proxy(upstream_script([a], extra="-- 0"), workers=1) as p:
            for _ in range(3):
                lp.expect(lp.get(p.port, "/size/10"), 200)
            assert a.connections == 1
            for i in range(5):
                replace_script(p.script_path, upstream_script([a], extra="-- %d" % (i + 1)))
                p.send_signal(signal.SIGHUP)
                p.wait_stderr("generation %d loaded" % (i + 1))
                lp.expect(lp.get(p.port, "/size/10"), 200)
            assert a.connections == 1, "a reload dropped the pooled connection (%d connections)" % a.connections
            # A script without server a: its idle connection is closed.
            replace_script(p.script_path, upstream_script([b]))
            p.send_signal(signal.SIGHUP)
            p.wait_stderr("generation 6 loaded")
            lp.wait_until(lambda: a.open_connections == 0, what="the connection to the removed server closed")
            assert lp.get(p.port, "/size/10").header("x-origin") == "b"
            assert p.stop() == 0


def test_request_in_flight_finishes_on_the_old_script():
    with Origin() as o:
        v = lambda tag: upstream_script([o], extra='function on_response(req, res) res:set_header("x-v", "%s") end' % tag)
        with lp.Proxy(v("old"), workers=1) as p:
            c = lp.Conn(p.port)
            c.send(lp.build_request("GET", "/slow/800"))
            o.wait_requests(1)
            replace_script(p.script_path, v("new"))
            p.send_signal(signal.SIGHUP)
            p.wait_stderr("generation 1 loaded")
            assert lp.get(p.port, "/size/1").header("x-v") == "new"
            r = c.read_response(timeout=5)
            assert r.status == 200 and r.header("x-v") == "old", r
            c.close()
            p.wait_stderr("generation 0 closed")
            assert p.stop() == 0


# ---------------------------------------------------------------------------
# shutdown and supervision


def test_sigterm_lets_a_slow_proxied_upload_finish():
    with Origin() as o:
        with lp.Proxy(upstream_script([o]), workers=1) as p:
            idle = lp.Conn(p.port)
            lp.expect(idle.request("GET", "/size/5"), 200)
            size = 256 * 1024
            body = os.urandom(size)
            c = lp.Conn(p.port, timeout=10)
            c.send(lp.build_request("POST", "/upload", headers={"Content-Length": str(size)}))
            c.send(body[:1000])
            o.wait_requests(2)
            p.send_signal(signal.SIGTERM)
            # The idle keep-alive connection is closed, not reset.
            assert idle.closed_by_peer(timeout=3) and not idle.reset, "idle connection reset or left open"
            for i in range(1000, size, 32 * 1024):
                c.send(body[i:i + 32 * 1024])
                time.sleep(0.05)
            r = c.read_response(timeout=10)
            assert r.status == 200, r
            assert "close" in r.connection_tokens(), r
            assert p.wait(10) == 0, p.stderr_text()
            assert o.last().body_len == size


# Under AddressSanitizer a SEGV would be reported (and turned into exit 1):
# these crashes are on purpose, so let them be plain signals.
CRASH_ENV = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":handle_segv=0").lstrip(":")}

CRASHER = r'''
local ffi = require("ffi")
-- The master's check runs this first (n = 1); every worker start after it
-- dies at once, as a script corrupting memory through ffi would.
local n = proxy.shared("crash"):incr("starts", 1, 0)
if n > 1 then ffi.cast("int *", 0)[0] = 1 end
function on_get(req) return 200, "unreachable" end
'''


def test_crash_loop_is_slowed_down():
    # No worker ever listens, so lp.Proxy cannot wait for one: by hand.
    d = lp.make_tmpdir()
    path = lp.write_script(CRASHER, directory=d)
    port = lp.free_port()
    err_path = os.path.join(d, "err.log")
    with open(err_path, "wb") as err:
        proc = subprocess.Popen([lp.binary(), "-w", "1", "-l", "127.0.0.1:%d" % port, path],
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                env=dict(os.environ, **CRASH_ENV))
    try:
        # Backoff 0, 100, 200 ms: the 4th death comes 300 ms or more after
        # the 1st; a tight fork loop would be far past 10 by then.
        t0 = time.monotonic()
        lp.wait_until(lambda: open(err_path).read().count("killed by signal 11") >= 4, 5,
                      interval=0.01, what="4 worker deaths")
        dt = time.monotonic() - t0
        assert proc.poll() is None, "the master exited"
        text = open(err_path).read()
        deaths = text.count("killed by signal 11")
        assert deaths <= 6, "%d worker deaths in %.2fs:\n%s" % (deaths, dt, text[-2000:])
        assert dt >= 0.3, "4 worker deaths within %.2fs: no backoff\n%s" % (dt, text[-2000:])
        assert "restart in 100 ms" in text and "restart in 200 ms" in text, text[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def test_master_survives_a_reload_whose_check_crashes():
    script = r'''
local ffi = require("ffi")
if proxy.shared("c"):get("armed") then ffi.cast("int *", 0)[0] = 1 end
function on_get(req) return 200, "alive" end
function on_post(req) proxy.shared("c"):set("armed", true) return 200, "armed" end
'''
    with lp.Proxy(script, workers=1, env=CRASH_ENV) as p:
        lp.expect(lp.post(p.port, "/", "x"), 200, b"armed")
        p.send_signal(signal.SIGHUP)
        err = p.wait_stderr("reload failed")
        assert "crashed" in err, err
        assert p.alive()
        lp.expect(lp.get(p.port, "/"), 200, b"alive")
        assert p.stop() == 0


# ---------------------------------------------------------------------------
# metrics, status, access log


def test_metrics_count_traffic_and_histogram_adds_up():
    admin = lp.free_port()
    with Origin() as o:
        script = upstream_script([o], extra='''
function route(req)
    if req.path:sub(1, 6) == "/size/" then return up end
    if req.path == "/boom" then error("boom") end
end
function on_get(req) return 200, "local" end''')
        with lp.Proxy(script, workers=2, args=["--admin", "127.0.0.1:%d" % admin]) as p:
            before = metrics(admin)
            for _ in range(7):
                lp.expect(lp.get(p.port, "/here"), 200)
            for _ in range(5):
                lp.expect(lp.get(p.port, "/size/262144"), 200)
            lp.expect(lp.get(p.port, "/boom"), 500)
            lp.expect(lp.get(p.port, "/nothing", headers={"x": "y"}), 200)
            m = metrics(admin)
            assert metric(m, "luaproxy_requests_total", '{code="200"}') - \
                metric(before, "luaproxy_requests_total", '{code="200"}') == 13
            assert metric(m, "luaproxy_requests_total", '{code="500"}') == 1
            assert metric(m, "luaproxy_lua_errors_total") == 1
            assert metric(m, "luaproxy_upstream_requests_total",
                          '{upstream="backend",server="%s",code="200"}' % o.addr) == 5
            # Past what came with the head, bodies are spliced.
            assert metric(m, "luaproxy_spliced_bytes_total") >= 5 * 200000
            buckets = sorted(((float("inf") if k[1] == '{le="+Inf"}' else float(k[1][5:-2])), v)
                             for k, v in m.items() if k[0] == "luaproxy_request_duration_seconds_bucket")
            assert len(buckets) >= 10
            counts = [v for _, v in buckets]
            assert counts == sorted(counts), "buckets are not cumulative: %r" % buckets
            assert counts[-1] == metric(m, "luaproxy_request_duration_seconds_count") == 14
            assert metric(m, "luaproxy_request_duration_seconds_sum") > 0
            # Every client above has closed: once the workers have seen the
            # closes the gauge counts only the scrape's own connection (the
            # --admin listener is a worker's); three held clients add 3.
            def active():
                return metric(metrics(admin), "luaproxy_connections_active")
            lp.wait_until(lambda: active() == 1, what="luaproxy_connections_active == 1 (the scrape) "
                          "after the clients closed")
            held = [lp.Conn(p.port) for _ in range(3)]
            try:
                for c in held:
                    lp.expect(c.request("GET", "/here"), 200)
                lp.wait_until(lambda: active() == 4, what="luaproxy_connections_active == 4 with three "
                              "clients open")
            finally:
                for c in held:
                    c.close()
            lp.wait_until(lambda: active() == 1, what="luaproxy_connections_active == 1 after three closes")
            assert metric(m, "luaproxy_workers") == 2
            assert lp.get(admin, "/nope").status == 404
            assert p.stop() == 0


def test_status_is_json_with_workers_and_upstreams():
    admin = lp.free_port()
    with Origin() as o:
        other = lp.free_port()
        with lp.Proxy(upstream_script([o, other]), workers=2,
                      args=["--admin", "127.0.0.1:%d" % admin]) as p:
            lp.expect(lp.get(p.port, "/size/1"), 200)
            pids = sorted(p.wait_workers(2))
            lp.wait_until(lambda: all(not w.get("starting") for w in
                                      json.loads(lp.get(admin, "/status").body)["workers"]),
                          what="every worker published")
            r = lp.get(admin, "/status")
            assert r.header("content-type") == "application/json"
            st = json.loads(r.body)
            assert st["master_pid"] == p.pid
            assert st["generation"] == 0
            assert sorted(w["pid"] for w in st["workers"]) == pids
            for w in st["workers"]:
                (u,) = w["upstreams"]
                assert u["name"] == "backend" and u["balance"] == "round_robin"
                assert [s["addr"] for s in u["servers"]] == [o.addr, "127.0.0.1:%d" % other]
                for s in u["servers"]:
                    assert isinstance(s["up"], bool) and s["active"] == 0 and s["idle"] in (0, 1)
            # The one request left one idle pooled connection somewhere (the
            # other worker's part may be up to a second old).
            lp.wait_until(lambda: sum(s["idle"] for w in json.loads(lp.get(admin, "/status").body)["workers"]
                                      for s in w["upstreams"][0]["servers"]) == 1, what="one idle connection")
            assert p.stop() == 0


def test_status_shows_a_down_server_and_idle_connections():
    admin = lp.free_port()
    dead = lp.free_port()
    with Origin() as o:
        script = upstream_script([o, dead], opts='max_fails = 1, fail_timeout = "30s", retries = 1')
        with lp.Proxy(script, workers=1, args=["--admin", "127.0.0.1:%d" % admin]) as p:
            for _ in range(4):
                lp.expect(lp.get(p.port, "/size/1"), 200)
            st = json.loads(lp.get(admin, "/status").body)
            servers = {s["addr"]: s for s in st["workers"][0]["upstreams"][0]["servers"]}
            assert servers[o.addr]["up"] is True and servers[o.addr]["idle"] == 1, servers
            assert servers["127.0.0.1:%d" % dead]["up"] is False, servers
            assert p.stop() == 0


def test_access_log_line_per_request_and_sigusr1_reopens():
    d = lp.make_tmpdir()
    log = os.path.join(d, "access.log")
    with Origin() as o:
        script = upstream_script([o], extra='''
function route(req) if req.path == "/local" then return 201, "made" end return up end''')
        with lp.Proxy(script, workers=2, args=["--access-log", log]) as p:
            lp.expect(lp.get(p.port, "/local", headers={"User-Agent": "tester/1", "Referer": "http://127.0.0.1/r"}), 201)
            lp.expect(lp.get(p.port, "/size/300?q=1"), 200)
            lines = lp.wait_until(lambda: (lambda t: t if len(t) == 2 else None)(open(log).read().splitlines()),
                                  what="two access-log lines")
            pat = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                             r'"(?P<req>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<ref>[^"]*)" "(?P<ua>[^"]*)" '
                             r'(?P<rt>\d+\.\d{3}) (?P<up>\S+) (?P<ut>\S+)$')
            first, second = (pat.match(line) for line in lines)
            assert first and second, lines
            assert first["req"] == "GET /local HTTP/1.1" and first["status"] == "201"
            assert first["ua"] == "tester/1" and first["ref"] == "http://127.0.0.1/r"
            assert first["up"] == "-" and first["ut"] == "-"
            assert int(first["bytes"]) > 4
            assert second["req"] == "GET /size/300?q=1 HTTP/1.1" and second["status"] == "200"
            assert second["up"] == o.addr and re.match(r"^\d+\.\d{3}$", second["ut"])
            assert int(second["bytes"]) > 300
            # logrotate: rename, SIGUSR1, and the next lines go to a new file.
            os.rename(log, log + ".1")
            p.send_signal(signal.SIGUSR1)
            lp.wait_until(lambda: os.path.exists(log), what="a new access log after SIGUSR1")
            for _ in range(4):
                lp.expect(lp.get(p.port, "/local"), 201)
            lp.wait_until(lambda: len(open(log).read().splitlines()) == 4, what="4 lines in the new file")
            assert len(open(log + ".1").read().splitlines()) == 2
            assert p.stop() == 0


def test_access_log_escapes_quotes_and_controls():
    d = lp.make_tmpdir()
    log = os.path.join(d, "access.log")
    with lp.Proxy('function on_get(req) return 200, "x" end', args=["--access-log", log]) as p:
        lp.expect(lp.get(p.port, "/", headers={"User-Agent": 'a"b\\c\xe9'}), 200)
        line = lp.wait_until(lambda: open(log).read(), what="a line")
        assert '"a\\x22b\\x5Cc\\xE9"' in line, line
        assert p.stop() == 0


def test_admin_address_in_use_is_a_clear_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = lp.run_cli(["-l", "127.0.0.1:%d" % lp.free_port(), "--admin", "127.0.0.1:%d" % port,
                        lp.write_script('function on_get() return 200 end', directory=lp.make_tmpdir())])
        assert r.returncode == 1, r
        assert "--admin" in r.stderr and "in use" in r.stderr, r
    finally:
        s.close()
