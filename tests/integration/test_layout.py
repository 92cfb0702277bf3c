"""The source keeps the shape docs/architecture.md describes.

These are the rules a change breaks without noticing: the proxy wing
(core/proxy/) reaches a client connection only through the seam of
core/exchange.h, never through conn.h; nothing runs before main (no
constructor); no source file of core/ or lua/ grows past what one reader can hold.
Each rule is checked on the text of the tree, and a check that finds nothing
to look at fails rather than passes."""

import os
import re

import lp

CORE = lp.repo_path("core")
LUA = lp.repo_path("lua")
MAX_LINES = 800


def sources(*dirs, exts=(".c", ".h")):
    found = []
    for d in dirs:
        for root, _, files in os.walk(d):
            found += [os.path.join(root, f) for f in files if f.endswith(exts)]
    assert found, f"no source files under {dirs}"
    return sorted(found)


def includes(path):
    with open(path, encoding="utf-8") as f:
        return re.findall(r'^\s*#\s*include\s+"([^"]+)"', f.read(), re.M)


def test_the_proxy_wing_reaches_clients_only_through_the_seam():
    wing = sources(os.path.join(CORE, "proxy"))
    assert any(p.endswith("exchange.c") for p in wing), wing
    bad = [(os.path.relpath(p, CORE), inc) for p in wing for inc in includes(p)
           if os.path.basename(inc) in ("conn.h", "req_ctx.h")]
    assert not bad, f"the exchange includes the client's headers: {bad}"
    # And the seam itself does not pull them in either.
    seam = os.path.join(CORE, "exchange.h")
    assert "conn.h" not in [os.path.basename(i) for i in includes(seam)]
    # conn.c is a client of the seam, not of the wing's inside.
    assert "proxy.h" not in [os.path.basename(i) for i in includes(os.path.join(CORE, "conn.c"))]


def test_nothing_runs_before_main():
    bad = []
    for p in sources(CORE, LUA):
        with open(p, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if re.search(r"__attribute__\s*\(\(\s*constructor", line):
                    bad.append(f"{os.path.relpath(p, lp.repo_path())}:{n}")
    assert not bad, f"constructors: {bad}"


def test_no_source_file_is_too_long_to_read():
    long = []
    for p in sources(CORE, LUA, exts=(".c",)):
        with open(p, encoding="utf-8") as f:
            n = sum(1 for _ in f)
        if n > MAX_LINES:
            long.append(f"{os.path.relpath(p, lp.repo_path())} ({n} lines)")
    assert not long, f"over {MAX_LINES} lines: {long}"
