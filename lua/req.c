/* req: a light userdata whose value names a live request; its fields are
 * read from the request the core parsed when the script asks (a route that
 * looks only at req.path pays only for that). Nothing is allocated per
 * request: the value is a number, its state is C's (struct lreq, inside
 * the script's struct script_req), and a table for the req:set_* edits and
 * the headers cache is made only when one of them is used. A script that
 * keeps req past its request holds a number that no longer names anything:
 * every use then raises an error. */
#include <lauxlib.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "req.h"

#define REQ_MT "luaproxy.req"

/* Light userdata values are request numbers below 2^39: LuaJIT keeps light
 * userdata in 47-bit segments chosen by the bits above 39, so they all
 * share one segment. At 100,000 requests a second a worker wraps after
 * two months; a number still in use is skipped. */
#define ID_MASK ((UINT64_C(1) << 39) - 1)

/* Live requests by number: chained buckets, doubled when full. */
static struct {
    struct lreq **bucket;
    size_t nbuckets, nlive;
    uint64_t last_id;
} live;

static struct lreq *lookup(uint64_t id)
{
    if (!live.nbuckets) return NULL;
    struct lreq *r = live.bucket[id & (live.nbuckets - 1)];
    while (r && r->id != id) r = r->next;
    return r;
}

static int grow(void)
{
    size_t n = live.nbuckets ? live.nbuckets * 2 : 64;
    struct lreq **b = calloc(n, sizeof(*b));
    if (!b) return -1;
    for (size_t i = 0; i < live.nbuckets; i++) {
        while (live.bucket[i]) {
            struct lreq *r = live.bucket[i];
            live.bucket[i] = r->next;
            r->next = b[r->id & (n - 1)];
            b[r->id & (n - 1)] = r;
        }
    }
    free(live.bucket);
    live.bucket = b;
    live.nbuckets = n;
    return 0;
}

int req_bind(struct lreq *r, struct script_view *view)
{
    if (live.nlive >= live.nbuckets && grow()) return -1;
    do live.last_id = (live.last_id + 1) & ID_MASK;
    while (live.last_id == 0 || lookup(live.last_id));
    *r = (struct lreq){.id = live.last_id, .view = view, .env = LUA_NOREF};
    struct lreq **b = &live.bucket[r->id & (live.nbuckets - 1)];
    r->next = *b;
    *b = r;
    live.nlive++;
    return 0;
}

void req_unbind(lua_State *L, struct lreq *r)
{
    struct lreq **p = &live.bucket[r->id & (live.nbuckets - 1)];
    while (*p != r) p = &(*p)->next;
    *p = r->next;
    live.nlive--;
    if (r->env != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, r->env);
    r->env = LUA_NOREF;
    r->view = NULL;
}

void req_free_all(void)
{
    free(live.bucket);
    live.bucket = NULL;
    live.nbuckets = live.nlive = 0;
}

void req_push(lua_State *L, const struct lreq *r)
{
    lua_pushlightuserdata(L, (void *)(uintptr_t)r->id);
}

/* The live request that the req at idx names; an error for a req whose
 * request is over, or for anything else. */
static struct lreq *check_req(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) {
        uint64_t id = (uintptr_t)lua_touserdata(L, idx);
        struct lreq *r = lookup(id);
        if (r) return r;
        if (id && id <= ID_MASK) luaL_error(L, "this request is over (req used after its handler returned)");
    }
    luaL_typerror(L, idx, "req");
    return NULL;
}

void req_push_env(lua_State *L, struct lreq *r)
{
    if (r->env != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, r->env);
        return;
    }
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    r->env = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* A field req:set_path/set_query stored in the env table, pushed; false if
 * the request was never edited (nothing pushed then). */
static bool edited_field(lua_State *L, struct lreq *r, const char *field)
{
    if (!r->edited) return false;
    req_push_env(L, r);
    lua_getfield(L, -1, field);
    lua_remove(L, -2);
    if (!lua_isnil(L, -1)) return true;
    lua_pop(L, 1);
    return false;
}

static void push_addr(lua_State *L, const struct sockaddr *sa, bool port)
{
    char text[INET6_ADDRSTRLEN] = "";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        if (port) return lua_pushinteger(L, ntohs(in->sin_port));
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        if (port) return lua_pushinteger(L, ntohs(in6->sin6_port));
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    } else if (port) {
        return lua_pushnil(L);
    }
    lua_pushstring(L, text);
}

