#!/usr/bin/env python3
"""Where a TLS-terminating proxy's time goes: perf samples, grouped.

    tls_profile.py LUAPROXY OUT_DIR        (what `make bench-tls-profile` runs)

Starts the bench's plain origins, then each of TLS_PROFILE_PROXIES (luaproxy
nginx) in turn as tls.py does (same certificate; clients offer TLS 1.3,
TLS_AES_128_GCM_SHA256, X25519), and for each phase (full handshakes,
resumed handshakes, wrk -c50 on a 100-byte answer, wrk -c10 on 1 MiB)
records `perf record -e cpu-clock` on its workers for TLS_PROFILE_SECONDS
(5). The samples are grouped by what they do: handshake crypto (ECDSA
signing, X25519, the hashes of the key schedule), record encryption
(AES-GCM), the rest of OpenSSL (state machine, object set-up, provider
look-ups, locks), the kernel (syscalls, TCP), libc, LuaJIT, and the proxy's
own code. Writes OUT_DIR/tls-profile.md and the raw reports under
OUT_DIR/tls-profile/.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from benchlib import fresh_dir, markdown_table, need_tools, start_nginx, stop, stop_all, write_markdown
from tls import BENCH_DIR, CLK_TCK, Bench, free_ports, parse_wrk, tree_ticks

SECONDS = int(os.environ.get("TLS_PROFILE_SECONDS", "5"))
PROXIES = os.environ.get("TLS_PROFILE_PROXIES", "luaproxy nginx").split()
PHASES = ["full", "resumed", "small-c50", "1m-c10"]
TOP = 12

# Symbol patterns, tried in order; the first that matches names the group.
GROUPS = [
    ("record encryption (AES-GCM)", re.compile(r"aesni|aes_|_aes|gcm|ghash|AES_", re.I)),
    ("handshake crypto (ECDSA, X25519, SHA-2/HKDF, bignum)",
     re.compile(r"nistz256|ecp_|x25519|ecdsa|^ec_|_ec_|EC_|^bn_|BN_|bn_mul|sha256|sha512|SHA256|SHA512|"
                r"hkdf|HKDF|fe51|fe64|curve25519|ossl_ec|ECDH|ecdh|rsaz|mulx", re.I)),
]


def log(msg):
    print(f"bench-tls-profile: {msg}", file=sys.stderr, flush=True)


def group_of(dso, kernel, sym, binary):
    if kernel:
        return "kernel (syscalls, TCP, scheduling)"
    for name, pattern in GROUPS:
        if pattern.search(sym):
            return name
    if "libssl" in dso:
        return "libssl (TLS state machine, record layer)"
    if "libcrypto" in dso:
        return "libcrypto, unnamed (Debian strips its static symbols: crypto and OpenSSL 3's look-ups)"
    if "libc" in dso or "ld-linux" in dso:
        return "libc (malloc, memcpy, ...)"
    if "luajit" in dso:
        return "LuaJIT"
    if dso == binary:
        return "the proxy's own code"
    return "other"


def record(workers, load, data):
    """perf record on the workers while load() runs."""
    perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "1999", "-o", data, "-p",
                             ",".join(map(str, workers))], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # attached
    load()
    perf.send_signal(signal.SIGINT)
    try:
        perf.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        perf.kill()
        perf.communicate()


def symbols(data, out_txt):
    text = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,sym", "--stdio",
                           "--percent-limit", "0"], capture_output=True, text=True).stdout
    with open(out_txt, "w") as f:
        f.write(text)
    line = re.compile(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$")
    return [(float(m.group(1)), m.group(2), m.group(3) == "k", m.group(4).strip())
            for m in map(line.match, text.splitlines()) if m]


def profile(bench, name, d):
    port = free_ports(1)[0]
    p = bench.start_proxy(name, port, name)
    workers = [int(x) for x in open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()] or [p.pid]
    binary = {"luaproxy": os.path.basename(bench.luaproxy), "nginx": "nginx"}.get(name, name)
    results = {}
    try:
        for phase in PHASES:
            log(f"{name}: {phase}, {SECONDS}s")
            data = os.path.join(d, f"{name}.{phase}.perf.data")
            if phase in ("full", "resumed"):
                cmd = [sys.executable, os.path.join(BENCH_DIR, "tls_handshakes.py"), str(port), phase,
                       str(SECONDS), "1000000", "2"]
            else:
                body, _, conns = phase.rpartition("-c")
                cmd = ["wrk", "-t1", f"-c{conns}", f"-d{SECONDS}s", f"https://127.0.0.1:{port}"
                       f"{'/' if body == 'small' else '/1m'}"]
            out = os.path.join(d, f"{name}.{phase}.load.txt")
            t0 = sum(tree_ticks(p.pid))
            record(workers, lambda: subprocess.run(["timeout", str(SECONDS + 60)] + cmd, stdout=open(out, "w"),
                                                   stderr=subprocess.STDOUT, env=bench.client_env), data)
            cpu = (sum(tree_ticks(p.pid)) - t0) / CLK_TCK
            syms = symbols(data, os.path.join(d, f"{name}.{phase}.symbols.txt"))
            groups = {}
            for pct, dso, kernel, sym in syms:
                g = group_of(dso, kernel, sym, binary)
                groups[g] = groups.get(g, 0.0) + pct
            results[phase] = (groups, syms[:TOP], per_unit(phase, open(out).read(), cpu))
    finally:
        stop(p)
    return results


def crypto_costs():
    """µs per ECDSA P-256 signature, per X25519 operation, and s per GB of
    AES-128-GCM, from `openssl speed` (CPU time): what the cryptography
    itself costs, the floor under a handshake and under a GB."""
    costs = {}
    text = subprocess.run(["openssl", "speed", "-seconds", "1", "ecdsap256", "ecdhx25519"], capture_output=True,
                          text=True, timeout=60).stdout
    m = re.search(r"ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)", text)
    if m:
        costs["ECDSA P-256 sign"] = 1e6 / float(m.group(1))
    m = re.search(r"ecdh \(X25519\)\s+\S+\s+([\d.]+)", text)
    if m:
        costs["X25519 operation"] = 1e6 / float(m.group(1))
    text = subprocess.run(["openssl", "speed", "-seconds", "1", "-evp", "aes-128-gcm", "-bytes", "16384"],
                          capture_output=True, text=True, timeout=60).stdout
    m = re.search(r"^AES-128-GCM\s+([\d.]+)k", text, re.M)
    if m:
        costs["AES-128-GCM, s/GB"] = 1e9 / (float(m.group(1)) * 1000) * 1e6
    return costs


UNITS = {"full": "µs/handshake", "resumed": "µs/handshake", "small-c50": "µs/request", "1m-c10": "s/GB"}


def per_unit(phase, load_output, cpu):
    """The proxy's CPU seconds during the phase (perf attached, the second
    before the load included) per handshake, per request (both in µs) or
    per GB (s); None when the load completed nothing."""
    if phase in ("full", "resumed"):
        m = re.search(r"^done (\d+)", load_output, re.M)
        n = int(m.group(1)) if m else 0
        return cpu * 1e6 / n if n else None
    req, _, nbytes, _, _, _ = parse_wrk(load_output)
    if phase.startswith("1m"):
        return cpu * 1e9 / nbytes if nbytes else None
    return cpu * 1e6 / req if req else None


def report(all_results, out_md, costs):
    lines = ["# Where TLS time goes (perf, cpu-clock samples of the workers, self time)", "",
             f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {SECONDS} s per phase; 2 workers; "
             "clients offer TLS 1.3, TLS_AES_128_GCM_SHA256, X25519; ECDSA P-256 certificate.", ""]
    if costs:
        rows = [["primitive", "cost"]] + [[k, f"{v / 1e6:.3f} s/GB" if "GB" in k else f"{v:.1f} µs"]
                                         for k, v in costs.items()]
        lines += ["## What the cryptography itself costs here (openssl speed, CPU time)", "",
                  "A full TLS 1.3 handshake with this certificate costs the server one ECDSA signature and two "
                  "X25519 operations (key generation, shared secret) plus a few SHA-256 hashes; a resumed one "
                  "with a key exchange (psk_dhe_ke) the two X25519 operations; a byte sent is encrypted once "
                  "and a byte received decrypted once.", "", markdown_table(rows), ""]
    names = []
    for res in all_results.values():
        for groups, _, _ in res.values():
            names += [g for g in groups if g not in names]
    def cell(res, ph, g):
        share, unit = res[ph][0].get(g, 0), res[ph][2]
        if unit is None:
            return f"{share:.1f} %"
        amount = f"{share / 100 * unit:.3f}" if UNITS[ph] == "s/GB" else f"{share / 100 * unit:.1f}"
        return f"{amount} ({share:.0f} %)"

    header = ["group"] + [f"{proxy} {phase}" for proxy, res in all_results.items() for phase in res]
    rows = [header, ["CPU (all)"] + [f"{res[ph][2]:.3f} {UNITS[ph]}" if UNITS[ph] == "s/GB" and res[ph][2]
                                     else f"{res[ph][2]:.1f} {UNITS[ph]}" if res[ph][2] else "—"
                                     for res in all_results.values() for ph in res]]
    for g in sorted(names, key=lambda g: -sum(res[ph][0].get(g, 0) for res in all_results.values() for ph in res)):
        rows.append([g] + [cell(res, ph, g) for res in all_results.values() for ph in res])
    lines += ["## Groups: CPU per handshake, request or GB, and share of the phase's samples", "",
              "CPU from /proc over each phase (perf attached, including the second before the load, when "
              "the workers are idle); each group is its share of perf's samples times that.", "",
              markdown_table(rows), ""]
    for proxy, res in all_results.items():
        for phase, (_, syms, _) in res.items():
            rows = [["share", "where", "symbol"]] + [[f"{pct:.1f} %", f"{dso}{' [k]' if k else ''}", sym]
                                                     for pct, dso, k, sym in syms]
            lines += [f"## {proxy}, {phase}: top symbols", "", markdown_table(rows), ""]
    write_markdown(out_md, lines)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    need_tools("bench-tls-profile", ("perf", "wrk", "nginx", "openssl"))
    luaproxy, out_dir = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    d = fresh_dir(os.path.join(out_dir, "tls-profile"))
    tmp = tempfile.mkdtemp(prefix="luaproxy-tls-profile.")
    results, bench = {}, None
    try:
        small, big = free_ports(2)
        start_nginx("origin-small.conf.in", os.path.join(tmp, "origin-small"), {}, small,
                    os.path.join(d, "origin-small.log"))
        # nginx opens the file per request: it can come after the start.
        odir = os.path.join(tmp, "origin-big")
        start_nginx("origin-big.conf.in", odir, {}, big, os.path.join(d, "origin-big.log"))
        os.makedirs(os.path.join(odir, "files"))
        with open(os.path.join(odir, "files", "1m"), "wb") as f:
            f.write(b"\0" * 1048576)
        bench = Bench(luaproxy, d, small, big, [])
        bench.make_cert()
        for name in PROXIES:
            results[name] = profile(bench, name, d)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
        if bench:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    report(results, os.path.join(out_dir, "tls-profile.md"), crypto_costs())


if __name__ == "__main__":
    main()
