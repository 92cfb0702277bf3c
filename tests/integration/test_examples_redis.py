"""examples/redis_ratelimit.lua as shipped, for real: a redis-server of the
test's own, two luaproxy instances sharing it, a test origin behind them.
(The checks every example gets, --check, the header, the README, are in
test_examples.py.)"""

import lp
import redis
from origin import Origin

SCRIPT = "examples/redis_ratelimit.lua"


def env_for(rd, origin, limit, **extra):
    env = {"REDIS_ADDR": "127.0.0.1:%d" % rd.port, "APP_ADDRS": origin.addr,
           "RATE_LIMIT": limit, "RATE_WINDOW": 60}
    env.update(extra)
    return redis.lua_env(env)


def connections_received(rd):
    """Connections Redis has accepted so far (this one included)."""
    info = rd.command("INFO", "stats")
    for line in info.split("\r\n"):
        if line.startswith("total_connections_received:"):
            return int(line.split(":")[1])
    raise AssertionError("no total_connections_received in INFO stats: %r" % info)


def test_two_instances_enforce_one_limit_per_api_key():
    n = 7
    with redis.start() as rd, Origin(name="app") as app:
        env = env_for(rd, app, n)
        with lp.Proxy(SCRIPT, env=env) as a, lp.Proxy(SCRIPT, env=env) as b:
            before = connections_received(rd)
            statuses = []
            for i in range(n + 5):
                p = a if i % 2 == 0 else b
                r = lp.get(p.port, "/items?i=%d" % i, headers={"X-Api-Key": "k1"})
                statuses.append(r.status)
                if r.status == 429:
                    retry = int(r.headers["retry-after"])
                    assert 1 <= retry <= 60, r
                    assert r.body == b"too many requests\n", r
                else:
                    assert r.status == 200 and r.headers.get("x-origin") == "app", r
            # Pooled: one connection per instance (one worker each), not
            # one per request (the INFO asking is a connection of its own).
            made = connections_received(rd) - before - 1
            assert made == 2, "%d connections to Redis for %d requests" % (made, n + 5)
            assert statuses == [200] * n + [429] * 5, statuses
            # The backend saw exactly the requests that passed, from both.
            assert len(app.records) == n, app.records
            assert [q.query for q in app.records] == ["i=%d" % i for i in range(n)]
            # One counter in Redis, with the window as its TTL.
            assert str(rd.command("GET", "ratelimit:k1")) == str(n + 5)
            assert 0 < rd.command("TTL", "ratelimit:k1") <= 60
            # Without a key the client is its address: a budget of its own.
            lp.expect(lp.get(a.port, "/anon"), 200)
            assert str(rd.command("GET", "ratelimit:127.0.0.1")) == "1"
            # Another key too.
            lp.expect(lp.get(b.port, "/k2", headers={"X-Api-Key": "k2"}), 200)


def test_a_counter_left_without_ttl_gets_one():
    # EXPIRE ... NX on every request: a counter whose EXPIRE was lost (or
    # set by hand) does not limit its client forever.
    with redis.start() as rd, Origin(name="app") as app:
        rd.command("SET", "ratelimit:k9", 100)
        with lp.Proxy(SCRIPT, env=env_for(rd, app, 3, RATE_WINDOW=5)) as p:
            r = lp.expect(lp.get(p.port, "/", headers={"X-Api-Key": "k9"}), 429)
            assert 1 <= int(r.headers["retry-after"]) <= 5, r
            assert 0 < rd.command("TTL", "ratelimit:k9") <= 5


def test_fails_open_when_redis_is_down_and_limits_again_when_back():
    with redis.start() as rd, Origin(name="app") as app:
        with lp.Proxy(SCRIPT, env=env_for(rd, app, 2, REDIS_TIMEOUT=150)) as p:
            key = {"X-Api-Key": "k1"}
            got = [lp.get(p.port, "/", headers=key).status for _ in range(3)]
            assert got == [200, 200, 429], got
            rd.kill()
            # Down (the pooled connection is dead, a new one is refused):
            # let through, and said so in the log.
            for _ in range(3):
                lp.expect(lp.get(p.port, "/", headers=key), 200)
            p.wait_stderr("rate limit not applied to k1")
            # Stopped (no answer): the timeout fires, the request passes.
            rd.restart()
            lp.expect(lp.get(p.port, "/", headers=key), 200)   # count 1 in the new Redis
            rd.pause()
            try:
                lp.expect(lp.get(p.port, "/", headers=key, timeout=5.0), 200)
            finally:
                rd.resume()
            # Back: the limit applies again (from a clean count: whether the
            # INCR sent to the stopped server counts is up to Redis).
            rd.command("DEL", "ratelimit:k1")
            got = [lp.get(p.port, "/", headers=key).status for _ in range(3)]
            assert got == [200, 200, 429], got
            assert len(app.records) == 2 + 3 + 2 + 2, app.records


def test_redis_over_a_unix_socket():
    with redis.start(unix=True) as rd, Origin(name="app") as app:
        env = env_for(rd, app, 1, REDIS_ADDR="unix:" + rd.unix_path)
        with lp.Proxy(SCRIPT, env=env) as p:
            lp.expect(lp.get(p.port, "/", headers={"X-Api-Key": "u"}), 200)
            lp.expect(lp.get(p.port, "/", headers={"X-Api-Key": "u"}), 429)
            assert str(rd.command("GET", "ratelimit:u")) == "2"
