"""SPEC §8, "OpenResty libraries run unchanged": the global ngx maps onto
proxy (ngx.null, ngx.now, ngx.time, ngx.log and its levels, ngx.shared,
ngx.worker, ngx.config, ngx.re/socket/sleep/timer), and Debian's
lua-resty-lrucache runs with it unchanged."""

import os
import re
import time

import lp

LRUCACHE = "/usr/share/lua/5.1/resty/lrucache.lua"
PUREFFI = "/usr/share/lua/5.1/resty/lrucache/pureffi.lua"


def lines_of(body):
    """{name: value} of a body of 'name=value' lines."""
    out = {}
    for line in body.decode().split("\n"):
        if line:
            k, _, v = line.partition("=")
            out[k] = v
    return out


NAMES = r'''
local mapped = {}
for _, name in ipairs({"re", "socket", "timer"}) do
  -- ngx.<name> is proxy.<name> where proxy has it; a table meanwhile.
  if proxy[name] ~= nil then
    mapped[name] = rawequal(ngx[name], proxy[name]) and "proxy" or "other"
  else
    mapped[name] = type(ngx[name]) == "table" and "table" or type(ngx[name])
  end
end

function on_get(req)
  local out = {}
  local function t(k, v) out[#out + 1] = k .. "=" .. tostring(v) end
  t("null_type", type(ngx.null))
  t("null_is_proxy_null", rawequal(ngx.null, proxy.null))
  t("proxy_null_type", type(proxy.null))
  t("null_is_not_nil", ngx.null ~= nil)
  local tab = {a = ngx.null, ngx.null}
  t("null_as_value", rawequal(tab.a, proxy.null) and #tab == 1)
  t("now_is_proxy_now", rawequal(ngx.now, proxy.now))
  t("now", string.format("%.3f", ngx.now()))
  t("time", ngx.time())
  t("time_is_integer", ngx.time() == math.floor(ngx.time()))
  t("today", ngx.today())
  t("localtime", ngx.localtime())
  t("utctime", ngx.utctime())
  for _, l in ipairs({"STDERR", "EMERG", "ALERT", "CRIT", "ERR", "WARN", "NOTICE", "INFO", "DEBUG"}) do
    t("level_" .. l, ngx[l])
  end
  t("log_type", type(ngx.log))
  t("worker_id", ngx.worker.id())
  t("worker_id_is_proxy", ngx.worker.id() == proxy.worker_id)
  t("worker_count", ngx.worker.count())
  t("worker_pid", ngx.worker.pid())
  t("subsystem", ngx.config.subsystem)
  t("ngx_lua_version", ngx.config.ngx_lua_version)
  t("ngx_lua_version_type", math.type and math.type(ngx.config.ngx_lua_version) or type(ngx.config.ngx_lua_version))
  t("nginx_version", ngx.config.nginx_version)
  t("debug", ngx.config.debug)
  t("prefix", ngx.config.prefix())
  t("shared_type", type(ngx.shared))
  t("re", mapped.re)
  t("socket", mapped.socket)
  t("timer", mapped.timer)
  t("sleep", rawequal(ngx.sleep, proxy.sleep))
  return 200, table.concat(out, "\n") .. "\n"
end
'''


