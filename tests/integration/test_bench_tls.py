"""The TLS benchmark's machinery (scripts/bench/tls*.py): the targets of
tls_report.py from synthetic results, and the TLS clients (handshakes,
idle connections) against a real luaproxy HTTPS listener. The benchmark
itself is not run here."""

import os
import re
import signal
import subprocess
import sys

import lp
from test_bench_tools import miss_line, target_row

BENCH = lp.repo_path("scripts", "bench")
CLK_TCK = 100


def write_rows(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")


def run_tls_report(handshakes=(), runs=(), memory=()):
    d = lp.make_tmpdir()
    write_rows(os.path.join(d, "tls-handshakes.tsv"), handshakes)
    write_rows(os.path.join(d, "tls.tsv"), runs)
    write_rows(os.path.join(d, "tls-memory.tsv"), memory)
    p = subprocess.run([sys.executable, os.path.join(BENCH, "tls_report.py"), d, str(CLK_TCK), "5000"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    with open(os.path.join(d, "tls.md")) as f:
        md = f.read()
    assert "## TLS targets" in md, md
    return p.stdout


def hs_row(proxy, mode, done, user, system, reused=None, notes=""):
    # proxy mode status handshakes reused seconds userticks systemticks negotiated notes
    reused = done if reused is None and mode == "resumed" else (reused or 0)
    return [proxy, mode, "ok", done, reused, "10.0", user, system, "TLSv1.3 TLS_AES_128_GCM_SHA256", notes]


def wrk_row(proxy, case, requests, ticks, nbytes=0, usersys=""):
    return [proxy, case, "ok", requests, "10.0", nbytes, "1.0", ticks, "", "", usersys]


def test_tls_report_handshake_targets():
    """Handshakes per CPU-second: luaproxy 10,000 full in 2 s of CPU (5,000
    per CPU-second) against nginx's 4,000 (PASS) and HAProxy's 6,000 (MISS);
    resumed ones the same way."""
    out = run_tls_report(handshakes=[
        hs_row("luaproxy", "full", 10000, 150, 50),
        hs_row("nginx", "full", 8000, 150, 50),
        hs_row("haproxy", "full", 12000, 100, 100),
        hs_row("luaproxy", "resumed", 20000, 100, 100),
        hs_row("nginx", "resumed", 10000, 100, 100),
        hs_row("haproxy", "resumed", 10000, 50, 50),
    ])
    r = target_row(out, "TLS handshakes/CPU-s vs nginx", "full handshake")
    assert r[2] == "5,000 hs/CPU-s" and r[3] == "4,000 hs/CPU-s (nginx)", r
    for ref, mode, ratio, result in (("nginx", "full handshake", "1.25×", "PASS"),
                                     ("haproxy", "full handshake", "0.83×", "MISS"),
                                     ("nginx", "resumed (ticket)", "2.00×", "PASS"),
                                     ("haproxy", "resumed (ticket)", "1.00×", "PASS")):
        r = target_row(out, "TLS handshakes/CPU-s vs " + ref, mode)
        assert (r[4], r[6]) == (ratio, result), r
    assert "TLS targets: 3 PASS, 1 MISS" in out, out
    line = miss_line(out, "TLS handshakes/CPU-s vs haproxy, full handshake")
    assert "0.83× vs goal ≥ 1.00×" in line, line


def test_tls_report_requests_bodies_and_memory():
    """CPU per request over keep-alive TLS against 0.8× nginx's, CPU per GB
    of 1 MiB bodies against nginx's, idle RSS per connection against
    nginx's; each on the edge or past it."""
    gb = 10 ** 9
    out = run_tls_report(
        runs=[
            wrk_row("luaproxy", "small-c50", 100000, 81, usersys="41/40"),  # 8.1 µs/req
            wrk_row("nginx", "small-c50", 100000, 100, usersys="50/50"),  # 10.0 µs/req
            wrk_row("luaproxy", "1m-c10", 1000, 50, nbytes=gb),  # 0.50 s/GB
            wrk_row("nginx", "1m-c10", 1000, 50, nbytes=gb),
        ],
        memory=[["luaproxy", "ok", 5000, 10000, 60000, ""], ["nginx", "ok", 5000, 40000, 80000, ""]])
    r = target_row(out, "TLS keep-alive: CPU/req vs nginx ssl + proxy_pass", "100 B, 50 conn")
    assert r[2] == "8.1 µs/req" and r[4] == "0.81×" and r[6] == "MISS", r
    assert r[7] == "0.40×", r  # floor: 4.0 µs of system time against nginx's 10.0
    r = target_row(out, "TLS large body: CPU/GB vs nginx", "1 MiB, 10 conn")
    assert r[2] == "0.50 s/GB" and r[4] == "1.00×" and r[6] == "PASS", r
    r = target_row(out, "TLS idle memory: KiB/conn (RSS) vs nginx", "idle keep-alive TLS")
    assert r[2] == "10.00 KiB" and r[3] == "8.00 KiB (nginx)" and r[6] == "MISS", r
    assert "TLS targets: 1 PASS, 2 MISS" in out, out


def test_tls_report_missing_luaproxy_is_not_a_result():
    """A luaproxy that did not start leaves every target n/a, none PASS."""
    out = run_tls_report(handshakes=[hs_row("nginx", "full", 8000, 150, 50),
                                     ["luaproxy", "full", "failed", 0, 0, 0, 0, 0, "", "no handshake"]],
                         runs=[["luaproxy", "-", "failed", 0, 0, 0, 0, 0, "failed to start: x"],
                               wrk_row("nginx", "small-c50", 100000, 100)])
    r = target_row(out, "TLS handshakes/CPU-s vs nginx", "full handshake")
    assert r[6] == "n/a (no luaproxy figure)", r
    assert "TLS targets: 0 PASS, 0 MISS" in out, out


def make_cert(d):
    key, crt, both = (os.path.join(d, n) for n in ("key.pem", "crt.pem", "both.pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=30)
    with open(both, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return both


def test_tls_clients_against_luaproxy():
    """The TLS bench's clients against luaproxy's HTTPS listener with two
    workers: tls_handshakes.py makes full handshakes (none resumed) and
    resumed ones (every one resumed, whichever worker accepts it), and
    idle_conns.py holds TLS connections that made one request each."""
    d = lp.make_tmpdir()
    cert = make_cert(d)
    tls_port = lp.free_port()
    script = 'function on_get(req) return 200, "ok\\n" end\n'
    with lp.Proxy(script, workers=2, args=["--tls-listen", "127.0.0.1:%d" % tls_port, "--tls-cert", cert]):
        lp.wait_until(lambda: lp.port_accepts(tls_port), what="the TLS listener")
        drive = [sys.executable, os.path.join(BENCH, "tls_handshakes.py"), str(tls_port)]
        p = subprocess.run(drive + ["full", "20", "40", "2"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.startswith("done 40 reused 0 failed 0 TLSv1.3 "), p
        p = subprocess.run(drive + ["resumed", "20", "40", "2"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0 and p.stdout.startswith("done 40 reused 40 failed 0 TLSv1.3 "), p
        h = subprocess.Popen([sys.executable, os.path.join(BENCH, "idle_conns.py"), str(tls_port), "20", "/",
                              "20", "tls"], stdout=subprocess.PIPE, text=True)
        try:
            assert h.stdout.readline().strip() == "ready 20"
            h.send_signal(signal.SIGTERM)
            assert h.wait(timeout=5) == 0
        finally:
            if h.poll() is None:
                h.kill()
                h.wait()


def test_tls_handshakes_reports_a_server_that_is_not_there():
    """No server: nothing completes, the driver says so and exits 1 in time."""
    p = subprocess.run([sys.executable, os.path.join(BENCH, "tls_handshakes.py"), str(lp.free_port()), "full",
                        "5", "10", "1"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and p.stdout.startswith("done 0 reused 0 failed "), p


def test_tls_profile_report_groups_in_units():
    """tls_profile.py's report: each group's share of the samples turned
    into CPU per handshake (or per GB) from the phase's measured CPU."""
    sys.path.insert(0, BENCH)
    import tls_profile
    assert tls_profile.group_of("libcrypto.so.3", False, "0x17e6aa", "luaproxy").startswith("libcrypto")
    assert tls_profile.group_of("libcrypto.so.3", False, "aesni_gcm_encrypt", "luaproxy").startswith("record")
    assert tls_profile.group_of("[kernel.kallsyms]", True, "tcp_sendmsg", "luaproxy").startswith("kernel")
    assert tls_profile.group_of("luaproxy", False, "conn_read", "luaproxy") == "the proxy's own code"
    out = os.path.join(lp.make_tmpdir(), "p.md")
    tls_profile.report({"luaproxy": {"full": ({"kernel": 25.0, "libssl": 75.0}, [], 400.0),
                                     "1m-c10": ({"kernel": 100.0}, [], None)}}, out, {"ECDSA P-256 sign": 24.0})
    text = open(out).read()
    row = next(ln for ln in text.splitlines() if ln.startswith("| libssl"))
    assert "300.0 (75 %)" in row, row
    assert re.search(r"^\| CPU \(all\)\s+\| 400\.0 µs/handshake", text, re.M), text


def test_tls_report_pools_the_rounds():
    """Two rounds: luaproxy 100 then 60 ticks for 100,000 requests each,
    nginx 100 twice: pooled 8.0 against 10.0 µs/req (0.80×, PASS), and
    each round's ratio (1.00×, 0.60×) listed; handshakes pooled alike."""
    out = run_tls_report(
        runs=[wrk_row("luaproxy", "small-c50", 100000, 100, usersys="50/50") + [1],
              wrk_row("nginx", "small-c50", 100000, 100, usersys="50/50") + [1],
              wrk_row("nginx", "small-c50", 100000, 100, usersys="50/50") + [2],
              wrk_row("luaproxy", "small-c50", 100000, 60, usersys="30/30") + [2]],
        handshakes=[hs_row("luaproxy", "full", 1000, 50, 50) + [1], hs_row("nginx", "full", 1000, 50, 50) + [1],
                    hs_row("luaproxy", "full", 3000, 50, 50) + [2], hs_row("nginx", "full", 1000, 50, 50) + [2]])
    r = target_row(out, "TLS keep-alive: CPU/req vs nginx ssl + proxy_pass", "100 B, 50 conn")
    assert (r[2], r[3], r[4], r[6]) == ("8.0 µs/req", "10.0 µs/req (nginx)", "0.80×", "PASS"), r
    assert "- CPU vs nginx, 100 B, 50 conn: 1.00×, 0.60×" in out, out
    r = target_row(out, "TLS handshakes/CPU-s vs nginx", "full handshake")
    assert (r[2], r[4]) == ("2,000 hs/CPU-s", "2.00×"), r  # 4,000 in 2 s against 2,000 in 2 s
    assert "- handshakes/CPU-s vs nginx, full handshake: 1.00×, 3.00×" in out, out
