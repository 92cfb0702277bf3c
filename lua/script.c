/* script: what the core sees of lua/ (script.h). Here: building the
 * worker's states, swapping them on a reload and closing them, and a
 * request's life on them (route, the on_<method> handlers, their replies).
 * The rest of script.h is done by the files below, which this one opens
 * into each state: proxy_api.c, req.c, upstreams.c and proxying.c, all
 * calling into the script through lstate.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <errno.h>

#include <lauxlib.h>
#include <lualib.h>
#include <luajit.h>

#include "fields.h"
#include "hooks.h"
#include "lhttp.h"
#include "loader.h"
#include "lrun.h"
#include "ldns.h"
#include "lsock.h"
#include "lsock_udp.h"
#include "ltimer.h"
#include "log.h"
#include "lstate.h"
#include "ngx.h"
#include "proxy_api.h"
#include "proxying.h"
#include "re.h"
#include "script.h"
#include "upstream.h"
#include "upstreams.h"
#include "health.h"
#include "loop.h"

static struct field_list hdrs; /* a reply's headers, kept for the next */

static struct script_req *req_pool; /* no malloc per request */

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

void script_setup(const struct config *cfg, struct shm *shm, int worker_id, int worker_count, struct loop *loop)
{
    lstate_g.loop = loop;
    lstate_g.cfg = cfg;
    lstate_g.shm = shm;
    lstate_g.worker_id = worker_id;
    lstate_g.worker_count = worker_count;
}

