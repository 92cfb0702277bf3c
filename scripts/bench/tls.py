#!/usr/bin/env python3
"""The TLS cases of the benchmark: luaproxy, nginx and HAProxy terminating
TLS in front of bench.sh's plain origins.

    tls.py LUAPROXY OUT_DIR SMALL_PORT BIG_PORT [ORIGIN_PID ...]

bench.sh runs it (BENCH_ONLY=tls runs nothing else) after starting the
origins: SMALL_PORT answers 100 bytes, BIG_PORT serves /1m. Every proxy
gets the same ECDSA P-256 certificate (made here with `openssl req`) and
the clients (wrk, tls_handshakes.py, idle_conns.py) an OpenSSL
configuration (OPENSSL_CONF) that offers TLS 1.3 with
TLS_AES_128_GCM_SHA256 and X25519 only, so every server negotiates the
same. Cases, each proxy in turn, the proxy's CPU time read from /proc
around the measured run only:

  full       TLS handshakes, no session offered, for BENCH_TLS_DURATION s (at
             most BENCH_TLS_HANDSHAKES): handshakes per CPU-second
  resumed    the same, each connection offering the last ticket received;
             the notes say when fewer than all were resumed
  small-cN   wrk on https:// (keep-alive), 100-byte answers: CPU per request
  1m-cN      the same for the 1 MiB file: CPU per GB
  idle       started afresh, BENCH_TLS_IDLE_CONNS keep-alive TLS connections
             that made one request each and stay idle: RSS growth per
             connection

Writes OUT_DIR/tls.tsv (wrk runs, results.tsv's format),
OUT_DIR/tls-handshakes.tsv, OUT_DIR/tls-memory.tsv, and the tables
(tls_report.py) to OUT_DIR/tls.md and stdout; wrk outputs and proxy logs to
OUT_DIR/logs/tls-*. Only processes started here are signalled, by their
own pid, and everything is on 127.0.0.1.

The machine is shared: a figure from one run moves by ±20 % with what else
runs. So the runs come in BENCH_TLS_ROUNDS rounds, each starting every proxy
afresh and running every case (the proxies' order turning each round); a
proxy's figure is the total over the rounds (CPU over all their
handshakes, requests or bytes), and the report shows each round's ratio
too. The idle case runs once.

Environment: BENCH_WORKERS (2), BENCH_TLS_DURATION (5), BENCH_TLS_WARMUP
(1), BENCH_TLS_ROUNDS (3), BENCH_KEEPALIVE (256), BENCH_START_TIMEOUT (10), BENCH_TLS_PROXIES
("luaproxy nginx haproxy"), BENCH_TLS_CASES ("full resumed small-c50
1m-c10 idle"), BENCH_TLS_HANDSHAKES (30000), BENCH_TLS_IDLE_CONNS (5000),
BENCH_TLS_CLIENTS (2: handshake client processes).
"""
import os
import re
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from benchlib import BENCH_DIR, free_ports, nginx_user_line, read_response, render, start, stop, stop_all

CLK_TCK = os.sysconf("SC_CLK_TCK")
ENV = os.environ.get
WORKERS = int(ENV("BENCH_WORKERS", "2"))
DURATION = int(ENV("BENCH_TLS_DURATION", "5"))
WARMUP = int(ENV("BENCH_TLS_WARMUP", "1"))
ROUNDS = int(ENV("BENCH_TLS_ROUNDS", "3"))
KEEPALIVE = int(ENV("BENCH_KEEPALIVE", "256"))
START_TIMEOUT = int(ENV("BENCH_START_TIMEOUT", "10"))
PROXIES = ENV("BENCH_TLS_PROXIES", "luaproxy nginx haproxy").split()
CASES = ENV("BENCH_TLS_CASES", "full resumed small-c50 1m-c10 idle").split()
HANDSHAKES = int(ENV("BENCH_TLS_HANDSHAKES", "30000"))
IDLE_CONNS = int(ENV("BENCH_TLS_IDLE_CONNS", "5000"))
CLIENTS = int(ENV("BENCH_TLS_CLIENTS", "2"))
KNOWN = ("luaproxy", "nginx", "haproxy")
PATHS = {"small": "/", "1m": "/1m"}
# What every client offers, hence what every server negotiates.
CLIENT_OPENSSL_CONF = """openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
Ciphersuites = TLS_AES_128_GCM_SHA256
Groups = X25519
"""


