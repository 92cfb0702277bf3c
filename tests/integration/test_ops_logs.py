"""SPEC §2: SIGUSR1 reopens the logs, and says so in one line."""

import os
import signal

import lp

GOOD = 'function on_get(req) return 200, "x" end'


def sigusr1_lines(p):
    return [l for l in p.stderr_text().split("\n") if "SIGUSR1" in l]


def test_sigusr1_logs_one_line_naming_the_access_log():
    d = lp.make_tmpdir()
    log = os.path.join(d, "access.log")
    with lp.Proxy(GOOD, workers=2, args=["--access-log", log]) as p:
        p.wait_workers(2)
        os.rename(log, log + ".1")
        p.send_signal(signal.SIGUSR1)
        lp.wait_until(lambda: os.path.exists(log), what="a new access log after SIGUSR1")
        # Both workers must have reopened (and so logged whatever they log
        # about it) before each serves a request into the new file.
        for _ in range(20):
            lp.expect(lp.get(p.port, "/"), 200)
        lp.wait_until(lambda: len(open(log).read().splitlines()) == 20, what="20 lines in the new file")
        lines = sigusr1_lines(p)
        assert len(lines) == 1, "expected one SIGUSR1 line, got %r" % lines
        assert "[info]" in lines[0] and "access log %s reopened" % log in lines[0], lines
        assert "] %d: " % p.pid in lines[0], "not logged by the master: %r" % lines
        assert p.stop() == 0


def test_sigusr1_without_access_log_says_there_is_none():
    with lp.Proxy(GOOD) as p:
        p.send_signal(signal.SIGUSR1)
        p.wait_stderr("SIGUSR1: no access log to reopen")
        lp.expect(lp.get(p.port, "/"), 200)
        assert len(sigusr1_lines(p)) == 1, sigusr1_lines(p)
        assert p.stop() == 0
