#!/usr/bin/env python3
"""Turns bench.sh's raw results into tables, printed and saved as markdown.

    report.py RESULTS.tsv MEMORY.tsv OUT.md CLK_TCK WORKERS SCALING_CASE [--waiting=WAITING.tsv]
              [HEADER_LINE ...]

RESULTS.tsv rows: proxy case status requests seconds bytes p99_ms cputicks
notes split usersys (split: the CPU ticks of each worker, "/"-joined;
usersys: the user and the system ticks of cputicks, "user/system"; either
may be empty, and rows from before usersys existed end at split).
MEMORY.tsv rows: proxy status connections rss_before_kb rss_after_kb notes.
WAITING.tsv rows: proxy status requests rss_before_kb rss_after_kb notes
(requests that all waited in Lua at once: luaproxy-waiting against
nginx-lua-waiting).

Three tables: every measured run; the idle-connection memory; and the
performance targets, each with luaproxy's figure, the reference figure from
the same run, their ratio, the goal and PASS or MISS, and for CPU targets
the floor: luaproxy's system time alone divided by the reference's total,
the best ratio no user-space change can beat. Below the targets, a line per
MISS says by how much, and for CPU whether the kernel's share alone already
misses the goal or how much user time would have to go. The derived figures
are computed here rather than in bash, which has no floating point.
"""
import sys

from benchlib import markdown_table

BODIES = {"small": "100 B", "1m": "1 MiB", "64m": "64 MiB", "kv": "kv GET",
          "redis": "Redis INCR+EXPIRE, 100 B", "mirror": "1 MiB POST, mirrored"}
# Below this many clock ticks the CPU figure is too coarse to compare.
MIN_TICKS = 50
MEM_REFERENCE = "nginx"
SPLIT_CAVEAT = ("The user/system split is approximate: the kernel divides a process's run time, "
                "which is exact, between user and system in proportion to where its clock ticks "
                "landed; and loopback softirq work (the receiving side's TCP processing) is charged "
                "to whichever process was running, which need not be the proxy.")
THRU, CPU, USER, SYSTEM = 0, 3, 5, 6  # indexes into derive()'s tuple


def reference_for(case):
    """The proxy every row of CASE is compared to in the main table."""
    if case.startswith("kv-"):
        return "nginx-lua-kv"
    if case.startswith("redis-"):
        return "nginx-lua-redis"
    if case.startswith("mirror-"):
        return "nginx-mirror"
    return "nginx"


def case_label(case):
    body, _, conns = case.rpartition("-c")
    if body not in BODIES:
        return case
    return f"{BODIES[body]}, {conns} conn"


def user_system(usersys):
    """'612/1890' -> (612, 1890) ticks; None when absent or malformed."""
    user, sep, system = usersys.partition("/")
    try:
        return (int(user), int(system)) if sep else None
    except ValueError:
        return None


def derive(row, clk_tck):
    """(throughput, unit, p99_ms, cpu, cpu_unit, user, system) for a measured
    row; user and system are in cpu_unit too, or None when not recorded."""
    req, secs, nbytes = int(row["requests"]), float(row["seconds"]), float(row["bytes"])
    if row["case"].startswith(("small-", "kv-", "redis-")):
        thru, unit, cpu_unit, scale = req / secs, "req/s", "µs/req", 1e6 / req
    else:
        thru, unit, cpu_unit, scale = nbytes / secs / 1e6, "MB/s", "s/GB", 1e9 / nbytes
    per = lambda ticks: ticks / clk_tck * scale
    split = user_system(row["usersys"])
    user, system = (per(split[0]), per(split[1])) if split else (None, None)
    return thru, unit, float(row["p99"]), per(int(row["ticks"])), cpu_unit, user, system


def ratio(value, ref):
    return f"{value / ref:.2f}×" if ref else "—"


def fmt_cpu(cpu, unit):
    return f"{cpu:.1f} {unit}" if unit == "µs/req" else f"{cpu:.2f} {unit}"


def fmt_split(split):
    """'412/380' ticks -> '52/48 %' shares, largest first."""
    try:
        parts = [int(p) for p in split.split("/") if p]
    except ValueError:
        return ""
    total = sum(parts)
    if len(parts) < 2 or total <= 0:
        return ""
    return "worker CPU split " + "/".join(f"{100 * p / total:.0f}" for p in parts) + " %"