def test_every_name_of_ngx_is_there_and_maps_onto_proxy():
    with lp.Proxy(NAMES, workers=2) as p:
        before = time.time()
        r = lp.get(p.port, "/")
        after = time.time()
        assert r.status == 200, r
        v = lines_of(r.body)
        assert v["null_type"] == "userdata", v
        assert v["proxy_null_type"] == "userdata", v
        assert v["null_is_proxy_null"] == "true", v
        assert v["null_is_not_nil"] == "true", v
        assert v["null_as_value"] == "true", v
        assert v["now_is_proxy_now"] == "true", v
        assert before - 1 <= float(v["now"]) <= after + 1, v
        assert re.fullmatch(r"\d+", v["time"]) and before - 1 <= int(v["time"]) <= after + 1, v
        assert v["time_is_integer"] == "true", v
        lt, ut = time.localtime(int(v["time"])), time.gmtime(int(v["time"]))
        assert v["today"] == time.strftime("%Y-%m-%d", lt), v
        assert v["localtime"] == time.strftime("%Y-%m-%d %H:%M:%S", lt), v
        assert v["utctime"] == time.strftime("%Y-%m-%d %H:%M:%S", ut), v
        for i, name in enumerate(["STDERR", "EMERG", "ALERT", "CRIT", "ERR", "WARN", "NOTICE", "INFO", "DEBUG"]):
            assert v["level_" + name] == str(i), (name, v)
        assert v["log_type"] == "function", v
        assert v["worker_id"] in ("0", "1") and v["worker_id_is_proxy"] == "true", v
        assert v["worker_count"] == "2", v
        assert int(v["worker_pid"]) in p.worker_pids(), (v, p.worker_pids())
        assert v["subsystem"] == "http", v
        assert v["ngx_lua_version"] == "10023" and v["ngx_lua_version_type"] == "number", v
        assert v["nginx_version"] == "1022001", v
        assert v["debug"] == "false", v
        assert v["prefix"] == os.path.realpath(p.dir) + "/", (v, p.dir)
        assert v["shared_type"] == "table", v
        for name in ("re", "socket", "timer"):
            assert v[name] in ("proxy", "table"), (name, v)
        assert v["sleep"] == "true", v


LOG = r'''
local levels = {"STDERR", "EMERG", "ALERT", "CRIT", "ERR", "WARN", "NOTICE", "INFO", "DEBUG"}
function on_get(req)
  if req.path == "/bad" then
    local ok, err = pcall(ngx.log, "error", "x")
    local ok2, err2 = pcall(ngx.log, 9, "x")
    return 200, tostring(ok) .. " " .. tostring(err) .. "\n" .. tostring(ok2) .. " " .. tostring(err2)
  end
  for _, l in ipairs(levels) do
    ngx.log(ngx[l], "mark-", l, "-end")
  end
  local obj = setmetatable({}, {__tostring = function() return "an-object" end})
  ngx.log(ngx.WARN, "args:", nil, "|", ngx.null, "|", true, "|", false, "|", 42, "|", 1.5, "|", obj)
  ngx.log(ngx.ERR, "last-line")
  return 200, "ok"
end
'''

WANT_LEVEL = {"STDERR": "error", "EMERG": "error", "ALERT": "error", "CRIT": "error", "ERR": "error",
              "WARN": "warn", "NOTICE": "info", "INFO": "info", "DEBUG": "debug"}


def log_line(text, needle):
    found = [l for l in text.split("\n") if needle in l]
    assert len(found) == 1, "%r: %d lines in\n%s" % (needle, len(found), text)
    return found[0]


def test_ngx_log_writes_each_level_at_the_mapped_one_with_the_place_of_the_call():
    with lp.Proxy(LOG, args=["--log-level", "debug"]) as p:
        lp.expect(lp.get(p.port, "/"), 200, b"ok")
        text = p.wait_stderr("last-line")
        for name, level in WANT_LEVEL.items():
            line = log_line(text, "mark-%s-end" % name)
            assert "[%s]" % level in line, (name, line)
            # As OpenResty: the file and line of the call, then the message.
            assert re.search(r"\[lua\] worker 0: script\.lua:\d+: mark-%s-end$" % name, line), line
        line = log_line(text, "args:")
        assert line.endswith("args:nil|null|true|false|42|1.5|an-object"), line
        assert "[warn]" in line, line


def test_ngx_log_follows_the_log_level():
    with lp.Proxy(LOG, args=["--log-level", "warn"]) as p:
        lp.expect(lp.get(p.port, "/"), 200, b"ok")
        text = p.wait_stderr("last-line")    # written after every other line
        for name, level in WANT_LEVEL.items():
            present = "mark-%s-end" % name in text
            assert present == (level in ("warn", "error")), (name, text)


