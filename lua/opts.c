/* opts: proxy.upstream's durations and whole numbers (see opts.h). */
#include "opts.h"

#include <lauxlib.h>

#include "config.h"

uint64_t opt_duration(lua_State *L, int t, const char *key, uint64_t def)
{
    lua_getfield(L, t, key);
    uint64_t ms = def;
    if (lua_type(L, -1) == LUA_TNUMBER) { /* a number is seconds, like ttl */
        lua_Number v = lua_tonumber(L, -1);
        if (v < 0) luaL_error(L, "proxy.upstream: %s must not be negative", key);
        ms = (uint64_t)(v * 1000.0);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        if (config_parse_duration(lua_tostring(L, -1), &ms))
            luaL_error(L, "proxy.upstream: %s: bad duration '%s' (e.g. 250ms, 10s, 2m)", key, lua_tostring(L, -1));
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "proxy.upstream: %s must be a duration string or seconds", key);
    }
    lua_pop(L, 1);
    return ms;
}

int opt_int(lua_State *L, int t, const char *key, int def, int min)
{
    lua_getfield(L, t, key);
    int v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) != (int)lua_tonumber(L, -1) || lua_tonumber(L, -1) < min)
            luaL_error(L, "proxy.upstream: %s must be a whole number >= %d", key, min);
        v = (int)lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}
