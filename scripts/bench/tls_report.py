#!/usr/bin/env python3
"""The TLS section of the benchmark's report, from tls.py's raw results.

    tls_report.py OUT_DIR CLK_TCK IDLE_CONNS [SETUP]

Reads OUT_DIR/tls.tsv (wrk runs over https://, results.tsv's format and
a round), OUT_DIR/tls-handshakes.tsv (proxy mode status handshakes reused
seconds userticks systemticks negotiated notes round) and
OUT_DIR/tls-memory.tsv
(memory.tsv's format); writes the tables to OUT_DIR/tls.md (which bench.sh
appends to results.md) and prints them. Targets, each against figures of
the same run: handshakes per CPU-second, full and resumed, at least
nginx's and HAProxy's; CPU per request over keep-alive TLS at most 0.8×
nginx's; CPU per GB of 1 MiB bodies at most nginx's; RSS per idle
keep-alive TLS connection at most nginx's. The runs of one proxy and
case in several rounds are pooled (their counts, bytes and CPU summed), and
each round's own ratio is listed below the targets.
"""
import os
import sys

from benchlib import markdown_table
from report import (CPU, SPLIT_CAVEAT, THRU, Targets, case_label, derive, memory_figures, memory_table, read_tsv,
                    runs_table)

MODES = {"full": "full handshake", "resumed": "resumed (ticket)"}
HS_FIELDS = ["proxy", "mode", "status", "done", "reused", "seconds", "user", "system", "negotiated", "notes",
             "round"]
RUN_FIELDS = ["proxy", "case", "status", "requests", "seconds", "bytes", "p99", "ticks", "notes", "split",
              "usersys", "round"]
MEM_FIELDS = ["proxy", "status", "conns", "before", "after", "notes"]


def handshake_figures(row, clk_tck):
    """derive()'s tuple for a handshake run: handshakes per CPU-second in
    the throughput slot, µs of CPU per handshake in the CPU slot."""
    done = int(row["done"])
    user, system = int(row["user"]) / clk_tck, int(row["system"]) / clk_tck
    cpu = user + system
    per_cpu_s = done / cpu if cpu > 0 else float("inf")
    return per_cpu_s, "hs/CPU-s", 0.0, cpu * 1e6 / done, "µs/hs", user * 1e6 / done, system * 1e6 / done


SUMMED = {"done", "reused", "seconds", "user", "system", "requests", "bytes", "ticks"}


