#!/usr/bin/env python3
"""Integration test runner: the real binary, real sockets, standard library only.

Runs every top-level function named test_* in tests/integration/test_*.py, in
file order, each under a time limit, and ends every process a test started
whether it passed or not. The last line is always

    integration: N passed, M failed

Environment: LUAPROXY (binary, default build/luaproxy), FILTER (substring of
"test_file.py::test_name"), TEST_TIMEOUT (seconds per test, default 60).
"""

import importlib.util
import inspect
import os
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "helpers"))

import lp  # noqa: E402


class TestTimeout(Exception):
    pass


def on_alarm(signum, frame):
    raise TestTimeout("test ran longer than its time limit")


def out(line=""):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def discover():
    """[(file name, [test functions in file order]) or (file name, import error)]"""
    found = []
    for name in sorted(os.listdir(HERE)):
        if not (name.startswith("test_") and name.endswith(".py")):
            continue
        path = os.path.join(HERE, name)
        modname = "integration_" + name[:-3]
        try:
            spec = importlib.util.spec_from_file_location(modname, path)
            mod = importlib.util.module_from_spec(spec)
            sys.modules[modname] = mod
            spec.loader.exec_module(mod)
        except Exception:
            found.append((name, traceback.format_exc()))
            continue
        tests = [f for n, f in vars(mod).items()
                 if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == modname]
        tests.sort(key=lambda f: f.__code__.co_firstlineno)
        found.append((name, tests))
    return found


def where(tb, filename):
    """file:line of the deepest frame inside the test file."""
    loc = None
    for fr in traceback.extract_tb(tb):
        if os.path.basename(fr.filename) == filename:
            loc = "%s:%d" % (filename, fr.lineno)
    return loc


def server_stderr_tail(max_lines=15):
    parts = []
    for p in lp.started_proxies():
        lines = p.stderr_text().rstrip("\n").split("\n")
        if lines == [""]:
            continue
        parts.append("    server stderr (last %d lines):" % min(max_lines, len(lines)))
        parts += ["    | " + l for l in lines[-max_lines:]]
    return parts


def sanitizer_report():
    # ASan/UBSan write a report as soon as they find an error (the worker
    # then dies and is replaced), so whatever the processes wrote is enough.
    return ["    | " + l for l in lp.sanitizer_findings()]


def run_one(filename, fn, limit):
    """Returns None on success or the lines describing the failure."""
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        fn()
        signal.setitimer(signal.ITIMER_REAL, 0)
        found = sanitizer_report()
        if found:
            return ["sanitizer report on server stderr"] + found
        return None
    except BaseException as e:  # a test must never stop the run
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(e, KeyboardInterrupt):
            raise
        if isinstance(e, lp.Skip):
            return ["SKIP", str(e)]
        tb = e.__traceback__
        loc = where(tb, filename)
        if isinstance(e, AssertionError):
            msg = str(e) or "assertion failed"
            lines = [msg + (" (%s)" % loc if loc else "")]
        elif isinstance(e, TestTimeout):
            lines = ["timed out after %ds%s" % (limit, " at %s" % loc if loc else "")]
        elif isinstance(e, lp.ProxyError):
            lines = [str(e)]
        elif isinstance(e, (TimeoutError, lp.ProtocolError, ConnectionError)):
            # What a server did wrong on the wire: the message and where.
            lines = ["%s: %s%s" % (type(e).__name__, e, " (%s)" % loc if loc else "")]
        else:
            lines = ["%s: %s" % (type(e).__name__, e)]
            lines += ["    " + l for l in "".join(traceback.format_exception(type(e), e, tb))
                      .rstrip("\n").split("\n")]
        if not isinstance(e, lp.ProxyError):
            lines += server_stderr_tail()
        return lines + sanitizer_report()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        lp.cleanup_all()


def main():
    flt = os.environ.get("FILTER", "")
    limit = float(os.environ.get("TEST_TIMEOUT", "60"))
    passed = failed = 0
    if not os.path.exists(lp.binary()):
        out("note: %s does not exist; every test will fail (run make, or set LUAPROXY)" % lp.binary())
    t_all = time.monotonic()
    try:
        for filename, tests in discover():
            if isinstance(tests, str):
                if flt and flt not in filename:
                    continue
                failed += 1
                out("FAIL %s::<import>: cannot import" % filename)
                out("\n".join("    " + l for l in tests.rstrip("\n").split("\n")))
                continue
            for fn in tests:
                label = "%s::%s" % (filename, fn.__name__)
                if flt and flt not in label:
                    continue
                t0 = time.monotonic()
                lines = run_one(filename, fn, limit)
                dt = time.monotonic() - t0
                if lines is None:
                    passed += 1
                    out("PASS %s (%.1fs)" % (label, dt))
                elif lines[0] == "SKIP":
                    out("SKIP %s: %s" % (label, lines[1]))
                else:
                    failed += 1
                    out("FAIL %s: %s (%.1fs)" % (label, lines[0], dt))
                    for l in lines[1:]:
                        out(l)
    except KeyboardInterrupt:
        lp.cleanup_all()
        out("interrupted")
        failed += 1
    out("(integration total %.1fs)" % (time.monotonic() - t_all))
    out("integration: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
