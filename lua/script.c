/* script: the worker's LuaJIT state and the calls the core makes into it. */
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <errno.h>

#include "log.h"
#include "lstate.h"
#include "stats.h"
#include "upstream.h"
#include "worker_state.h"

struct script_globals S;

static struct script_header *hdrs;
static size_t hdrs_cap;

struct script_req {
    struct lreq lr;    /* what the script's req names, and its view */
    struct lstate *st; /* the state it began on: every call of it goes there */
    struct script_req *next_free;
};

static struct script_req *req_pool; /* no malloc per request */

/* Makes st the state of the calls that follow. */
static lua_State *use(struct lstate *st)
{
    S.st = st;
    S.L = st->L;
    return st->L;
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int on_panic(lua_State *L)
{
    log_error("lua panic: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    _exit(70); /* the master starts a fresh worker */
}

void script_setup(const struct config *cfg, struct shm *shm, int worker_id, int worker_count)
{
    S.cfg = cfg;
    S.shm = shm;
    S.worker_id = worker_id;
    S.worker_count = worker_count;
}

static lua_State *state_new(struct lmem *m)
{
    m->used = 0;
    m->limit = S.cfg->lua_memory_limit;
    m->enforce = false;
    lua_State *L = lua_newstate(limits_alloc, m);
    if (!L) return NULL;
    lua_atpanic(L, on_panic);
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF); /* see limits.c */
    api_open(L);
    req_open(L);
    proxying_open(L);
    res_open(L);
    return L;
}

char *script_read(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *text = malloc(cap);
    while (text) {
        n += fread(text + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        char *bigger = realloc(text, cap * 2);
        if (!bigger) free(text);
        text = bigger;
        cap *= 2;
    }
    bool bad = ferror(f);
    fclose(f);
    if (!text || bad) {
        snprintf(err, errlen, "cannot read %s", path);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
}

/* Compiles text (named after path, so errors read "path:line: ...") and
 * runs its top level under the time limit. */
static int state_load(struct lstate *st, const char *path, const char *text, size_t len, char *err,
                      size_t errlen)
{
    lua_State *L = st->L;
    char name[512];
    snprintf(name, sizeof(name), "@%s", path);
    /* As luaL_loadfile does: a first line starting with '#' (#!/usr/bin/env
     * ...) is skipped, its newline kept so that line numbers stay right. */
    if (len && text[0] == '#') {
        const char *nl = memchr(text, '\n', len);
        size_t skip = nl ? (size_t)(nl - text) : len;
        text += skip;
        len -= skip;
    }
    int rc = luaL_loadbuffer(L, text, len, name);
    if (rc == 0) {
        struct lstate *prev = S.loading;
        S.loading = st;
        st->mem.enforce = true;
        script_loading = true;
        limits_hook_clock(L, S.cfg->lua_time_limit_ms);
        rc = lua_pcall(L, 0, 0, 0);
        limits_unhook(L);
        script_loading = false;
        st->mem.enforce = false;
        S.loading = prev;
    }
    if (rc) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", msg ? msg : "error object is not a string");
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

static bool has_function(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_GLOBALSINDEX, name);
    bool yes = lua_isfunction(L, -1);
    lua_pop(L, 1);
    return yes;
}

#define HANDLER_METHODS 64

/* "on_get" for HTTP_GET, ...; NULL for a method outside the IANA registry
 * (llhttp knows a few, such as PURGE or RTSP's): no handler is called for
 * those, route(req) sees them. */
static const char *handler_name(uint8_t method)
{
    static const char *names[HANDLER_METHODS];
    static bool known[HANDLER_METHODS];
    if (method >= HANDLER_METHODS) return NULL;
    if (!known[method]) { /* looked up once: this runs for every request */
        names[method] = hooks_handler(llhttp_method_name((llhttp_method_t)method));
        known[method] = true;
    }
    return names[method];
}

/* A state with the script's top level run, or NULL with err filled. */
static struct lstate *lstate_build(const char *path, const char *text, size_t len, int generation,
                                   char *err, size_t errlen)
{
    struct lstate *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    st->generation = S.generation = generation;
    st->L = state_new(&st->mem);
    if (!st->L) {
        snprintf(err, errlen, "%s: cannot create a Lua state", path);
        free(st);
        return NULL;
    }
    loader_open(st->L, path);
    if (state_load(st, path, text, len, err, errlen)) {
        lua_close(st->L);
        free(st);
        return NULL;
    }
    lua_State *L = st->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, traceback);
    st->errfunc_idx = lua_gettop(L);
    luaL_getmetatable(L, "luaproxy.upstream");
    st->upstream_mt_idx = lua_gettop(L);
    lua_pushliteral(L, "route");
    st->route_key_idx = lua_gettop(L);
    lua_createtable(L, HANDLER_METHODS, 0);
#define ADD_HANDLER_NAME(num, name, string)                                                                       \
    if (handler_name(num)) {                                                                                     \
        lua_pushstring(L, handler_name(num));                                                                    \
        lua_rawseti(L, -2, num);                                                                                 \
    }
    HTTP_ALL_METHOD_MAP(ADD_HANDLER_NAME)
#undef ADD_HANDLER_NAME
    st->handlers_idx = lua_gettop(L);
    st->reply_top = lua_gettop(L);
    st->has_route = has_function(L, "route");
    st->has_on_response = has_function(L, "on_response");
    return st;
}

static void lstate_close(struct lstate *st)
{
    if (S.st == st) {
        S.st = NULL;
        S.L = NULL;
    }
    lua_close(st->L); /* collects the upstreams, closing their idle connections */
    free(st);
}

int script_check_text(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    struct lstate *st = lstate_build(path, text, len, S.generation, err, errlen);
    if (!st) return -1;
    /* Here, not in script_load: the master checks every script it starts
     * or reloads, once, where each worker would repeat the warnings. */
    hooks_check(st->L, path);
    lstate_close(st);
    return 0;
}

int script_check(const char *path, char *err, size_t errlen)
{
    size_t len;
    char *text = script_read(path, &len, err, errlen);
    if (!text) return -1;
    int rc = script_check_text(path, text, len, err, errlen);
    free(text);
    return rc;
}

static void reap_retired(void)
{
    struct lstate **pp = &S.retired;
    while (*pp) {
        struct lstate *st = *pp;
        if (st->refs) {
            pp = &st->next;
            continue;
        }
        *pp = st->next;
        log_info("worker %d: script generation %d closed (its last request ended)", S.worker_id,
                 st->generation);
        lstate_close(st);
    }
}

static void on_reap(struct defer *d)
{
    reap_retired();
}
static struct defer reaper = {.cb = on_reap};

int script_load(const char *path, const char *text, size_t len, int generation, char *err, size_t errlen)
{
    struct lstate *st = lstate_build(path, text, len, generation, err, errlen);
    if (!st) return -1;
    static bool watchdog;
    if (!watchdog) {
        limits_watchdog_start(st->L, S.cfg->lua_time_limit_ms);
        watchdog = true;
    }
    struct lstate *old = S.cur;
    S.cur = st;
    use(st);
    if (old) {
        old->next = S.retired;
        S.retired = old;
        /* Servers that still exist keep their pooled connections (and their
         * health); the others' are closed. Older retired states point at
         * the new servers too, so what they give back lands there. */
        for (struct lstate *r = S.retired; r; r = r->next)
            upstream_handover(r->upstreams, st->upstreams, r == old);
        if (!old->refs) loop_defer(&W.loop, &reaper);
    }
    return 0;
}

int script_generation(void)
{
    return S.cur ? S.cur->generation : 0;
}

const struct upstream *script_upstreams(void)
{
    return S.cur ? S.cur->upstreams : NULL;
}

void script_unload(void)
{
    while (S.retired) {
        struct lstate *st = S.retired;
        S.retired = st->next;
        lstate_close(st);
    }
    if (S.cur) lstate_close(S.cur);
    S.cur = NULL;
    while (req_pool) {
        struct script_req *r = req_pool;
        req_pool = r->next_free;
        free(r);
    }
    free(hdrs);
    hdrs = NULL;
    hdrs_cap = 0;
    req_free_all();
}

bool script_has_route(struct script_req *r)
{
    return r->st->has_route;
}

bool script_has_on_response(struct script_req *r)
{
    return r->st->has_on_response;
}

struct script_req *script_req_begin(struct script_view *view)
{
    struct script_req *r = req_pool;
    if (r) req_pool = r->next_free;
    else if (!(r = malloc(sizeof(*r)))) return NULL;
    if (req_bind(&r->lr, view)) {
        r->next_free = req_pool;
        req_pool = r;
        return NULL;
    }
    use(S.cur);
    r->st = S.cur;
    r->st->refs++;
    return r;
}

lua_State *script_use(struct script_req *r)
{
    return use(r->st);
}

void script_req_push(struct script_req *r)
{
    req_push(r->st->L, &r->lr);
}

bool script_req_edits(struct script_req *r, struct script_edits *e)
{
    if (!r || !r->lr.edited) return false;
    lua_State *L = use(r->st);
    req_push_env(L, &r->lr);
    edits_from_env(L, e); /* the env stays until script_reply_done() */
    return true;
}

void script_req_end(struct script_req *r)
{
    if (!r) return;
    struct lstate *st = r->st;
    req_unbind(st->L, &r->lr);
    r->st = NULL;
    r->next_free = req_pool;
    req_pool = r;
    /* The last request of a retired state: close it after this batch, when
     * nothing up the call stack can still be using it. */
    if (--st->refs == 0 && st != S.cur) loop_defer(&W.loop, &reaper);
}

/* The method as sent (a token llhttp does not know, too). */
static const char *method_of(const struct script_req *r, size_t *len)
{
    return http_method_name(r->lr.view->req, r->lr.view->base, len);
}

static void path_of(const struct script_req *r, const char **p, size_t *n)
{
    const struct script_view *v = r->lr.view;
    const char *url = http_slice(v->base, v->req->url);
    size_t len = v->req->url.len;
    const char *q = memchr(url, '?', len);
    *p = url;
    *n = q ? (size_t)(q - url) : len;
}

static void (*error_hook)(const char *where, const char *msg);

void script_set_error_hook(void (*fn)(const char *where, const char *msg))
{
    error_hook = fn;
}

void script_log_error(struct script_req *r, const char *where, const char *msg)
{
    if (error_hook) {
        error_hook(where, msg ? msg : "(no message)");
        return;
    }
    const char *path;
    size_t plen;
    path_of(r, &path, &plen);
    size_t mlen;
    const char *method = method_of(r, &mlen);
    log_error("lua error in %s for %.*s %.*s: %s", where, (int)mlen, method, (int)plen, path,
              msg ? msg : "(no message)");
}

void script_fail(struct script_req *r, const char *where, const char *msg)
{
    STAT_ADD(WS->lua_errors, 1);
    script_log_error(r, where, msg);
}

/* Calls the function below nargs arguments; on error logs it and leaves
 * nothing. Returns the number of results left on the stack, or -1. */
int script_call(struct script_req *r, const char *where, int nargs)
{
    struct lstate *st = r->st;
    lua_State *L = st->L;
    int base = lua_gettop(L) - nargs - 1;
    const char *path;
    size_t plen;
    path_of(r, &path, &plen);
    size_t mlen;
    const char *method = method_of(r, &mlen);
    stats_lua_enter(method, mlen, path, plen); /* named by the master if we die in there */
    st->mem.enforce = true;
    limits_enter(L);
    int rc = lua_pcall(L, nargs, LUA_MULTRET, st->errfunc_idx);
    bool timed_out = limits_leave(L);
    stats_lua_leave();
    st->mem.enforce = false;
    if (rc == 0) return lua_gettop(L) - base;
    STAT_ADD(WS->lua_errors, 1);
    script_log_error(r, where, lua_tostring(L, -1));
    lua_settop(L, base);
    if (rc == LUA_ERRMEM || timed_out) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        /* Give the garbage back to the system, not only to malloc: whether
         * glibc trims by itself depends on what was allocated last. */
        if (rc == LUA_ERRMEM) malloc_trim(0);
    }
    return -1;
}

static void reply_error(struct script_reply *rep)
{
    static const char body[] = "internal server error\n";
    *rep = (struct script_reply){.status = 500, .body = body, .body_len = sizeof(body) - 1};
    lua_settop(S.L, S.st->reply_top);
}

static int hdr_add(const char *name, size_t nlen, const char *value, size_t vlen, size_t *n)
{
    if (*n == hdrs_cap) {
        size_t cap = hdrs_cap ? hdrs_cap * 2 : 16;
        struct script_header *h = realloc(hdrs, cap * sizeof(*h));
        if (!h) return -1;
        hdrs = h;
        hdrs_cap = cap;
    }
    hdrs[(*n)++] = (struct script_header){.name = name, .nlen = nlen, .value = value, .vlen = vlen};
    return 0;
}

/* The values on the stack from idx on: status [, body [, headers]]. They
 * stay on the stack (anchoring the strings) until script_reply_done(). */
static const char *reply_from_stack(lua_State *L, int idx, int nres, struct script_reply *rep)
{
    memset(rep, 0, sizeof(*rep));
    if (!lua_isnumber(L, idx)) return "status is not a number";
    lua_Number st = lua_tonumber(L, idx);
    /* A 1xx is no answer: the client would wait for the final one. */
    if (st < 200 || st > 599 || st != (int)st) return "status must be a whole number from 200 to 599";
    rep->status = (int)st;
    if (nres >= 2 && !lua_isnil(L, idx + 1)) {
        if (!lua_isstring(L, idx + 1)) return "body must be a string or nil";
        rep->body = lua_tolstring(L, idx + 1, &rep->body_len);
    }
    if (nres < 3 || lua_isnil(L, idx + 2)) return NULL;
    if (!lua_istable(L, idx + 2)) return "headers must be a table";
    if (!lua_checkstack(L, 8)) return "out of memory";
    int anchor = 0, k = 0;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx + 2)) {
        if (lua_type(L, -2) != LUA_TSTRING) return "header names must be strings";
        size_t nlen, vlen;
        const char *name = lua_tolstring(L, -2, &nlen);
        const char *bad = field_check_name(name, nlen);
        /* A local answer may name the protocols it would switch to (a 426
         * must, RFC 9110 §15.5.22): nothing is tunnelled after it. */
        if (bad && !(nlen == 7 && !strncasecmp(name, "upgrade", 7))) return bad;
        if (lua_type(L, -1) == LUA_TSTRING) { /* the common case: the table anchors it */
            const char *v = lua_tolstring(L, -1, &vlen);
            if ((bad = field_check_string(name, nlen, v, vlen))) return bad;
            if (hdr_add(name, nlen, v, vlen, &n)) return "out of memory";
            lua_pop(L, 1);
            continue;
        }
        /* A number's string or an array's checked copy stays in a table
         * under the iteration, anchored until script_reply_done(). */
        if (!anchor) {
            lua_newtable(L);
            lua_insert(L, -3);
            anchor = lua_gettop(L) - 2;
        }
        if ((bad = field_push_value(L, name, nlen, lua_gettop(L)))) return bad;
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *v = lua_tolstring(L, -1, &vlen);
            if (hdr_add(name, nlen, v, vlen, &n)) return "out of memory";
        }
        for (int i = 1; lua_istable(L, -1) && i <= (int)lua_objlen(L, -1); i++) {
            lua_rawgeti(L, -1, i);
            const char *v = lua_tolstring(L, -1, &vlen);
            lua_pop(L, 1); /* anchored by the array */
            if (hdr_add(name, nlen, v, vlen, &n)) return "out of memory";
        }
        lua_rawseti(L, anchor, ++k);
        lua_pop(L, 1);
    }
    rep->headers = hdrs;
    rep->nheaders = n;
    return NULL;
}

