/* ngx: the global `ngx`, so that pure-Lua OpenResty libraries
 * (lua-resty-lrucache, nginx.redis, resty.dns.resolver, ...) run unchanged.
 *
 * It is a thin mapping onto `proxy`, built once per state from whatever
 * `proxy` holds when ngx_open runs: ngx.null, ngx.now, ngx.re, ngx.socket,
 * ngx.sleep and ngx.timer are the very values of proxy.null, proxy.now,
 * proxy.re, ... (ngx_mapped below), so a part of proxy added later shows up in
 * ngx by adding its name there. What OpenResty shapes differently from
 * proxy (ngx.log's numeric levels, ngx.shared.NAME, ngx.worker.*,
 * ngx.config) is adapted here. Libraries read much of ngx once, at require
 * time (`local tcp = ngx.socket.tcp`), so the tables exist even where proxy
 * has nothing to map yet. */
#include <lauxlib.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"
#include "log.h"
#include "lstate.h"
#include "ngx.h"

/* The versions of Debian's libnginx-mod-http-lua (0.10.23) and nginx
 * (1.22.1) that Debian's lua-resty-* packages are built for: libraries
 * compare them to decide which calls they may make. */
#define NGX_LUA_VERSION 10023
#define NGINX_VERSION 1022001

/* OpenResty's level constants (nginx's NGX_LOG_*), and the level of our
 * error log each is written at: --log-level has four. */
static const struct {
    const char *name;
    enum log_level level;
} ngx_levels[] = {
    {"STDERR", LOG_ERROR}, {"EMERG", LOG_ERROR}, {"ALERT", LOG_ERROR},
    {"CRIT", LOG_ERROR},   {"ERR", LOG_ERROR},   {"WARN", LOG_WARN},
    {"NOTICE", LOG_INFO},  {"INFO", LOG_INFO},   {"DEBUG", LOG_DEBUG},
};
#define NGX_LEVELS ((int)(sizeof(ngx_levels) / sizeof(ngx_levels[0])))

/* ngx.log(level, ...): the arguments joined as OpenResty joins them (nil
 * and ngx.null spelled out, the rest through tostring), after the place
 * of the call as OpenResty writes it: "file.lua:12: fn(): ". */
static int ngx_log(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 0 || n >= NGX_LEVELS) return luaL_argerror(L, 1, "bad log level");
    enum log_level level = ngx_levels[n].level;
    if (!log_enabled(level)) return 0;
    int top = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Debug ar;
    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sln", &ar) && ar.currentline > 0) {
        const char *file = strrchr(ar.short_src, '/');
        lua_pushfstring(L, "%s:%d: ", file ? file + 1 : ar.short_src, ar.currentline);
        luaL_addvalue(&b);
        if (ar.name) {
            lua_pushfstring(L, "%s(): ", ar.name);
            luaL_addvalue(&b);
        }
    }
    for (int i = 2; i <= top; i++) {
        int t = lua_type(L, i);
        if (t == LUA_TNIL) {
            luaL_addstring(&b, "nil");
        } else if (t == LUA_TLIGHTUSERDATA && !lua_touserdata(L, i)) {
            luaL_addstring(&b, "null");
        } else {
            lua_getglobal(L, "tostring");
            lua_pushvalue(L, i);
            lua_call(L, 1, 1);
            if (!lua_isstring(L, -1)) return luaL_error(L, "'tostring' must return a string");
            luaL_addvalue(&b);
        }
    }
    luaL_pushresult(&b);
    log_msg(level, "[lua] worker %d: %s", lstate_g.worker_id, lua_tostring(L, -1));
    return 0;
}

/* proxy.now(), upvalue 1 of the time functions. */
static double now_of(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_call(L, 0, 1);
    double now = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return now;
}

static int ngx_time(lua_State *L)
{
    lua_pushnumber(L, floor(now_of(L)));
    return 1;
}

static int push_date(lua_State *L, bool utc, const char *fmt)
{
    time_t t = (time_t)now_of(L);
    struct tm tm;
    char out[32];
    if (!(utc ? gmtime_r(&t, &tm) : localtime_r(&t, &tm)) || !strftime(out, sizeof(out), fmt, &tm))
        return luaL_error(L, "cannot format the time");
    lua_pushstring(L, out);
    return 1;
}

static int ngx_today(lua_State *L)
{
    return push_date(L, false, "%Y-%m-%d");
}

