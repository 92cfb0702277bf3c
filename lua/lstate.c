/* lstate: the worker's Lua states and the one way of calling into them:
 * under the time and memory limits, with errors counted and logged. */
#include <malloc.h>
#include <string.h>

#include "log.h"
#include "lstate.h"
#include "stats.h"

struct lstate_globals lstate_g;

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

void lstate_set_error_hook(void (*fn)(const char *where, const char *msg))
{
    error_hook = fn;
}

static void log_error_of(struct script_req *r, const char *where, const char *msg)
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

void lstate_fail(struct script_req *r, const char *where, const char *msg)
{
    STAT_ADD(WS->lua_errors, 1);
    log_error_of(r, where, msg);
}

void lstate_enter_request(struct script_req *r)
{
    const char *path;
    size_t plen;
    path_of(r, &path, &plen);
    size_t mlen;
    const char *method = method_of(r, &mlen);
    stats_lua_enter(method, mlen, path, plen); /* named by the master if we die in there */
}

void lstate_leave_request(void)
{
    stats_lua_leave();
}

int lstate_call(struct script_req *r, const char *where, int nargs)
{
    struct lstate *st = r->st;
    lua_State *L = st->L;
    int base = lua_gettop(L) - nargs - 1;
    lstate_enter_request(r);
    st->mem.enforce = true;
    const char *outer = lstate_g.where;
    lstate_g.where = where;
    limit_enter(L);
    int rc = lua_pcall(L, nargs, LUA_MULTRET, st->errfunc_idx);
    bool timed_out = limit_leave(L);
    lstate_g.where = outer;
    lstate_leave_request();
    st->mem.enforce = false;
    if (rc == 0) return lua_gettop(L) - base;
    lstate_fail(r, where, lua_tostring(L, -1));
    lua_settop(L, base);
    if (rc == LUA_ERRMEM || timed_out) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        /* Give the garbage back to the system, not only to malloc: whether
         * glibc trims by itself depends on what was allocated last. */
        if (rc == LUA_ERRMEM) malloc_trim(0);
    }
    return -1;
}
