/* fields: what a script may put on the wire. Every call that sets a header
 * (req:set_header, res:set_header, the headers table a route or a handler
 * returns) checks it here the same way, and set_path/set_query encode what
 * cannot go into a request line as it is. A bad header is an error in the
 * script (a 500 with the reason logged), never bytes a peer could read
 * differently from us.
 *
 * Here too: the headers tables that req and res show and that their
 * set_header keeps in step, and the lists of headers handed to the core. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fields.h"

/* The framing and the connection are the proxy's: a script that could set
 * them could desynchronise a backend or a client. */
static const struct {
    const char *name, *why;
    size_t len;
} managed[] = {
#define MANAGED(n) {n, n " is managed by the proxy", sizeof(n) - 1}
    MANAGED("content-length"), MANAGED("transfer-encoding"), MANAGED("connection"), MANAGED("keep-alive"),
    MANAGED("proxy-connection"), MANAGED("te"), MANAGED("trailer"), MANAGED("upgrade"),
#undef MANAGED
};

const char *field_check_name(const char *name, size_t nlen)
{
    if (!http_valid_name(name, nlen)) return "invalid header name (it must be a token)";
    for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++)
        if (managed[i].len == nlen && !strncasecmp(managed[i].name, name, nlen)) return managed[i].why;
    return NULL;
}

/* RFC 9110 §5.5: a field value is visible characters, obs-text, spaces and
 * tabs; any other control character (CR and LF above all) is refused. */
static bool value_ok(const char *v, size_t n)
{
    /* A table: this runs over every header of every handler reply. */
    static const bool ctl[256] = {[0 ... 8] = true, [10 ... 31] = true, [127] = true};
    for (size_t i = 0; i < n; i++)
        if (ctl[(unsigned char)v[i]]) return false;
    return true;
}

/* RFC 9110 §7.2: Host = uri-host [ ":" port ], where uri-host is an IP
 * literal in brackets or a reg-name (no userinfo, no spaces). */
static bool host_ok(const char *v, size_t n)
{
    size_t i = 0;
    if (n && v[0] == '[') {
        while (++i < n && v[i] != ']')
            if (!v[i] || !strchr("0123456789abcdefABCDEF:.vV", v[i])) return false;
        if (i == n || i == 1) return false;
        i++;
    } else {
        for (; i < n && v[i] != ':'; i++) {
            unsigned char c = (unsigned char)v[i];
            if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
                (!c || !strchr("-._~!$&'()*+,;=%", c)))
                return false;
        }
        if (i == 0) return false;
    }
    if (i == n) return true;
    if (v[i] != ':' || n - i - 1 > 5) return false;
    for (i++; i < n; i++)
        if (v[i] < '0' || v[i] > '9') return false;
    return true;
}

static bool is_host(const char *name, size_t nlen)
{
    return nlen == 4 && !strncasecmp(name, "host", 4);
}

static const char *check_string(bool host, const char *v, size_t len)
{
    if (!value_ok(v, len)) return "header value contains CR, LF, NUL or another control character";
    if (host && !host_ok(v, len)) return "Host must be host[:port]";
    return NULL;
}

const char *field_check_string(const char *name, size_t nlen, const char *v, size_t vlen)
{
    return check_string(is_host(name, nlen), v, vlen);
}

static const char *check_one(lua_State *L, int idx, bool host, size_t *len)
{
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) return "header values must be strings, numbers or arrays of them";
    const char *v = lua_tolstring(L, idx, len); /* idx is a slot of ours: converting it is fine */
    return check_string(host, v, *len);
}

const char *field_push_value(lua_State *L, const char *name, size_t nlen, int idx)
{
    bool host = is_host(name, nlen);
    size_t len;
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        const char *bad = check_one(L, -1, host, &len);
        if (bad) lua_pop(L, 1);
        return bad;
    }
    /* A copy, so that the script cannot change what was checked. */
    int n = (int)lua_objlen(L, idx);
    if (host && n > 1) return "Host takes one value";
    lua_createtable(L, n, 0);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        const char *bad = check_one(L, -1, host, &len);
        if (bad) {
            lua_pop(L, 2);
            return bad;
        }
        lua_rawseti(L, -2, i);
    }
    return NULL;
}

void field_push_joined(lua_State *L, int idx)
{
    if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
    if (lua_type(L, idx) != LUA_TTABLE) {
        lua_pushvalue(L, idx);
        return;
    }
    int n = (int)lua_objlen(L, idx);
    if (n == 0) {
        lua_pushnil(L);
        return;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1) luaL_addstring(&b, ", ");
        lua_rawgeti(L, idx, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
}

/* WHATWG URL's percent-encode sets: what browsers encode in a path and in
 * a query. '%' itself is left alone, so an encoded path stays as it is. */
static bool in_path_set(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || strchr("\"#<>^`{}", c);
}

static bool in_query_set(unsigned char c)
{
    return c <= 0x20 || c >= 0x7f || strchr("\"#<>", c);
}

void field_push_encoded(lua_State *L, const char *s, size_t n, bool query)
{
    static const char hex[] = "0123456789ABCDEF";
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c && !(query ? in_query_set(c) : in_path_set(c))) {
            luaL_addchar(&b, (char)c);
            continue;
        }
        luaL_addchar(&b, '%');
        luaL_addchar(&b, hex[c >> 4]);
        luaL_addchar(&b, hex[c & 15]);
    }
    luaL_pushresult(&b);
}

