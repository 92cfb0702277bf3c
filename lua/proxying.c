/* proxying: what the script does to a request it proxies: the edits that
 * req:set_* make to the forwarded head, and the `res` object of
 * on_response, whose res:set_header edits the response head. */
#include <lauxlib.h>
#include <string.h>

#include "fields.h"
#include "lstate.h"
#include "proxying.h"

#define RES_MT "luaproxy.res"

static struct field_list edit_hdrs; /* the last edits read, kept for the next */

/* ---- edits ------------------------------------------------------------ */

/* Reads the edits kept in the env table on top of the stack, which stays
 * there (anchoring the strings) until script_reply_done(). */
static void edits_from_env(lua_State *L, struct script_edits *e)
{
    int env = lua_gettop(L);
    memset(e, 0, sizeof(*e));
    lua_getfield(L, env, "path");
    if (lua_type(L, -1) == LUA_TSTRING) {
        e->path_set = true;
        e->path = lua_tolstring(L, -1, &e->path_len);
    }
    lua_pop(L, 1);
    lua_getfield(L, env, "query");
    if (lua_type(L, -1) == LUA_TSTRING) {
        e->query_set = true;
        e->query = lua_tolstring(L, -1, &e->query_len);
    } else if (lua_isboolean(L, -1)) {
        e->query_set = true; /* removed */
    }
    lua_pop(L, 1);
    edit_hdrs.n = 0;
    lua_getfield(L, env, "set_names");
    lua_getfield(L, env, "set_headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            /* The name as the script last wrote it; false: removed; an
             * array: one line each (none: removed too). */
            size_t nlen, vlen = 0;
            lua_pushvalue(L, -2);
            lua_rawget(L, -5);
            const char *name = lua_tolstring(L, -1, &nlen);
            lua_pop(L, 1); /* anchored by set_names */
            int t = lua_type(L, -1);
            int count = t == LUA_TTABLE ? (int)lua_objlen(L, -1) : 0;
            if (t == LUA_TSTRING) {
                const char *value = lua_tolstring(L, -1, &vlen);
                field_list_add(&edit_hdrs, name, nlen, value, vlen);
            } else if (count == 0) {
                field_list_add(&edit_hdrs, name, nlen, NULL, 0);
            }
            for (int i = 1; i <= count; i++) {
                lua_rawgeti(L, -1, i);
                const char *value = lua_tolstring(L, -1, &vlen);
                lua_pop(L, 1); /* anchored by the array */
                field_list_add(&edit_hdrs, name, nlen, value, vlen);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
    e->headers = edit_hdrs.v;
    e->nheaders = edit_hdrs.n;
}

bool proxying_req_edits(struct script_req *r, struct script_edits *e)
{
    if (!r || !r->lr.edited) return false;
    lua_State *L = lstate_use(r->st);
    req_push_env(L, &r->lr);
    edits_from_env(L, e); /* the env stays until script_reply_done() */
    return true;
}

/* ---- res -------------------------------------------------------------- */

struct lres {
    const struct script_response *res; /* NULL once on_response returned */
};

/* The env table of the userdata (created on first use). */
static void push_env(lua_State *L, int idx)
{
    lua_getfenv(L, idx);
    if (lua_rawequal(L, -1, LUA_GLOBALSINDEX) || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 4);
        lua_pushvalue(L, -1);
        lua_setfenv(L, idx);
    }
}

static const struct script_response *check_res(lua_State *L)
{
    struct lres *r = luaL_checkudata(L, 1, RES_MT);
    if (!r->res) luaL_error(L, "res is only valid during on_response");
    return r->res;
}

static int res_set_header(lua_State *L)
{
    check_res(L);
    lua_settop(L, 3);
    push_env(L, 1);
    field_edit_header(L);
    return 0;
}

static int res_index(lua_State *L)
{
    const struct script_response *res = check_res(L);
    const char *k = luaL_checkstring(L, 2);
    if (!strcmp(k, "status")) {
        lua_pushinteger(L, res->status);
    } else if (!strcmp(k, "server")) {
        lua_pushstring(L, res->server);
    } else if (!strcmp(k, "set_header")) {
        lua_pushcfunction(L, res_set_header);
    } else if (!strcmp(k, "headers")) {
        push_env(L, 1);
        field_push_headers(L, res->headers, res->nheaders, res->base);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int res_newindex(lua_State *L)
{
    return luaL_error(L, "res is read-only (use res:set_header)");
}

void proxying_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__index", res_index},
        {"__newindex", res_newindex},
        {NULL, NULL},
    };
    luaL_newmetatable(L, RES_MT);
    luaL_setfuncs(L, meta, 0);
    lua_pushliteral(L, "res");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
}

/* on_response ended (n results on the stack, or -1): res dies, and its
 * edits come from the env, which stays on the stack until
 * script_reply_done(). */
static int on_response_done(struct script_req *r, int n, struct script_edits *e)
{
    lua_State *L = lstate_g.L;
    if (n > 0) lua_pop(L, n);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->res_ref);
    struct lres *lr = lua_touserdata(L, -1);
    if (lr) lr->res = NULL; /* the script may have kept res: it is dead now */
    lua_pop(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->res_env_ref);
    proxying_req_end(r);
    if (n < 0) {
        lua_pop(L, 1);
        return 0;
    }
    edits_from_env(L, e);
    return 1;
}

int proxying_on_response(struct script_req *r, const struct script_response *res, struct script_edits *e)
{
    lua_State *L = lstate_use(r->st);
    lua_newtable(L); /* the env, where res:set_header edits land */
    lua_pushvalue(L, -1);
    r->res_env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, LUA_GLOBALSINDEX, "on_response");
    req_push(L, &r->lr);
    struct lres *lr = lua_newuserdata(L, sizeof(*lr));
    lr->res = res;
    luaL_getmetatable(L, RES_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -4);
    lua_setfenv(L, -2);
    lua_pushvalue(L, -1);
    r->res_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* res outlives the call, even a wait */
    lua_remove(L, -4); /* the env: kept by its reference while the hook runs */
    int n = lrun_call(&r->run, r->st, r, "on_response", 2);
    if (n == LRUN_WAIT) return -1;
    return on_response_done(r, n, e);
}

int proxying_on_response_resume(struct script_req *r, struct script_edits *e)
{
    lstate_use(r->st);
    return on_response_done(r, lrun_collect(&r->run), e);
}

void proxying_req_end(struct script_req *r)
{
    lua_State *L = r->st->L;
    if (r->res_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->res_ref);
        struct lres *lr = lua_touserdata(L, -1);
        if (lr) lr->res = NULL;
        lua_pop(L, 1);
        luaL_unref(L, LUA_REGISTRYINDEX, r->res_ref);
    }
    if (r->res_env_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->res_env_ref);
    r->res_ref = r->res_env_ref = LUA_NOREF;
}
