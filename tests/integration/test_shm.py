"""SPEC §3 (proxy.shared): the dict API, TTLs, running out of memory."""

import time

import lp

API = r'''
local d = proxy.shared("api")
local e = proxy.shared("api-other")

local function show(...)
  local n = select("#", ...)
  local out = {}
  for i = 1, n do
    local v = select(i, ...)
    out[#out + 1] = type(v) .. ":" .. tostring(v)
  end
  return table.concat(out, ",")
end

function on_get(req)
  local lines = {}
  local function t(name, ...) lines[#lines + 1] = name .. "=" .. show(...) end
  t("get_missing", d:get("nope"))
  t("set_str", d:set("s", "text"))
  t("get_str", d:get("s"))
  t("set_num", d:set("n", 1.5))
  t("get_num", d:get("n"))
  t("set_bool", d:set("b", false))
  t("get_bool", d:get("b"))
  t("add_exists", d:add("s", "other"))
  t("get_after_add", d:get("s"))
  t("add_new", d:add("a", "fresh"))
  t("incr_missing", d:incr("counter", 5))
  t("incr_init", d:incr("counter", 5, 10))
  t("incr_again", d:incr("counter", -3))
  t("other_dict", e:get("s"))
  t("count", d:count())
  local keys = d:keys()
  table.sort(keys)
  t("keys", table.concat(keys, "|"))
  t("keys_max", #d:keys(2))
  t("delete_present", d:delete("a"))
  t("delete_absent", d:delete("a"))
  t("get_deleted", d:get("a"))
  t("count_after", d:count())
  local function err(f) local ok, e = pcall(f) return ok, tostring(e):match("bad argument #1 to '.-' (%(.*%))") end
  t("dot_call", err(function() return d.get("s") end))
  t("not_a_dict", err(function() return d.get(io.stdout, "s") end))
  t("nil_self", err(function() return d.set(nil, "s", 1) end))
  return 200, table.concat(lines, "\n") .. "\n"
end
'''

WANT = {
    "get_missing": "nil:nil",
    "set_str": "boolean:true",
    "get_str": "string:text",
    "set_num": "boolean:true",
    "get_num": "number:1.5",
    "set_bool": "boolean:true",
    "get_bool": "boolean:false",
    "add_exists": "nil:nil,string:exists",
    "get_after_add": "string:text",
    "add_new": "boolean:true",
    "incr_missing": "nil:nil,string:not found",
    "incr_init": "number:15",
    "incr_again": "number:12",
    "other_dict": "nil:nil",
    "count": "number:5",
    "keys": "string:a|b|counter|n|s",
    "keys_max": "number:2",
    "delete_present": "boolean:true",
    "delete_absent": "boolean:false",
    "get_deleted": "nil:nil",
    "count_after": "number:4",
    # dict methods called without a dict as self (a dot instead of a colon,
    # another kind of userdata) are refused, never read as one.
    "dot_call": "boolean:false,string:(shared dict expected, got string)",
    "not_a_dict": "boolean:false,string:(shared dict expected, got userdata)",
    "nil_self": "boolean:false,string:(shared dict expected, got nil)",
}


def test_dict_api():
    with lp.Proxy(API) as p:
        r = lp.get(p.port, "/")
        assert r.status == 200, r
        got = dict(l.split("=", 1) for l in r.body.decode().strip().split("\n"))
        bad = {k: (got.get(k), v) for k, v in WANT.items() if got.get(k) != v}
        assert not bad, "got/want: %r" % bad


TTL = r'''
local d = proxy.shared("ttl")
function on_post(req)
  if req.path == "/short" then return 200, tostring(d:set("k", "v", 0.2)) end
  if req.path == "/add" then return 200, tostring(d:add("a", "v", 0.2)) end
  if req.path == "/forever" then return 200, tostring(d:set("f", "v")) end
end
function on_get(req)
  if req.path == "/count" then return 200, tostring(d:count()) end
  return 200, tostring(d:get(req.path:sub(2)))
end
'''


