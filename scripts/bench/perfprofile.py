#!/usr/bin/env python3
"""Where luaproxy's workers spend their time per request: perf and strace.

    perfprofile.py LUAPROXY OUT_DIR      (what `make bench-profile` runs)

For each case, luaproxy (-w PROFILE_WORKERS) is started in front of the
bench's 100-byte nginx origin (or alone, for kv), loaded with wrk, and
looked at four times under the same load, PROFILE_SECONDS each:

  1. CPU: utime and stime of the workers from /proc, and `perf stat`
     (task-clock, context switches) attached to them;
  2. `perf record` (cpu-clock samples, kernel and user) attached to them;
  3. `perf stat` on the syscall tracepoints: exact syscalls per request,
     and how many recvfrom and splice calls failed (EAGAIN);
  4. `strace -c -f` attached to them, the same from strace's side. strace
     slows the workers down a lot, so more events arrive per epoll_wait
     than without it: its counts per request are a lower bound.

Each observer attaches first; wrk runs; then the observer is stopped, so
every request wrk counts falls within what it saw (the CPU figures also
include the second before wrk starts, when the workers are idle).

Cases (PROFILE_CASES): nginx-c50 (nginx proxy_pass in front of the same
origin, with the bench's config: the reference, profiled the same way),
proxy-c50 and proxy-c200 (route() reads req.path
and a header, then returns an upstream: the bench's proxy.lua), static-c50
(route() returns the upstream without looking at req), kv-c50 (kvstore.lua
GET /k). Output: OUT_DIR/profile.md and the raw reports in OUT_DIR/profile/.
Only processes started here are signalled, everything is on 127.0.0.1 and
every run is bounded by wrk's duration.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import (KEEPALIVE, KV_BODY, KV_KEY, ROOT, children, free_ports, fresh_dir, markdown_table,
                      need_tools, render, request, start, start_nginx_proxy, start_origin, stop, stop_all, wait_http,
                      write_markdown)

SECONDS = int(os.environ.get("PROFILE_SECONDS", "5"))
WORKERS = int(os.environ.get("PROFILE_WORKERS", "2"))
CASES = os.environ.get("PROFILE_CASES", "nginx-c50 proxy-c50 proxy-c200 static-c50 kv-c50").split()
TOP = int(os.environ.get("PROFILE_TOP", "25"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

def log(msg):
    print(f"bench-profile: {msg}", file=sys.stderr, flush=True)


def wrk(port, path, conns, seconds, out):
    """A bounded wrk run; returns the requests it completed."""
    subprocess.run(["timeout", "-k", "5", str(seconds + 30), "wrk", "-t1", f"-c{conns}", f"-d{seconds}s",
                    "--timeout", "5s", f"http://127.0.0.1:{port}{path}"],
                   stdout=open(out, "w"), stderr=subprocess.STDOUT)
    with open(out) as f:
        m = re.search(r"(\d+) requests in", f.read())
    return int(m.group(1)) if m else 0


def observed(cmd, port, path, conns, wrk_out):
    """Runs wrk while cmd (perf, strace) watches the workers: cmd starts
    first and is stopped with SIGINT after wrk ended, so that every request
    wrk counts falls in what cmd saw. Returns (requests, cmd's stderr)."""
    obs = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # attached
    reqs = wrk(port, path, conns, SECONDS, wrk_out)
    obs.send_signal(signal.SIGINT)
    try:
        _, err = obs.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        obs.kill()
        _, err = obs.communicate()
    return reqs, err


def cpu_ticks(pids):
    """(utime, stime) summed over pids, in ticks."""
    u = s = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fld = f.read().rsplit(")", 1)[1].split()
        u += int(fld[11])
        s += int(fld[12])
    return u, s


def phase_cpu(port, path, conns, workers, d):
    u0, s0 = cpu_ticks(workers)
    t0 = time.monotonic()
    reqs, err = observed(["perf", "stat", "-e", "task-clock,context-switches,cpu-migrations,page-faults",
                          "-p", ",".join(map(str, workers))], port, path, conns, os.path.join(d, "wrk-cpu.txt"))
    secs = time.monotonic() - t0
    u1, s1 = cpu_ticks(workers)
    with open(os.path.join(d, "perf-stat.txt"), "w") as f:
        f.write(err)
    reqs = max(reqs, 1)
    ctx = re.search(r"([\d,]+)\s+context-switches", err)
    ctx = int(ctx.group(1).replace(",", "")) if ctx else 0
    return {"rps": reqs / SECONDS, "user_us": (u1 - u0) / CLK_TCK * 1e6 / reqs,
            "sys_us": (s1 - s0) / CLK_TCK * 1e6 / reqs, "ctx": ctx / reqs, "cpu_secs": secs}


def phase_perf(port, path, conns, workers, d):
    data = os.path.join(d, "perf.data")
    observed(["perf", "record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-o", data,
              "-p", ",".join(map(str, workers))], port, path, conns, os.path.join(d, "wrk-perf.txt"))
    sym = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio",
                          "-g", "none", "--percent-limit", "0.3"], capture_output=True, text=True).stdout
    dso = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso", "--stdio",
                          "-g", "none"], capture_output=True, text=True).stdout
    with open(os.path.join(d, "perf-symbols.txt"), "w") as f:
        f.write(sym)
    with open(os.path.join(d, "perf-dso.txt"), "w") as f:
        f.write(dso)
    line = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$")
    symbols = []
    for ln in sym.splitlines():
        m = line.match(ln)
        if m:
            symbols.append((float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()))
    dsos = []
    for ln in dso.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+(.+)$", ln)
        if m:
            dsos.append((float(m.group(1)), m.group(2).strip()))
    kernel = sum(p for p, name in dsos if name.startswith("[kernel"))
    # Inclusive ("children") shares of the syscalls and of what runs inside
    # them: which socket operation the kernel time belongs to.
    children = subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "sym", "--stdio",
                               "-g", "none"], capture_output=True, text=True).stdout
    with open(os.path.join(d, "perf-children.txt"), "w") as f:
        f.write(children)
    inclusive = {}
    for ln in children.splitlines():
        m = re.match(r"^\s+([\d.]+)%\s+[\d.]+%\s+\[.\]\s+(\S+)", ln)
        if m and m.group(2) in INCLUSIVE:
            inclusive[m.group(2)] = float(m.group(1))
    return {"symbols": symbols[:TOP], "dsos": dsos, "kernel_pct": kernel, "inclusive": inclusive}