static void reply_checked(struct script_req *r, const char *where, int idx, int nres,
                          struct script_reply *rep)
{
    const char *bad = reply_from_stack(S.L, idx, nres, rep);
    if (bad) {
        script_fail(r, where, bad);
        reply_error(rep);
    }
}

enum script_decision script_route(struct script_req *r, struct script_reply *rep,
                                  struct upstream **upstream)
{
    lua_State *L = use(r->st);
    lua_pushvalue(L, r->st->route_key_idx);
    lua_gettable(L, LUA_GLOBALSINDEX);
    req_push(L, &r->lr);
    int base = lua_gettop(L) - 1;
    int nres = script_call(r, "route", 1);
    if (nres < 0) {
        reply_error(rep);
        return SCRIPT_RESPOND;
    }
    if (nres == 0 || lua_isnil(L, base)) {
        lua_settop(L, r->st->reply_top);
        return SCRIPT_LOCAL;
    }
    if (lua_type(L, base) == LUA_TNUMBER) {
        reply_checked(r, "route", base, nres, rep);
        return SCRIPT_RESPOND;
    }
    if (lua_type(L, base) == LUA_TUSERDATA && lua_getmetatable(L, base) &&
        lua_rawequal(L, -1, r->st->upstream_mt_idx)) {
        *upstream = *(struct upstream **)lua_touserdata(L, base);
        lua_settop(L, r->st->reply_top);
        return SCRIPT_UPSTREAM;
    }
    script_fail(r, "route", lua_pushfstring(L, "route returned a %s (expected an upstream, a status or nothing)",
                                              luaL_typename(L, base)));
    reply_error(rep);
    return SCRIPT_RESPOND;
}

