"""The examples gallery (examples/*.lua, README "Examples"): each script as
shipped, with its upstream addresses given through the environment
variables its header documents, against real test origins.

kvstore.lua has its own suite (test_kvstore.py); here it only goes through
the checks every example gets: a header that says how to try it, a clean
--check, the --try lines of its header, a place in the README."""

import json
import os
import re
import shlex
import time

import lp
import redis
from origin import Origin, dead_port

EXAMPLES = lp.repo_path("examples")


def example(name):
    return "examples/%s" % name


def served_by(r):
    """The name of the origin that answered (every origin response carries it)."""
    return r.headers.get("x-origin")


def received(o, path=None):
    """Requests an origin got (for one path, if given)."""
    return [q for q in o.records if path is None or q.path == path]


def header_of(q, name):
    vals = [v for k, v in q.headers if k.lower() == name]
    return vals[0] if vals else None


def example_files():
    return sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".lua"))


def header_comment(path):
    lines = []
    with open(path) as f:
        for line in f:
            if not line.startswith("--"):
                break
            lines.append(line[2:].rstrip("\n"))
    return lines


# --------------------------------------------------------------------------
# Every example


def test_every_example_has_a_header_saying_how_to_try_it():
    files = example_files()
    assert len(files) >= 10, files
    for name in files:
        head = header_comment(os.path.join(EXAMPLES, name))
        assert head and head[0].startswith(" %s: " % name), \
            "%s: the first line should be '-- %s: what it does'" % (name, name)
        text = "\n".join(head)
        assert "Try it" in text and "curl" in text, "%s: no 'Try it' with curl in the header" % name
        # Every environment variable the script reads is documented.
        with open(os.path.join(EXAMPLES, name)) as f:
            code = f.read()
        for var in re.findall(r'(?:os\.getenv|addrs)\("([A-Z_]+)"', code):
            assert var in text, "%s reads %s, which its header does not document" % (name, var)


def test_every_example_passes_check():
    for name in example_files():
        r = lp.run_cli(["--check", example(name)], env=redis.lua_env())  # nginx.redis
        assert r.returncode == 0 and r.stdout.strip() == "ok", "%s: %r" % (name, r)


def test_the_dry_runs_in_the_headers_work():
    """Each '--   [VAR=x] luaproxy --try ...' line of a header, as written."""
    ran = 0
    for name in example_files():
        for line in header_comment(os.path.join(EXAMPLES, name)):
            if "luaproxy --try" not in line:
                continue
            words = shlex.split(line.strip())
            at = words.index("luaproxy")
            env = dict(w.split("=", 1) for w in words[:at])
            r = lp.run_cli(words[at + 1:], env=redis.lua_env(env))
            assert r.returncode == 0, "%s: %s: %r" % (name, line.strip(), r)
            assert r.stdout.startswith(("upstream: ", "local: ")), "%s: %r" % (name, r)
            ran += 1
    assert ran >= 10, "only %d dry runs found in the example headers" % ran


def test_readme_lists_every_example():
    with open(lp.repo_path("README.md")) as f:
        readme = f.read()
    m = re.search(r"^## Examples\n(.*?)^## ", readme, re.S | re.M)
    assert m, "README.md has no '## Examples' section"
    for name in example_files():
        assert "examples/%s" % name in m.group(1), "README's Examples section does not list %s" % name


# --------------------------------------------------------------------------
# routing.lua


def test_routing_by_path_prefix():
    with Origin(name="api1") as a1, Origin(name="api2") as a2, Origin(name="static") as st, \
            Origin(name="auth") as au:
        env = {"API_ADDRS": "%s,%s" % (a1.addr, a2.addr), "STATIC_ADDRS": st.addr, "AUTH_ADDRS": au.addr}
        with lp.Proxy(example("routing.lua"), env=env) as p:
            for _ in range(4):
                r = lp.expect(lp.get(p.port, "/api/users?page=2"), 200)
                assert served_by(r) in ("api1", "api2"), r
            assert len(received(a1, "/api/users")) == 2 and len(received(a2, "/api/users")) == 2, \
                "round robin over the api servers: %r %r" % (a1.records, a2.records)
            assert received(a1, "/api/users")[0].query == "page=2"
            r = lp.expect(lp.get(p.port, "/api"), 200)
            assert served_by(r) in ("api1", "api2"), r

            r = lp.expect(lp.get(p.port, "/static/js/app.js"), 200)
            assert served_by(r) == "static", r
            assert json.loads(r.body)["target"] == "/js/app.js", r
            r = lp.expect(lp.get(p.port, "/static"), 200)
            assert json.loads(r.body)["target"] == "/", r

            r = lp.expect(lp.get(p.port, "/auth/login"), 200)
            assert served_by(r) == "auth" and json.loads(r.body)["target"] == "/auth/login", r

            lp.expect(lp.get(p.port, "/healthz"), 200, b"ok\n")
            for path in ("/apix", "/", "/staticfile"):
                r = lp.expect(lp.get(p.port, path), 404)
                assert served_by(r) is None, r
            n = sum(len(o.records) for o in (a1, a2, st, au))
            assert n == 8, "the origins got %d requests, expected 8" % n