static lua_State *state_new(struct limit_mem *m)
{
    m->used = 0;
    m->limit = lstate_g.cfg->lua_memory_limit;
    m->enforce = false;
    lua_State *L = lua_newstate(limit_alloc, m);
    if (!L) return NULL;
    lua_atpanic(L, on_panic);
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF); /* see limit.c */
    proxy_api_open(L);
    ltimer_open(L);
    lrun_open(L);
    lsock_open(L);
    lsock_udp_open(L);
    lhttp_open(L);
    req_open(L);
    upstreams_open(L);
    proxying_open(L);
    re_open(L);
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
        struct lstate *prev = lstate_g.loading;
        lstate_g.loading = st; /* proxy.upstream is allowed, and declares there */
        lstate_g.where = "top-level code";
        st->mem.enforce = true;
        limit_hook_clock(L, lstate_g.cfg->lua_time_limit_ms);
        rc = lua_pcall(L, 0, 0, 0);
        limit_unhook(L);
        st->mem.enforce = false;
        lstate_g.loading = prev;
        lstate_g.where = NULL;
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
static struct lstate *state_build(const char *path, const char *text, size_t len, int generation,
                                   char *err, size_t errlen)
{
    struct lstate *st = calloc(1, sizeof(*st));
    if (!st) {
        snprintf(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    st->generation = lstate_g.generation = generation;
    st->L = state_new(&st->mem);
    if (!st->L) {
        snprintf(err, errlen, "%s: cannot create a Lua state", path);
        free(st);
        return NULL;
    }
    loader_open(st->L, path);
    ngx_open(st->L, path); /* last: it maps what proxy has by now */
    if (state_load(st, path, text, len, err, errlen)) {
        ltimer_forget(st);
        lrun_forget(st);
        lua_close(st->L);
        free(st);
        return NULL;
    }
    lua_State *L = st->L;
    lua_settop(L, 0);
    lua_pushcfunction(L, traceback);
    st->errfunc_idx = lua_gettop(L);
    luaL_getmetatable(L, UPSTREAMS_MT);
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

static void state_close(struct lstate *st)
{
    ltimer_forget(st);
    lrun_forget(st);
    if (lstate_g.st == st) {
        lstate_g.st = NULL;
        lstate_g.L = NULL;
    }
    lua_close(st->L); /* collects the upstreams, closing their idle connections */
    free(st);
}

int script_check_text(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    struct lstate *st = state_build(path, text, len, lstate_g.generation, err, errlen);
    if (!st) return -1;
    /* Here, not in script_load: the master checks every script it starts
     * or reloads, once, where each worker would repeat the warnings. */
    hooks_check(st->L, path);
    state_close(st);
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
    struct lstate **pp = &lstate_g.retired;
    while (*pp) {
        struct lstate *st = *pp;
        if (st->refs) {
            pp = &st->next;
            continue;
        }
        *pp = st->next;
        log_info("worker %d: script generation %d closed (its last request ended)", lstate_g.worker_id,
                 st->generation);
        state_close(st);
    }
}

static void on_reap(struct defer *d)
{
    reap_retired();
}
static struct defer reaper = {.cb = on_reap};

int script_load(const char *path, const char *text, size_t len, int generation, char *err, size_t errlen)
{
    struct lstate *st = state_build(path, text, len, generation, err, errlen);
    if (!st) return -1;
    static bool watchdog;
    if (!watchdog) {
        limit_watchdog_start(st->L, lstate_g.cfg->lua_time_limit_ms);
        watchdog = true;
    }
    lstate_g.reaper = &reaper;
    struct lstate *old = lstate_g.cur;
    lstate_g.cur = st;
    lstate_use(st);
    if (old) {
        ltimer_retire(old); /* its pending timers run once, premature */
        old->next = lstate_g.retired;
        lstate_g.retired = old;
        /* Servers that still exist keep their pooled connections (and their
         * health); the others' are closed. Older retired states point at
         * the new servers too, so what they give back lands there. */
        for (struct lstate *r = lstate_g.retired; r; r = r->next)
            upstream_handover(r->upstreams, st->upstreams, r == old);
        if (!old->refs && lstate_g.loop) loop_defer(lstate_g.loop, &reaper);
    }
    health_start(st->upstreams); /* the old script's probes stop, the new one's start */
    return 0;
}

void script_shutdown(void)
{
    for (struct lstate *r = lstate_g.retired; r; r = r->next) ltimer_retire(r);
    if (lstate_g.cur) ltimer_retire(lstate_g.cur);
}

int script_generation(void)
{
    return lstate_g.cur ? lstate_g.cur->generation : 0;
}

const struct upstream *script_upstreams(void)
{
    return lstate_g.cur ? lstate_g.cur->upstreams : NULL;
}

void script_unload(void)
{
    while (lstate_g.retired) {
        struct lstate *st = lstate_g.retired;
        lstate_g.retired = st->next;
        state_close(st);
    }
    if (lstate_g.cur) state_close(lstate_g.cur);
    lstate_g.cur = NULL;
    while (req_pool) {
        struct script_req *r = req_pool;
        req_pool = r->next_free;
        free(r);
    }
    field_list_free(&hdrs);
    req_free_all();
    lsock_pool_free();
    ldns_free();
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
    lstate_use(lstate_g.cur);
    r->st = lstate_g.cur;
    r->run.active = false;
    r->run.co = NULL;
    r->res_ref = r->res_env_ref = LUA_NOREF;
    r->st->refs++;
    return r;
}

/* The calls below are written where their work is (lstate.c, upstreams.c,
 * proxying.c): script.c is what the core sees of lua/. */

void script_set_error_hook(void (*fn)(const char *where, const char *msg))
{
    lstate_set_error_hook(fn);
}

bool script_req_edits(struct script_req *r, struct script_edits *e)
{
    return proxying_req_edits(r, e);
}

int script_on_response(struct script_req *r, const struct script_response *res, struct script_edits *e)
{
    return proxying_on_response(r, res, e);
}

int script_on_response_resume(struct script_req *r, struct script_edits *e)
{
    return proxying_on_response_resume(r, e);
}

void script_req_end(struct script_req *r)
{
    if (!r) return;
    struct lstate *st = r->st;
    lrun_cancel(&r->run); /* a hook still waiting: dropped, nothing is written */
    if (r->res_ref != LUA_NOREF || r->res_env_ref != LUA_NOREF) proxying_req_end(r);
    req_unbind(st->L, &r->lr);
    r->st = NULL;
    r->next_free = req_pool;
    req_pool = r;
    /* The last request of a retired state: close it after this batch, when
     * nothing up the call stack can still be using it. */
    if (--st->refs == 0 && st != lstate_g.cur && lstate_g.loop) loop_defer(lstate_g.loop, &reaper);
}

static void reply_error(struct script_reply *rep)
{
    static const char body[] = "internal server error\n";
    *rep = (struct script_reply){.status = 500, .body = body, .body_len = sizeof(body) - 1};
    lua_settop(lstate_g.L, lstate_g.st->reply_top);
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
    hdrs.n = 0;
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
            if (field_list_add(&hdrs, name, nlen, v, vlen)) return "out of memory";
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
            if (field_list_add(&hdrs, name, nlen, v, vlen)) return "out of memory";
        }
        for (int i = 1; lua_istable(L, -1) && i <= (int)lua_objlen(L, -1); i++) {
            lua_rawgeti(L, -1, i);
            const char *v = lua_tolstring(L, -1, &vlen);
            lua_pop(L, 1); /* anchored by the array */
            if (field_list_add(&hdrs, name, nlen, v, vlen)) return "out of memory";
        }
        lua_rawseti(L, anchor, ++k);
        lua_pop(L, 1);
    }
    rep->headers = hdrs.v;
    rep->nheaders = hdrs.n;
    return NULL;
}

static void reply_checked(struct script_req *r, const char *where, int idx, int nres,
                          struct script_reply *rep)
{
    const char *bad = reply_from_stack(lstate_g.L, idx, nres, rep);
    if (bad) {
        lstate_fail(r, where, bad);
        reply_error(rep);
    }
}

/* route's nres results, on top of the stack: the decision. */
static enum script_decision route_result(struct script_req *r, int nres, struct script_reply *rep,
                                         struct upstream **upstream)
{
    lua_State *L = lstate_use(r->st);
    int base = lua_gettop(L) - nres + 1;
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
    lstate_fail(r, "route", lua_pushfstring(L, "route returned a %s (expected an upstream, a status or nothing)",
                                              luaL_typename(L, base)));
    reply_error(rep);
    return SCRIPT_RESPOND;
}

enum script_decision script_route(struct script_req *r, struct script_reply *rep,
                                  struct upstream **upstream)
{
    lua_State *L = lstate_use(r->st);
    lua_pushvalue(L, r->st->route_key_idx);
    lua_gettable(L, LUA_GLOBALSINDEX);
    req_push(L, &r->lr);
    r->hook = "route";
    int nres = lrun_call(&r->run, r->st, r, "route", 1);
    if (nres == LRUN_WAIT) return SCRIPT_WAIT;
    return route_result(r, nres, rep, upstream);
}

enum script_decision script_route_resume(struct script_req *r, struct script_reply *rep,
                                         struct upstream **upstream)
{
    lstate_use(r->st);
    return route_result(r, lrun_collect(&r->run), rep, upstream);
}

/* A handler's nres results, on top of the stack: the reply. */
static void handle_result(struct script_req *r, int nres, struct script_reply *rep)
{
    lua_State *L = lstate_g.L;
    int base = lua_gettop(L) - nres + 1;
    if (nres < 0) return reply_error(rep);
    if (nres == 0) {
        lstate_fail(r, r->hook, "handler returned no status");
        return reply_error(rep);
    }
    reply_checked(r, r->hook, base, nres, rep);
    rep->head_only = r->head_only;
}

bool script_handle(struct script_req *r, struct script_reply *rep)
{
    lua_State *L = lstate_use(r->st);
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
        hdrs.n = 0;
        if (field_list_add(&hdrs, "Allow", 5, v, vlen) == 0) {
            rep->headers = hdrs.v;
            rep->nheaders = hdrs.n;
        }
        return true;
    }
    req_push(L, &r->lr);
    r->hook = name;
    r->head_only = head_only;
    int nres = lrun_call(&r->run, r->st, r, name, 1);
    if (nres == LRUN_WAIT) return false;
    handle_result(r, nres, rep);
    return true;
}

void script_handle_resume(struct script_req *r, struct script_reply *rep)
{
    lstate_use(r->st);
    handle_result(r, lrun_collect(&r->run), rep);
}

void script_reply_done(void)
{
    if (lstate_g.st) lua_settop(lstate_g.L, lstate_g.st->reply_top);
}
