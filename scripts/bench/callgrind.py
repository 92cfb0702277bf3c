#!/usr/bin/env python3
"""Instructions per request of luaproxy's worker, under callgrind.

    callgrind.py LUAPROXY OUT_DIR      (what `make bench-callgrind` runs)

Instruction counts do not move with the load of a shared machine, so this
is the figure to compare before and after a change. For each path:

  proxy   route() reads req.path and a header and returns an upstream (the
          bench's proxy.lua); a 100-byte answer from an nginx origin
  static  the same, but route() returns the upstream without reading req
          (static.lua.in): the difference is the cost of the Lua work
  named   static, with the upstream's server given as "origin.bench:PORT",
          a name the test DNS server (tests/helpers/dnsserver.py) answers
          with a TTL of NAMED_TTL seconds: re-resolutions run meanwhile
  local   examples/kvstore.lua answering GET /k of a 100-byte value

luaproxy -w 1 runs under `valgrind --tool=callgrind`. valgrind follows the
worker across fork() by itself (there is no exec), so the worker is
measured in its own process and its own output file. After a warm-up, the
worker's counters are zeroed with callgrind_control; an idle second is
dumped as the baseline; then REQUESTS requests go one after another on
one keep-alive connection and are dumped. Ir per request is the second dump
minus the baseline's rate over the same time, divided by REQUESTS.

Environment: CALLGRIND_REQUESTS=2000, CALLGRIND_WARMUP=300, CALLGRIND_TOP=15,
CALLGRIND_PATHS="proxy static named local". Output: OUT_DIR/callgrind.md, the raw dumps
in OUT_DIR/callgrind/. Only processes started here are signalled; everything
is on 127.0.0.1 and every wait is bounded.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "helpers"))
from dnsserver import DnsServer  # noqa: E402

from benchlib import (KEEPALIVE, KV_BODY, KV_KEY, ROOT, children, drive, free_ports, fresh_dir, markdown_table,
                      need_tools, render, request, start, start_origin, stop, stop_all, wait_http, write_markdown)

REQUESTS = int(os.environ.get("CALLGRIND_REQUESTS", "2000"))
WARMUP = int(os.environ.get("CALLGRIND_WARMUP", "300"))
TOP = int(os.environ.get("CALLGRIND_TOP", "15"))
PATHS = os.environ.get("CALLGRIND_PATHS", "proxy static named local").split()
NAMED_TTL = 2
START_TIMEOUT = 60  # LuaJIT and the script start slowly under valgrind


def log(msg):
    print(f"bench-callgrind: {msg}", file=sys.stderr, flush=True)


def callgrind_control(args, timeout=60):
    r = subprocess.run(["callgrind_control"] + args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"callgrind_control {' '.join(args)}: {r.stdout.strip()} {r.stderr.strip()}")


def dump(pid, cg_dir, label):
    """Dumps pid's counters (which zeroes them); returns the new file,
    callgrind.out.PID.N (N counts the dumps; the file without it is the
    one written at exit)."""
    pattern = os.path.join(cg_dir, f"callgrind.out.{pid}.*")
    before = set(glob.glob(pattern))
    callgrind_control(["-d", label, str(pid)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = set(glob.glob(pattern)) - before
        if new:
            time.sleep(0.2)  # let valgrind finish writing it
            return new.pop()
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"{path}: no summary line")


ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")


def top_functions(path, inclusive, n, total):
    """[(Ir, function)] from callgrind_annotate, largest first.

    The frames that were on the stack when the dump was taken (main,
    worker_main, ... down to loop_run) carry the whole run, in both modes;
    they say nothing and are left out. Functions without symbols keep the
    name of their library."""
    r = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                        "--threshold=100", path], capture_output=True, text=True, timeout=120)
    out, seen = [], set()
    for line in r.stdout.splitlines():
        m = ANNOTATE_LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        ir = int(m.group(1).replace(",", ""))
        if ir >= 0.99 * total:
            continue
        where = m.group(2).strip()
        obj = re.search(r"\[([^\]]*)\]$", where)
        where = re.sub(r"\s+\[[^\]]*\]$", "", where)
        fn = where.rsplit(":", 1)[1] if ":" in where else where
        if fn.startswith("0x") and obj:
            fn = f"{fn} ({os.path.basename(obj.group(1))})"
        if fn in seen:
            continue
        seen.add(fn)
        out.append((ir, fn))
        if len(out) == n:
            break
    return out


def measure(luaproxy, mode, origin_port, port, tmp, cg_dir):
    wdir = os.path.join(tmp, mode)
    os.makedirs(wdir)
    if mode == "proxy":
        script = os.path.join(wdir, "proxy.lua")
        render("proxy.lua.in", script, {"SMALL_PORT": origin_port, "BIG_PORT": origin_port, "KEEPALIVE": KEEPALIVE})
        path = "/"
    elif mode in ("static", "named"):
        script = os.path.join(wdir, f"{mode}.lua")
        render(f"{mode}.lua.in", script, {"SMALL_PORT": origin_port, "KEEPALIVE": KEEPALIVE})
        path = "/"
    else:
        script = os.path.join(ROOT, "examples", "kvstore.lua")
        path = KV_KEY
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes",
           f"--callgrind-out-file={cg_dir}/callgrind.out.%p", luaproxy, "-w", "1",
           "--listen", f"127.0.0.1:{port}", script]
    dns = None
    if mode == "named":
        dns = DnsServer({"origin.bench": "127.0.0.1"}, ttl=NAMED_TTL)
        cmd[-1:-1] = ["--resolver", dns.addr]
    log(f"{mode}: starting luaproxy -w 1 under callgrind")
    master = start(cmd, os.path.join(cg_dir, f"{mode}.log"))
    try:
        wait_http(port, path, (200, 404), master, START_TIMEOUT)
        if mode == "local":
            status = request(port, "POST", KV_KEY, KV_BODY, "Content-Type: text/plain\r\n")
            if status not in (200, 201):
                raise RuntimeError(f"POST {KV_KEY} answered {status}")
        kids = children(master.pid)
        if len(kids) != 1:
            raise RuntimeError(f"expected one worker process, found {kids}")
        worker = kids[0]
        log(f"{mode}: worker pid {worker}; {WARMUP} warm-up requests")
        drive(port, path, WARMUP)
        callgrind_control(["-z", str(worker)])
        t0 = time.monotonic()
        time.sleep(1.0)
        base_file = dump(worker, cg_dir, f"{mode}-idle")
        idle_secs = time.monotonic() - t0
        base_ir = total_ir(base_file)
        log(f"{mode}: {REQUESTS} measured requests")
        t0 = time.monotonic()
        drive(port, path, REQUESTS)
        run_file = dump(worker, cg_dir, f"{mode}-requests")
        run_secs = time.monotonic() - t0
        run_ir = total_ir(run_file)
    finally:
        stop(master, grace=60)
        if dns:
            dns.close()
    base_share = base_ir / idle_secs * run_secs
    per_req = (run_ir - base_share) / REQUESTS
    return {
        "mode": mode, "path": path, "ir": run_ir, "base_ir": base_ir, "idle_secs": idle_secs,
        "run_secs": run_secs, "base_share": base_share, "per_req": per_req, "file": run_file,
        "inclusive": top_functions(run_file, True, TOP, run_ir),
        "self": top_functions(run_file, False, TOP, run_ir),
    }


DESCRIPTIONS = {
    "proxy": "proxied 100-byte GET (route reads req.path and a header, returns an upstream)",
    "static": "proxied 100-byte GET (route returns the upstream without reading req)",
    "named": "the same, the upstream's server a DNS name re-resolved every 2 s",
    "local": "kvstore.lua GET of a 100-byte value (on_get, shared dict)",
}


def report(results, out_md, version):
    lines = ["# luaproxy instruction counts (callgrind)", "",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- Version: {version}; valgrind "
             f"{subprocess.run(['valgrind', '--version'], capture_output=True, text=True).stdout.strip()}",
             f"- {REQUESTS} requests after {WARMUP} warm-up ones, one after another on one keep-alive "
             "connection, luaproxy -w 1; the worker process only (its watchdog thread included).",
             ""]
    summary = [["path", "Ir per request", "Ir measured", "idle baseline subtracted"]]
    for r in results:
        summary.append([DESCRIPTIONS[r["mode"]], f"{r['per_req']:,.0f}", f"{r['ir']:,}",
                        f"{r['base_share']:,.0f} ({r['base_ir']:,} Ir in {r['idle_secs']:.1f} s idle)"])
    lines += [markdown_table(summary), ""]
    for r in results:
        for kind in ("inclusive", "self"):
            rows = [["function", f"{kind} Ir/request", "share"]]
            for ir, fn in r[kind]:
                rows.append([fn, f"{ir / REQUESTS:,.0f}", f"{100 * ir / r['ir']:.1f} %"])
            lines += [f"## {r['mode']}: top functions by {kind} cost", "", markdown_table(rows), ""]
    lines.append("Raw dumps: build/bench/callgrind/ (open with callgrind_annotate or kcachegrind).")
    write_markdown(out_md, lines)


def main():
    luaproxy, out_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    need_tools("bench-callgrind", ("valgrind", "callgrind_control", "callgrind_annotate", "nginx"),
               " (try: bash scripts/deps.sh bench)")
    if not os.access(luaproxy, os.X_OK):
        sys.exit(f"bench-callgrind: {luaproxy} is not built")
    cg_dir = fresh_dir(os.path.join(out_dir, "callgrind"))
    tmp = tempfile.mkdtemp(prefix="luaproxy-callgrind.")
    results = []
    try:
        origin_port, *ports = free_ports(1 + len(PATHS))
        origin = start_origin(tmp, origin_port, os.path.join(cg_dir, "origin.log"))
        for mode, port in zip(PATHS, ports):
            if mode not in DESCRIPTIONS:
                sys.exit(f"bench-callgrind: unknown path '{mode}' (known: {' '.join(DESCRIPTIONS)})")
            results.append(measure(luaproxy, mode, origin_port, port, tmp, cg_dir))
        stop(origin)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    version = subprocess.run([luaproxy, "-V"], capture_output=True, text=True).stdout.strip()
    report(results, os.path.join(out_dir, "callgrind.md"), version)


if __name__ == "__main__":
    main()