static int req_set(lua_State *L, const char *field)
{
    struct lreq *r = check_req(L, 1);
    r->edited = true;
    req_push_env(L, r);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, field);
    return 0;
}

/* A path or query with what cannot go into a request line (spaces,
 * controls, '#', bytes >= 0x80, ...) percent-encoded, as a browser would;
 * req.path and req.query then read back what is sent. */
static int req_set_path(lua_State *L)
{
    size_t n;
    const char *p = luaL_checklstring(L, 2, &n);
    if (n == 0 || p[0] != '/') return luaL_argerror(L, 2, "a path starts with '/'");
    if (memchr(p, '?', n)) return luaL_argerror(L, 2, "a path has no '?' (use req:set_query)");
    lua_settop(L, 2);
    field_push_encoded(L, p, n, false);
    lua_replace(L, 2);
    return req_set(L, "path");
}

static int req_set_query(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_isnil(L, 2)) { /* false marks "removed" (nil would mean "unchanged") */
        lua_pushboolean(L, 0);
    } else {
        size_t n;
        const char *q = luaL_checklstring(L, 2, &n);
        field_push_encoded(L, q, n, true);
    }
    lua_replace(L, 2);
    return req_set(L, "query");
}

static int req_set_header(lua_State *L)
{
    struct lreq *r = check_req(L, 1);
    r->edited = true;
    lua_settop(L, 3);
    req_push_env(L, r);
    field_edit_header(L);
    return 0;
}

/* req:header(name): one header, case-insensitive, repeated ones joined
 * with ", ", set_header edits included; nil when absent. Unlike
 * req.headers, it builds no table. */
static int req_header(lua_State *L)
{
    struct lreq *r = check_req(L, 1);
    const struct script_view *v = r->view;
    size_t nlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    char low[64];
    if (nlen >= sizeof(low)) {
        lua_pushnil(L);
        return 1;
    }
    http_lower(low, name, nlen);
    if (r->edited) {
        req_push_env(L, r);
        lua_getfield(L, -1, "set_headers");
        if (lua_istable(L, -1)) {
            lua_pushlstring(L, low, nlen);
            lua_rawget(L, -2);
            if (lua_isboolean(L, -1)) {
                lua_pushnil(L);
                return 1;
            }
            if (!lua_isnil(L, -1)) {
                field_push_joined(L, -1);
                return 1;
            }
        }
        lua_settop(L, 2);
    }
    const struct http_request *req = v->req;
    int found = 0;
    for (uint16_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name.len != nlen || !http_name_eq(v->base + h->name.off, low, nlen)) continue;
        if (found++) lua_pushliteral(L, ", ");
        lua_pushlstring(L, v->base + h->value.off, h->value.len);
    }
    if (!found) lua_pushnil(L);
    else if (found > 1) lua_concat(L, 2 * found - 1);
    return 1;
}