static int ngx_localtime(lua_State *L)
{
    return push_date(L, false, "%Y-%m-%d %H:%M:%S");
}

static int ngx_utctime(lua_State *L)
{
    return push_date(L, true, "%Y-%m-%d %H:%M:%S");
}

/* ngx.shared.NAME: proxy.shared("NAME") (upvalue 1), kept in ngx.shared
 * so that a library that looks it up per request makes one object. Where
 * OpenResty has no such dict it gives nil, which libraries test for; here
 * any name is a dict, unless there is no room for another one. */
static int shared_index(lua_State *L)
{
    if (lua_type(L, 2) != LUA_TSTRING) return 0;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 2);
    if (lua_pcall(L, 1, 1, 0)) {
        log_warn("[lua] worker %d: ngx.shared.%s is nil: %s", lstate_g.worker_id,
                 lua_tostring(L, 2), lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        return 0;
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -2);
    lua_rawset(L, 1);
    return 1;
}

static int worker_id(lua_State *L)
{
    lua_pushinteger(L, lstate_g.worker_id);
    return 1;
}

static int worker_count(lua_State *L)
{
    lua_pushinteger(L, lstate_g.worker_count);
    return 1;
}

static int worker_pid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

/* ngx.config.prefix(): nginx's prefix directory, with its trailing '/';
 * here the script's directory (upvalue 1). */
static int config_prefix(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    return 1;
}

/* The names of ngx that are proxy's own values, and whether OpenResty has
 * a table there (set to an empty one while proxy has nothing to map). */
static const struct {
    const char *name;
    bool table;
} ngx_mapped[] = {
    {"null", false}, {"now", false},  {"re", true},
    {"socket", true}, {"sleep", false}, {"timer", true},
};

void ngx_open(lua_State *L, const char *script_path)
{
    int top = lua_gettop(L);
    lua_getfield(L, LUA_GLOBALSINDEX, "proxy");
    int proxy = lua_gettop(L);
    lua_newtable(L);
    int ngx = lua_gettop(L);

    for (size_t i = 0; i < sizeof(ngx_mapped) / sizeof(ngx_mapped[0]); i++) {
        lua_getfield(L, proxy, ngx_mapped[i].name);
        if (lua_isnil(L, -1) && ngx_mapped[i].table) {
            lua_pop(L, 1);
            lua_newtable(L);
        }
        lua_setfield(L, ngx, ngx_mapped[i].name);
    }

    lua_pushcfunction(L, ngx_log);
    lua_setfield(L, ngx, "log");
    for (int i = 0; i < NGX_LEVELS; i++) {
        lua_pushinteger(L, i);
        lua_setfield(L, ngx, ngx_levels[i].name);
    }

    static const luaL_Reg time_fns[] = {
        {"time", ngx_time},         {"today", ngx_today},
        {"localtime", ngx_localtime}, {"utctime", ngx_utctime},
        {NULL, NULL},
    };
    lua_getfield(L, proxy, "now");
    luaL_setfuncs(L, time_fns, 1);

    lua_newtable(L); /* ngx.shared */
    lua_newtable(L);
    lua_getfield(L, proxy, "shared");
    lua_pushcclosure(L, shared_index, 1);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, ngx, "shared");

    static const luaL_Reg worker_fns[] = {
        {"id", worker_id}, {"count", worker_count}, {"pid", worker_pid}, {NULL, NULL},
    };
    lua_newtable(L);
    luaL_setfuncs(L, worker_fns, 0);
    lua_setfield(L, ngx, "worker");

    lua_newtable(L); /* ngx.config */
    lua_pushliteral(L, "http");
    lua_setfield(L, -2, "subsystem");
    lua_pushinteger(L, NGX_LUA_VERSION);
    lua_setfield(L, -2, "ngx_lua_version");
    lua_pushinteger(L, NGINX_VERSION);
    lua_setfield(L, -2, "nginx_version");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "debug");
    char dir[PATH_MAX];
    if (!loader_script_dir(script_path, dir, sizeof(dir))) dir[0] = '\0';
    lua_pushfstring(L, "%s%s", dir, dir[0] && strcmp(dir, "/") ? "/" : "");
    lua_pushcclosure(L, config_prefix, 1);
    lua_setfield(L, -2, "prefix");
    lua_setfield(L, ngx, "config");

    lua_setglobal(L, "ngx");
    lua_settop(L, top);
}