void script_handle(struct script_req *r, struct script_reply *rep)
{
    lua_State *L = use(r->st);
    uint8_t method = r->lr.view->req->method;
    const char *name = handler_name(method);
    bool head_only = false;
    lua_rawgeti(L, r->st->handlers_idx, method);
    lua_gettable(L, LUA_GLOBALSINDEX);
    if (!lua_isfunction(L, -1) && method == HTTP_HEAD) {
        lua_pop(L, 1);
        lua_getfield(L, LUA_GLOBALSINDEX, "on_get");
        head_only = true;
        name = "on_get";
    }
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        hooks_push_allow(L);
        static const char body[] = "method not allowed\n";
        *rep = (struct script_reply){.status = 405, .body = body, .body_len = sizeof(body) - 1};
        size_t vlen;
        const char *v = lua_tolstring(L, -1, &vlen);
        size_t n = 0;
        if (hdr_add("Allow", 5, v, vlen, &n) == 0) {
            rep->headers = hdrs;
            rep->nheaders = n;
        }
        return;
    }
    req_push(L, &r->lr);
    int base = lua_gettop(L) - 1;
    int nres = script_call(r, name, 1);
    if (nres < 0) return reply_error(rep);
    if (nres == 0) {
        script_fail(r, name, "handler returned no status");
        return reply_error(rep);
    }
    reply_checked(r, name, base, nres, rep);
    rep->head_only = head_only;
}

void script_reply_done(void)
{
    if (S.st) lua_settop(S.L, S.st->reply_top);
}