def read_tsv(path, fields):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                parts += [""] * (len(fields) - len(parts))
                rows.append(dict(zip(fields, parts)))
    except FileNotFoundError:
        pass
    return rows


def runs_table(rows, measured):
    table = [["proxy", "case", "throughput", "vs ref", "p99", "vs ref", "proxy CPU", "vs ref", "user",
              "system", "notes"]]
    for row in rows:
        key = (row["proxy"], row["case"])
        if key not in measured:
            case = "—" if row["case"] == "-" else case_label(row["case"])
            table.append([row["proxy"], case, "—", "", "—", "", "—", "", "", "", row["notes"]])
            continue
        thru, unit, p99, cpu, cpu_unit, user, system = measured[key]
        ref = measured.get((reference_for(row["case"]), row["case"]))
        notes = [n for n in (row["notes"], fmt_split(row["split"])) if n]
        if int(row["ticks"]) < MIN_TICKS:
            notes.append(f"CPU from only {row['ticks']} ticks")
        table.append([
            row["proxy"], case_label(row["case"]),
            f"{thru:,.0f} {unit}", ratio(thru, ref[0]) if ref else "—",
            f"{p99:.2f} ms", ratio(p99, ref[2]) if ref else "—",
            fmt_cpu(cpu, cpu_unit), ratio(cpu, ref[3]) if ref else "—",
            fmt_cpu(user, cpu_unit) if user is not None else "—",
            fmt_cpu(system, cpu_unit) if system is not None else "—",
            "; ".join(notes),
        ])
    return table


def memory_figures(mem_rows):
    """proxy -> KiB per idle connection."""
    out = {}
    for r in mem_rows:
        if r["status"] == "ok" and int(r["conns"]) > 0:
            out[r["proxy"]] = (int(r["after"]) - int(r["before"])) / int(r["conns"])
    return out


WAIT_MINE, WAIT_REF = "luaproxy-waiting", "nginx-lua-waiting"


def memory_table(mem_rows, per_conn, what="idle connections", per="per connection", ref_name=MEM_REFERENCE):
    """The RSS growth per connection (or per waiting request) of each proxy,
    against ref_name's."""
    table = [["proxy", what, "RSS before", "RSS after", per, f"vs {ref_name}", "notes"]]
    ref = per_conn.get(ref_name)
    for r in mem_rows:
        if r["proxy"] not in per_conn:
            table.append([r["proxy"], "—", "—", "—", "—", "", r["notes"]])
            continue
        kib = per_conn[r["proxy"]]
        table.append([
            r["proxy"], f"{int(r['conns']):,}", f"{int(r['before']) / 1024:.1f} MiB",
            f"{int(r['after']) / 1024:.1f} MiB", f"{kib:.2f} KiB",
            ratio(kib, ref) if ref and ref > 0 else "—", r["notes"],
        ])
    return table