def within_ttl(p, first, second, what):
    """Runs first() then second() until the pair takes less than 0.15 s, so
    that second() surely ran inside the 0.2 s ttl first() set (a loaded
    machine may need another try); fails when it never does. Returns the
    response of second() and the time first() was sent."""
    for _ in range(5):
        t0 = time.monotonic()
        first()
        r = second()
        if time.monotonic() - t0 < 0.15:
            return r, t0
    raise AssertionError("%s: no try ran inside the 0.2 s ttl" % what)


def wait_expired(p, path, t0, body, method="GET"):
    """Polls until path answers body, which must come after the ttl."""
    lp.wait_until(lambda: lp.request(p.port, method, path).body == body, 1.5,
                  what="%s %s to answer %r after the 0.2s ttl" % (method, path, body))
    # The dicts keep time with CLOCK_MONOTONIC_COARSE, which lags by up to
    # one kernel tick (10 ms at HZ=100): a ttl may end that much early.
    assert time.monotonic() - t0 >= 0.2 - 0.011, "%s %s answered %r before the ttl" % (method, path, body)


def test_ttl_expires():
    with lp.Proxy(TTL) as p:
        lp.expect(lp.post(p.port, "/forever", b""), 200, b"true")
        r, t0 = within_ttl(p, lambda: lp.expect(lp.post(p.port, "/short", b""), 200, b"true"),
                           lambda: lp.get(p.port, "/k"), "set then get")
        lp.expect(r, 200, b"v", "value gone before its ttl")
        wait_expired(p, "/k", t0, b"nil")
        lp.expect(lp.get(p.port, "/f"), 200, b"v")
        lp.expect(lp.get(p.port, "/count"), 200, b"1", "count includes an expired key")


def test_add_succeeds_after_expiry():
    with lp.Proxy(TTL) as p:
        def add_fresh():
            # A previous try's key must be gone first, so that this add sets it.
            lp.wait_until(lambda: lp.post(p.port, "/add", b"").body == b"true", 1.5, what="add to succeed")
        r, t0 = within_ttl(p, add_fresh, lambda: lp.post(p.port, "/add", b""), "add then add")
        lp.expect(r, 200, b"nil", "add over a live key")
        wait_expired(p, "/add", t0, b"true", method="POST")


NOMEM = r'''
local d = proxy.shared("big")
local chunk = string.rep("z", 100 * 1024)
function on_post(req)
  for i = 1, 100 do
    local ok, err = d:set("key" .. i, chunk .. i)
    if not ok then return 200, i .. " " .. tostring(ok) .. " " .. tostring(err) end
  end
  return 200, "never failed"
end
function on_get(req)
  local v = d:get(req.path:sub(2))
  return 200, v and (#v .. " " .. v:sub(-2)) or "nil"
end
function on_put(req) return 200, tostring(d:set("small", "s")) .. " " .. tostring(d:get("small")) end
function on_delete(req)
  for i = 1, 100 do d:delete("key" .. i) end
  return 200, tostring(d:set("again", chunk))
end
'''


def test_set_no_memory():
    with lp.Proxy(NOMEM, args=["--shm-size", "256k"]) as p:
        r = lp.post(p.port, "/", b"")
        assert r.status == 200, r
        parts = r.body.decode().split(" ", 2)
        assert parts[0] != "never", "storing 10 MB in a 256 KiB shm never failed"
        i, ok, err = int(parts[0]), parts[1], parts[2]
        assert (ok, err) == ("nil", "no memory"), "set returned %s, %r" % (ok, err)
        assert 2 <= i <= 3, "failed at value %d of 100 KiB in 256 KiB" % i
        # The values stored before the failure are intact.
        r = lp.get(p.port, "/key1")
        assert r.body == b"%d z1" % (100 * 1024 + 1), r.body
        # The worker still serves, and freeing space makes room again.
        lp.expect(lp.request(p.port, "DELETE", "/"), 200, b"true", "no room after deleting everything")
