"""The benchmark's Redis-on-the-path and waiting-requests cases
(scripts/bench/): their targets in report.py from synthetic results, the
waiting-request holder against a real luaproxy running waiting.lua.in, and
proxy-redis.lua.in against a real redis-server. The benchmarks themselves
are not run here."""

import os
import signal
import subprocess
import sys

import lp
import redis
from origin import Origin
from test_bench_tools import ok_row, run_report, runs_row, target_row

BENCH = lp.repo_path("scripts", "bench")


def report_with_waiting(rows, wait_rows):
    d = lp.make_tmpdir()
    wait = os.path.join(d, "w.tsv")
    with open(wait, "w") as f:
        for r in wait_rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    return run_report(rows, [], extra_args=["--waiting=" + wait])


def test_report_redis_and_waiting_targets():
    """Redis: luaproxy 120 ticks for 100,000 requests (12 µs) against
    nginx-lua's 200 (20 µs): 0.60×, PASS at ≤ 0.70; 100,000 against
    90,000 requests in 10 s: 1.11×, PASS. Waiting: (43,000 - 3,000) KiB
    over 10,000 requests = 4.0 KiB, PASS at ≤ 4 KiB; nginx-lua 10.0 KiB:
    0.40×, PASS at ≤ 0.50."""
    rows = [ok_row("luaproxy-redis", "redis-c50", 100000, 120),
            ok_row("nginx-lua-redis", "redis-c50", 90000, 180)]
    waits = [["luaproxy-waiting", "ok", 10000, 3000, 43000, ""],
             ["nginx-lua-waiting", "ok", 10000, 30000, 130000, ""]]
    out = report_with_waiting(rows, waits)
    case = "Redis INCR+EXPIRE, 100 B, 50 conn"
    r = target_row(out, "Redis on the path: CPU/req vs nginx-lua", case)
    assert r[2] == "12.0 µs/req" and r[4] == "0.60×" and r[6] == "PASS", r
    r = target_row(out, "Redis on the path: req/s vs nginx-lua", case)
    assert r[4] == "1.11×" and r[6] == "PASS", r
    # Runs of the redis case are compared with nginx-lua-redis.
    assert runs_row(out, "luaproxy-redis", case)[3] == "1.11×", out
    r = target_row(out, "waiting requests: KiB/req (RSS) vs nginx-lua ngx.sleep", "in proxy.sleep")
    assert r[2] == "4.00 KiB" and r[4] == "0.40×" and r[6] == "PASS", r
    r = target_row(out, "waiting requests: KiB/req (RSS)", "in proxy.sleep")
    assert r[2] == "4.00 KiB" and r[6] == "PASS", r
    assert "Targets: 4 PASS, 0 MISS" in out, out
    assert "Requests waiting in Lua" in out and "| luaproxy-waiting " in out, out


def test_report_waiting_misses_and_a_failed_reference():
    waits = [["luaproxy-waiting", "ok", 1000, 3000, 8000, ""],
             ["nginx-lua-waiting", "failed", 0, 30000, 0, "holder: failed 12: refused"]]
    out = report_with_waiting([], waits)
    r = target_row(out, "waiting requests: KiB/req (RSS)", "in proxy.sleep")
    assert r[2] == "5.00 KiB" and r[6] == "MISS", r
    r = target_row(out, "waiting requests: KiB/req (RSS) vs nginx-lua ngx.sleep", "in proxy.sleep")
    assert r[6] == "n/a (no nginx-lua-waiting figure)", r
    assert "- waiting requests: KiB/req (RSS), in proxy.sleep: MISS by 1.00 KiB" in out, out
    assert "holder: failed 12: refused" in out, out


def render(template, values):
    with open(os.path.join(BENCH, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    assert "@" not in text.replace("@@", ""), text
    return text


def test_waiting_holder_against_luaproxy():
    with lp.Proxy(render("waiting.lua.in", {}), workers=2) as p:
        holder = subprocess.Popen([sys.executable, os.path.join(BENCH, "waiting.py"), str(p.port), "300", "60"],
                                  stdout=subprocess.PIPE, text=True, cwd=BENCH, start_new_session=True)
        try:
            assert holder.stdout.readline().strip() == "ready 300"
            # All 300 wait: none has an answer until released.
            lp.expect(lp.get(p.port, "/waiting"), 200, b"300")
            holder.send_signal(signal.SIGUSR1)
            out, _ = holder.communicate(timeout=30)
        finally:
            if holder.poll() is None:
                holder.kill()
                holder.wait(5)
        assert out.strip() == "done 300 of 300" and holder.returncode == 0, (out, holder.returncode)


def test_the_redis_route_counts_in_redis_then_proxies():
    with redis.start() as rd, Origin(name="small") as small:
        script = render("proxy-redis.lua.in", {"SMALL_PORT": small.port, "KEEPALIVE": 8,
                                               "REDIS_PORT": rd.port})
        with lp.Proxy(script, env=redis.lua_env()) as p:
            for _ in range(5):
                r = lp.expect(lp.get(p.port, "/"), 200)
                assert r.headers.get("x-origin") == "small", r
            assert str(rd.command("GET", "bench:hits")) == "5"
            assert 0 < rd.command("TTL", "bench:hits") <= 60
            rd.kill()
            lp.expect(lp.get(p.port, "/"), 503)