# --------------------------------------------------------------------------
# canary.lua


def test_canary_percentage_stable_per_user():
    with Origin(name="stable") as stable, Origin(name="canary") as canary:
        env = {"STABLE_ADDRS": stable.addr, "CANARY_ADDRS": canary.addr, "CANARY_PERCENT": "30"}
        with lp.Proxy(example("canary.lua"), env=env, workers=2) as p:
            workers = p.wait_workers(2)

            def on(w, headers):     # a new connection that worker w serves
                with lp.conn_on_worker(p, w) as c:
                    return lp.expect(c.request("GET", "/", headers=headers), 200)
            side = {}
            for i in range(120):
                user = "user-%d" % i
                # Asked once of each worker: the two must agree.
                got = {served_by(on(w, {"X-User": user})) for w in workers}
                assert len(got) == 1, "%s was sent to both: %r" % (user, got)
                side[user] = got.pop()
            n = sum(1 for v in side.values() if v == "canary")
            assert 0.15 * 120 <= n <= 0.45 * 120, "%d of 120 users on the canary at 30%%" % n

            # The cookie identifies a user too, and wins over the header.
            for i in range(10):
                got = {served_by(lp.get(p.port, "/", headers={"Cookie": "a=1; uid=user-%d" % i,
                                                               "X-User": "someone-else"}))
                       for _ in range(2)}
                assert got == {side["user-%d" % i]}, (i, got)

            # No user id: stable. Forced sides for testers.
            for _ in range(5):
                assert served_by(lp.get(p.port, "/")) == "stable"
            canary_user = next(u for u, v in side.items() if v == "canary")
            r = lp.get(p.port, "/", headers={"X-User": canary_user, "Cookie": "canary=never"})
            assert served_by(r) == "stable", r
            r = lp.get(p.port, "/", headers={"Cookie": "canary=always"})
            assert served_by(r) == "canary", r

        # The dry run agrees with the real proxy.
        for user in list(side)[:8]:
            r = lp.run_cli(["--try", "GET /", "-H", "X-User: " + user, example("canary.lua")], env=env)
            assert r.returncode == 0, r
            assert r.stdout.startswith("upstream: %s\n" % side[user]), (user, side[user], r)


def test_canary_at_0_and_100_percent():
    for percent, want in (("0", "stable"), ("100", "canary")):
        env = {"CANARY_PERCENT": percent}
        for i in range(10):
            r = lp.run_cli(["--try", "GET /", "-H", "X-User: u%d" % i, example("canary.lua")], env=env)
            assert r.returncode == 0 and r.stdout.startswith("upstream: %s\n" % want), (percent, r)
    r = lp.run_cli(["--check", example("canary.lua")], env={"CANARY_PERCENT": "250"})
    assert r.returncode == 2 and "CANARY_PERCENT" in r.stderr, r


# --------------------------------------------------------------------------
# ab_test.lua