class Targets:
    """Collects the rows of the targets table and a line per MISS."""

    def __init__(self):
        self.table = [["target", "case", "luaproxy", "reference", "ratio", "goal", "result", "floor"]]
        self.passed = self.missed = 0
        self.miss_lines = []

    def add(self, what, case, mine, ref, ref_name, value, goal, ok, fmt, floor=""):
        """value: the figure compared with the goal (a ratio or an absolute).
        Returns PASS, MISS or None (no figure to compare)."""
        if mine is None or (ref is None and ref_name):
            missing = "no luaproxy figure" if mine is None else f"no {ref_name} figure"
            self.table.append([what, case, fmt(mine) if mine is not None else "—",
                               fmt(ref) if ref is not None else "—", "—", goal, f"n/a ({missing})",
                               floor])
            return None
        result = self.count(ok(value))
        ref_text = f"{fmt(ref)} ({ref_name})" if ref_name else "—"
        self.table.append([what, case, fmt(mine), ref_text,
                           f"{mine / ref:.2f}×" if ref else "—", goal, result, floor])
        return result

    def markdown(self):
        """The table, then a line per MISS."""
        text = markdown_table(self.table)
        if self.miss_lines:
            text += "\n\n" + "\n".join(f"- {line}" for line in self.miss_lines)
        return text

    def count(self, ok):
        if ok:
            self.passed += 1
            return "PASS"
        self.missed += 1
        return "MISS"

    def miss(self, what, case, value, limit, goal, unit="×", why=""):
        """The line saying by how much a target misses its goal (with a
        third decimal when two would show no gap: 0.703 against 0.70)."""
        gap_unit = "" if unit == "×" else unit
        d = 2 if round(value, 2) != round(limit, 2) else 3
        line = (f"{what}, {case}: MISS by {abs(value - limit):.{d}f}{gap_unit} "
                f"({value:.{d}f}{unit} vs goal {goal})")
        self.miss_lines.append(line + (f"; {why}" if why else ""))

    OPS = {"<=": lambda v, g: v <= g, "<": lambda v, g: v < g, ">=": lambda v, g: v >= g}

    def ratio_target(self, what, case, measured, mine_key, ref_key, index, op, limit, fmt):
        """A goal on luaproxy's figure divided by the reference's: op limit.
        For CPU, also the floor: luaproxy's system time alone divided by the
        reference's total CPU, the ratio left with no user-space time."""
        mine = measured.get(mine_key)
        ref = measured.get(ref_key)
        mine_v = mine[index] if mine else None
        ref_v = ref[index] if ref else None
        goal = f"{op.replace('<=', '≤').replace('>=', '≥')} {limit:.2f}×"
        value = mine_v / ref_v if mine_v is not None and ref_v else None
        floor, floor_text = None, ""
        if index == CPU:
            floor = mine[SYSTEM] / ref_v if value is not None and mine[SYSTEM] is not None else None
            floor_text = f"{floor:.2f}×" if floor is not None else "—"
        result = self.add(what, case, mine_v, ref_v, ref_key[0], value, goal,
                          lambda v: self.OPS[op](v, limit), fmt, floor_text)
        if result != "MISS":
            return
        why = ""
        if floor is not None:
            why = self.floor_reason(mine, ref_v, ref_key[0], floor, op, limit, fmt)
        self.miss(what, case, value, limit, goal, why=why)

    def floor_reason(self, mine, ref_total, ref_name, floor, op, limit, fmt):
        """Whether the kernel's share alone misses the goal; if not, how much
        of luaproxy's user time would have to go to meet it."""
        total, user, system = mine[CPU], mine[USER], mine[SYSTEM]
        per = "request" if mine[4] == "µs/req" else "GB"
        if not self.OPS[op](floor, limit):
            return (f"luaproxy's kernel time alone ({fmt(system)} of its {fmt(total)}) is "
                    f"{floor:.2f}× {ref_name}'s total CPU, which by itself misses the goal, so the "
                    f"goal needs the kernel's work per {per} to shrink, not only user space")
        cut = total - limit * ref_total
        share = f" ({cut / user:.0%} of it)" if user > 0 else ""
        more = "more than " if op == "<" else ""
        return (f"luaproxy's kernel time alone is {floor:.2f}× {ref_name}'s total CPU, so "
                f"{more}{fmt(cut)} of its {fmt(user)} of user time{share} would have to go")


