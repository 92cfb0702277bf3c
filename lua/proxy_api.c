/* proxy_api: the `proxy` module: logging, time, worker identity and shared dicts. */
#include <errno.h>
#include <lauxlib.h>
#include <math.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"
#include "lstate.h"
#include "proxy_api.h"
#include "shm.h"
#include "loop.h"

#define DICT_MT "luaproxy.shared"

static struct shm_buf scratch; /* values and keys copied out of shared memory */

static double api_now(void)
{
    if (lstate_g.loop && lstate_g.loop->wall_now > 0) return lstate_g.loop->wall_now;
    struct timeval tv; /* outside a worker loop: the master's check run */
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Pushes tostring() of the arguments from first on, joined by sep. */
static const char *push_joined(lua_State *L, int first, const char *sep)
{
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = first; i <= n; i++) {
        lua_getglobal(L, "tostring");
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (!lua_isstring(L, -1)) luaL_error(L, "'tostring' must return a string");
        if (i > first) luaL_addstring(&b, sep);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

static int api_log(lua_State *L)
{
    static const char *levels[] = {"debug", "info", "warn", "error", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    if (!log_enabled((enum log_level)level)) return 0;
    log_msg((enum log_level)level, "[lua] worker %d: %s", lstate_g.worker_id, push_joined(L, 2, ""));
    return 0;
}

/* print(...): stdout is a terminal at best, and nothing at all under
 * systemd or docker, where a buffered print is lost with the process: the
 * arguments go to the error log at info instead, tab-separated as print
 * would write them. */
static int api_print(lua_State *L)
{
    if (log_enabled(LOG_INFO)) log_msg(LOG_INFO, "[lua] worker %d: %s", lstate_g.worker_id, push_joined(L, 1, "\t"));
    return 0;
}

static int api_now_l(lua_State *L)
{
    lua_pushnumber(L, api_now());
    return 1;
}

/* ---- shared dicts ---------------------------------------------------- */

/* The methods get the metatable as their upvalue: comparing with it costs
 * less than luaL_checkudata's lookup of the metatable by name. */
static struct shm_dict *check_dict(lua_State *L)
{
    void *ud = lua_touserdata(L, 1);
    if (!ud || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
        luaL_typerror(L, 1, "shared dict");
    lua_pop(L, 1);
    return *(struct shm_dict **)ud;
}

static const char *check_key(lua_State *L, size_t *len)
{
    const char *k = luaL_checklstring(L, 2, len);
    if (*len == 0) luaL_argerror(L, 2, "empty key");
    if (*len > 65535) luaL_argerror(L, 2, "key longer than 65535 bytes");
    return k;
}

static uint64_t check_ttl(lua_State *L, int idx)
{
    lua_Number ttl = luaL_optnumber(L, idx, 0);
    if (ttl < 0 || ttl != ttl) luaL_argerror(L, idx, "ttl must be a number of seconds >= 0");
    if (ttl > 0 && ttl < 0.001) ttl = 0.001;
    return (uint64_t)(ttl * 1000.0);
}

static void check_value(lua_State *L, int idx, struct shm_value *v)
{
    memset(v, 0, sizeof(*v));
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE: v->type = SHM_NIL; break;
    case LUA_TBOOLEAN:
        v->type = SHM_BOOLEAN;
        v->boolean = lua_toboolean(L, idx);
        break;
    case LUA_TNUMBER:
        v->type = SHM_NUMBER;
        v->num = lua_tonumber(L, idx);
        break;
    case LUA_TSTRING:
        v->type = SHM_STRING;
        v->str = lua_tolstring(L, idx, &v->len);
        break;
    default: luaL_argerror(L, idx, "values are strings, numbers or booleans");
    }
}

static int push_fail(lua_State *L, int rc)
{
    lua_pushnil(L);
    lua_pushstring(L, rc == -ENOMEM ? "no memory" : rc == -EEXIST ? "exists"
                      : rc == -ENOENT ? "not found" : rc == -EINVAL ? "not a number" : "error");
    return 2;
}

static int dict_get(lua_State *L)
{
    struct shm_dict *d = check_dict(L);
    size_t klen;
    const char *k = check_key(L, &klen);
    struct shm_value v;
    int rc = shm_get(d, k, klen, shm_now_ms(), &v, &scratch);
    if (rc == -ENOENT) {
        lua_pushnil(L);
        return 1;
    }
    if (rc) return push_fail(L, rc);
    switch (v.type) {
    case SHM_STRING: lua_pushlstring(L, v.str, v.len); break;
    case SHM_NUMBER: lua_pushnumber(L, v.num); break;
    case SHM_BOOLEAN: lua_pushboolean(L, v.boolean); break;
    default: lua_pushnil(L); break;
    }
    return 1;
}

static int dict_store(lua_State *L, bool only_new)
{
    struct shm_dict *d = check_dict(L);
    size_t klen;
    const char *k = check_key(L, &klen);
    struct shm_value v;
    check_value(L, 3, &v);
    uint64_t ttl = check_ttl(L, 4);
    int rc = only_new ? shm_add(d, k, klen, &v, ttl, shm_now_ms())
                      : shm_set(d, k, klen, &v, ttl, shm_now_ms());
    if (rc) return push_fail(L, rc);
    lua_pushboolean(L, 1);
    return 1;
}

static int dict_set(lua_State *L)
{
    return dict_store(L, false);
}

static int dict_add(lua_State *L)
{
    return dict_store(L, true);
}

static int dict_incr(lua_State *L)
{
    struct shm_dict *d = check_dict(L);
    size_t klen;
    const char *k = check_key(L, &klen);
    lua_Number delta = luaL_optnumber(L, 3, 1);
    bool has_init = !lua_isnoneornil(L, 4);
    lua_Number init = has_init ? luaL_checknumber(L, 4) : 0;
    uint64_t ttl = check_ttl(L, 5); /* applies only when init creates the key */
    double result;
    int rc = shm_incr(d, k, klen, delta, has_init, init, ttl, shm_now_ms(), &result);
    if (rc) return push_fail(L, rc);
    lua_pushnumber(L, result);
    return 1;
}

static int dict_delete(lua_State *L)
{
    struct shm_dict *d = check_dict(L);
    size_t klen;
    const char *k = check_key(L, &klen);
    lua_pushboolean(L, shm_delete(d, k, klen, shm_now_ms()) == 0);
    return 1;
}

static int dict_count(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)shm_count(check_dict(L), shm_now_ms()));
    return 1;
}

static int dict_keys(lua_State *L)
{
    struct shm_dict *d = check_dict(L);
    lua_Integer max = luaL_optinteger(L, 2, 1024);
    if (max < 0) return luaL_argerror(L, 2, "max must be >= 0 (0 = all)");
    long n = shm_keys(d, (size_t)max, shm_now_ms(), &scratch);
    if (n < 0) return push_fail(L, (int)n);
    lua_createtable(L, (int)n, 0);
    size_t off = 0;
    for (long i = 1; i <= n; i++) {
        uint32_t len;
        memcpy(&len, scratch.data + off, 4);
        lua_pushlstring(L, scratch.data + off + 4, len);
        lua_rawseti(L, -2, (int)i);
        off += 4 + len;
    }
    return 1;
}

static int api_shared(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    struct shm_dict *d = lstate_g.shm ? shm_dict(lstate_g.shm, name) : NULL;
    if (!d) return luaL_error(L, "proxy.shared('%s'): no room for another dict (64 at most, names under 64 bytes)", name);
    struct shm_dict **ud = lua_newuserdata(L, sizeof(*ud));
    *ud = d;
    luaL_getmetatable(L, DICT_MT);
    lua_setmetatable(L, -2);
    return 1;
}

void proxy_api_open(lua_State *L)
{
    static const luaL_Reg dict_methods[] = {
        {"get", dict_get},       {"set", dict_set},     {"add", dict_add},   {"incr", dict_incr},
        {"delete", dict_delete}, {"keys", dict_keys},   {"count", dict_count}, {NULL, NULL},
    };
    luaL_newmetatable(L, DICT_MT);
    lua_newtable(L);
    lua_pushvalue(L, -2);
    luaL_setfuncs(L, dict_methods, 1);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "shared dict");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);

    static const luaL_Reg fns[] = {
        {"log", api_log},
        {"now", api_now_l},
        {"shared", api_shared},
        {NULL, NULL},
    };
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_pushinteger(L, lstate_g.worker_id);
    lua_setfield(L, -2, "worker_id");
    lua_pushinteger(L, lstate_g.worker_count);
    lua_setfield(L, -2, "worker_count");
    lua_pushinteger(L, lstate_g.generation);
    lua_setfield(L, -2, "generation");
    /* NULL, as OpenResty's ngx.null and lua-cjson's cjson.null are: a
     * library comparing a reply with either finds them equal. */
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_setglobal(L, "proxy");
    lua_pushcfunction(L, api_print);
    lua_setglobal(L, "print");
}