def log(msg):
    print(f"bench: tls: {msg}", file=sys.stderr, flush=True)


def append_row(path, *fields):
    with open(path, "a") as f:
        f.write("\t".join(str(x).replace("\t", " ").replace("\n", " ") for x in fields) + "\n")


# --- processes ----------------------------------------------------------------

def proc_table():
    """pid -> (ppid, utime+cutime, stime+cstime) for every process."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fld = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(name)] = (int(fld[1]), int(fld[11]) + int(fld[13]), int(fld[12]) + int(fld[14]))
    return table


def tree(root, table):
    """root and all its descendants in table."""
    members, changed = {root}, True
    while changed:
        changed = False
        for pid, (ppid, _, _) in table.items():
            if ppid in members and pid not in members:
                members.add(pid)
                changed = True
    return [p for p in members if p in table]


def tree_ticks(root):
    """(user, system) ticks of root's tree, reaped children included."""
    table = proc_table()
    pids = tree(root, table)
    return sum(table[p][1] for p in pids), sum(table[p][2] for p in pids)


def tree_rss_kb(root):
    total = 0
    for pid in tree(root, proc_table()):
        try:
            with open(f"/proc/{pid}/status") as f:
                total += int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))
        except (OSError, AttributeError):
            pass  # gone, or a kernel thread
    return total


def busy_ticks():
    """All CPUs' busy time so far (user nice system irq softirq)."""
    with open("/proc/stat") as f:
        fld = [int(x) for x in f.readline().split()[1:]]
    return fld[0] + fld[1] + fld[2] + fld[5] + fld[6]


def own_children_ticks():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((r.ru_utime + r.ru_stime) * CLK_TCK)


class Meter:
    """The proxy's CPU ticks over a measured run, and whether the rest of
    the machine (not the proxy, the origins, nor our clients) was busy."""

    def __init__(self, pid, origins):
        self.pid, self.origins = pid, origins

    def __enter__(self):
        self.start = (tree_ticks(self.pid), self._origins(), own_children_ticks(), busy_ticks(), time.monotonic())
        return self

    def _origins(self):
        return sum(sum(tree_ticks(p)) for p in self.origins)

    def __exit__(self, *exc):
        (u0, s0), o0, c0, b0, t0 = self.start
        (u1, s1), o1, c1, b1, t1 = tree_ticks(self.pid), self._origins(), own_children_ticks(), busy_ticks(), \
            time.monotonic()
        self.user, self.system = u1 - u0, s1 - s0
        other = (b1 - b0) - (self.user + self.system) - (o1 - o0) - (c1 - c0)
        wall = max(t1 - t0, 0.001)
        self.notes = []
        if other > 0.2 * CLK_TCK * wall:
            self.notes.append(f"other processes took {100 * other / (CLK_TCK * wall):.0f}% of a CPU")


def run_client(cmd, out, seconds, env):
    """A bounded client run (wrk, the handshake driver); its output."""
    with open(out, "w") as f:
        subprocess.run(["timeout", "-k", "5", str(int(seconds) + 60)] + cmd, stdout=f, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=env)
    with open(out) as f:
        return f.read()


