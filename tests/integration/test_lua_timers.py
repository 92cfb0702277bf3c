"""SPEC §8 and §11: proxy.timer.at/every, proxy.sleep in a timer's
coroutine, premature runs at reload and shutdown, a raising callback,
--max-timers, and "cannot wait in <hook>" where waiting is not allowed.

Timer callbacks write what they saw into a shared dict; a handler reads it
back, so every check is made through the real binary."""

import re
import signal
import time

import lp

READ = '''
function on_get(req)
  local v = d:get(req.path:sub(2))
  if v == nil then return 404, "nil" end
  return 200, tostring(v)
end
'''


def value(p, key):
    r = lp.get(p.port, "/" + key)
    return r.body.decode() if r.status == 200 else None


def wait_value(p, key, want=None, timeout=5.0):
    got = {}

    def seen():
        got["v"] = value(p, key)
        return got["v"] is not None and (want is None or got["v"] == want)
    lp.wait_until(seen, timeout=timeout, what="%s = %r (last %r)" % (key, want, got.get("v")))
    return got["v"]


def test_at_runs_once_with_its_arguments_and_premature_false():
    script = ('d = proxy.shared("t")\n'
              'proxy.timer.at(0.05, function(premature, a, b, c)\n'
              '  d:incr("runs", 1, 0)\n'
              '  d:set("seen", tostring(premature) .. "|" .. a .. "|" .. tostring(b) .. "|" .. tostring(c))\n'
              'end, "x", 2, nil)\n' + READ)
    with lp.Proxy(script) as p:
        assert wait_value(p, "seen") == "false|x|2|nil"
        time.sleep(0.3)
        assert value(p, "runs") == "1", "a timer.at callback ran more than once"


def test_every_repeats_and_sleep_waits_without_blocking_the_worker():
    script = ('d = proxy.shared("t")\n'
              'proxy.timer.every(0.05, function(premature) d:incr("ticks", 1, 0) end)\n'
              'proxy.timer.at(0, function()\n'
              '  local t0 = proxy.now()\n'
              '  proxy.sleep(0.5)\n'
              '  d:set("slept", string.format("%.2f", proxy.now() - t0))\n'
              'end)\n' + READ)
    with lp.Proxy(script) as p:
        # While the timer sleeps, requests are served at once.
        t0 = time.monotonic()
        r = lp.get(p.port, "/ticks")
        assert time.monotonic() - t0 < 0.3, "a sleeping timer blocked the worker"
        assert wait_value(p, "slept", timeout=3.0)
        assert 0.45 <= float(value(p, "slept")) < 1.5, value(p, "slept")
        first = int(wait_value(p, "ticks"))
        time.sleep(0.5)
        assert int(value(p, "ticks")) >= first + 4, "timer.every stopped repeating"
        del r


def test_a_raising_callback_is_logged_and_the_worker_goes_on():
    script = ('d = proxy.shared("t")\n'
              'proxy.timer.every(0.05, function()\n'
              '  d:incr("n", 1, 0)\n'
              '  error("timer boom")\n'
              'end)\n' + READ)
    with lp.Proxy(script) as p:
        text = p.wait_stderr("timer boom")
        assert re.search(r"\[error\].*lua error in timer: .*timer boom", text), text
        n = int(wait_value(p, "n"))
        lp.wait_until(lambda: int(value(p, "n")) > n + 2, what="the timer to keep running after its error")
        assert p.alive()


def test_pending_timers_run_premature_at_reload_and_the_new_script_has_its_own():
    script = ('d = proxy.shared("t")\n'
              'local gen = proxy.generation\n'
              'proxy.timer.at(3600, function(premature)\n'
              '  d:set("premature" .. gen, tostring(premature))\n'
              '  local ok, err = proxy.timer.at(0, function() end)\n'
              '  d:set("again" .. gen, tostring(ok) .. " " .. tostring(err))\n'
              'end)\n' + READ)
    with lp.Proxy(script) as p:
        assert value(p, "premature0") is None
        p.send_signal(signal.SIGHUP)
        assert wait_value(p, "premature0") == "true"
        # A retired generation may not schedule more.
        assert value(p, "again0") == "nil process exiting"
        # The new generation's timer is pending, not fired.
        time.sleep(0.2)
        assert value(p, "premature1") is None
        p.wait_stderr("script generation 0 closed")


