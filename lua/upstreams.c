/* upstreams: proxy.upstream(), which declares an upstream from the top
 * level of the script (its servers, options and balancing), the upstream
 * objects route() returns, and the script's balancing hooks: balance(req,
 * servers) and hash_key(req). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "lstate.h"
#include "tls.h"
#include "upstream.h"
#include "upstream_names.h"
#include "upstreams.h"

/* ---- proxy.upstream --------------------------------------------------- */

static uint64_t opt_duration(lua_State *L, int t, const char *key, uint64_t def)
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

static int opt_int(lua_State *L, int t, const char *key, int def, int min)
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

static int upstream_gc(lua_State *L)
{
    struct upstream **ud = luaL_checkudata(L, 1, UPSTREAMS_MT);
    upstream_names_free(*ud);
    upstream_free(*ud);
    *ud = NULL;
    return 0;
}

static int upstream_tostring(lua_State *L)
{
    struct upstream **ud = luaL_checkudata(L, 1, UPSTREAMS_MT);
    lua_pushfstring(L, "upstream %s", *ud ? (*ud)->name : "?");
    return 1;
}

static int upstream_index(lua_State *L)
{
    struct upstream *u = *(struct upstream **)luaL_checkudata(L, 1, UPSTREAMS_MT);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "name")) lua_pushstring(L, u->name);
    else if (!strcmp(k, "balance")) lua_pushstring(L, u->policy->name);
    else if (!strcmp(k, "servers")) lua_pushcfunction(L, upstream_names_servers);
    else if (!strcmp(k, "set_servers")) lua_pushcfunction(L, upstream_names_set_servers);
    else lua_pushnil(L);
    return 1;
}

/* tls = true, sni, verify, ca: a client context for the TLS servers
 * ("https://" ones, or all with tls = true), made now so that a bad ca is
 * a load error (and later, by the pool, for a list set at run time that
 * brings the first TLS server). NULL, or what is wrong. */
static const char *tls_options(lua_State *L, int up_opts, struct upstream *u)
{
    lua_getfield(L, up_opts, "tls");
    u->tls_all = lua_toboolean(L, -1);
    lua_getfield(L, up_opts, "verify");
    if (!lua_isnil(L, -1)) u->tls_verify = lua_toboolean(L, -1);
    lua_getfield(L, up_opts, "sni");
    if (lua_isstring(L, -1)) snprintf(u->sni, sizeof(u->sni), "%s", lua_tostring(L, -1));
    lua_getfield(L, up_opts, "ca");
    const char *ca = lua_tostring(L, -1);
    static char err[512];
    if (ca && !(u->tls_ca = strdup(ca))) return "out of memory";
    lua_pop(L, 4);
    bool any = u->tls_all;
    for (int i = 0; i < u->nservers; i++) any |= u->servers[i].tls;
    if (any && !(u->tls_ctx = tls_client_new(u->tls_verify, u->tls_ca, err, sizeof(err)))) return err;
    return NULL;
}

