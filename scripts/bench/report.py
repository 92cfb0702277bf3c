#!/usr/bin/env python3
"""Turns bench.sh's raw results into one table, printed and saved as markdown.

    report.py RESULTS.tsv OUT.md CLK_TCK [HEADER_LINE ...]

RESULTS.tsv rows: proxy case status requests seconds bytes p99_ms cputicks notes.
The derived figures are computed here rather than in bash, which has no
floating point. Every ratio is against plain nginx in the same run, so that
the table stays meaningful on whatever machine it was produced.
"""
import sys

BODIES = {"small": "100 B", "1m": "1 MiB", "64m": "64 MiB"}
REFERENCE = "nginx"
# Below this many clock ticks the CPU figure is too coarse to compare.
MIN_TICKS = 50


def case_label(case):
    body, _, conns = case.rpartition("-c")
    if body not in BODIES:
        return case
    return f"{BODIES[body]}, {conns} conn"


def derive(row, clk_tck):
    """(throughput, unit, p99_ms, cpu, cpu_unit) for a measured row."""
    req, secs, nbytes = int(row["requests"]), float(row["seconds"]), float(row["bytes"])
    cpu_s = int(row["ticks"]) / clk_tck
    if row["case"].startswith("small-"):
        return req / secs, "req/s", float(row["p99"]), cpu_s * 1e6 / req, "µs/req"
    return nbytes / secs / 1e6, "MB/s", float(row["p99"]), cpu_s / (nbytes / 1e9), "s/GB"


def ratio(value, ref):
    return f"{value / ref:.2f}×" if ref else "—"


def main():
    tsv, out_md, clk_tck = sys.argv[1], sys.argv[2], int(sys.argv[3])
    header_lines = sys.argv[4:]
    fields = ["proxy", "case", "status", "requests", "seconds", "bytes", "p99", "ticks", "notes"]
    rows = []
    try:
        with open(tsv) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                parts += [""] * (len(fields) - len(parts))
                rows.append(dict(zip(fields, parts)))
    except FileNotFoundError:
        pass

    measured = {}
    for row in rows:
        if row["status"] == "ok":
            measured[(row["proxy"], row["case"])] = derive(row, clk_tck)

    table = [["proxy", "case", "throughput", "vs nginx", "p99", "vs nginx",
              "proxy CPU", "vs nginx", "notes"]]
    for row in rows:
        key = (row["proxy"], row["case"])
        if key not in measured:
            case = "—" if row["case"] == "-" else case_label(row["case"])
            table.append([row["proxy"], case, "—", "", "—", "", "—", "", row["notes"]])
            continue
        thru, unit, p99, cpu, cpu_unit = measured[key]
        ref = measured.get((REFERENCE, row["case"]))
        notes = row["notes"]
        if int(row["ticks"]) < MIN_TICKS:
            notes = "; ".join(n for n in (notes, f"CPU from only {row['ticks']} ticks") if n)
        table.append([
            row["proxy"], case_label(row["case"]),
            f"{thru:,.0f} {unit}", ratio(thru, ref[0]) if ref else "—",
            f"{p99:.2f} ms", ratio(p99, ref[2]) if ref else "—",
            f"{cpu:.1f} {cpu_unit}" if cpu_unit == "µs/req" else f"{cpu:.2f} {cpu_unit}",
            ratio(cpu, ref[3]) if ref else "—",
            notes,
        ])

    # Cells padded to equal width: the same text reads as a table in a
    # terminal and renders as one in markdown.
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for n, r in enumerate(table):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    legend = (
        "throughput: requests/s for the 100-byte answer, MB/s (10^6 bytes, as "
        "received by wrk) for the files. proxy CPU: user + system time of the "
        "proxy's own processes (master, workers, threads) during the measured "
        "run, per request or per GB (10^9 bytes) moved. \"vs nginx\": the figure "
        "divided by plain nginx's for the same case in the same run (higher is "
        "better for throughput, lower for p99 and CPU)."
    )

    print()
    for h in header_lines:
        print(h)
    print()
    print("\n".join(lines))
    print()
    with open(out_md, "w") as f:
        f.write("# luaproxy benchmark\n\n")
        for h in header_lines:
            f.write(f"- {h}\n")
        f.write("\n" + "\n".join(lines) + "\n\n" + legend + "\n")


if __name__ == "__main__":
    main()