def test_ab_response_header_names_the_variant():
    with Origin(name="a") as oa, Origin(name="b") as ob:
        env = {"A_ADDRS": oa.addr, "B_ADDRS": ob.addr}
        with lp.Proxy(example("ab_test.lua"), env=env, workers=2) as p:
            # A returning visitor: the cookie decides, and is not set again.
            for v in ("a", "b"):
                r = lp.expect(lp.get(p.port, "/page", headers={"Cookie": "ab=%s" % v}), 200)
                assert served_by(r) == v and r.headers.get("x-ab-variant") == v, r
                assert "set-cookie" not in r.headers, r
                q = (oa if v == "a" else ob).records[-1]
                assert header_of(q, "x-ab-variant") == v, q

            # New visitors: a variant each, named and remembered in a cookie.
            seen = set()
            for _ in range(16):
                r = lp.expect(lp.get(p.port, "/"), 200)
                v = r.headers.get("x-ab-variant")
                assert v in ("a", "b") and served_by(r) == v, r
                cookie = r.headers.get("set-cookie", "")
                assert cookie.startswith("ab=%s;" % v), r
                seen.add(v)
                again = lp.get(p.port, "/", headers={"Cookie": cookie.split(";")[0]})
                assert served_by(again) == v and "set-cookie" not in again.headers, again
            assert seen == {"a", "b"}, "16 new visitors all got %r" % seen

            # A signed-in user keeps one variant without a cookie.
            got = {lp.get(p.port, "/", headers={"X-User": "alice"}).headers.get("x-ab-variant")
                   for _ in range(4)}
            assert len(got) == 1, got

            # The backend's own Set-Cookie is kept; the variant is still named.
            r = lp.expect(lp.get(p.port, "/headers?Set-Cookie=sid%3D1"), 200)
            assert r.getall("set-cookie") == ["sid=1"], r
            assert r.headers.get("x-ab-variant") == served_by(r), r


# --------------------------------------------------------------------------
# sticky.lua


def test_sticky_sessions_survive_a_server_failure():
    origins = [Origin(name=n).start() for n in ("s1", "s2", "s3")]
    try:
        env = {"APP_ADDRS": ",".join(o.addr for o in origins)}
        with lp.Proxy(example("sticky.lua"), env=env, workers=2) as p:
            home = {}
            for i in range(30):
                sid = "sess-%d" % i
                got = {served_by(lp.expect(lp.get(p.port, "/cart", headers={"Cookie": "session=" + sid}),
                                           200)) for _ in range(3)}
                assert len(got) == 1, "%s went to %r" % (sid, got)
                home[sid] = got.pop()
            counts = {n: list(home.values()).count(n) for n in ("s1", "s2", "s3")}
            assert sum(1 for c in counts.values() if c) >= 2, "30 sessions on one server: %r" % counts
            # The X-Session header is a session too.
            got = {served_by(lp.get(p.port, "/", headers={"X-Session": "sess-3"})) for _ in range(3)}
            assert got == {home["sess-3"]}, got

            # One server goes away: only its sessions move.
            gone = max(counts, key=counts.get)
            next(o for o in origins if o.name == gone).stop()
            moved = {}
            for sid, was in home.items():
                for _ in range(2):
                    r = lp.expect(lp.get(p.port, "/cart", headers={"Cookie": "session=" + sid}), 200)
                    now = served_by(r)
                    if was != gone:
                        assert now == was, "%s moved from %s to %s though %s stayed up" % (sid, was, now, was)
                    else:
                        assert now != gone, r
                        moved.setdefault(sid, set()).add(now)
            assert all(len(v) == 1 for v in moved.values()), "moved sessions are not sticky: %r" % moved
    finally:
        for o in origins:
            o.stop()


# --------------------------------------------------------------------------
# ratelimit.lua


def test_ratelimit_answers_429_with_retry_after_across_workers():
    with Origin(name="app") as o:
        env = {"APP_ADDRS": o.addr, "RATE_LIMIT": "5", "RATE_WINDOW": "3"}
        with lp.Proxy(example("ratelimit.lua"), env=env, workers=2) as p:
            workers = p.wait_workers(2)
            statuses, retry = [], []
            for i in range(8):
                # A new connection each, on the two workers in turn: one budget for both.
                with lp.conn_on_worker(p, workers[i % 2]) as c:
                    r = c.request("GET", "/", headers={"X-Api-Key": "k1"})
                statuses.append(r.status)
                if r.status == 429:
                    assert r.body == b"too many requests\n", r
                    retry.append(int(r.headers["retry-after"]))
            assert statuses == [200] * 5 + [429] * 3, statuses
            assert all(1 <= s <= 3 for s in retry), retry
            assert len(received(o)) == 5, "the backend saw %d requests" % len(received(o))

            # Another client has its own budget.
            lp.expect(lp.get(p.port, "/", headers={"X-Api-Key": "k2"}), 200)

            # After Retry-After, the client may come back.
            time.sleep(max(retry) + 0.3)
            lp.expect(lp.get(p.port, "/", headers={"X-Api-Key": "k1"}), 200)


# --------------------------------------------------------------------------
# apikey.lua


