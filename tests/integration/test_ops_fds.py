"""The start-up check of the descriptor limit counts what a connection can
really hold at once: client, backend and two splice pipes (6), plus 64."""

import lp

GOOD = 'function on_get(req) return 200, "x" end'


def fd_warnings(p):
    return [l for l in p.stderr_text().split("\n") if "descriptor limit" in l]


def test_limit_too_small_for_six_per_connection_is_said():
    # 200 connections x 6 + 64 = 1264 > 1000 (one per connection would fit).
    with lp.Proxy(GOOD, args=["--max-connections", "200"], nofile=(1000, 1000)) as p:
        lines = fd_warnings(p)
        assert len(lines) == 1, p.stderr_text()
        line = lines[0]
        assert "[warn]" in line, line
        for needle in ("descriptor limit 1000", "--max-connections 200", "6 descriptors", "1264",
                       "156 connections fit"):
            assert needle in line, "%r not in %r" % (needle, line)
        lp.expect(lp.get(p.port, "/"), 200)


def test_limit_that_fits_says_nothing():
    # 150 x 6 + 64 = 964 <= 1000. The check runs before any worker starts,
    # so once the proxy accepts, its line would be there.
    with lp.Proxy(GOOD, args=["--max-connections", "150"], nofile=(1000, 1000)) as p:
        lp.expect(lp.get(p.port, "/"), 200)
        assert fd_warnings(p) == [], p.stderr_text()