static int api_upstream(lua_State *L)
{
    if (!lstate_g.loading) return luaL_error(L, "proxy.upstream is only allowed at the top level of the script");
    const char *name = luaL_checkstring(L, 1);
    if (!*name || strlen(name) >= 64) return luaL_argerror(L, 1, "a name of 1 to 63 bytes");
    luaL_checktype(L, 2, LUA_TTABLE);
    if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
    else {
        lua_settop(L, 2);
        lua_newtable(L);
    }

    /* Names are unique within a script. */
    lua_getfield(L, LUA_REGISTRYINDEX, "luaproxy.upstreams");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, "luaproxy.upstreams");
    }
    lua_getfield(L, -1, name);
    if (!lua_isnil(L, -1)) return luaL_error(L, "proxy.upstream: '%s' is declared twice", name);
    lua_pop(L, 1);
    int registry = lua_gettop(L);

    enum balance b = BALANCE_ROUND_ROBIN;
    lua_getfield(L, 3, "balance");
    int balance_fn = 0;
    if (lua_isfunction(L, -1)) {
        b = BALANCE_LUA;
        balance_fn = lua_gettop(L);
    } else if (lua_isstring(L, -1)) {
        const char *s = lua_tostring(L, -1);
        if (!strcmp(s, "round_robin")) b = BALANCE_ROUND_ROBIN;
        else if (!strcmp(s, "least_conn")) b = BALANCE_LEAST_CONN;
        else if (!strcmp(s, "random")) b = BALANCE_RANDOM;
        else if (!strcmp(s, "hash")) b = BALANCE_HASH;
        else
            return luaL_error(L, "proxy.upstream: unknown balance '%s' (round_robin, least_conn, random, hash "
                                 "or a function)", s);
    } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "proxy.upstream: balance must be a name or a function");
    }
    lua_getfield(L, 3, "hash_key");
    int hash_fn = lua_isfunction(L, -1) ? lua_gettop(L) : 0;
    if (b == BALANCE_HASH && !hash_fn)
        return luaL_error(L, "proxy.upstream: balance = \"hash\" needs a hash_key function");

    /* The userdata owns the upstream from here on, so an error below frees
     * it through __gc. */
    struct upstream **ud = lua_newuserdata(L, sizeof(*ud));
    *ud = NULL;
    luaL_getmetatable(L, UPSTREAMS_MT);
    lua_setmetatable(L, -2);
    int udi = lua_gettop(L);
    struct upstream *u = *ud = upstream_new(name, b, b == BALANCE_LUA ? &upstreams_lua_policy : balance_policy(b));
    if (u && b == BALANCE_HASH) u->hash_key = upstreams_hash_key;
    if (!u) return luaL_error(L, "proxy.upstream: out of memory");

    if (lua_objlen(L, 2) == 0) return luaL_error(L, "proxy.upstream: '%s' has no servers", name);
    upstream_names_load(L, u, 2); /* names resolved, unix sockets, addresses */
    u->keepalive = opt_int(L, 3, "keepalive", u->keepalive, 0);
    u->retries = opt_int(L, 3, "retries", u->retries, 0);
    u->max_fails = opt_int(L, 3, "max_fails", u->max_fails, 0);
    u->keepalive_timeout_ms = opt_duration(L, 3, "keepalive_timeout", u->keepalive_timeout_ms);
    u->connect_timeout_ms = opt_duration(L, 3, "connect_timeout", u->connect_timeout_ms);
    u->read_timeout_ms = opt_duration(L, 3, "read_timeout", u->read_timeout_ms);
    u->fail_timeout_ms = opt_duration(L, 3, "fail_timeout", u->fail_timeout_ms);
    const char *tls_err = tls_options(L, 3, u);
    if (tls_err) return luaL_error(L, "proxy.upstream: '%s': %s", name, tls_err);
    if (upstream_finish(u)) return luaL_error(L, "proxy.upstream: out of memory");

    /* registry.luaproxy.upstreams[name] = { ud, balance = f, hash_key = f }:
     * keeps the upstream alive as long as the state, and its functions. */
    lua_createtable(L, 1, 2);
    lua_pushvalue(L, udi);
    lua_rawseti(L, -2, 1);
    if (balance_fn) {
        lua_pushvalue(L, balance_fn);
        lua_setfield(L, -2, "balance");
    }
    if (hash_fn) {
        lua_pushvalue(L, hash_fn);
        lua_setfield(L, -2, "hash_key");
    }
    lua_pushvalue(L, -1);
    u->script_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_setfield(L, registry, name);
    /* Anchored for the state's life now, so it can join the state's list
     * (an upstream that failed half way is garbage and must not). */
    u->next = lstate_g.loading->upstreams;
    lstate_g.loading->upstreams = u;
    lua_pushvalue(L, udi);
    return 1;
}

void upstreams_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__gc", upstream_gc},
        {"__tostring", upstream_tostring},
        {"__index", upstream_index},
        {NULL, NULL},
    };
    luaL_newmetatable(L, UPSTREAMS_MT);
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);

    lua_getglobal(L, "proxy");
    lua_pushcfunction(L, api_upstream);
    lua_setfield(L, -2, "upstream");
    lua_pop(L, 1);
}

/* ---- balancing hooks -------------------------------------------------- */