static int req_index(lua_State *L)
{
    struct lreq *r = check_req(L, 1);
    const struct script_view *v = r->view;
    size_t klen;
    const char *k = luaL_checklstring(L, 2, &klen);
    const struct http_request *req = v->req;
    const char *url = v->base + req->url.off;
    const char *q = memchr(url, '?', req->url.len);

    switch (klen) {
    case 3:
        if (!memcmp(k, "tls", 3)) {
            if (!v->https) {
                lua_pushnil(L);
                return 1;
            }
            lua_createtable(L, 0, 3);
            lua_pushstring(L, v->tls.version);
            lua_setfield(L, -2, "version");
            lua_pushstring(L, v->tls.cipher);
            lua_setfield(L, -2, "cipher");
            if (v->tls.sni) {
                lua_pushstring(L, v->tls.sni);
                lua_setfield(L, -2, "sni");
            }
            return 1;
        }
        if (!memcmp(k, "uri", 3)) {
            lua_pushlstring(L, url, req->url.len);
            return 1;
        }
        if (!memcmp(k, "ctx", 3)) { /* the script's own table, for this request only */
            req_push_env(L, r);
            lua_getfield(L, -1, "ctx");
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_newtable(L);
                lua_pushvalue(L, -1);
                lua_setfield(L, -3, "ctx");
            }
            return 1;
        }
        break;
    case 4:
        if (!memcmp(k, "path", 4)) {
            if (!edited_field(L, r, "path")) lua_pushlstring(L, url, q ? (size_t)(q - url) : req->url.len);
            return 1;
        }
        if (!memcmp(k, "body", 4)) {
            if (v->body_ready) lua_pushlstring(L, v->body ? v->body : "", v->body_len);
            else lua_pushnil(L);
            return 1;
        }
        break;
    case 5:
        if (!memcmp(k, "query", 5)) {
            if (edited_field(L, r, "query")) {
                if (lua_isboolean(L, -1)) lua_pushnil(L); /* false: removed */
            } else if (q) {
                lua_pushlstring(L, q + 1, req->url.len - (size_t)(q + 1 - url));
            } else {
                lua_pushnil(L);
            }
            return 1;
        }
        break;
    case 6:
        if (!memcmp(k, "scheme", 6)) {
            lua_pushstring(L, v->https ? "https" : "http");
            return 1;
        }
        if (!memcmp(k, "header", 6)) {
            lua_pushvalue(L, lua_upvalueindex(4));
            return 1;
        }
        if (!memcmp(k, "method", 6)) {
            size_t mlen;
            const char *m = http_method_name(req, r->view->base, &mlen);
            lua_pushlstring(L, m, mlen);
            return 1;
        }
        break;
    case 7:
        if (!memcmp(k, "version", 7)) {
            lua_pushstring(L, req->http_minor == 0 ? "1.0" : "1.1");
            return 1;
        }
        if (!memcmp(k, "headers", 7)) {
            req_push_env(L, r);
            field_push_headers(L, req->headers, req->nheaders, v->base);
            return 1;
        }
        break;
    case 8:
        if (!memcmp(k, "set_path", 8)) {
            lua_pushvalue(L, lua_upvalueindex(1));
            return 1;
        }
        break;
    case 9:
        if (!memcmp(k, "set_query", 9)) {
            lua_pushvalue(L, lua_upvalueindex(2));
            return 1;
        }
        break;
    case 10:
        if (!memcmp(k, "set_header", 10)) {
            lua_pushvalue(L, lua_upvalueindex(3));
            return 1;
        }
        break;
    case 11:
        if (!memcmp(k, "remote_addr", 11)) {
            push_addr(L, v->peer, false);
            return 1;
        }
        if (!memcmp(k, "remote_port", 11)) {
            push_addr(L, v->peer, true);
            return 1;
        }
        break;
    }
    lua_pushnil(L);
    return 1;
}

static int req_newindex(lua_State *L)
{
    return luaL_error(L, "req is read-only (use req:set_header, req:set_path, req:set_query)");
}

static int req_tostring(lua_State *L)
{
    struct lreq *r = lua_type(L, 1) == LUA_TLIGHTUSERDATA ? lookup((uintptr_t)lua_touserdata(L, 1)) : NULL;
    if (!r) lua_pushliteral(L, "req (over)");
    else {
        size_t mlen;
        const char *m = http_method_name(r->view->req, r->view->base, &mlen);
        lua_pushliteral(L, "req (");
        lua_pushlstring(L, m, mlen);
        lua_pushliteral(L, ")");
        lua_concat(L, 3);
    }
    return 1;
}

void req_open(lua_State *L)
{
    static const luaL_Reg meta[] = {
        {"__newindex", req_newindex},
        {"__tostring", req_tostring},
        {NULL, NULL},
    };
    luaL_newmetatable(L, REQ_MT);
    luaL_setfuncs(L, meta, 0);
    /* The methods are made once, not on every req.set_header access. */
    lua_pushcfunction(L, req_set_path);
    lua_pushcfunction(L, req_set_query);
    lua_pushcfunction(L, req_set_header);
    lua_pushcfunction(L, req_header);
    lua_pushcclosure(L, req_index, 4);
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "req");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    /* Every light userdata shares one metatable, and scripts meet no other
     * light userdata than req. */
    lua_pushlightuserdata(L, NULL);
    luaL_getmetatable(L, REQ_MT);
    lua_setmetatable(L, -2);
    lua_pop(L, 1);
}