def test_pending_timers_run_premature_at_shutdown():
    marker = lp.make_tmpdir() + "/premature"
    script = ('proxy.timer.at(3600, function(premature)\n'
              '  local f = io.open(%r, "w")\n'
              '  f:write(tostring(premature))\n'
              '  f:close()\n'
              'end)\n'
              'function on_get(req) return 200, "ok" end\n') % marker
    p = lp.Proxy(script)
    try:
        lp.expect(lp.get(p.port, "/"), 200, b"ok")
        p.stop(signal.SIGTERM)
    finally:
        p.kill()
    with open(marker) as f:
        assert f.read() == "true"


def test_max_timers_refuses_past_the_limit():
    script = ('d = proxy.shared("t")\n'
              'local ok = 0\n'
              'for i = 1, 7 do\n'
              '  local r, err = proxy.timer.at(3600, function() end)\n'
              '  if r then ok = ok + 1 else d:set("err", err) end\n'
              'end\n'
              'd:set("ok", ok)\n'
              'd:set("pending", proxy.timer.pending())\n' + READ)
    with lp.Proxy(script, args=["--max-timers", "5"]) as p:
        assert value(p, "ok") == "5"
        assert value(p, "err") == "too many pending timers"
        assert value(p, "pending") == "5"


def test_max_timers_is_an_option_with_a_clear_error():
    r = lp.run_cli(["--max-timers", "zero", "--check", lp.write_script("x = 1\n")])
    assert r.returncode == 2, r
    assert "--max-timers" in r.stderr and len(r.stderr.strip().split("\n")) == 1, r.stderr


def test_cannot_wait_where_waiting_is_not_allowed():
    script = ('d = proxy.shared("t")\n'
              'local ok, err = pcall(proxy.sleep, 0.01)\n'
              'd:set("top", tostring(err))\n'
              'local up = proxy.upstream("u", {"127.0.0.1:1"}, {balance = function(req, servers)\n'
              '  local ok, err = pcall(proxy.sleep, 0.01)\n'
              '  d:set("balance", tostring(err))\n'
              '  return nil\n'
              'end})\n'
              'function route(req)\n'
              '  if req.path == "/up" then return up end\n'
              'end\n' + READ)
    with lp.Proxy(script) as p:
        assert value(p, "top").endswith("cannot wait in top-level code"), value(p, "top")
        assert lp.get(p.port, "/up").status == 503
        assert value(p, "balance").endswith("cannot wait in balance"), value(p, "balance")


def test_time_limit_counts_running_not_waiting():
    # Three sleeps of 0.4 s in a callback under a 300 ms limit: the waits
    # do not count; a busy loop past the limit does.
    script = ('d = proxy.shared("t")\n'
              'proxy.timer.at(0, function()\n'
              '  for i = 1, 3 do proxy.sleep(0.4) end\n'
              '  d:set("waited", "done")\n'
              '  local t0 = os.clock()\n'
              '  while true do end\n'
              'end)\n' + READ)
    with lp.Proxy(script, args=["--lua-time-limit", "300ms"]) as p:
        assert wait_value(p, "waited", timeout=5.0) == "done"
        p.wait_stderr("lua time limit exceeded", timeout=5.0)
        lp.expect(lp.get(p.port, "/waited"), 200, b"done")


def test_timers_do_not_run_under_check():
    marker = lp.make_tmpdir() + "/ran"
    script = ('proxy.timer.at(0, function() io.open(%r, "w"):close() end)\n'
              'function on_get(req) return 200 end\n') % marker
    r = lp.run_cli(["--check", lp.write_script(script)])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r
    time.sleep(0.1)
    import os
    assert not os.path.exists(marker), "a timer ran under --check"
