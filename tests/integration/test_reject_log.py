"""A rejected request leaves one info line at the default log level (status,
reason, client address), and a flood of them is rate-limited."""

import re
import time

import lp

SCRIPT = r'''
function on_post(req) return 200, "ok" end
function on_get(req) return 200, "ok" end
'''


def rejected_lines(p):
    return [l for l in p.stderr_text().splitlines() if "rejected " in l and "not logged" not in l]


def reject_and_find(p, raw, status, reason_part):
    c = lp.Conn(p.port)
    try:
        client = "127.0.0.1:%d" % c.local_port
        c.send(raw)
        r = c.read_response()
        assert r.status == status, r
    finally:
        c.close()
    want = "rejected %d (" % status
    line = lp.wait_until(
        lambda: next((l for l in rejected_lines(p) if want in l and client in l), None),
        3.0, what="a %r line naming %s" % (want, client))
    assert "[info]" in line, line
    assert reason_part.lower() in line.lower(), line
    return line


def test_each_rejection_is_logged_at_info():
    with lp.Proxy(SCRIPT, args=["--max-body-size", "10", "--max-header-size", "1k"]) as p:
        reject_and_find(p, b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid")
        reject_and_find(p, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n",
                        431, "header")
        reject_and_find(p, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
                        413, "too large")
        reject_and_find(p, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
                        501, "")


def test_header_timeout_is_logged():
    with lp.Proxy(SCRIPT, args=["--header-timeout", "300ms"]) as p:
        reject_and_find(p, b"GET / HTTP/1.1\r\nHost: x\r\n", 408, "timeout")


def test_flood_is_rate_limited_and_counted():
    with lp.Proxy(SCRIPT) as p:
        t0 = time.monotonic()
        for _ in range(150):
            lp.send_raw(p.port, b"BAD\x01 / HTTP/1.1\r\n\r\n", timeout=2.0)
        elapsed = time.monotonic() - t0
        # 10 a second per worker, plus one window of slack at each end
        lp.wait_until(lambda: len(rejected_lines(p)) >= 10, 3.0, what="the first rejection lines")
        n = len(rejected_lines(p))
        assert n <= 10 * (int(elapsed) + 2), "%d lines for 150 rejections in %.1fs" % (n, elapsed)
        assert n < 150, n
        # a rejection in a later second reports how many were not logged
        time.sleep(1.05)
        lp.send_raw(p.port, b"BAD\x01 / HTTP/1.1\r\n\r\n", timeout=2.0)
        line = p.wait_stderr("more rejected requests were not logged")
        m = re.search(r"(\d+) more rejected requests were not logged", line)
        assert m and int(m.group(1)) > 0, line