# Kernel entry points whose inclusive share says where kernel time goes:
# the syscalls, the loopback receive path run inside a send, and sleeping.
# (tcp_sendmsg and tcp_recvmsg rather than the syscalls: nginx's writev is
# not seen under __x64_sys_writev.)
INCLUSIVE = ["do_syscall_64", "tcp_sendmsg", "net_rx_action", "tcp_recvmsg", "__x64_sys_epoll_wait", "schedule",
             "__x64_sys_getsockopt"]


SYSCALLS = ["recvfrom", "sendto", "epoll_wait", "epoll_ctl", "accept4", "close", "connect", "socket",
            "setsockopt", "getsockopt", "splice", "pipe2", "shutdown", "read", "write", "writev"]
FAILS = ["recvfrom", "splice"]  # counted again on exit with ret < 0 (mostly EAGAIN)


def phase_syscalls(port, path, conns, workers, d):
    """Exact syscall counts from the kernel's tracepoints: unlike strace,
    they barely slow the workers, so batching stays as it is unobserved."""
    cmd = ["perf", "stat", "-x", ",", "-p", ",".join(map(str, workers)), "-e", "raw_syscalls:sys_enter"]
    for name in SYSCALLS:
        cmd += ["-e", f"syscalls:sys_enter_{name}"]
    for name in FAILS:
        cmd += ["-e", f"syscalls:sys_exit_{name}", "--filter", "ret < 0"]
    reqs, err = observed(cmd, port, path, conns, os.path.join(d, "wrk-syscalls.txt"))
    with open(os.path.join(d, "perf-syscalls.txt"), "w") as f:
        f.write(err)
    counts, fails, total = {}, {}, 0
    for ln in err.splitlines():
        parts = ln.split(",")
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        n, ev = int(parts[0]), parts[2]
        if ev == "raw_syscalls:sys_enter":
            total = n
        elif ev.startswith("syscalls:sys_enter_"):
            counts[ev[len("syscalls:sys_enter_"):]] = n
        elif ev.startswith("syscalls:sys_exit_"):
            fails[ev[len("syscalls:sys_exit_"):]] = n
    calls = [(name, n, fails.get(name, 0)) for name, n in counts.items()]
    calls.append(("(other)", total - sum(counts.values()), 0))
    calls.sort(key=lambda c: -c[1])
    return {"sc_reqs": max(reqs, 1), "sc_calls": calls, "sc_total": total}


