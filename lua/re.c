/* re: proxy.re, PCRE2 regular expressions with the semantics of
 * OpenResty's ngx.re, so that scripts and libraries written for it behave
 * the same here: match returns a captures table ([0] the whole match, [n]
 * the groups, false for a group that took no part, names as keys), find
 * the 1-based bounds, gmatch an iterator, sub and gsub a new string and a
 * count with "$0", "${1}", "$$" templates or a function; a bad pattern
 * gives nil and pcre2_compile()'s message, an unknown flag raises.
 *
 * Patterns are compiled once per (pattern, flags) and JIT-compiled
 * whenever the JIT is available, whatever the flags say ("o" and "j" are
 * accepted and change nothing). The cache belongs to the Lua state: two
 * generations of at most RE_CACHE_GEN entries each. New entries and hits
 * in the old generation go to the young one; when the young one is full,
 * it becomes the old one and the previous old one is dropped, so a
 * pattern in steady use stays compiled and a stream of one-off patterns
 * (built from request data, say) cannot grow the cache past
 * 2 * RE_CACHE_GEN. A compiled pattern is a userdata: one that a running
 * gsub or a gmatch iterator still holds survives its eviction, and the
 * collector frees it, with the rest, when the state closes.
 *
 * A match cannot be interrupted by --lua-time-limit (it is one C call), so
 * PCRE2's match limit bounds the backtracking of a pathological pattern:
 * about 25 ms with the JIT, then the call returns nil and an error. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <lauxlib.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "re.h"

#define RE_CACHE_GEN 512
#define RE_MATCH_LIMIT 10000000 /* PCRE2's default, and so OpenResty's */
#define RE_JIT_STACK_MIN (32 * 1024)
#define RE_JIT_STACK_MAX (1024 * 1024)
#define RE_DFA_WORKSPACE 128 /* ints; OpenResty's is 100 */

/* What a flag letter asks beyond pcre2_compile()'s options. */
enum {
    RE_DFA = 1 << 0,      /* "d": pcre2_dfa_match, the longest match, no groups */
    RE_DUPNAMES = 1 << 1, /* "D": a name may repeat; m[name] is a list */
    RE_NO_UTF_CHECK = 1 << 2, /* "U": UTF-8 trusted, not checked */
};

/* The state's shared matching resources (upvalue 1 of every function;
 * upvalue 2 is the cache, 3 the metatable of compiled patterns). */
struct re_ctx {
    pcre2_match_context *mctx; /* match limit and JIT stack; NULL: PCRE2's defaults */
    pcre2_jit_stack *jit_stack;
    int young; /* entries in the young generation of the cache */
};

/* One compiled pattern: a userdata whose metatable (upvalue 3) frees it.
 * Scripts never hold one (gmatch's iterator hides it), so neither it nor
 * the context has a named metatable. */
struct regex {
    pcre2_code *code;
    pcre2_match_data *md; /* reused by every match: the captures are copied out at once */
    uint32_t ncaptures;   /* groups the captures table shows (none in DFA mode) */
    uint32_t name_count, name_entry_size;
    PCRE2_SPTR name_table;
    int flags;            /* RE_* */
    bool utf;
};

/* ---- arguments ----------------------------------------------------------- */

/* The value at idx as a string, the way tostring() would make it (OpenResty
 * accepts any subject, matching nil as "nil"); the slot is replaced. */
static const char *arg_string(lua_State *L, int idx, size_t *len)
{
    int t = lua_type(L, idx);
    if (t != LUA_TSTRING && t != LUA_TNUMBER) {
        if (!luaL_callmeta(L, idx, "__tostring")) {
            if (t == LUA_TNIL || t == LUA_TNONE)
                lua_pushliteral(L, "nil");
            else if (t == LUA_TBOOLEAN)
                lua_pushstring(L, lua_toboolean(L, idx) ? "true" : "false");
            else
                lua_pushfstring(L, "%s: %p", luaL_typename(L, idx), lua_topointer(L, idx));
        }
        lua_replace(L, idx);
    }
    const char *s = lua_tolstring(L, idx, len);
    if (!s) luaL_error(L, "'__tostring' must return a string");
    return s;
}

/* The flags string at idx: pcre2_compile() options in *opts, RE_* in
 * *flags. Letters as in OpenResty; an unknown one raises. */