static bool push_upstream_fn(lua_State *L, struct upstream *u, const char *which)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, u->script_ref);
    lua_getfield(L, -1, which);
    lua_remove(L, -2);
    if (lua_isfunction(L, -1)) return true;
    lua_pop(L, 1);
    return false;
}

int upstreams_hash_key(struct script_req *r, struct upstream *u, uint32_t *key)
{
    static uint32_t spread;
    lua_State *L = lstate_use(r->st);
    int top = lua_gettop(L), rc = 0;
    *key = upstream_hash((const char *)&spread, sizeof(spread));
    if (push_upstream_fn(L, u, "hash_key")) {
        req_push(L, &r->lr);
        int n = lstate_call(r, "hash_key", 1);
        int t = n > 0 ? lua_type(L, -n) : LUA_TNIL;
        if (n < 0) {
            rc = -1;
        } else if (t == LUA_TSTRING || t == LUA_TNUMBER) {
            size_t len;
            const char *s = lua_tolstring(L, -n, &len);
            *key = upstream_hash(s, len);
        } else if (t == LUA_TNIL) {
            spread++; /* no key: spread such requests instead of piling them on one server */
        } else {
            lstate_fail(r, "hash_key", lua_pushfstring(L, "hash_key returned a %s (expected a string, a number "
                                                          "or nil)", lua_typename(L, t)));
            rc = -1;
        }
    }
    lua_settop(L, top);
    return rc;
}

static int upstreams_balance(struct script_req *r, struct upstream *u, const bool *tried, uint64_t now,
                             struct server **chosen)
{
    lua_State *L = lstate_use(r->st);
    int top = lua_gettop(L);
    *chosen = NULL;
    if (!push_upstream_fn(L, u, "balance")) return 0;
    req_push(L, &r->lr);
    lua_createtable(L, u->nservers, 0);
    for (int i = 0; i < u->nservers; i++) {
        struct server *s = &u->servers[i];
        upstream_names_push_server(L, s, now, 3);
        lua_pushinteger(L, s->active);
        lua_setfield(L, -2, "active");
        lua_pushinteger(L, s->fails);
        lua_setfield(L, -2, "fails");
        lua_pushboolean(L, tried && tried[i]);
        lua_setfield(L, -2, "tried"); /* already attempted for this request */
        lua_rawseti(L, -2, i + 1);
    }
    /* A copy below the function outlives the call, to match the result. */
    lua_pushvalue(L, -1);
    lua_insert(L, top + 1);
    int servers = top + 1;
    int n = lstate_call(r, "balance", 2);
    if (n < 0) return lua_settop(L, top), -1;
    int res = lua_gettop(L) - n + 1;
    if (n > 0 && lua_type(L, res) == LUA_TNUMBER) {
        lua_Number i = lua_tonumber(L, res);
        if (i >= 1 && i <= u->nservers && i == (int)i) *chosen = &u->servers[(int)i - 1];
    } else if (n > 0 && lua_istable(L, res)) {
        for (int i = 0; i < u->nservers && !*chosen; i++) {
            lua_rawgeti(L, servers, i + 1);
            if (lua_rawequal(L, -1, res)) *chosen = &u->servers[i];
            lua_pop(L, 1);
        }
    } else if (n == 0 || lua_isnil(L, res)) {
        return lua_settop(L, top), 0; /* nothing chosen: 503 */
    }
    lua_settop(L, top);
    if (!*chosen) {
        lstate_fail(r, "balance", "balance returned neither a server of its list, an index of it, nor nil");
        return -1;
    }
    if (tried && tried[*chosen - u->servers]) *chosen = NULL;
    return 0;
}

/* The script's balance(req, servers) as a policy: it sees every server
 * with its up and tried flags and may choose any; a tried one counts as
 * none. Without a request (a unit test) it chooses nothing. */
static int choose_lua(const struct balance_req *r, struct server **s)
{
    return r->sr ? upstreams_balance(r->sr, r->u, r->tried, r->now, s) : 0;
}

const struct balancer upstreams_lua_policy = {.name = "lua", .choose = choose_lua};