def phase_strace(port, path, conns, workers, d):
    out = os.path.join(d, "strace.txt")
    cmd = ["strace", "-c", "-f", "-o", out]
    for p in workers:
        cmd += ["-p", str(p)]
    reqs, _ = observed(cmd, port, path, conns, os.path.join(d, "wrk-strace.txt"))
    calls = []
    with open(out) as f:
        for ln in f:
            parts = ln.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and re.match(r"^[\d.]+$", parts[0]) and parts[-1] != "total":
                errors = int(parts[4]) if len(parts) == 6 else 0
                calls.append((parts[-1], int(parts[3]), errors))
    calls.sort(key=lambda c: -c[1])
    return {"reqs": max(reqs, 1), "calls": calls}


def run_case(luaproxy, case, origin_port, port, tmp, out_dir):
    kind, _, conns = case.rpartition("-c")
    d = os.path.join(out_dir, case)
    os.makedirs(d)
    wdir = os.path.join(tmp, case)
    os.makedirs(wdir)
    path = "/"
    if kind == "proxy":
        script = os.path.join(wdir, "proxy.lua")
        render("proxy.lua.in", script, {"SMALL_PORT": origin_port, "BIG_PORT": origin_port, "KEEPALIVE": KEEPALIVE})
    elif kind == "static":
        script = os.path.join(wdir, "static.lua")
        render("static.lua.in", script, {"SMALL_PORT": origin_port, "KEEPALIVE": KEEPALIVE})
    elif kind == "kv":
        script = os.path.join(ROOT, "examples", "kvstore.lua")
        path = KV_KEY
    elif kind != "nginx":
        raise RuntimeError(f"unknown case {case} (proxy-cN, static-cN, kv-cN, nginx-cN)")
    if kind == "nginx":
        log(f"{case}: nginx proxy_pass, {WORKERS} workers, wrk -c{conns}, {SECONDS}s per phase")
        master = start_nginx_proxy(wdir, port, origin_port, WORKERS, os.path.join(d, "nginx.log"))
    else:
        log(f"{case}: luaproxy -w {WORKERS}, wrk -c{conns}, {SECONDS}s per phase")
        master = start([luaproxy, "-w", str(WORKERS), "--listen", f"127.0.0.1:{port}", script],
                       os.path.join(d, "luaproxy.log"))
    try:
        wait_http(port, path, (200, 404), master, 10)
        if kind == "kv":
            request(port, "POST", KV_KEY, KV_BODY, "Content-Type: text/plain\r\n")
        workers = children(master.pid)
        subprocess.run(["timeout", "30", "wrk", "-t1", f"-c{conns}", "-d2s", f"http://127.0.0.1:{port}{path}"],
                       capture_output=True)
        res = {"case": case}
        res.update(phase_cpu(port, path, conns, workers, d))
        res.update(phase_perf(port, path, conns, workers, d))
        res.update(phase_syscalls(port, path, conns, workers, d))
        res.update(phase_strace(port, path, conns, workers, d))
    finally:
        stop(master)
    return res


DESCRIPTIONS = {
    "proxy": "proxied 100 B, route reads req.path and a header",
    "static": "proxied 100 B, route returns the upstream at once",
    "kv": "kvstore.lua GET /k (local handler)",
    "nginx": "nginx proxy_pass (the reference), 100 B",
}