static void parse_flags(lua_State *L, int idx, uint32_t *opts, int *flags)
{
    size_t n;
    const char *f = luaL_optlstring(L, idx, "", &n);
    *opts = 0;
    *flags = 0;
    for (size_t i = 0; i < n; i++) {
        switch (f[i]) {
        case 'a': *opts |= PCRE2_ANCHORED; break;
        case 'd': *flags |= RE_DFA; break;
        case 'D': *opts |= PCRE2_DUPNAMES; *flags |= RE_DUPNAMES; break;
        case 'i': *opts |= PCRE2_CASELESS; break;
        case 'j': break; /* the JIT is always on */
        case 'J': *opts |= PCRE2_ALT_BSUX | PCRE2_ALLOW_EMPTY_CLASS | PCRE2_MATCH_UNSET_BACKREF; break;
        case 'm': *opts |= PCRE2_MULTILINE; break;
        case 'o': break; /* compiled once always */
        case 's': *opts |= PCRE2_DOTALL; break;
        case 'u': *opts |= PCRE2_UTF; break;
        case 'U': *opts |= PCRE2_UTF; *flags |= RE_NO_UTF_CHECK; break;
        case 'x': *opts |= PCRE2_EXTENDED; break;
        default:
            luaL_error(L, "unknown flag \"%c\" (flags \"%s\")", f[i], f);
        }
    }
}

/* ---- compiling and the cache --------------------------------------------- */

static int regex_gc(lua_State *L)
{
    struct regex *re = lua_touserdata(L, 1);
    pcre2_match_data_free(re->md);
    pcre2_code_free(re->code);
    re->md = NULL;
    re->code = NULL;
    return 0;
}

/* Compiles the pattern at idx and pushes it (a userdata); or pushes the
 * error message, as OpenResty words it, and returns false. */
static bool regex_compile(lua_State *L, int idx, uint32_t opts, int flags)
{
    size_t len;
    const char *pat = lua_tolstring(L, idx, &len);
    /* The userdata first: once it exists, the collector frees what follows
     * whatever error comes next. */
    struct regex *re = lua_newuserdata(L, sizeof(*re));
    memset(re, 0, sizeof(*re));
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_setmetatable(L, -2);
    int errcode;
    PCRE2_SIZE erroff;
    re->code = pcre2_compile((PCRE2_SPTR)pat, len, opts, &errcode, &erroff, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(errcode, msg, sizeof(msg));
        lua_pop(L, 1);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "pcre2_compile() failed: ");
        luaL_addstring(&b, (const char *)msg);
        luaL_addstring(&b, " in \"");
        luaL_addlstring(&b, pat, len);
        luaL_addchar(&b, '"');
        if (erroff < len) {
            luaL_addstring(&b, " at \"");
            luaL_addlstring(&b, pat + erroff, len - erroff);
            luaL_addchar(&b, '"');
        }
        luaL_pushresult(&b);
        return false;
    }
    /* A pattern the JIT cannot take (or no JIT on this machine) runs in
     * the interpreter: slower, the same results. */
    if (!(flags & RE_DFA)) pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
    if (!re->md) {
        lua_pop(L, 1);
        lua_pushliteral(L, "no memory");
        return false;
    }
    re->flags = flags;
    re->utf = (opts & PCRE2_UTF) != 0;
    pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &re->ncaptures);
    if (flags & RE_DFA) re->ncaptures = 0;
    pcre2_pattern_info(re->code, PCRE2_INFO_NAMECOUNT, &re->name_count);
    if (re->name_count) {
        pcre2_pattern_info(re->code, PCRE2_INFO_NAMEENTRYSIZE, &re->name_entry_size);
        pcre2_pattern_info(re->code, PCRE2_INFO_NAMETABLE, &re->name_table);
    }
    /* The collector sees a small userdata and not the code behind it: tell
     * it, so that evicted patterns do not pile up between cycles. */
    size_t size = 0, jit_size = 0;
    pcre2_pattern_info(re->code, PCRE2_INFO_SIZE, &size);
    pcre2_pattern_info(re->code, PCRE2_INFO_JITSIZE, &jit_size);
    if ((size + jit_size) >> 10) lua_gc(L, LUA_GCSTEP, (int)((size + jit_size) >> 10));
    return true;
}

/* Stores the regex on top of the stack in the young generation under
 * (pattern at pat, key), starting a new generation when it is full. */