def pooled(rows, key):
    """One row per (proxy, key) of the ok rows: the numbers summed over the
    rounds (user/system ticks too), p99 the rounds' median, notes joined;
    the rows that failed are kept as they are."""
    out, order = {}, []
    for r in rows:
        k = (r["proxy"], r[key])
        if r["status"] != "ok":
            if k not in out:
                out[k] = dict(r)
                order.append(k)
            continue
        if k not in out or out[k]["status"] != "ok":
            if k not in out:
                order.append(k)
            out[k] = dict(r, p99s=[float(r.get("p99") or 0)], notes=[r["notes"]] if r["notes"] else [])
            continue
        acc = out[k]
        for f in SUMMED & r.keys():
            acc[f] = str((float if f in ("seconds", "bytes") else int)(acc[f]) +
                         (float if f in ("seconds", "bytes") else int)(r[f]))
        if r.get("usersys") and acc.get("usersys"):
            (u0, s0), (u1, s1) = (map(int, x.split("/")) for x in (acc["usersys"], r["usersys"]))
            acc["usersys"] = f"{u0 + u1}/{s0 + s1}"
        acc["p99s"].append(float(r.get("p99") or 0))
        if r["notes"]:
            acc["notes"].append(r["notes"])
    for k in order:
        r = out[k]
        if r["status"] == "ok":
            p99s = sorted(r.pop("p99s"))
            r["p99"] = str(p99s[len(p99s) // 2])
            r["notes"] = "; ".join(f"round {i + 1}: {n}" if len(r["notes"]) > 1 else n
                                   for i, n in enumerate(r["notes"]))
    return [out[k] for k in order]


def round_ratios(rows, key, figure, mine, ref):
    """Each round's ratio of mine's figure to ref's, for one case."""
    by = {}
    for r in rows:
        if r["status"] == "ok" and r[key] == mine[1]:
            by.setdefault(r.get("round") or "1", {})[r["proxy"]] = figure(r)
    return [by[n][mine[0]] / by[n][ref] for n in sorted(by, key=int)
            if mine[0] in by[n] and ref in by[n] and by[n][ref]]


def handshake_table(rows, measured):
    table = [["proxy", "handshakes", "resumed", "per second", "CPU per handshake", "per CPU-second", "vs nginx",
              "user", "system", "negotiated", "notes"]]
    for r in rows:
        key = (r["proxy"], r["mode"])
        if key not in measured:
            table.append([r["proxy"], MODES.get(r["mode"], r["mode"]), "—", "—", "—", "—", "", "", "", "",
                          r["notes"]])
            continue
        per_cpu, _, _, cpu, _, user, system = measured[key]
        ref = measured.get(("nginx", r["mode"]))
        ticks = int(r["user"]) + int(r["system"])
        notes = [r["notes"]] if r["notes"] else []
        if ticks < 50:
            notes.append(f"CPU from only {ticks} ticks")
        table.append([
            r["proxy"], f"{int(r['done']):,} {MODES.get(r['mode'], r['mode'])}", f"{int(r['reused']):,}",
            f"{int(r['done']) / float(r['seconds']):,.0f}/s", f"{cpu:.0f} µs", f"{per_cpu:,.0f}",
            f"{per_cpu / ref[0]:.2f}×" if ref else "—", f"{user:.0f} µs", f"{system:.0f} µs", r["negotiated"],
            "; ".join(notes),
        ])
    return table


def targets(measured, hs_measured, cases, per_conn):
    t = Targets()
    hs_fmt = lambda v: f"{v:,.0f} hs/CPU-s"
    for mode in ("full", "resumed"):
        for ref in ("nginx", "haproxy"):
            t.ratio_target(f"TLS handshakes/CPU-s vs {ref}", MODES[mode], hs_measured,
                           ("luaproxy", mode), (ref, mode), THRU, ">=", 1.0, hs_fmt)
    for case in cases:
        body = case.rpartition("-c")[0]
        if body == "small":
            t.ratio_target("TLS keep-alive: CPU/req vs nginx ssl + proxy_pass", case_label(case), measured,
                           ("luaproxy", case), ("nginx", case), CPU, "<=", 0.8, lambda v: f"{v:.1f} µs/req")
        elif body == "1m":
            t.ratio_target("TLS large body: CPU/GB vs nginx", case_label(case), measured, ("luaproxy", case),
                           ("nginx", case), CPU, "<=", 1.0, lambda v: f"{v:.2f} s/GB")
    if per_conn:
        mine, ref = per_conn.get("luaproxy"), per_conn.get("nginx")
        what = "TLS idle memory: KiB/conn (RSS) vs nginx"
        value = mine / ref if mine is not None and ref else None
        if t.add(what, "idle keep-alive TLS", mine, ref, "nginx", value, "≤ 1.00×", lambda v: v <= 1.0,
                 lambda v: f"{v:.2f} KiB") == "MISS":
            t.miss(what, "idle keep-alive TLS", value, 1.0, "≤ 1.00×")
    return t


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    out_dir, clk_tck, idle_conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    setup = sys.argv[4] if len(sys.argv) == 5 else ""
    rows = read_tsv(os.path.join(out_dir, "tls.tsv"), RUN_FIELDS)
    hs_rows = read_tsv(os.path.join(out_dir, "tls-handshakes.tsv"), HS_FIELDS)
    mem_rows = read_tsv(os.path.join(out_dir, "tls-memory.tsv"), MEM_FIELDS)
    all_rows, all_hs = rows, hs_rows
    rows, hs_rows = pooled(rows, "case"), pooled(hs_rows, "mode")
    measured = {(r["proxy"], r["case"]): derive(r, clk_tck) for r in rows if r["status"] == "ok"}
    hs_measured = {(r["proxy"], r["mode"]): handshake_figures(r, clk_tck) for r in hs_rows
                   if r["status"] == "ok" and int(r["done"]) > 0}
    cases = []
    for r in rows:
        if r["case"] != "-" and r["case"] not in cases:
            cases.append(r["case"])
    per_conn = memory_figures(mem_rows)

    sections = []
    t = targets(measured, hs_measured, cases, per_conn)
    spread = []
    for mode in MODES:
        for ref in ("nginx", "haproxy"):
            spread.append((f"handshakes/CPU-s vs {ref}, {MODES[mode]}", round_ratios(
                all_hs, "mode", lambda r: handshake_figures(r, clk_tck)[0], ("luaproxy", mode), ref)))
    for case in cases:
        spread.append((f"CPU vs nginx, {case_label(case)}", round_ratios(
            all_rows, "case", lambda r: derive(r, clk_tck)[CPU], ("luaproxy", case), "nginx")))
    text = t.markdown()
    lines = [f"- {what}: {', '.join(f'{x:.2f}×' for x in ratios)}" for what, ratios in spread if len(ratios) > 1]
    if lines:
        text += "\n\nEach round's ratio (luaproxy / reference):\n\n" + "\n".join(lines)
    sections.append((f"TLS targets: {t.passed} PASS, {t.missed} MISS", text,
                     "Every proxy has the same ECDSA P-256 certificate; every client offers only TLS 1.3, "
                     "TLS_AES_128_GCM_SHA256 and X25519 (the negotiated column says what was used). " +
                     (setup + " " if setup else "") + "CPU: "
                     "user + system time of all the proxy's processes during the measured run. floor: "
                     "luaproxy's system time alone divided by the reference's total CPU. " + SPLIT_CAVEAT))
    if hs_rows:
        sections.append(("TLS handshakes", markdown_table(handshake_table(hs_rows, hs_measured)),
                         "Each connection: connect, handshake, close_notify both ways, close; no request. "
                         "Full: no session offered; resumed: the ticket of the connection before. per "
                         "second is wall-clock (the Python clients share the CPUs); per CPU-second is the "
                         "figure: handshakes divided by the proxy's CPU time."))
    if rows:
        sections.append(("TLS requests (wrk on https://, keep-alive)", markdown_table(runs_table(rows, measured)),
                         "As the plain runs' table: proxy CPU per request or per GB, vs the nginx row of the "
                         "same case."))
    if mem_rows:
        sections.append(("TLS idle keep-alive connections", markdown_table(memory_table(mem_rows, per_conn)),
                         f"Each proxy started afresh, loaded for 1 s (wrk -c50 over TLS), RSS summed over its "
                         f"processes; then {idle_conns:,} TLS connections each made one request and stayed "
                         f"idle, and RSS was summed again. per connection: the growth divided by the "
                         f"connections."))
    with open(os.path.join(out_dir, "tls.md"), "w") as f:
        for title, text, legend in sections:
            f.write(f"\n## {title}\n\n{text}\n\n{legend}\n")
            print(f"\n{title}\n\n{text}")
    print()


if __name__ == "__main__":
    main()