def test_apikey_keys_managed_over_the_admin_route():
    admin = {"X-Admin-Token": "s3cret"}
    key = "k-alice-0001"
    with Origin(name="app") as o:
        env = {"APP_ADDRS": o.addr, "ADMIN_TOKEN": "s3cret"}
        with lp.Proxy(example("apikey.lua"), env=env, workers=2) as p:
            r = lp.expect(lp.get(p.port, "/data"), 401)
            assert r.headers.get("www-authenticate", "").startswith("Bearer"), r
            lp.expect(lp.request(p.port, "PUT", "/admin/keys/" + key, body=b"alice"), 403)
            lp.expect(lp.request(p.port, "PUT", "/admin/keys/" + key, body=b"alice",
                                 headers={"X-Admin-Token": "guess"}), 403)
            lp.expect(lp.request(p.port, "PUT", "/admin/keys/short", body=b"x", headers=admin), 404)

            lp.expect(lp.request(p.port, "PUT", "/admin/keys/" + key, body=b"mallory", headers=admin), 201)
            lp.expect(lp.request(p.port, "PUT", "/admin/keys/" + key, body=b"alice\n", headers=admin), 200)
            lp.expect(lp.get(p.port, "/admin/keys", headers=admin), 200, ("%s alice\n" % key).encode())

            # Both ways of giving the key, on both workers (the key was stored through one).
            workers = p.wait_workers(2)
            for i, hdr in enumerate(({"Authorization": "Bearer " + key}, {"X-Api-Key": key}) * 3):
                with lp.conn_on_worker(p, workers[(i // 2) % 2]) as c:
                    lp.expect(c.request("GET", "/data", headers=hdr), 200)
            assert len(received(o)) == 6
            for q in received(o):
                assert header_of(q, "x-client") == "alice", q
                assert header_of(q, "authorization") is None and header_of(q, "x-api-key") is None, \
                    "the key reached the backend: %r" % q

            r = lp.expect(lp.get(p.port, "/data", headers={"X-Api-Key": "k-unknown-99"}), 401)
            assert b"unknown" in r.body, r

            lp.expect(lp.request(p.port, "DELETE", "/admin/keys/" + key, headers=admin), 204)
            lp.expect(lp.request(p.port, "DELETE", "/admin/keys/" + key, headers=admin), 404)
            for _ in range(3):
                lp.expect(lp.get(p.port, "/data", headers={"X-Api-Key": key}), 401)
            assert len(received(o)) == 6

    # Without ADMIN_TOKEN the admin routes are off.
    r = lp.run_cli(["--try", "PUT /admin/keys/" + key, "-H", "X-Admin-Token: ", "--body", "eve",
                    example("apikey.lua")])
    assert r.returncode == 0 and "HTTP/1.1 403 Forbidden" in r.stdout, r


# --------------------------------------------------------------------------
# maintenance.lua


def test_maintenance_switch_flipped_at_run_time():
    admin = {"X-Admin-Token": "tok"}
    with Origin(name="app") as o:
        env = {"APP_ADDRS": o.addr, "ADMIN_TOKEN": "tok", "MAINTENANCE_RETRY": "120"}
        with lp.Proxy(example("maintenance.lua"), env=env, workers=2) as p:
            lp.expect(lp.get(p.port, "/shop"), 200)
            lp.expect(lp.get(p.port, "/admin/maintenance", headers=admin), 200, b"off\n")
            lp.expect(lp.request(p.port, "PUT", "/admin/maintenance", body=b"back soon"), 403)
            lp.expect(lp.request(p.port, "PUT", "/admin/maintenance", body=b"back soon\n", headers=admin),
                      200)
            before = len(received(o))
            workers = p.wait_workers(2)
            for i in range(6):  # new connections on each worker in turn: every worker sees the switch
                with lp.conn_on_worker(p, workers[i % 2]) as c:
                    r = lp.expect(c.request("GET", "/shop"), 503, b"back soon\n")
                assert r.headers.get("retry-after") == "120", r
            assert len(received(o)) == before, "requests reached the backend during maintenance"
            # Operators get through.
            lp.expect(lp.get(p.port, "/shop", headers=admin), 200)
            lp.expect(lp.get(p.port, "/admin/maintenance", headers=admin), 200, b"on: back soon\n")

            lp.expect(lp.request(p.port, "DELETE", "/admin/maintenance", headers=admin), 200, b"off\n")
            for _ in range(4):
                lp.expect(lp.get(p.port, "/shop"), 200)
            assert len(received(o)) == before + 5


# --------------------------------------------------------------------------
# balancer.lua


def test_lua_balancer_leaves_the_slow_server_alone():
    with Origin(name="fast") as fast, Origin(name="slow", delay_ms=120) as slow:
        env = {"APP_ADDRS": "%s,%s" % (fast.addr, slow.addr)}
        with lp.Proxy(example("balancer.lua"), env=env, workers=1) as p:
            for _ in range(30):
                lp.expect(lp.get(p.port, "/"), 200)
        assert len(received(slow)) <= 5, \
            "the slow server got %d of 30 requests (fast: %d)" % (len(received(slow)), len(received(fast)))
        assert len(received(fast)) >= 25


def test_lua_balancer_retries_elsewhere_when_a_server_is_dead():
    with Origin(name="alive") as alive:
        env = {"APP_ADDRS": "127.0.0.1:%d,%s" % (dead_port(), alive.addr)}
        with lp.Proxy(example("balancer.lua"), env=env, workers=1) as p:
            for _ in range(12):
                r = lp.expect(lp.get(p.port, "/"), 200)
                assert served_by(r) == "alive", r


# --------------------------------------------------------------------------
# headers.lua


def test_header_rewriting_both_ways():
    with Origin(name="app") as o:
        with lp.Proxy(example("headers.lua"), env={"APP_ADDRS": o.addr}) as p:
            r = lp.expect(lp.get(p.port, "/v1/items?utm_source=mail&id=3&utm_medium=x",
                                 headers={"X-Internal-User": "root"}), 200)
            q = received(o)[-1]
            assert q.target == "/v2/items?id=3", q
            assert header_of(q, "x-internal-user") is None, q
            assert header_of(q, "x-real-ip") == "127.0.0.1", q
            rid = header_of(q, "x-request-id")
            assert rid and r.headers.get("x-request-id") == rid, (q, r)
            assert r.headers.get("x-content-type-options") == "nosniff", r
            assert r.headers.get("x-frame-options") == "DENY", r

            # A client's own request id is kept; only utm_ parameters go.
            lp.expect(lp.get(p.port, "/v1/x?utm_a=1", headers={"X-Request-Id": "abc-1"}), 200)
            q = received(o)[-1]
            assert q.target == "/v2/x" and header_of(q, "x-request-id") == "abc-1", q

            # Response side: Server and X-Powered-By go, a redirect to the
            # backend's own address becomes relative, the backend's own
            # X-Frame-Options stays.
            path = ("/headers?Server=origin-httpd&X-Powered-By=PHP&X-Frame-Options=SAMEORIGIN"
                    "&Location=http%%3A%%2F%%2F%s%%2Fnext%%3Fa%%3D1" % o.addr.replace(":", "%3A"))
            r = lp.expect(lp.get(p.port, path), 200)
            assert "server" not in r.headers and "x-powered-by" not in r.headers, r
            assert r.headers.get("location") == "/next?a=1", r
            assert r.getall("x-frame-options") == ["SAMEORIGIN"], r
            # Another address is left alone (here: another port).
            other = "127.0.0.1:%d" % (o.port + 1 if o.port < 65535 else o.port - 1)
            r = lp.expect(lp.get(p.port, "/headers?Location=http%%3A%%2F%%2F%s%%2Fx" % other), 200)
            assert r.headers.get("location") == "http://%s/x" % other, r


# --------------------------------------------------------------------------
# auth_callout.lua and dynamic_routes.lua: small HTTP services of the test


class _Service:
    """A threaded HTTP server on 127.0.0.1 whose GET answers come from
    answer(path, headers) -> (status, body); it counts the calls."""

    def __init__(self, answer):
        import http.server
        import threading
        svc = self
        self.calls = 0

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                svc.calls += 1
                status, body = answer(self.path, self.headers)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_auth_callout_asks_the_service_and_caches_its_answer():
    def answer(path, headers):
        return (200, b"yes") if headers.get("Authorization") == "Bearer good" else (401, b"no")

    with Origin(name="app") as app, _Service(answer) as auth:
        env = {"APP_ADDRS": app.addr, "AUTH_URL": "http://127.0.0.1:%d/check" % auth.port, "AUTH_TTL": "60"}
        with lp.Proxy(example("auth_callout.lua"), env=env) as p:
            r = lp.expect(lp.get(p.port, "/x"), 401)
            assert r.headers.get("www-authenticate") == "Bearer", r
            for _ in range(3):
                r = lp.expect(lp.get(p.port, "/x", headers={"Authorization": "Bearer good"}), 200)
                assert served_by(r) == "app", r
            lp.expect(lp.get(p.port, "/x", headers={"Authorization": "Bearer bad"}), 403)
            assert auth.calls == 2, "the verdicts were not cached: %d calls" % auth.calls
            assert len(received(app)) == 3
        # The service down: 503, never the app.
        env["AUTH_URL"] = "http://127.0.0.1:%d/check" % dead_port()
        with lp.Proxy(example("auth_callout.lua"), env=env) as p:
            lp.expect(lp.get(p.port, "/x", headers={"Authorization": "Bearer good"}), 503)
            assert len(received(app)) == 3


def test_dynamic_routes_follow_the_endpoint_without_a_reload():
    table = {"text": b"/api blue\n/shop green\n"}

    def answer(path, headers):
        return (200, table["text"]) if path == "/routes" else (404, b"")

    with Origin(name="blue") as blue, Origin(name="green") as green, _Service(answer) as svc:
        env = {"BLUE_ADDRS": blue.addr, "GREEN_ADDRS": green.addr,
               "ROUTES_URL": "http://127.0.0.1:%d/routes" % svc.port, "ROUTES_EVERY": "0.2"}
        with lp.Proxy(example("dynamic_routes.lua"), env=env) as p:
            lp.wait_until(lambda: lp.get(p.port, "/api/x").status == 200, what="the first table")
            assert served_by(lp.get(p.port, "/api/x")) == "blue"
            assert served_by(lp.get(p.port, "/shop/cart")) == "green"
            lp.expect(lp.get(p.port, "/other"), 404)
            table["text"] = b"/api green\n"
            lp.wait_until(lambda: served_by(lp.get(p.port, "/api/x")) == "green", what="the new table")
            lp.expect(lp.get(p.port, "/shop/cart"), 404)
            # Nonsense keeps the last good table.
            table["text"] = b"/api purple\n"
            time.sleep(0.5)
            assert served_by(lp.get(p.port, "/api/x")) == "green"
            p.wait_stderr("routes: keeping the last table")


# --------------------------------------------------------------------------
# mirror.lua


def test_mirror_copies_requests_to_the_shadow_and_retries_on_503():
    with Origin(name="live1", status=503) as l1, Origin(name="live2") as l2, \
            Origin(name="shadow", status=500) as sh:
        env = {"LIVE_ADDRS": "%s,%s" % (l1.addr, l2.addr), "SHADOW_ADDRS": sh.addr}
        with lp.Proxy(example("mirror.lua"), env=env) as p, lp.Conn(p.port) as c:
            for i in range(6):
                c.send(lp.build_request("PUT", "/api/items/%d" % i, b"item %d" % i))  # head and body at once
                r = lp.expect(c.read_response(), 200)
                # live1 answers 503: the PUT (idempotent, its body with the
                # head) goes to live2; the shadow's 500 is never seen
                assert served_by(r) == "live2", r
            lp.wait_until(lambda: len(sh.records) == 6 and all(q.complete for q in sh.records), timeout=5,
                          what="six copies at the shadow (it has %d)" % len(sh.records))
            assert sorted(q.body for q in sh.records) == sorted(b"item %d" % i for i in range(6))
            assert len(l2.records) == 6
        env["MIRROR_PERCENT"] = "0"
        with lp.Proxy(example("mirror.lua"), env=env) as p:
            lp.expect(lp.get(p.port, "/api/none"), 200)
            assert len(sh.records) == 6, "MIRROR_PERCENT=0 still mirrored"
# health_checked.lua


def test_health_checked_takes_a_dead_server_out_and_probes_the_others():
    with Origin(name="alive") as alive:
        dead = "127.0.0.1:%d" % dead_port()
        env = {"APP_ADDRS": "%s,%s" % (alive.addr, dead)}
        with lp.Proxy(example("health_checked.lua"), env=env, workers=2) as p:
            # first probe within one interval (2 s), then 3 failures 2 s apart
            p.wait_stderr("upstream app: server %s is down: 3 health check(s) failed in a row "
                          "(last: connect: Connection refused)" % dead, timeout=12)
            for _ in range(10):
                r = lp.expect(lp.get(p.port, "/"), 200)
                assert served_by(r) == "alive", r
            probes = received(alive, "/healthz")
            assert probes and all(header_of(q, "host") == alive.addr for q in probes), probes
            assert "server %s is down" % alive.addr not in p.stderr_text()