static void cache_put(lua_State *L, struct re_ctx *c, int cache, int pat, lua_Number key)
{
    int ud = lua_gettop(L);
    if (c->young >= RE_CACHE_GEN) {
        lua_rawgeti(L, cache, 1);
        lua_rawseti(L, cache, 2); /* the old generation goes */
        lua_newtable(L);
        lua_rawseti(L, cache, 1);
        c->young = 0;
    }
    lua_rawgeti(L, cache, 1);
    lua_pushvalue(L, pat);
    lua_rawget(L, -2);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushvalue(L, pat);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_pushnumber(L, key);
    lua_pushvalue(L, ud);
    lua_rawset(L, -3);
    lua_settop(L, ud);
    c->young++;
}

/* Pushes the regex in generation gen (1 young, 2 old) of the cache, or
 * nothing and false. */
static bool cache_get(lua_State *L, int cache, int gen, int pat, lua_Number key)
{
    lua_rawgeti(L, cache, gen);
    lua_pushvalue(L, pat);
    lua_rawget(L, -2);
    if (lua_istable(L, -1)) {
        lua_pushnumber(L, key);
        lua_rawget(L, -2);
        if (lua_isuserdata(L, -1)) {
            lua_replace(L, -3);
            lua_pop(L, 1);
            return true;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
    return false;
}

/* Pushes the compiled regex for the pattern at pat and the flags at
 * flags_idx (from the cache, or compiled now and cached); on a bad pattern
 * pushes the error message and returns NULL. */
static struct regex *regex_get(lua_State *L, int pat, int flags_idx)
{
    luaL_checkstring(L, pat);
    uint32_t opts;
    int flags;
    parse_flags(L, flags_idx, &opts, &flags);
    struct re_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    int cache = lua_upvalueindex(2);
    lua_Number key = (lua_Number)opts + (lua_Number)flags * 4294967296.0;
    if (cache_get(L, cache, 1, pat, key)) return lua_touserdata(L, -1);
    if (cache_get(L, cache, 2, pat, key) || regex_compile(L, pat, opts, flags)) {
        cache_put(L, c, cache, pat, key);
        return lua_touserdata(L, -1);
    }
    return NULL;
}

/* ---- matching ------------------------------------------------------------ */

/* Matches re against s[0..len) from start; pcre2_match()'s result (> 0:
 * matched, the ovector is in re->md). */
static int regex_exec(struct re_ctx *c, struct regex *re, const char *s, size_t len, size_t start,
                      uint32_t mopts)
{
    if (re->flags & RE_NO_UTF_CHECK) mopts |= PCRE2_NO_UTF_CHECK;
    if (start > len) return PCRE2_ERROR_BADOFFSET;
    if (re->flags & RE_DFA) {
        int ws[RE_DFA_WORKSPACE];
        int rc = pcre2_dfa_match(re->code, (PCRE2_SPTR)s, len, start, mopts, re->md, c->mctx, ws,
                                 RE_DFA_WORKSPACE);
        return rc == 0 ? 1 : rc; /* 0: more alternatives than room; the longest is there */
    }
    return pcre2_match(re->code, (PCRE2_SPTR)s, len, start, mopts, re->md, c->mctx);
}

static void push_match_error(lua_State *L, int rc)
{
    PCRE2_UCHAR msg[256];
    if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0) msg[0] = '\0';
    lua_pushfstring(L, "pcre2_match() failed: %s (%d)", (const char *)msg, rc);
}

/* Where to look next after an empty match at pos: one character on (a
 * whole UTF-8 sequence in UTF mode, or the next match would start inside
 * it). */
static size_t next_char(const struct regex *re, const char *s, size_t len, size_t pos)
{
    pos++;
    if (re->utf)
        while (pos < len && ((unsigned char)s[pos] & 0xc0) == 0x80) pos++;
    return pos;
}

/* Pushes the text of group i of the last match, or false if it took no
 * part. */
static void push_group(lua_State *L, const struct regex *re, const char *s, int rc, uint32_t i)
{
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    if ((int)i < rc && ov[2 * i] != PCRE2_UNSET && ov[2 * i + 1] >= ov[2 * i])
        lua_pushlstring(L, s + ov[2 * i], ov[2 * i + 1] - ov[2 * i]);
    else
        lua_pushboolean(L, 0);
}

/* Fills the table at t with the captures of the last match: [0] the whole
 * match, [1..n] the groups (false when unset), and each name: its group,
 * or with "D" the list of the groups of that name that matched. */
static void fill_captures(lua_State *L, const struct regex *re, const char *s, int rc, int t)
{
    for (uint32_t i = 0; i <= re->ncaptures; i++) {
        push_group(L, re, s, rc, i);
        lua_rawseti(L, t, (int)i);
    }
    if (re->ncaptures == 0) return; /* none, or DFA mode */
    PCRE2_SPTR e = re->name_table;
    for (uint32_t k = 0; k < re->name_count; k++, e += re->name_entry_size) {
        int group = (e[0] << 8) | e[1];
        const char *name = (const char *)e + 2;
        lua_rawgeti(L, t, group);
        if (!(re->flags & RE_DUPNAMES)) {
            lua_setfield(L, t, name);
            continue;
        }
        if (!lua_toboolean(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        lua_getfield(L, t, name);
        if (!lua_istable(L, -1)) {
            lua_pop(L, 1);
            lua_newtable(L);
            lua_pushvalue(L, -1);
            lua_setfield(L, t, name);
        }
        lua_insert(L, -2);
        lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
        lua_pop(L, 1);
    }
}

static void push_captures(lua_State *L, const struct regex *re, const char *s, int rc)
{
    lua_createtable(L, (int)re->ncaptures, (int)re->name_count);
    fill_captures(L, re, s, rc, lua_gettop(L));
}

/* The error message on top becomes the last of nils + 1 results: nil, err
 * for match and gmatch (nils 1), nil, nil, err for find, sub and gsub. */
static int fail(lua_State *L, int nils)
{
    for (int i = 0; i < nils; i++) {
        lua_pushnil(L);
        lua_insert(L, -2);
    }
    return nils + 1;
}

/* match and find: subject, regex, flags, ctx, then res (match) or nth
 * (find). */
static int match_or_find(lua_State *L, bool find)
{
    lua_settop(L, 5);
    size_t len;
    const char *s = arg_string(L, 1, &len);
    int ctx_t = lua_type(L, 4);
    if (ctx_t != LUA_TNIL && ctx_t != LUA_TTABLE) luaL_typerror(L, 4, "table");
    struct regex *re = regex_get(L, 2, 3);
    if (!re) return fail(L, find ? 2 : 1);
    size_t start = 0;
    if (ctx_t == LUA_TTABLE) {
        lua_getfield(L, 4, "pos");
        lua_Number pos = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
        lua_pop(L, 1);
        if (pos > (lua_Number)len + 1)
            start = len + 1; /* a bad offset */
        else if (pos >= 1)
            start = (size_t)pos - 1;
    }
    struct re_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    int rc = regex_exec(c, re, s, len, start, 0);
    if (rc == PCRE2_ERROR_NOMATCH) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0) {
        push_match_error(L, rc);
        return fail(L, find ? 2 : 1);
    }
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    if (ctx_t == LUA_TTABLE) {
        lua_pushnumber(L, (lua_Number)ov[1] + 1);
        lua_setfield(L, 4, "pos");
    }
    if (find) {
        lua_Integer nth = luaL_optinteger(L, 5, 0);
        if (nth < 0) nth = 0;
        if (nth > (lua_Integer)re->ncaptures) {
            lua_pushliteral(L, "nth out of bound");
            return fail(L, 2);
        }
        if (nth >= rc || ov[2 * nth] == PCRE2_UNSET) {
            lua_pushnil(L);
            lua_pushnil(L);
            return 2;
        }
        lua_pushnumber(L, (lua_Number)ov[2 * nth] + 1);
        lua_pushnumber(L, (lua_Number)ov[2 * nth + 1]);
        return 2;
    }
    if (lua_istable(L, 5)) {
        fill_captures(L, re, s, rc, 5);
        lua_pushvalue(L, 5);
    } else {
        push_captures(L, re, s, rc);
    }
    return 1;
}

static int re_match(lua_State *L) { return match_or_find(L, false); }
static int re_find(lua_State *L) { return match_or_find(L, true); }

/* The iterator of gmatch. Upvalues: 1 the context, 2 the regex, 3 the
 * subject, 4 where the next search starts (-1: no more), 5 whether the
 * subject's UTF-8 was checked already. */
static int gmatch_next(lua_State *L)
{
    lua_Integer pos = lua_tointeger(L, lua_upvalueindex(4));
    if (pos < 0) {
        lua_pushnil(L);
        return 1;
    }
    struct re_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    struct regex *re = lua_touserdata(L, lua_upvalueindex(2));
    size_t len;
    const char *s = lua_tolstring(L, lua_upvalueindex(3), &len);
    bool checked = lua_toboolean(L, lua_upvalueindex(5));
    int rc = regex_exec(c, re, s, len, (size_t)pos, checked ? PCRE2_NO_UTF_CHECK : 0);
    lua_pushinteger(L, -1);
    lua_replace(L, lua_upvalueindex(4)); /* until proven otherwise: done */
    if (rc == PCRE2_ERROR_NOMATCH) {
        lua_pushnil(L);
        return 1;
    }
    if (rc < 0) {
        lua_pushnil(L);
        push_match_error(L, rc);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_replace(L, lua_upvalueindex(5));
    const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
    size_t next = ov[1];
    if (ov[1] == ov[0]) next = next_char(re, s, len, next);
    if (next <= len) {
        lua_pushinteger(L, (lua_Integer)next);
        lua_replace(L, lua_upvalueindex(4));
    }
    push_captures(L, re, s, rc);
    return 1;
}

static int re_gmatch(lua_State *L)
{
    lua_settop(L, 3);
    arg_string(L, 1, NULL);
    if (!regex_get(L, 2, 3)) return fail(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, -2);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    lua_pushboolean(L, 0);
    lua_pushcclosure(L, gmatch_next, 5);
    return 1;
}

/* ---- sub and gsub -------------------------------------------------------- */

/* Runs the replacement template t over the last match: appends to out, or
 * with out NULL only checks it (s and rc unused then). "$0".."$N" and
 * "${N}" are groups (an unset or missing one is empty), "$name" and
 * "${name}" named groups, "$$" a '$'. On a bad template, false and a
 * message in err. */
static bool template_run(luaL_Buffer *out, const char *t, size_t n, const struct regex *re,
                         const char *s, int rc, char *err, size_t errlen)
{
    size_t i = 0;
    while (i < n) {
        const char *d = memchr(t + i, '$', n - i);
        size_t lit = d ? (size_t)(d - (t + i)) : n - i;
        if (out && lit) luaL_addlstring(out, t + i, lit);
        i += lit;
        if (i == n) break;
        if (++i == n) {
            snprintf(err, errlen, "a '$' at the end (\"$$\" is a '$')");
            return false;
        }
        if (t[i] == '$') {
            if (out) luaL_addchar(out, '$');
            i++;
            continue;
        }
        bool brace = t[i] == '{';
        if (brace) i++;
        size_t name = i;
        uint32_t group = 0;
        bool number = i < n && t[i] >= '0' && t[i] <= '9';
        if (number) {
            for (; i < n && t[i] >= '0' && t[i] <= '9'; i++)
                if (group < 100000) group = group * 10 + (uint32_t)(t[i] - '0');
        } else {
            while (i < n && (t[i] == '_' || (t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'z') ||
                             (t[i] >= 'A' && t[i] <= 'Z')))
                i++;
        }
        size_t name_len = i - name;
        if (brace && (i == n || t[i] != '}')) {
            snprintf(err, errlen, "the closing '}' of \"${%.*s\" is missing", (int)name_len, t + name);
            return false;
        }
        if (brace) i++;
        if (name_len == 0) {
            snprintf(err, errlen, "a '$' must be followed by a group number, {number}, a name, {name} or '$'");
            return false;
        }
        if (number) {
            if (out && group <= re->ncaptures) {
                const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
                if ((int)group < rc && ov[2 * group] != PCRE2_UNSET && ov[2 * group + 1] > ov[2 * group])
                    luaL_addlstring(out, s + ov[2 * group], ov[2 * group + 1] - ov[2 * group]);
            }
            continue;
        }
        char nm[256];
        PCRE2_SPTR first = NULL, last = NULL;
        int size = PCRE2_ERROR_NOSUBSTRING;
        if (name_len < sizeof(nm)) {
            memcpy(nm, t + name, name_len);
            nm[name_len] = '\0';
            size = pcre2_substring_nametable_scan(re->code, (PCRE2_SPTR)nm, &first, &last);
        }
        if (size <= 0) {
            snprintf(err, errlen, "no group named \"%.*s\" in the pattern", (int)(name_len > 64 ? 64 : name_len),
                     t + name);
            return false;
        }
        if (!out || re->ncaptures == 0) continue;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
        for (PCRE2_SPTR e = first; e <= last; e += size) { /* with "D": the first that matched */
            int g = (e[0] << 8) | e[1];
            if (g < rc && ov[2 * g] != PCRE2_UNSET) {
                if (ov[2 * g + 1] > ov[2 * g]) luaL_addlstring(out, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g]);
                break;
            }
        }
    }
    return true;
}

/* sub and gsub: subject, regex, replace (a template string or a function
 * of the captures table), flags. The new string and the number of
 * replacements; nil, nil, err. */
static int sub_or_gsub(lua_State *L, bool global)
{
    lua_settop(L, 4);
    size_t len, tlen = 0;
    const char *s = arg_string(L, 1, &len);
    bool fn = lua_isfunction(L, 3);
    const char *tpl = fn ? NULL : arg_string(L, 3, &tlen);
    struct regex *re = regex_get(L, 2, 4);
    if (!re) return fail(L, 2);
    char err[192];
    if (!fn && !template_run(NULL, tpl, tlen, re, NULL, 0, err, sizeof(err))) {
        lua_pushfstring(L, "failed to compile the replacement template: %s", err);
        return fail(L, 2);
    }
    struct re_ctx *c = lua_touserdata(L, lua_upvalueindex(1));
    /* re stays on the stack below the buffer: a replace function that
     * evicts it from the cache cannot free it under us. */
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    size_t pos = 0, copied = 0;
    int count = 0;
    uint32_t mopts = 0;
    for (;;) {
        int rc = regex_exec(c, re, s, len, pos, mopts);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            push_match_error(L, rc);
            return fail(L, 2);
        }
        mopts = PCRE2_NO_UTF_CHECK; /* checked once: the subject does not change */
        count++;
        const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(re->md);
        size_t start = ov[0], to = ov[1];
        size_t from = start < copied ? copied : start;
        luaL_addlstring(&b, s + copied, from - copied);
        if (fn) {
            /* The function may match with this very regex (the same match
             * data): from and to are copies. */
            lua_pushvalue(L, 3);
            push_captures(L, re, s, rc);
            lua_call(L, 1, 1);
            arg_string(L, lua_gettop(L), NULL);
            luaL_addvalue(&b);
        } else {
            template_run(&b, tpl, tlen, re, s, rc, err, sizeof(err));
        }
        copied = to > copied ? to : copied;
        pos = to;
        if (to == start) {
            pos = next_char(re, s, len, pos);
            if (pos > len) break;
        }
        if (!global) break;
    }
    if (count == 0) {
        lua_pushvalue(L, 1);
        lua_pushinteger(L, 0);
        return 2;
    }
    luaL_addlstring(&b, s + copied, len - copied);
    luaL_pushresult(&b);
    lua_pushinteger(L, count);
    return 2;
}

static int re_sub(lua_State *L) { return sub_or_gsub(L, false); }
static int re_gsub(lua_State *L) { return sub_or_gsub(L, true); }

/* ---- opening ------------------------------------------------------------- */

static int ctx_gc(lua_State *L)
{
    struct re_ctx *c = lua_touserdata(L, 1);
    pcre2_match_context_free(c->mctx);
    pcre2_jit_stack_free(c->jit_stack);
    c->mctx = NULL;
    c->jit_stack = NULL;
    return 0;
}

void re_open(lua_State *L)
{
    lua_newtable(L); /* proxy.re */
    struct re_ctx *c = lua_newuserdata(L, sizeof(*c));
    memset(c, 0, sizeof(*c));
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    /* Without these (no memory now), matches run with PCRE2's defaults:
     * the same limit, a 32 KiB JIT stack. */
    c->mctx = pcre2_match_context_create(NULL);
    c->jit_stack = pcre2_jit_stack_create(RE_JIT_STACK_MIN, RE_JIT_STACK_MAX, NULL);
    if (c->mctx) {
        pcre2_set_match_limit(c->mctx, RE_MATCH_LIMIT);
        if (c->jit_stack) pcre2_jit_stack_assign(c->mctx, NULL, c->jit_stack);
    }
    lua_createtable(L, 2, 0); /* the cache: [1] the young generation, [2] the old */
    lua_newtable(L);
    lua_rawseti(L, -2, 1);
    lua_newtable(L);
    lua_rawseti(L, -2, 2);
    lua_createtable(L, 0, 1); /* compiled patterns' metatable */
    lua_pushcfunction(L, regex_gc);
    lua_setfield(L, -2, "__gc");
    static const luaL_Reg fns[] = {
        {"match", re_match}, {"find", re_find}, {"gmatch", re_gmatch},
        {"sub", re_sub},     {"gsub", re_gsub}, {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 3);
    lua_getglobal(L, "proxy");
    lua_insert(L, -2);
    lua_setfield(L, -2, "re");
    lua_pop(L, 1);
}
