"""SPEC §2: a worker that dies is restarted, and the master's log line says
how it died and which request it was running Lua for, if any."""

import os
import re
import signal

import lp

# Under AddressSanitizer an abort would be reported: these deaths are on
# purpose, so let them be plain signals.
CRASH_ENV = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") + ":handle_abort=0").lstrip(":")}

SUICIDE = r'''
local ffi = require("ffi")
ffi.cdef("int raise(int sig);")
function route(req)
    if req.method == "POST" then ffi.C.raise(6) end
end
function on_get(req)
    if req.path:sub(1, 6) == "/crash" then ffi.C.raise(9) end
    return 200, "alive"
end
'''


def death_line(p, pid):
    """The master's line about worker pid, once it is there."""
    needle = "(pid %d)" % pid
    text = p.wait_stderr(needle, timeout=5)
    lines = [l for l in text.split("\n") if needle in l and "restarting" in l]
    assert len(lines) == 1, "expected one line about worker %d, got:\n%s" % (pid, text)
    return lines[0]


def dies_on(p, method, path, body=None):
    """Sends a request that kills the worker; returns the dead worker's pid."""
    [w] = p.wait_workers(1)
    c = lp.Conn(p.port)
    try:
        c.send(lp.build_request(method, path, body))
        data = c.read_until_close(timeout=5)
    finally:
        c.close()
    assert data == b"", "the worker answered instead of dying: %r" % data[:200]
    lp.wait_until(lambda: not lp.pid_alive(w), what="worker %d to die" % w)
    return w


def test_worker_killed_in_a_handler_names_the_signal_and_the_request():
    with lp.Proxy(SUICIDE, workers=1, env=CRASH_ENV) as p:
        w = dies_on(p, "GET", "/crash/here?secret=1")
        line = death_line(p, w)
        assert "killed by signal 9 (Killed) while running Lua for GET /crash/here;" in line, line
        assert "secret" not in line, line
        # The successor serves, and its slot starts empty.
        lp.wait_until(lambda: (lp.try_get(p.port, "/") or lp.NOPE).status == 200, 5, what="a new worker")
        [w2] = p.wait_workers(1)
        os.kill(w2, signal.SIGKILL)
        assert "killed by signal 9 (Killed) with no request in Lua;" in death_line(p, w2)


def test_worker_killed_in_route_names_the_signal_and_the_request():
    with lp.Proxy(SUICIDE, workers=1, env=CRASH_ENV) as p:
        w = dies_on(p, "POST", "/upload", body=b"x" * 10)
        line = death_line(p, w)
        assert "killed by signal 6 (Aborted) while running Lua for POST /upload;" in line, line


def test_long_path_is_cut_in_the_crash_line():
    with lp.Proxy(SUICIDE, workers=1, env=CRASH_ENV) as p:
        path = "/crash/" + "a" * 300
        w = dies_on(p, "GET", path)
        line = death_line(p, w)
        m = re.search(r"while running Lua for GET (\S+)\.\.\. \((\d+) bytes\);", line)
        assert m, line
        assert m.group(1) == path[:128] and int(m.group(2)) == len(path), line