def syscall_table(results, key, reqs_key):
    """One row per syscall, one column per case: calls per request, and
    how many of them failed (EAGAIN, mostly) where known."""
    names = []
    for r in results:
        for name, calls, _ in r[key]:
            if name not in names and calls / r[reqs_key] >= 0.01:
                names.append(name)
    rows = [["syscall"] + [r["case"] for r in results]]
    for name in names:
        row = [name]
        for r in results:
            calls, failed = next(((c, e) for n, c, e in r[key] if n == name), (0, 0))
            cell = f"{calls / r[reqs_key]:.2f}"
            if failed:
                cell += f" ({failed / r[reqs_key]:.2f} failed)"
            row.append(cell)
        rows.append(row)
    rows.append(["total"] + [f"{sum(c for _, c, _ in r[key]) / r[reqs_key]:.2f}" for r in results])
    return markdown_table(rows)


def report(results, out_md):
    lines = ["# luaproxy profile: where a worker's time goes per request", "",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; luaproxy -w {WORKERS}; "
             f"`wrk -t1`, {SECONDS} s per phase; everything on 127.0.0.1, 2 shared cores.", ""]
    rows = [["case", "req/s", "CPU µs/req", "user", "system", "ctx switches/req", "kernel share (perf)"]]
    for r in results:
        kind, _, conns = r["case"].rpartition("-c")
        rows.append([f"{DESCRIPTIONS[kind]}, {conns} conn", f"{r['rps']:,.0f}",
                     f"{r['user_us'] + r['sys_us']:.1f}", f"{r['user_us']:.1f}", f"{r['sys_us']:.1f}",
                     f"{r['ctx']:.2f}", f"{r['kernel_pct']:.0f} %"])
    lines += [markdown_table(rows), ""]
    lines += ["## Syscalls per request (perf stat on the syscall tracepoints, attached to the workers)",
              "", syscall_table(results, "sc_calls", "sc_reqs"), "",
              "## Syscalls per request (strace -c -f, attached to the workers; it slows them, so more "
              "events arrive per epoll_wait)", "", syscall_table(results, "calls", "reqs"), ""]
    rows = [["inclusive (perf --children)"] + [r["case"] for r in results]]
    for name in INCLUSIVE:
        if any(name in r.get("inclusive", {}) for r in results):
            rows.append([name] + [f"{r['inclusive'][name]:.1f} % = {r['inclusive'][name] / 100 * (r['user_us'] + r['sys_us']):.2f} µs"
                                  if name in r.get("inclusive", {}) else "—" for r in results])
    lines += ["## Kernel time by entry point (share of the samples, and of CPU per request)", "",
              "do_syscall_64 is all syscalls; tcp_sendmsg the sends (writev or sendto), and inside them "
              "net_rx_action, the loopback receive path (the peer's TCP processing and wake-up); tcp_recvmsg "
              "the reads; schedule is sleeping and waking in epoll_wait.",
              "", markdown_table(rows), ""]
    for r in results:
        rows = [["share", "where", "symbol"]]
        for pct, dso, k, sym in r["symbols"]:
            rows.append([f"{pct:.1f} %", f"{dso} [{'kernel' if k == 'k' else 'user'}]", sym])
        lines += [f"## {r['case']}: top symbols (perf, self, cpu-clock samples)", "", markdown_table(rows), ""]
        rows = [["share", "object"]] + [[f"{p:.1f} %", name] for p, name in r["dsos"][:8]]
        lines += [markdown_table(rows), ""]
    write_markdown(out_md, lines)


def main():
    luaproxy, out_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    need_tools("bench-profile", ("perf", "strace", "wrk", "nginx"))
    prof_dir = fresh_dir(os.path.join(out_dir, "profile"))
    tmp = tempfile.mkdtemp(prefix="luaproxy-profile.")
    results = []
    try:
        origin_port, *ports = free_ports(1 + len(CASES))
        start_origin(tmp, origin_port, os.path.join(prof_dir, "origin.log"))
        for case, port in zip(CASES, ports):
            results.append(run_case(luaproxy, case, origin_port, port, tmp, prof_dir))
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, os.path.join(out_dir, "profile.md"))


if __name__ == "__main__":
    main()
