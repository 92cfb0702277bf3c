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


def run_report(rows, mem_rows, workers=2, scaling="small-c50", md_too=False, extra_args=()):
    d = lp.make_tmpdir()
    tsv, mem, md = os.path.join(d, "r.tsv"), os.path.join(d, "m.tsv"), os.path.join(d, "r.md")
    with open(tsv, "w") as f:
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    with open(mem, "w") as f:
        for r in mem_rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    p = subprocess.run([sys.executable, os.path.join(BENCH, "report.py"), tsv, mem, md, str(CLK_TCK),
                        str(workers), scaling, *extra_args, "Date: test"], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0, p.stderr
    with open(md) as f:
        md_text = f.read()
    assert md_text.startswith("# luaproxy benchmark"), "results.md not written"
    return (p.stdout, md_text) if md_too else p.stdout


def target_row(out, target, case):
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 7 and cells[0] == target and cells[1] == case:
            return cells
    raise AssertionError("no row %r / %r in:\n%s" % (target, case, out))


def ok_row(proxy, case, requests, ticks, nbytes=0, split="", usersys=None):
    # proxy case status requests seconds bytes p99_ms cputicks notes split
    # [usersys]: rows without usersys are those of an older bench.sh
    row = [proxy, case, "ok", requests, "10.0", nbytes, "1.0", ticks, "", split]
    return row if usersys is None else row + ["%d/%d" % usersys]


def runs_row(out, proxy, case):
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 11 and cells[0] == proxy and cells[1] == case:
            return cells
    raise AssertionError("no run %r / %r in:\n%s" % (proxy, case, out))


def miss_line(out, prefix):
    lines = [ln for ln in out.splitlines() if ln.startswith("- " + prefix)]
    assert len(lines) == 1, "expected one MISS line starting %r in:\n%s" % (prefix, out)
    return lines[0]


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
    assert "Targets: 3 PASS, 2 MISS" in out, out
    assert "worker CPU split 60/40 %" in out, out
    # No user/system split recorded: no floor, and MISS lines without one.
    r = target_row(out, "proxied: CPU/req vs HAProxy", "100 B, 50 conn")
    assert r[7] == "—", r
    assert target_row(out, "proxied: req/s vs HAProxy", "100 B, 50 conn")[7] == "", r
    line = miss_line(out, "proxied: CPU/req vs HAProxy, 100 B, 50 conn:")
    assert line == ("- proxied: CPU/req vs HAProxy, 100 B, 50 conn: MISS by 0.25 "
                    "(1.25× vs goal < 1.00×)"), line
    line = miss_line(out, "proxied: req/s vs HAProxy, 100 B, 50 conn:")
    assert line.endswith(": MISS by 0.20 (0.80× vs goal ≥ 1.00×)"), line
    assert runs_row(out, "luaproxy", "100 B, 50 conn")[8:10] == ["—", "—"], out


def test_report_miss_just_past_the_goal_shows_the_gap():
    """kv GET: 703 ticks against 1,000 for as many requests, 0.703 for a
    goal of 0.70: two decimals would say 'MISS by 0.00 (0.70×)'."""
    rows = [ok_row("luaproxy-kv", "kv-c50", 100000, 703), ok_row("nginx-lua-kv", "kv-c50", 100000, 1000)]
    out = run_report(rows, [])
    r = target_row(out, "local handler: CPU/req vs nginx content_by_lua", "kv GET, 50 conn")
    assert r[6] == "MISS", r
    line = miss_line(out, "local handler: CPU/req vs nginx content_by_lua, kv GET, 50 conn:")
    assert line.startswith("- local handler: CPU/req vs nginx content_by_lua, kv GET, 50 conn: MISS by 0.003 "
                           "(0.703× vs goal ≤ 0.70×)"), line


def test_report_floor_from_user_and_system_time():
    """The floor is luaproxy's system time over the reference's total CPU.
    c50: luaproxy 14 user + 160 system ticks for 200,000 requests = 0.7 +
    8.0 µs, nginx 10 µs: ratio 0.87 (MISS by 0.17), floor 0.80, above the
    0.70 goal: the kernel alone misses it. c200: 3.0 + 6.0 µs against 10 µs:
    ratio 0.90, floor 0.60: 9.0 - 0.7 × 10 = 2.0 µs of the 3.0 µs of user
    time (67 %) would have to go. 1 MiB: 0.10 + 0.20 s/GB against 0.50:
    floor 0.40 under the 0.50 goal, 0.05 s/GB of 0.10 (50 %) to cut."""
    gb = 10 ** 9
    rows = [
        ok_row("luaproxy", "small-c50", 200000, 174, usersys=(14, 160)),
        ok_row("nginx", "small-c50", 200000, 200, usersys=(50, 150)),
        ok_row("luaproxy", "small-c200", 200000, 180, usersys=(60, 120)),
        ok_row("nginx", "small-c200", 200000, 200, usersys=(50, 150)),
        ok_row("luaproxy", "1m-c10", 1000, 30, nbytes=gb, usersys=(10, 20)),
        ok_row("nginx", "1m-c10", 1000, 50, nbytes=gb, usersys=(10, 40)),
    ]
    out, md = run_report(rows, [], md_too=True)
    r = target_row(out, "proxied: CPU/req vs nginx proxy_pass", "100 B, 50 conn")
    assert r[4:8] == ["0.87×", "≤ 0.70×", "MISS", "0.80×"], r
    line = miss_line(out, "proxied: CPU/req vs nginx proxy_pass, 100 B, 50 conn:")
    assert line == ("- proxied: CPU/req vs nginx proxy_pass, 100 B, 50 conn: MISS by 0.17 (0.87× vs "
                    "goal ≤ 0.70×); luaproxy's kernel time alone (8.0 µs/req of its 8.7 µs/req) is "
                    "0.80× nginx's total CPU, which by itself misses the goal, so the goal needs the "
                    "kernel's work per request to shrink, not only user space"), line
    r = target_row(out, "proxied: CPU/req vs nginx proxy_pass", "100 B, 200 conn")
    assert r[4:8] == ["0.90×", "≤ 0.70×", "MISS", "0.60×"], r
    line = miss_line(out, "proxied: CPU/req vs nginx proxy_pass, 100 B, 200 conn:")
    assert line.endswith(": MISS by 0.20 (0.90× vs goal ≤ 0.70×); luaproxy's kernel time alone is "
                         "0.60× nginx's total CPU, so 2.0 µs/req of its 3.0 µs/req of user time "
                         "(67% of it) would have to go"), line
    assert "by itself" not in line, line
    r = target_row(out, "large body: CPU/GB vs nginx", "1 MiB, 10 conn")
    assert r[4:8] == ["0.60×", "≤ 0.50×", "MISS", "0.40×"], r
    line = miss_line(out, "large body: CPU/GB vs nginx, 1 MiB, 10 conn:")
    assert line.endswith("so 0.05 s/GB of its 0.10 s/GB of user time (50% of it) would have to go"), line
    # Throughput targets have no floor; the runs table has both parts.
    assert target_row(out, "proxied: req/s vs nginx", "100 B, 50 conn")[7] == "", out
    assert runs_row(out, "luaproxy", "100 B, 50 conn")[8:10] == ["0.7 µs/req", "8.0 µs/req"], out
    assert runs_row(out, "nginx", "1 MiB, 10 conn")[8:10] == ["0.10 s/GB", "0.40 s/GB"], out
    assert "Targets: 3 PASS, 3 MISS" in out, out
    assert "The user/system split is approximate" in md, md


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