def targets_table(measured, cases, per_conn, workers, scaling_case, per_req=None):
    t = Targets()
    cpu_fmt = lambda v: f"{v:.1f} µs/req"
    gb_fmt = lambda v: f"{v:.2f} s/GB"
    rps_fmt = lambda v: f"{v:,.0f} req/s"
    mbs_fmt = lambda v: f"{v:,.0f} MB/s"
    for case in cases:
        body = case.rpartition("-c")[0]
        label = case_label(case)
        if body == "small":
            mine = ("luaproxy", case)
            t.ratio_target("proxied: CPU/req vs nginx proxy_pass", label, measured, mine,
                           ("nginx", case), CPU, "<=", 0.7, cpu_fmt)
            t.ratio_target("proxied: CPU/req vs HAProxy", label, measured, mine,
                           ("haproxy", case), CPU, "<", 1.0, cpu_fmt)
            t.ratio_target("proxied: req/s vs nginx", label, measured, mine, ("nginx", case), THRU, ">=",
                           1.0, rps_fmt)
            t.ratio_target("proxied: req/s vs HAProxy", label, measured, mine, ("haproxy", case), THRU,
                           ">=", 1.0, rps_fmt)
            t.ratio_target("Lua route: CPU/req vs nginx access_by_lua", label, measured, mine,
                           ("nginx-lua", case), CPU, "<=", 0.7, cpu_fmt)
        elif body == "redis":
            mine = ("luaproxy-redis", case)
            t.ratio_target("Redis on the path: CPU/req vs nginx-lua", label, measured, mine,
                           ("nginx-lua-redis", case), CPU, "<=", 0.7, cpu_fmt)
            t.ratio_target("Redis on the path: req/s vs nginx-lua", label, measured, mine,
                           ("nginx-lua-redis", case), THRU, ">=", 1.0, rps_fmt)
        elif body == "kv":
            t.ratio_target("local handler: CPU/req vs nginx content_by_lua", label, measured,
                           ("luaproxy-kv", case), ("nginx-lua-kv", case), CPU, "<=", 0.7, cpu_fmt)
        elif body == "mirror":
            t.ratio_target("mirror: CPU/GB vs nginx mirror", label, measured, ("luaproxy-mirror", case),
                           ("nginx-mirror", case), CPU, "<=", 0.5, gb_fmt)
        elif body in ("1m", "64m"):
            mine = ("luaproxy", case)
            t.ratio_target("large body: CPU/GB vs nginx", label, measured, mine, ("nginx", case), CPU, "<=",
                           0.5, gb_fmt)
            t.ratio_target("large body: CPU/GB vs HAProxy splice-auto", label, measured, mine,
                           ("haproxy-splice", case), CPU, "<=", 1.0, gb_fmt)
            t.ratio_target("large body: MB/s vs nginx", label, measured, mine, ("nginx", case), THRU, ">=",
                           1.0, mbs_fmt)
            t.ratio_target("large body: MB/s vs HAProxy splice-auto", label, measured, mine,
                           ("haproxy-splice", case), THRU, ">=", 1.0, mbs_fmt)
    if per_conn:
        kib_fmt = lambda v: f"{v:.2f} KiB"
        mine = per_conn.get("luaproxy")
        for ref_name, goal_kib in ((MEM_REFERENCE, 0.5), ("haproxy", None)):
            ref = per_conn.get(ref_name)
            if goal_kib is None:
                # Informational: HAProxy's figure is the other known point.
                t.table.append(["idle memory: KiB/conn vs HAProxy", "idle keep-alive",
                                kib_fmt(mine) if mine is not None else "—",
                                f"{kib_fmt(ref)} (haproxy)" if ref is not None else "—",
                                f"{mine / ref:.2f}×" if mine is not None and ref else "—", "(info)", "",
                                ""])
                continue
            what, goal = "idle memory: KiB/conn (RSS)", f"≤ {goal_kib:.2f} KiB"
            if t.add(what, "idle keep-alive", mine, ref, ref_name, mine, goal,
                     lambda v, g=goal_kib: v <= g, kib_fmt) == "MISS":
                t.miss(what, "idle keep-alive", mine, goal_kib, goal, unit=" KiB")
    if per_req:
        kib_fmt = lambda v: f"{v:.2f} KiB"
        mine, ref = per_req.get(WAIT_MINE), per_req.get(WAIT_REF)
        what = "waiting requests: KiB/req (RSS) vs nginx-lua ngx.sleep"
        if t.add(what, "in proxy.sleep", mine, ref, WAIT_REF, mine / ref if mine is not None and ref else None,
                 "≤ 0.50×", lambda v: v <= 0.5, kib_fmt) == "MISS":
            t.miss(what, "in proxy.sleep", mine / ref, 0.5, "≤ 0.50×")
        what = "waiting requests: KiB/req (RSS)"
        if t.add(what, "in proxy.sleep", mine, None, "", mine, "≤ 4.00 KiB", lambda v: v <= 4.0,
                 kib_fmt) == "MISS":
            t.miss(what, "in proxy.sleep", mine, 4.0, "≤ 4.00 KiB", unit=" KiB")
    one = measured.get(("luaproxy-w1", scaling_case))
    many = measured.get(("luaproxy", scaling_case))
    if workers > 1 and (one or many):
        goal = 0.85 * workers
        # With a load generator elsewhere, each worker has a core: requests/s
        # grow as workers / CPU per request. Same-machine requests/s would
        # only measure the contention for these cores.
        value = workers * one[3] / many[3] if one and many else None
        what, goal_text = "scaling: projected -w%d / -w1 req/s" % workers, f"≥ {goal:.2f}×"
        row = [what, case_label(scaling_case),
               f"{many[3]:.1f} µs/req (-w{workers})" if many else "—",
               f"{one[3]:.1f} µs/req (-w1)" if one else "—",
               f"{value:.2f}×" if value is not None else "—", goal_text,
               "n/a" if value is None else t.count(value >= goal), ""]
        t.table.append(row)
        if row[6] == "MISS":
            t.miss(what, case_label(scaling_case), value, goal, goal_text)
    return t


