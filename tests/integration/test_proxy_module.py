"""SPEC §3 (the proxy module): proxy.log, proxy.now, worker_id,
worker_count, generation."""

import re
import time

import lp


def test_log_goes_to_stderr_with_level_and_worker_pid():
    script = ('function on_get(req)\n'
              '  proxy.log("warn", "hello-from-lua ", 42, " ", req.path)\n'
              '  return 200, "logged"\n'
              'end\n')
    with lp.Proxy(script) as p:
        [worker] = p.wait_workers(1)
        lp.expect(lp.get(p.port, "/logme"), 200, b"logged")
        text = p.wait_stderr("hello-from-lua 42 /logme")
        line = [l for l in text.split("\n") if "hello-from-lua" in l][0]
        assert re.search(r"\bwarn", line, re.I), "no level in %r" % line
        assert str(worker) in line, "worker pid %d not in %r" % (worker, line)
        assert re.search(r"\d\d:\d\d:\d\d", line), "no time in %r" % line


def test_log_levels_filtered():
    script = ('function on_get(req)\n'
              '  proxy.log("debug", "dbg-marker")\n'
              '  proxy.log("info", "info-marker")\n'
              '  proxy.log("error", "err-marker")\n'
              '  return 200\n'
              'end\n')
    with lp.Proxy(script) as p:   # default --log-level info
        lp.expect(lp.get(p.port, "/"), 200)
        text = p.wait_stderr("err-marker")
        assert "info-marker" in text, text
        assert "dbg-marker" not in text, "debug message logged at --log-level info"
    with lp.Proxy(script, args=["--log-level", "error"]) as p:
        lp.expect(lp.get(p.port, "/"), 200)
        text = p.wait_stderr("err-marker")
        assert "info-marker" not in text, "info message logged at --log-level error"
    with lp.Proxy(script, args=["--log-level", "debug"]) as p:
        lp.expect(lp.get(p.port, "/"), 200)
        p.wait_stderr("err-marker")
        p.wait_stderr("dbg-marker")


def test_log_bad_level_is_an_error():
    script = ('function on_get(req)\n'
              '  local ok = pcall(proxy.log, "shout", "x")\n'
              '  return 200, tostring(ok)\n'
              'end\n')
    with lp.Proxy(script) as p:
        r = lp.get(p.port, "/")
        assert r.status == 200 and r.body == b"false", "proxy.log with a bad level: %r" % r


def test_now_is_unix_time_with_fraction():
    script = 'function on_get(req) return 200, string.format("%.6f", proxy.now()) end'
    with lp.Proxy(script) as p:
        t1 = float(lp.expect(lp.get(p.port, "/"), 200).body)
        assert abs(t1 - time.time()) < 2, "proxy.now() %.3f vs time.time() %.3f" % (t1, time.time())
        time.sleep(0.05)
        t2 = float(lp.expect(lp.get(p.port, "/"), 200).body)
        assert 0.03 < t2 - t1 < 1.5, "proxy.now() advanced %.4fs over a 50ms pause" % (t2 - t1)


WORKER = ('function on_get(req)\n'
          '  return 200, proxy.worker_id .. " " .. proxy.worker_count .. " " .. type(proxy.worker_id)\n'
          'end\n')


def test_worker_count_two():
    with lp.Proxy(WORKER, workers=2) as p:
        p.wait_workers(2)
        for _ in range(20):
            wid, count, typ = lp.expect(lp.get(p.port, "/"), 200).body.decode().split()
            assert count == "2", "worker_count %s with -w 2" % count
            assert typ == "number", "worker_id is a %s" % typ
            assert wid in ("0", "1"), "worker_id %s with -w 2 (0 to worker_count - 1)" % wid


def test_worker_ids_both_seen():
    with lp.Proxy(WORKER, workers=2) as p:
        p.wait_workers(2)
        ids = set()
        for _ in range(200):
            ids.add(lp.expect(lp.get(p.port, "/"), 200).body.decode().split()[0])
            if len(ids) == 2:
                break
        assert ids == {"0", "1"}, "worker ids %r with -w 2 after 200 fresh connections" % ids


def test_worker_count_default_is_cpu_count():
    import os
    script = 'function on_get(req) return 200, tostring(proxy.worker_count) end'
    with lp.Proxy(script, workers=None) as p:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        got = int(lp.expect(lp.get(p.port, "/"), 200).body)
        assert got in (n, os.cpu_count()), "default worker_count %d, CPUs %d" % (got, os.cpu_count())
        p.wait_workers(got)


def test_top_level_runs_in_every_worker():
    script = ('proxy.log("info", "loaded-in-worker ", proxy.worker_id)\n'
              'function on_get(req) return 200 end\n')
    with lp.Proxy(script, workers=2) as p:
        p.wait_workers(2)
        lp.wait_until(lambda: p.stderr_text().count("loaded-in-worker") >= 2, 3,
                      what="two loaded-in-worker lines")
        text = p.stderr_text()
        ids = set(re.findall(r"loaded-in-worker (\d+)", text))
        assert ids == {"0", "1"}, "top level ran for worker ids %r:\n%s" % (ids, text)


def test_generation_starts_at_zero():
    script = 'function on_get(req) return 200, tostring(proxy.generation) end'
    with lp.Proxy(script) as p:
        lp.expect(lp.get(p.port, "/"), 200, b"0")
