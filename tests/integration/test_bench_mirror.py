"""The benchmark's mirroring case (scripts/bench/): its target in report.py
from synthetic results, and proxy-mirror.lua.in as bench.sh renders it,
against real origins. The benchmark itself is not run here."""

import re

import lp
from origin import Origin
from test_bench_tools import ok_row, run_report, runs_row, target_row

CASE = "1 MiB POST, mirrored, 10 conn"


def test_report_mirror_target_is_cpu_per_gb_against_nginx_mirror():
    """10,000 uploads of 1 MiB (10.49 GB): luaproxy 200 ticks (0.19 s/GB)
    against nginx's 500 (0.48 s/GB): 0.40×, PASS at ≤ 0.50; then 300
    ticks: 0.60×, MISS."""
    gb = 10000 * 1048576
    rows = [ok_row("luaproxy-mirror", "mirror-c10", 10000, 200, gb, usersys=(20, 180)),
            ok_row("nginx-mirror", "mirror-c10", 10000, 500, gb, usersys=(50, 450))]
    out = run_report(rows, [])
    r = target_row(out, "mirror: CPU/GB vs nginx mirror", CASE)
    assert r[2] == "0.19 s/GB" and r[4] == "0.40×" and r[6] == "PASS", r
    # The runs of the case are compared with nginx-mirror, not plain nginx.
    assert runs_row(out, "luaproxy-mirror", CASE)[7] == "0.40×", out
    assert "Targets: 1 PASS, 0 MISS" in out, out
    rows[0] = ok_row("luaproxy-mirror", "mirror-c10", 10000, 300, gb, usersys=(20, 280))
    out = run_report(rows, [])
    assert target_row(out, "mirror: CPU/GB vs nginx mirror", CASE)[6] == "MISS", out


def test_the_upload_size_agrees_between_wrk_and_bench():
    with open(lp.repo_path("scripts", "bench", "post-1m.lua")) as f:
        m = re.search(r'string\.rep\("([^"]*)", (\d+)\)', f.read())
    assert m, "post-1m.lua builds no body with string.rep"
    with open(lp.repo_path("scripts", "bench.sh")) as f:
        declared = int(re.search(r"^UPLOAD_BYTES=(\d+)$", f.read(), re.M).group(1))
    assert len(m.group(1)) * int(m.group(2)) == declared == 1 << 20


def test_the_bench_script_mirrors_every_upload():
    with open(lp.repo_path("scripts", "bench", "proxy-mirror.lua.in")) as f:
        template = f.read()
    with Origin(name="upload", keep_body=0) as o:
        text = template.replace("@UPLOAD_PORT@", str(o.port)).replace("@KEEPALIVE@", "16")
        assert "@" not in text, text
        with lp.Proxy(text, workers=1) as p, lp.Conn(p.port) as c:
            for i in range(3):
                c.send(lp.build_request("POST", "/upload", b"x" * 100000))
                assert c.read_response().status == 200
            lp.wait_until(lambda: o.requests == 6, timeout=5,
                          what="three uploads and their three copies at the origin (%d)" % o.requests)
            assert all(r.body_len == 100000 for r in o.records)