def main():
    tsv, mem_tsv, out_md, clk_tck = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    workers, scaling_case = int(sys.argv[5]), sys.argv[6]
    header_lines = sys.argv[7:]
    wait_tsv = None
    if header_lines and header_lines[0].startswith("--waiting="):
        wait_tsv = header_lines.pop(0)[len("--waiting="):]
    rows = read_tsv(tsv, ["proxy", "case", "status", "requests", "seconds", "bytes", "p99", "ticks",
                          "notes", "split", "usersys"])
    mem_rows = read_tsv(mem_tsv, ["proxy", "status", "conns", "before", "after", "notes"])

    measured = {}
    cases = []
    for row in rows:
        if row["case"] != "-" and row["case"] not in cases:
            cases.append(row["case"])
        if row["status"] == "ok":
            measured[(row["proxy"], row["case"])] = derive(row, clk_tck)
    per_conn = memory_figures(mem_rows)
    wait_rows = read_tsv(wait_tsv, ["proxy", "status", "conns", "before", "after", "notes"]) if wait_tsv else []
    per_req = memory_figures(wait_rows)

    sections = []
    targets = targets_table(measured, cases, per_conn, workers, scaling_case, per_req)
    if len(targets.table) > 1:
        text = targets.markdown()
        sections.append((f"Targets: {targets.passed} PASS, {targets.missed} MISS", text,
                         "ratio: luaproxy's figure divided by the reference's from the same run. "
                         "CPU: user + system time of all the proxy's processes during the measured "
                         "run. floor (CPU targets): luaproxy's system time alone divided by the "
                         "reference's total CPU, the ratio luaproxy would reach with no user-space "
                         "time at all; a floor above the goal means no user-space change can meet "
                         "it. " + SPLIT_CAVEAT + " scaling: with the load generator on other cores "
                         "each worker would have a core, so -wN serves N / (CPU per request at -wN) "
                         "against 1 / (CPU per request at -w1); on this shared machine that "
                         "projection, not the requests/s, is the figure."))
    if rows:
        sections.append(("Runs", markdown_table(runs_table(rows, measured)),
                         "throughput: requests/s for 100-byte answers and kv GETs, MB/s (10^6 bytes, "
                         "as received by wrk) for the files. proxy CPU: user + system time of the "
                         "proxy's own processes (master, workers, threads) during the measured run, "
                         "per request or per GB (10^9 bytes) moved. \"vs ref\": the figure divided "
                         "by the reference's for the same case in the same run: plain nginx, or "
                         "nginx-lua-kv for kv GETs (higher is better for throughput, lower for p99 "
                         "and CPU). user, system: the two parts of proxy CPU, split approximately (see "
                         "the targets' notes)."))
    if mem_rows:
        sections.append(("Idle keep-alive connections", markdown_table(memory_table(mem_rows, per_conn)),
                         "Each proxy started afresh, loaded for 1 s (wrk -c50), then RSS summed over "
                         "all its processes; then the connections were opened, each made one request "
                         "and stayed idle, and RSS was summed again. per connection: the growth "
                         "divided by the connections. Kernel socket buffers are not in RSS; memory "
                         "a proxy allocates at start for every possible connection (nginx's "
                         "connection table, worker_connections 16000) is in \"before\"."))

    if wait_rows:
        sections.append(("Requests waiting in Lua", markdown_table(memory_table(
            wait_rows, per_req, "waiting requests", "per request", WAIT_REF)),
                         "Each proxy with a Lua handler that waits (luaproxy: proxy.sleep in on_get; "
                         "nginx: ngx.sleep in content_by_lua_block) until released. RSS summed over "
                         "all its processes after one request; then the requests were sent, each on "
                         "a connection of its own, and once the proxy counted all of them in, RSS "
                         "was summed again. per request: the growth divided by the requests, "
                         "connection included. Then they were released; the notes say if any did "
                         "not answer 200."))

    print()
    for h in header_lines:
        print(h)
    for title, text, _ in sections:
        print(f"\n{title}\n\n{text}")
    print()
    with open(out_md, "w") as f:
        f.write("# luaproxy benchmark\n\n")
        for h in header_lines:
            f.write(f"- {h}\n")
        for title, text, legend in sections:
            f.write(f"\n## {title}\n\n{text}\n\n{legend}\n")


if __name__ == "__main__":
    main()
