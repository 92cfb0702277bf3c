"""SPEC §9, retries on answers: with `retry_on = { 502, 503, 504 }` an
idempotent request whose server answered one of these statuses, before any
response byte reached the client, goes to the next server within
`retries`; POST never does; a body that was not held whole (spliced from
the client) is never replayed; the last server's answer goes to the client
as it is; a response already streaming is never retried."""

import lp
from origin import Origin, pattern_bytes

# Servers in the order given, skipping those tried: which server gets the
# first attempt and which the retry does not depend on a rotation.
IN_ORDER = """balance = function(req, servers)
    for i, s in ipairs(servers) do if not s.tried then return i end end
end"""


def script(servers, opts="retries = 1, retry_on = { 502, 503, 504 }"):
    return ('local up = proxy.upstream("app", { %s }, { %s, %s })\n'
            'function route(req) return up end\n'
            % (", ".join('"%s"' % o.addr for o in servers), opts, IN_ORDER))


def test_a_get_answered_503_goes_to_the_next_server():
    with Origin(name="bad", status=503) as bad, Origin(name="good") as good, \
            lp.Proxy(script([bad, good]), workers=1) as p, lp.Conn(p.port) as c:
        r = c.request("GET", "/echo?first")
        assert r.status == 200 and r.header("x-origin") == "good", \
            "a 503 with retry_on = {503}: the next server's answer expected, got %r" % r
        assert bad.requests == 1 and good.requests == 1, (bad.requests, good.requests)
        # The discarded 503 came whole with its head (Content-Length): its
        # connection went back to the pool, and the next request reuses it.
        r = c.request("GET", "/echo?second")
        assert r.status == 200 and r.header("x-origin") == "good", r
        assert bad.requests == 2 and bad.connections == 1, \
            "the discarded answer's connection should be pooled: %d requests on %d connections" % (
                bad.requests, bad.connections)
        bad.assert_clean()
        good.assert_clean()


def test_a_body_that_came_with_the_head_is_replayed_whole():
    body = b"x" * 1000
    with Origin(name="bad", status=502) as bad, Origin(name="good") as good, \
            lp.Proxy(script([bad, good]), workers=1) as p, lp.Conn(p.port) as c:
        c.send(lp.build_request("PUT", "/echo", body))
        r = c.read_response()
        assert r.status == 200 and r.header("x-origin") == "good", r
        assert good.records[0].body == body and bad.records[0].body == body
        good.assert_clean()


def test_a_post_is_never_retried():
    with Origin(name="bad", status=503) as bad, Origin(name="good") as good, \
            lp.Proxy(script([bad, good]), workers=1) as p:
        r = lp.post(p.port, "/echo", "payload")
        assert r.status == 503 and r.header("x-origin") == "bad", \
            "a POST answered 503 must reach the client as it is, got %r" % r
        assert bad.requests == 1 and good.requests == 0, (bad.requests, good.requests)


def test_a_spliced_body_is_never_replayed():
    body = pattern_bytes(2 << 20)
    with Origin(name="bad", status=503, keep_body=0) as bad, Origin(name="good") as good, \
            lp.Proxy(script([bad, good]), workers=1) as p:
        r = lp.request(p.port, "PUT", "/echo", body=body, timeout=20)
        assert r.status == 503 and r.header("x-origin") == "bad", \
            "a PUT whose body was spliced cannot be replayed: its 503 expected, got %r" % r
        assert good.requests == 0, good.requests


def test_a_status_not_listed_is_relayed():
    with Origin(name="bad", status=500) as bad, Origin(name="good") as good, \
            lp.Proxy(script([bad, good]), workers=1) as p:
        r = lp.get(p.port, "/echo")
        assert r.status == 500 and r.header("x-origin") == "bad", r
        assert good.requests == 0


def test_without_retry_on_nothing_is_retried():
    with Origin(name="bad", status=503) as bad, Origin(name="good") as good, \
            lp.Proxy(script([bad, good], "retries = 1"), workers=1) as p:
        r = lp.get(p.port, "/echo")
        assert r.status == 503 and r.header("x-origin") == "bad", r
        assert good.requests == 0


def test_exhausted_retries_relay_the_last_answer():
    with Origin(name="a", status=503) as a, Origin(name="b", status=504) as b, \
            Origin(name="c") as c, \
            lp.Proxy(script([a, b, c]), workers=1) as p:
        r = lp.get(p.port, "/echo")
        # retries = 1: two servers in all; the second's answer, whole
        assert r.status == 504 and r.header("x-origin") == "b", \
            "retries exhausted: the last server's answer expected, got %r" % r
        assert b"status 504" not in r.body and b'"origin": "b"' in r.body, r
        assert (a.requests, b.requests, c.requests) == (1, 1, 0)


def test_every_server_answering_503_relays_the_last():
    with Origin(name="a", status=503) as a, Origin(name="b", status=503) as b, \
            lp.Proxy(script([a, b], "retries = 5, retry_on = { 503 }"), workers=1) as p:
        r = lp.get(p.port, "/echo")
        assert r.status == 503 and r.header("x-origin") == "b", \
            "no server left: the last answer expected (not a 502 of ours), got %r" % r
        assert (a.requests, b.requests) == (1, 1)


def test_a_response_already_streaming_is_never_retried():
    with Origin(name="a") as a, Origin(name="b") as b, \
            lp.Proxy(script([a, b]), workers=1) as p, lp.Conn(p.port, timeout=10) as c:
        # a 200 whose body stops half way: its head went to the client
        c.send(lp.build_request("GET", "/truncate/200000"))
        data = c.read_until_close()
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
        assert b.requests == 0, "a response that began streaming was sent again"


def test_bad_retry_on_is_a_load_error():
    for bad in ("retry_on = 503", "retry_on = { 200 }", 'retry_on = { "x" }'):
        text = 'proxy.upstream("u", { "127.0.0.1:1" }, { %s })\nfunction route() end\n' % bad
        r = lp.run_cli(["--check", lp.write_script(text)])
        assert r.returncode != 0 and "retry_on" in r.stderr, (bad, r)