def test_ngx_log_refuses_a_level_that_is_not_one_of_the_constants():
    with lp.Proxy(LOG) as p:
        r = lp.get(p.port, "/bad")
        assert r.status == 200, r
        first, second = r.body.decode().split("\n")
        assert first.startswith("false ") and "bad argument #1" in first, first
        assert second.startswith("false ") and "bad log level" in second, second


SHARED = r'''
function on_get(req)
  if req.path == "/ngx-set" then
    return 200, tostring(ngx.shared.cache:set("k", "set-through-ngx"))
  elseif req.path == "/proxy-get" then
    return 200, tostring(proxy.shared("cache"):get("k"))
  elseif req.path == "/proxy-set" then
    proxy.shared("cache"):set("n", 41)
    return 200, tostring(ngx.shared.cache:incr("n", 1))
  elseif req.path == "/ngx-get" then
    return 200, tostring(ngx.shared["cache"]:get("n"))
  elseif req.path == "/same" then
    return 200, tostring(rawequal(ngx.shared.cache, ngx.shared.cache)) .. " " ..
                tostring(ngx.shared[1]) .. " " .. tostring(ngx.shared.other:get("k"))
  end
end
'''


def test_ngx_shared_is_the_proxy_shared_dict():
    with lp.Proxy(SHARED, workers=2) as p:
        lp.expect(lp.get(p.port, "/ngx-set"), 200, b"true")
        lp.expect(lp.get(p.port, "/proxy-get"), 200, b"set-through-ngx")
        lp.expect(lp.get(p.port, "/proxy-set"), 200, b"42")
        lp.expect(lp.get(p.port, "/ngx-get"), 200, b"42")
        # One object per name; a key that is not a name is no dict; another
        # name is another dict.
        lp.expect(lp.get(p.port, "/same"), 200, b"true nil nil")


LRU = r'''
local lrucache = require "resty.lrucache"
local pureffi = require "resty.lrucache.pureffi"

local caches = {}
for _, kind in ipairs({"plain", "pureffi"}) do
  local lib = kind == "plain" and lrucache or pureffi
  local c, err = lib.new(2)
  if not c then error("lrucache.new: " .. tostring(err)) end
  caches[kind] = c
end

function on_get(req)
  local c = caches[req.query:match("kind=(%w+)")]
  local op = req.path
  if op == "/count" then
    local n = (c:get("count") or 0) + 1
    c:set("count", n)
    return 200, tostring(n)
  elseif op == "/short" then
    c:set("short", "v", 0.3)
    return 200, tostring(c:get("short"))
  elseif op == "/short-get" then
    local v, stale = c:get("short")
    return 200, tostring(v) .. " " .. tostring(stale)
  elseif op == "/evict" then
    c:set("a", 1) c:set("b", 2) c:set("c", 3)   -- room for 2: "a" goes
    return 200, tostring(c:get("a")) .. " " .. tostring(c:get("b")) .. " " .. tostring(c:get("c"))
  end
end
'''


def test_resty_lrucache_runs_unchanged_and_keeps_values_across_requests():
    assert os.path.exists(LRUCACHE), "lua-resty-lrucache is not installed (scripts/deps.sh)"
    assert os.path.exists(PUREFFI), "lua-resty-lrucache ships no pureffi.lua"
    with lp.Proxy(LRU, workers=1) as p:
        for kind in ("plain", "pureffi"):
            c = lp.Conn(p.port)
            try:
                for i in range(1, 6):
                    lp.expect(c.request("GET", "/count?kind=" + kind), 200, str(i).encode())
            finally:
                c.close()
            lp.expect(lp.get(p.port, "/evict?kind=" + kind), 200, b"nil 2 3")
            # Expiry goes by ngx.now: the value is there, then stale.
            lp.expect(lp.get(p.port, "/short?kind=" + kind), 200, b"v")
            lp.wait_until(lambda: lp.get(p.port, "/short-get?kind=" + kind).body == b"nil v", timeout=5,
                          interval=0.05, what="%s: the 0.3 s entry to expire" % kind)
