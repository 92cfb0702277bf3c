#!/usr/bin/env python3
"""A/B: two luaproxy binaries, the same case, alternating runs.

    ab.py OLD_BINARY NEW_BINARY [CASE]      CASE: proxy-c50 (default),
                                            proxy-cN, static-cN, kv-cN

OLD_BINARY may be the word `nginx`: nginx proxy_pass with the bench's
configuration (keep-alive upstream) then runs the proxy-cN case as A,
for a luaproxy/nginx ratio from alternating runs.

On a shared machine one run of each says little: this alternates AB_ROUNDS
(5) short runs (AB_SECONDS, 4 s, after 1 s of warm-up) of each binary,
both started once, -w AB_WORKERS (2), and prints for each the median and
range of the workers' CPU per request, requests/s, and (from the syscall
tracepoints, one extra run each) syscalls per request. Use it to note the
before and after of a change in its commit message.
"""
import os
import shutil
import statistics
import sys
import tempfile

from benchlib import (KEEPALIVE, KV_BODY, KV_KEY, ROOT, children, free_ports, render, request, start, start_nginx_proxy,
                      start_origin, stop_all, wait_http)
from perfprofile import CLK_TCK, cpu_ticks, phase_syscalls, wrk

ROUNDS = int(os.environ.get("AB_ROUNDS", "5"))
SECONDS = int(os.environ.get("AB_SECONDS", "4"))
WORKERS = int(os.environ.get("AB_WORKERS", "2"))


def start_proxy(binary, case, origin_port, port, tmp, label):
    kind, _, conns = case.rpartition("-c")
    d = os.path.join(tmp, label)
    os.makedirs(d)
    path = "/"
    if binary == "nginx":
        if kind != "proxy":
            sys.exit("ab: nginx runs the proxy-cN case only")
        p = start_nginx_proxy(d, port, origin_port, WORKERS, os.path.join(d, "nginx.log"))
        return {"proc": p, "port": port, "path": path, "conns": int(conns), "workers": children(p.pid),
                "cpu": [], "rps": [], "dir": d}
    if kind in ("proxy", "static"):
        script = os.path.join(d, "script.lua")
        render(f"{kind}.lua.in", script, {"SMALL_PORT": origin_port, "BIG_PORT": origin_port, "KEEPALIVE": KEEPALIVE})
    elif kind == "kv":
        script = os.path.join(ROOT, "examples", "kvstore.lua")
        path = KV_KEY
    else:
        sys.exit(f"ab: unknown case {case}")
    p = start([binary, "-w", str(WORKERS), "--listen", f"127.0.0.1:{port}", script],
              os.path.join(d, "luaproxy.log"))
    wait_http(port, path, (200, 404), p, 10)
    if kind == "kv":
        request(port, "POST", KV_KEY, KV_BODY, "Content-Type: text/plain\r\n")
    return {"proc": p, "port": port, "path": path, "conns": int(conns), "workers": children(p.pid),
            "cpu": [], "rps": [], "dir": d}


def one_run(s):
    u0, s0 = cpu_ticks(s["workers"])
    reqs = wrk(s["port"], s["path"], s["conns"], SECONDS, os.path.join(s["dir"], "wrk.txt"))
    u1, s1 = cpu_ticks(s["workers"])
    reqs = max(reqs, 1)
    s["cpu"].append(((u1 - u0) + (s1 - s0)) / CLK_TCK * 1e6 / reqs)
    s["rps"].append(reqs / SECONDS)


def main():
    old, new = (a if a == "nginx" else os.path.abspath(a) for a in sys.argv[1:3])
    case = sys.argv[3] if len(sys.argv) > 3 else "proxy-c50"
    tmp = tempfile.mkdtemp(prefix="luaproxy-ab.")
    try:
        origin_port, pa, pb = free_ports(3)
        start_origin(tmp, origin_port, os.path.join(tmp, "origin.log"))
        a = start_proxy(old, case, origin_port, pa, tmp, "a")
        b = start_proxy(new, case, origin_port, pb, tmp, "b")
        for s in (a, b):
            wrk(s["port"], s["path"], s["conns"], 1, os.path.join(s["dir"], "warm.txt"))
        for i in range(ROUNDS):
            for s in ((a, b) if i % 2 == 0 else (b, a)):
                one_run(s)
        for s in (a, b):
            sc = phase_syscalls(s["port"], s["path"], s["conns"], s["workers"], s["dir"])
            s["syscalls"] = sc["sc_total"] / sc["sc_reqs"]
            s["failed"] = sum(f for _, _, f in sc["sc_calls"]) / sc["sc_reqs"]
        print(f"{case}, -w {WORKERS}, {ROUNDS} alternating runs of {SECONDS} s each")
        for name, s in (("A " + old, a), ("B " + new, b)):
            print(f"{name}\n  CPU {statistics.median(s['cpu']):.2f} µs/req "
                  f"(range {min(s['cpu']):.2f}-{max(s['cpu']):.2f}), "
                  f"{statistics.median(s['rps']):,.0f} req/s (range {min(s['rps']):,.0f}-{max(s['rps']):,.0f}), "
                  f"{s['syscalls']:.2f} syscalls/req ({s['failed']:.2f} failed recvfrom/splice)")
        ratio = statistics.median(b["cpu"]) / statistics.median(a["cpu"])
        print(f"B/A CPU per request: {ratio:.3f}")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
