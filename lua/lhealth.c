#include "lhealth.h"

#include <lauxlib.h>
#include <string.h>

#include "health.h"
#include "opts.h"

static const char *const keys[] = {"path", "interval", "timeout", "rise", "fall", "expect", "host", NULL};

/* Bytes a request target or a Host value may not hold: controls and space
 * would let the script's text break the request line or the head. */
static bool clean(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || *s == 0x7f) return false;
    return true;
}

static void read_expect(lua_State *L, int t, struct health_check *c)
{
    lua_getfield(L, t, "expect");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    memset(c->expect, 0, sizeof(c->expect));
    bool list = lua_istable(L, -1);
    int n = list ? (int)lua_objlen(L, -1) : 1;
    if (list && n == 0) luaL_error(L, "proxy.upstream: check.expect is an empty list");
    for (int i = 1; i <= n; i++) {
        if (list) lua_rawgeti(L, -1, i);
        lua_Number st = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
        if (st != (int)st || st < 100 || st > 599)
            luaL_error(L, "proxy.upstream: check.expect must be a status (100 to 599) or a list of them");
        health_expect_set(c, (int)st);
        if (list) lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void read_string(lua_State *L, int t, const char *key, char *out, size_t cap)
{
    lua_getfield(L, t, key);
    if (!lua_isnil(L, -1)) {
        size_t len;
        const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!s || len == 0 || len >= cap || strlen(s) != len || !clean(s) || (!strcmp(key, "path") && *s != '/'))
            luaL_error(L, "proxy.upstream: check.%s must be %s of at most %d bytes, without spaces or controls",
                       key, !strcmp(key, "path") ? "a path starting with '/'" : "a host name", (int)cap - 1);
        memcpy(out, s, len + 1);
    }
    lua_pop(L, 1);
}

struct health_check *lhealth_check(lua_State *L)
{
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (!lua_istable(L, -1)) luaL_error(L, "proxy.upstream: check must be a table ({ path = \"/healthz\", ... })");
    int t = lua_gettop(L);
    /* A mistyped key would silently leave a default in place. */
    for (lua_pushnil(L); lua_next(L, t); lua_pop(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        int i = 0;
        while (k && keys[i] && strcmp(k, keys[i])) i++;
        if (!k || !keys[i])
            luaL_error(L, "proxy.upstream: check has no option '%s' (path, interval, timeout, rise, fall, "
                          "expect, host)", k ? k : luaL_typename(L, -2));
    }
    /* Filled on the stack first: an error below must leak nothing. */
    struct health_check *def = health_check_new();
    if (!def) luaL_error(L, "proxy.upstream: out of memory");
    struct health_check c = *def;
    health_check_free(def);
    read_string(L, t, "path", c.path, sizeof(c.path));
    read_string(L, t, "host", c.host, sizeof(c.host));
    c.interval_ms = opt_duration(L, t, "interval", c.interval_ms);
    c.timeout_ms = opt_duration(L, t, "timeout", c.timeout_ms);
    if (c.interval_ms == 0 || c.timeout_ms == 0)
        luaL_error(L, "proxy.upstream: check.interval and check.timeout must be more than 0");
    c.rise = opt_int(L, t, "rise", c.rise, 1);
    c.fall = opt_int(L, t, "fall", c.fall, 1);
    if (c.rise > 10000 || c.fall > 10000) luaL_error(L, "proxy.upstream: check.rise and check.fall are at most 10000");
    read_expect(L, t, &c);
    lua_pop(L, 1);
    struct health_check *out = health_check_new();
    if (!out) luaL_error(L, "proxy.upstream: out of memory");
    *out = c;
    return out;
}
