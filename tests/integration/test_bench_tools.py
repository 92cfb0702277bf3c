"""The benchmark's own machinery (scripts/bench/): the targets table of
report.py from synthetic results, and the idle-connection holder against a
real luaproxy. The benchmarks themselves are not run here."""

import os
import signal
import subprocess
import sys
import time

import lp

BENCH = lp.repo_path("scripts", "bench")
CLK_TCK = 100


def run_report(rows, mem_rows, workers=2, scaling="small-c50"):
    d = lp.make_tmpdir()
    tsv, mem, md = os.path.join(d, "r.tsv"), os.path.join(d, "m.tsv"), os.path.join(d, "r.md")
    with open(tsv, "w") as f:
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    with open(mem, "w") as f:
        for r in mem_rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    p = subprocess.run([sys.executable, os.path.join(BENCH, "report.py"), tsv, mem, md, str(CLK_TCK),
                        str(workers), scaling, "Date: test"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    with open(md) as f:
        assert f.read().startswith("# luaproxy benchmark"), "results.md not written"
    return p.stdout


def target_row(out, target, case):
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 7 and cells[0] == target and cells[1] == case:
            return cells
    raise AssertionError("no row %r / %r in:\n%s" % (target, case, out))


def ok_row(proxy, case, requests, ticks, nbytes=0, split=""):
    # proxy case status requests seconds bytes p99_ms cputicks notes split
    return [proxy, case, "ok", requests, "10.0", nbytes, "1.0", ticks, "", split]


def test_report_targets_pass_and_miss():
    """CPU per request: luaproxy 100 ticks for 200,000 requests = 5 µs,
    nginx 10 µs (ratio 0.50: PASS at ≤ 0.70), HAProxy 4 µs (1.25: MISS at
    < 1.00); requests/s compared the other way round."""
    rows = [
        ok_row("luaproxy", "small-c50", 200000, 100, split="60/40"),
        ok_row("nginx", "small-c50", 100000, 100),
        ok_row("haproxy", "small-c50", 250000, 100),
        ok_row("nginx-lua", "small-c50", 100000, 140),
    ]
    out = run_report(rows, [])
    r = target_row(out, "proxied: CPU/req vs nginx proxy_pass", "100 B, 50 conn")
    assert r[2] == "5.0 µs/req" and r[4] == "0.50×" and r[6] == "PASS", r
    r = target_row(out, "proxied: CPU/req vs HAProxy", "100 B, 50 conn")
    assert r[4] == "1.25×" and r[6] == "MISS", r
    r = target_row(out, "proxied: req/s vs nginx", "100 B, 50 conn")
    assert r[4] == "2.00×" and r[6] == "PASS", r
    r = target_row(out, "proxied: req/s vs HAProxy", "100 B, 50 conn")
    assert r[4] == "0.80×" and r[6] == "MISS", r
    r = target_row(out, "Lua route: CPU/req vs nginx access_by_lua", "100 B, 50 conn")
    assert r[4] == "0.36×" and r[6] == "PASS", r
    assert "Targets (issue 7): 3 PASS, 2 MISS" in out, out
    assert "worker CPU split 60/40 %" in out, out


def test_report_missing_reference_is_not_a_result():
    out = run_report([ok_row("luaproxy-kv", "kv-c50", 100000, 50)], [])
    r = target_row(out, "local handler: CPU/req vs nginx content_by_lua", "kv GET, 50 conn")
    assert r[6] == "n/a (no nginx-lua-kv figure)", r
    assert "0 PASS, 0 MISS" in out, out


def test_report_large_bodies_memory_and_scaling():
    """1 GB moved: luaproxy 0.30 s, nginx 0.50 s (0.60: MISS at ≤ 0.50);
    idle memory from RSS growth; scaling 2 × 5 / 6 = 1.67 (MISS at 1.70)."""
    gb = 10 ** 9
    rows = [
        ok_row("luaproxy", "1m-c10", 1000, 30, nbytes=gb),
        ok_row("nginx", "1m-c10", 1000, 50, nbytes=gb),
        ok_row("haproxy-splice", "1m-c10", 1000, 30, nbytes=gb),
        ok_row("luaproxy", "small-c50", 100000, 60),
        ok_row("luaproxy-w1", "small-c50", 100000, 50),
    ]
    mem = [["luaproxy", "ok", 10000, 8000, 10500, ""], ["nginx", "ok", 10000, 20000, 24800, ""]]
    out = run_report(rows, mem)
    r = target_row(out, "large body: CPU/GB vs nginx", "1 MiB, 10 conn")
    assert r[2] == "0.30 s/GB" and r[4] == "0.60×" and r[6] == "MISS", r
    r = target_row(out, "large body: CPU/GB vs HAProxy splice-auto", "1 MiB, 10 conn")
    assert r[4] == "1.00×" and r[6] == "PASS", r  # "at or below"
    r = target_row(out, "idle memory: KiB/conn (RSS)", "idle keep-alive")
    assert r[2] == "0.25 KiB" and r[3] == "0.48 KiB (nginx)" and r[6] == "PASS", r
    r = target_row(out, "scaling: projected -w2 / -w1 req/s", "100 B, 50 conn")
    assert r[4] == "1.67×" and r[6] == "MISS", r


def test_idle_conns_holder():
    """idle_conns.py opens its connections, each makes one request, says
    "ready N", holds them idle until SIGTERM, then exits 0."""
    script = lp.write_script('function on_get(req) return 200, "ok\\n" end\n')
    with lp.Proxy(script, workers=1) as p:
        h = subprocess.Popen([sys.executable, os.path.join(BENCH, "idle_conns.py"), str(p.port), "40", "/",
                              "20"], stdout=subprocess.PIPE, text=True)
        try:
            line = h.stdout.readline().strip()
            assert line == "ready 40", line
            time.sleep(0.2)
            assert h.poll() is None, "the holder did not wait for SIGTERM"
            h.send_signal(signal.SIGTERM)
            assert h.wait(timeout=5) == 0
        finally:
            if h.poll() is None:
                h.kill()
                h.wait()


def test_idle_conns_holder_reports_failure():
    """A non-200 answer stops it with "failed N: ..." and status 1."""
    script = lp.write_script('function on_get(req) return 404, "no\\n" end\n')
    with lp.Proxy(script, workers=1) as p:
        h = subprocess.run([sys.executable, os.path.join(BENCH, "idle_conns.py"), str(p.port), "5", "/",
                            "10"], capture_output=True, text=True, timeout=15)
        assert h.returncode == 1, h
        assert h.stdout.startswith("failed 1: answer 404"), h.stdout