def https_status(port, path="/"):
    """One GET on a fresh TLS connection; its status."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            return read_response(s)[0]


class Bench:
    def __init__(self, luaproxy, out_dir, small_port, big_port, origins):
        self.luaproxy, self.out = luaproxy, out_dir
        self.small_port, self.big_port, self.origins = small_port, big_port, origins
        self.logs = os.path.join(out_dir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.tsv = os.path.join(out_dir, "tls.tsv")
        self.hs_tsv = os.path.join(out_dir, "tls-handshakes.tsv")
        self.mem_tsv = os.path.join(out_dir, "tls-memory.tsv")
        for p in (self.tsv, self.hs_tsv, self.mem_tsv):
            if os.path.exists(p):
                os.remove(p)
        self.tmp = tempfile.mkdtemp(prefix="luaproxy-bench-tls.")
        self.round = 1
        self.cert = os.path.join(self.tmp, "cert.pem")
        conf = os.path.join(self.tmp, "client-openssl.cnf")
        with open(conf, "w") as f:
            f.write(CLIENT_OPENSSL_CONF)
        self.client_env = dict(os.environ, OPENSSL_CONF=conf)

    def make_cert(self):
        key, crt = os.path.join(self.tmp, "key.pem"), os.path.join(self.tmp, "crt.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
        with open(self.cert, "w") as f:
            f.write(open(crt).read() + open(key).read())

    def start_proxy(self, name, port, label):
        """Starts NAME on port (TLS) and waits until GET / answers 200;
        returns the Popen, or raises RuntimeError saying why not."""
        d = os.path.join(self.tmp, label)
        os.makedirs(d)
        values = {"DIR": d, "PORT": port, "WORKERS": WORKERS, "SMALL_PORT": self.small_port,
                  "BIG_PORT": self.big_port, "KEEPALIVE": KEEPALIVE, "CERT": self.cert}
        logfile = os.path.join(d, "output.log")
        if name == "luaproxy":
            render("proxy.lua.in", os.path.join(d, "proxy.lua"), values)
            plain = free_ports(1)[0]  # --listen's default could be in use
            cmd = [self.luaproxy, "-w", str(WORKERS), "--listen", f"127.0.0.1:{plain}",
                   "--tls-listen", f"127.0.0.1:{port}", "--tls-cert", self.cert, os.path.join(d, "proxy.lua")]
        elif name == "nginx":
            render("tls-nginx.conf.in", os.path.join(d, "nginx.conf"), dict(values, USER_LINE=nginx_user_line()))
            cmd = ["nginx", "-p", d + "/", "-c", os.path.join(d, "nginx.conf"), "-e", os.path.join(d, "error.log")]
        else:
            # The idle case holds more clients than HAProxy's default maxconn.
            extra = f"maxconn {IDLE_CONNS + 100}\n    no strict-limits" if label.startswith("mem-") else ""
            render("tls-haproxy.cfg.in", os.path.join(d, "haproxy.cfg"), dict(values, GLOBAL_LINES=extra))
            cmd = ["haproxy", "-db", "-f", os.path.join(d, "haproxy.cfg")]
        p = start(cmd, logfile)
        deadline, last = time.monotonic() + START_TIMEOUT, "no answer"
        while time.monotonic() < deadline:
            if p.poll() is not None:
                last = f"exited with status {p.returncode}"
                break
            try:
                status = https_status(port)
                if status == 200:
                    return p
                last = f"answered {status}"
            except (OSError, ssl.SSLError) as e:
                last = str(e)
            time.sleep(0.2)
        stop(p)
        self.save_logs(label)
        with open(logfile, errors="replace") as f:
            tail = " ".join(f.read().split()[-30:])
        raise RuntimeError(f"{last}; log: {tail}"[:300])

    def save_logs(self, label):
        d = os.path.join(self.tmp, label)
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if f.endswith(".log"):
                with open(os.path.join(d, f), errors="replace") as src, \
                        open(os.path.join(self.logs, f"tls-{label}.{f}"), "w") as dst:
                    dst.write(src.read())

    # --- cases --------------------------------------------------------------

    def handshakes(self, name, p, port, mode):
        out = os.path.join(self.logs, f"tls-{name}.r{self.round}.{mode}.txt")
        driver = [sys.executable, os.path.join(BENCH_DIR, "tls_handshakes.py"), str(port), mode]
        log(f"{name}: {mode} handshakes, {DURATION}s")
        if WARMUP:
            run_client(driver + [str(WARMUP), str(HANDSHAKES), str(CLIENTS)], out, WARMUP, self.client_env)
        with Meter(p.pid, self.origins) as m:
            t0 = time.monotonic()
            text = run_client(driver + [str(DURATION), str(HANDSHAKES), str(CLIENTS)], out, DURATION,
                              self.client_env)
            secs = time.monotonic() - t0
        got = re.search(r"^done (\d+) reused (\d+) failed (\d+) (\S+) (\S+)", text, re.M)
        if not got or got.group(1) == "0":
            append_row(self.hs_tsv, name, mode, "failed", 0, 0, 0, 0, 0, "", "no handshake: " + text[-200:])
            return
        done, reused, failed = (int(got.group(i)) for i in (1, 2, 3))
        notes = m.notes
        if failed:
            notes.append(f"{failed} failed")
        if mode == "resumed" and reused < done:
            notes.append(f"only {reused} of {done} resumed")
        if mode == "full" and reused:
            notes.append(f"{reused} resumed")
        if p.poll() is not None:
            notes.append("proxy exited during the run")
        append_row(self.hs_tsv, name, mode, "ok", done, reused, f"{secs:.3f}", m.user, m.system,
                   f"{got.group(4)} {got.group(5)}", "; ".join(notes), self.round)

    def wrk(self, name, p, port, case):
        body, _, conns = case.rpartition("-c")
        url = f"https://127.0.0.1:{port}{PATHS[body]}"
        out = os.path.join(self.logs, f"tls-{name}.r{self.round}.{case}.wrk.txt")
        cmd = ["wrk", "-t1", f"-c{conns}", "--timeout", "5s", "--latency"]
        log(f"{name}: {case}: wrk -c{conns} {DURATION}s {url}")
        if WARMUP:
            run_client(cmd + [f"-d{WARMUP}s", url], out, WARMUP, self.client_env)
        with Meter(p.pid, self.origins) as m:
            text = run_client(cmd + [f"-d{DURATION}s", url], out, DURATION, self.client_env)
        req, secs, nbytes, p99, non2xx, errs = parse_wrk(text)
        notes = m.notes
        if non2xx:
            notes.append(f"{non2xx} non-2xx responses")
        if errs:
            notes.append(f"{errs} socket errors")
        if p.poll() is not None:
            notes.append("proxy exited during the run")
        if not req:
            append_row(self.tsv, name, case, "failed", 0, 0, 0, 0, 0, "no request completed: " + text[-200:])
            return
        append_row(self.tsv, name, case, "ok", req, f"{secs:.3f}", f"{nbytes:.0f}", f"{p99:.3f}",
                   m.user + m.system, "; ".join(notes), "", f"{m.user}/{m.system}", self.round)

    def idle(self, name):
        label = f"mem-{name}"
        port = free_ports(1)[0]
        log(f"{name}: {IDLE_CONNS} idle TLS connections")
        try:
            p = self.start_proxy(name, port, label)
        except RuntimeError as e:
            append_row(self.mem_tsv, name, "failed", 0, 0, 0, f"failed to start: {e}")
            return
        run_client(["wrk", "-t1", "-c50", "-d1s", f"https://127.0.0.1:{port}/"],
                   os.path.join(self.logs, f"tls-{label}.warmup.wrk.txt"), 1, self.client_env)
        time.sleep(1)
        before = tree_rss_kb(p.pid)
        hold = START_TIMEOUT + IDLE_CONNS // 100 + 60
        out = os.path.join(self.logs, f"tls-{label}.holder.txt")
        holder = subprocess.Popen([sys.executable, os.path.join(BENCH_DIR, "idle_conns.py"), str(port),
                                   str(IDLE_CONNS), "/", str(hold), "tls"], stdout=open(out, "w"),
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.client_env)
        line, deadline = "", time.monotonic() + hold - 30
        while time.monotonic() < deadline and holder.poll() is None:
            with open(out) as f:
                line = f.readline().strip()
            if line:
                break
            time.sleep(0.2)
        if line == f"ready {IDLE_CONNS}":
            time.sleep(1)  # whatever the last answers left to do
            after = tree_rss_kb(p.pid)
            append_row(self.mem_tsv, name, "ok", IDLE_CONNS, before, after,
                       "" if p.poll() is None else "proxy exited during the run")
        else:
            append_row(self.mem_tsv, name, "failed", 0, before, 0, f"holder: {line or 'no answer'}")
        stop(holder, 10)
        stop(p)
        self.save_logs(label)

    def run(self):
        self.make_cert()
        runs = [c for c in CASES if c != "idle"]
        for self.round in range(1, ROUNDS + 1 if runs else 1):
            turn = (self.round - 1) % len(PROXIES)
            for name in PROXIES[turn:] + PROXIES[:turn]:
                self.run_proxy(name, runs)
        if "idle" in CASES:
            for name in PROXIES:
                self.idle(name)

    def run_proxy(self, name, runs):
        port = free_ports(1)[0]
        log(f"round {self.round} of {ROUNDS}: starting {name} on 127.0.0.1:{port}")
        label = f"{name}.r{self.round}"
        try:
            p = self.start_proxy(name, port, label)
        except RuntimeError as e:
            log(f"{name} failed to start: {e}")
            append_row(self.tsv, name, "-", "failed", 0, 0, 0, 0, 0, f"failed to start: {e}")
            return
        for case in runs:
            if p.poll() is not None:
                append_row(self.tsv, name, case, "failed", 0, 0, 0, 0, 0, "proxy exited earlier")
            elif case in ("full", "resumed"):
                self.handshakes(name, p, port, case)
            else:
                self.wrk(name, p, port, case)
        stop(p)
        self.save_logs(label)


def parse_wrk(text):
    """(requests, seconds, bytes, p99_ms, non2xx, socket_errors) from wrk's
    report (sizes in powers of 1024, as wrk prints them)."""
    units = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
    sizes = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4}
    req = secs = nbytes = p99 = non2xx = errs = 0
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
    if m:
        p99 = float(m.group(1)) * units[m.group(2)]
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m), ([\d.]+)([KMGT]?B) read", text)
    if m:
        req, secs = int(m.group(1)), float(m.group(2)) * units[m.group(3)] / 1000
        nbytes = float(m.group(4)) * sizes[m.group(5)]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        non2xx = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errs = sum(int(x) for x in m.groups())
    return req, secs, nbytes, p99, non2xx, errs


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    unknown = [p for p in PROXIES if p not in KNOWN]
    if unknown:
        sys.exit(f"tls.py: unknown proxy {unknown[0]} (known: {' '.join(KNOWN)})")
    bad = [c for c in CASES if c not in ("full", "resumed", "idle") and c.rpartition("-c")[0] not in PATHS]
    if bad:
        sys.exit(f"tls.py: unknown case {bad[0]} (full, resumed, small-cN, 1m-cN, idle)")
    luaproxy = os.path.abspath(sys.argv[1])
    bench = Bench(luaproxy, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), [int(x) for x in sys.argv[5:]])
    try:
        bench.run()
    finally:
        stop_all()
        subprocess.run(["rm", "-rf", bench.tmp])
    setup = (f"Setup: {WORKERS} workers (HAProxy: threads); {ROUNDS} rounds, each run {DURATION} s after {WARMUP} s "
             f"of warm-up; {CLIENTS} handshake clients; wrk -t1; {IDLE_CONNS:,} idle connections.")
    return subprocess.run([sys.executable, os.path.join(BENCH_DIR, "tls_report.py"), sys.argv[2], str(CLK_TCK),
                           str(IDLE_CONNS), setup]).returncode


if __name__ == "__main__":
    sys.exit(main())