/* ---- the headers tables of req and res ------------------------------ */

/* A lower-case name -> value table; repeated headers joined with ", ". */
static void push_header_table(lua_State *L, const struct http_header *hs, uint16_t n, const char *base)
{
    lua_createtable(L, 0, n);
    for (uint16_t i = 0; i < n; i++) {
        const struct http_header *h = &hs[i];
        /* Names are kept as received; the table's keys are lower-case. */
        char low[64];
        if (h->name.len <= sizeof(low)) {
            http_lower(low, base + h->name.off, h->name.len);
            lua_pushlstring(L, low, h->name.len);
        } else {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (uint32_t k = 0; k < h->name.len; k += sizeof(low)) {
                size_t piece = h->name.len - k < sizeof(low) ? h->name.len - k : sizeof(low);
                http_lower(low, base + h->name.off + k, piece);
                luaL_addlstring(&b, low, piece);
            }
            luaL_pushresult(&b);
        }
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlstring(L, base + h->value.off, h->value.len);
        } else { /* a repeated header: joined with ", " */
            lua_pushliteral(L, ", ");
            lua_pushlstring(L, base + h->value.off, h->value.len);
            lua_concat(L, 3);
        }
        lua_rawset(L, -3);
    }
}

void field_push_headers(lua_State *L, const struct http_header *hs, uint16_t n, const char *base)
{
    int env = lua_gettop(L);
    lua_getfield(L, env, "headers");
    if (lua_istable(L, -1)) return;
    lua_pop(L, 1);
    push_header_table(L, hs, n, base);
    int t = lua_gettop(L);
    /* set_header calls made before this first read: field_edit_header only keeps
     * an existing table in step. */
    lua_getfield(L, env, "set_headers");
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (lua_next(L, t + 1)) {
            lua_pushvalue(L, -2);
            if (lua_isboolean(L, -2)) lua_pushnil(L); /* false: removed */
            else field_push_joined(L, -2);
            lua_rawset(L, t);
            lua_pop(L, 1);
        }
    }
    lua_settop(L, t);
    lua_pushvalue(L, t);
    lua_setfield(L, env, "headers");
}

void field_edit_header(lua_State *L)
{
    /* 1 the object, 2 the name, 3 the value, 4 the env table */
    size_t nlen;
    const char *name = luaL_checklstring(L, 2, &nlen);
    const char *bad = field_check_name(name, nlen);
    if (bad) luaL_argerror(L, 2, bad);
    lua_settop(L, 4);
    if (!lua_isnil(L, 3)) {
        if ((bad = field_push_value(L, name, nlen, 3))) luaL_argerror(L, 3, bad);
        lua_replace(L, 3);
    }
    lua_getfield(L, 4, "set_headers"); /* name (lower case) -> value, or false: removed */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, 4, "set_headers");
        lua_newtable(L); /* name (lower case) -> the name as the script wrote it */
        lua_setfield(L, 4, "set_names");
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (size_t i = 0; i < nlen; i += LUAL_BUFFERSIZE) {
        size_t k = nlen - i < LUAL_BUFFERSIZE ? nlen - i : LUAL_BUFFERSIZE;
        http_lower(luaL_prepbuffer(&b), name + i, k);
        luaL_addsize(&b, k);
    }
    luaL_pushresult(&b);
    int low = lua_gettop(L);
    lua_pushvalue(L, low);
    if (lua_isnil(L, 3)) lua_pushboolean(L, 0);
    else lua_pushvalue(L, 3);
    lua_rawset(L, low - 1);
    lua_getfield(L, 4, "set_names");
    lua_pushvalue(L, low);
    lua_pushvalue(L, 2);
    lua_rawset(L, -3);
    /* Keep obj.headers, if built already, in step with the edit. */
    lua_getfield(L, 4, "headers");
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, low);
        field_push_joined(L, 3);
        lua_rawset(L, -3);
    }
    lua_settop(L, 3);
}

/* ---- header lists for the core ---------------------------------------- */

int field_list_add(struct field_list *l, const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct script_header *h = realloc(l->v, cap * sizeof(*h));
        if (!h) return -1;
        l->v = h;
        l->cap = cap;
    }
    l->v[l->n++] = (struct script_header){.name = name, .nlen = nlen, .value = value, .vlen = vlen};
    return 0;
}

void field_list_free(struct field_list *l)
{
    free(l->v);
    *l = (struct field_list){0};
}
