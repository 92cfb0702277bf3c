/* lrun: runs, their coroutines, and proxy.sleep (lrun.h). */
#include "lrun.h"

#include <lauxlib.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "lstate.h"
#include "stats.h"

static struct lrun *runs;    /* active: running or waiting */
static struct lrun *current; /* the run being resumed, if any */

/* A finished coroutine goes back to its state's pool; a failed one is
 * dead and is dropped. */
static void co_release(struct lrun *r, bool reusable)
{
    struct lstate *st = r->st;
    if (reusable && st->nfree_co < LSTATE_CO_POOL) {
        if (lua_gettop(r->co)) lua_settop(r->co, 0);
        st->free_co[st->nfree_co] = r->co;
        st->free_co_ref[st->nfree_co] = r->co_ref;
        st->nfree_co++;
    } else {
        luaL_unref(st->L, LUA_REGISTRYINDEX, r->co_ref);
    }
    r->co = NULL;
    r->co_ref = LUA_NOREF;
}

static bool co_take(struct lrun *r)
{
    struct lstate *st = r->st;
    if (st->nfree_co) {
        st->nfree_co--;
        r->co = st->free_co[st->nfree_co];
        r->co_ref = st->free_co_ref[st->nfree_co];
        return true;
    }
    if (!lua_checkstack(st->L, 2)) return false;
    r->co = lua_newthread(st->L);
    r->co_ref = luaL_ref(st->L, LUA_REGISTRYINDEX);
    return true;
}

static void unlink_run(struct lrun *r)
{
    if (!r->active) return;
    r->active = false;
    if (r->prev) r->prev->next = r->next;
    else runs = r->next;
    if (r->next) r->next->prev = r->prev;
    if (lstate_g.loop) timer_cancel(&lstate_g.loop->timers, &r->wake);
}

static void state_unref(struct lstate *st)
{
    if (--st->refs == 0 && st != lstate_g.cur && lstate_g.loop && lstate_g.reaper)
        loop_defer(lstate_g.loop, lstate_g.reaper);
}

static void report(struct lrun *r, const char *msg)
{
    if (r->req) {
        lstate_fail(r->req, r->where, msg);
    } else {
        STAT_ADD(WS->lua_errors, 1);
        log_error("lua error in %s: %s", r->where, msg);
    }
}

/* Resumes r with nargs values on its coroutine's stack; r->rc says how it
 * stopped. A failure is reported here, with the coroutine's traceback. */
static void resume(struct lrun *r, int nargs)
{
    struct lstate *st = r->st;
    lstate_use(st);
    const char *where = lstate_g.where;
    lstate_g.where = r->where;
    struct lrun *outer = current;
    current = r;
    if (r->req) lstate_enter_request(r->req);
    st->mem.enforce = true;
    limit_enter_spent(r->co, r->spent_ms);
    r->rc = lua_resume(r->co, nargs);
    if (r->rc == LUA_YIELD) r->spent_ms = limit_spent();
    bool timed_out = limit_leave(r->co);
    st->mem.enforce = false;
    if (r->req) lstate_leave_request();
    current = outer;
    lstate_g.where = where;
    if (r->rc == 0 || r->rc == LUA_YIELD) return;
    lua_State *L = st->L;
    const char *msg = lua_tostring(r->co, -1);
    luaL_traceback(L, r->co, msg ? msg : "(error object is not a string)", 0);
    report(r, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (r->rc == LUA_ERRMEM || timed_out) {
        lua_gc(L, LUA_GCCOLLECT, 0);
        if (r->rc == LUA_ERRMEM) malloc_trim(0);
    }
}

/* A finished run's results (on its coroutine) to the main stack. */
static int take_results(struct lrun *r)
{
    lua_State *L = r->st->L;
    int n = lua_gettop(r->co);
    /* The main stack sits near reply_top, with LUA_MINSTACK free: a hook's
     * usual few results need no check. */
    if (n > 8 && !lua_checkstack(L, n + 1)) {
        report(r, "out of memory");
        co_release(r, false);
        return -1;
    }
    lua_xmove(r->co, L, n);
    co_release(r, true);
    return n;
}

int lrun_call(struct lrun *r, struct lstate *st, struct script_req *req, const char *where, int nargs)
{
    lua_State *L = st->L;
    r->st = st;
    r->req = req;
    r->where = where;
    r->co = NULL;
    r->co_ref = LUA_NOREF;
    r->rc = 0;
    r->spent_ms = 0;
    r->active = false;
    r->on_cancel = NULL;
    r->cancel_arg = NULL;
    r->wake.index = 0; /* not armed */
    r->prev = r->next = NULL;
    if (!co_take(r)) {
        lua_pop(L, nargs + 1);
        report(r, "out of memory");
        return -1;
    }
    lua_xmove(L, r->co, nargs + 1);
    resume(r, nargs);
    if (r->rc == LUA_YIELD) {
        r->active = true;
        r->next = runs;
        if (runs) runs->prev = r;
        runs = r;
        return LRUN_WAIT;
    }
    if (r->rc) {
        co_release(r, false);
        return -1;
    }
    return take_results(r);
}

int lrun_collect(struct lrun *r)
{
    if (r->rc) {
        if (r->co) co_release(r, false);
        return -1;
    }
    return take_results(r);
}

void lrun_cancel(struct lrun *r)
{
    if (!r->active && !r->co) return;
    if (r->on_cancel) r->on_cancel(r, r->cancel_arg);
    r->on_cancel = NULL;
    unlink_run(r);
    if (r->co) co_release(r, false); /* suspended: its frames go with it */
}

/* A timer run, malloc'd: freed when it ends. */
static void spawn_end(struct lrun *r)
{
    struct lstate *st = r->st;
    if (r->co) co_release(r, r->rc == 0);
    free(r);
    state_unref(st);
}

void lrun_continue(struct lrun *r, int nargs)
{
    if (lstate_g.loop) timer_cancel(&lstate_g.loop->timers, &r->wake);
    r->on_cancel = NULL;
    resume(r, nargs);
    if (r->rc == LUA_YIELD) return;
    unlink_run(r);
    if (!r->req) return spawn_end(r);
    /* The request's side collects the results, or the failure. */
    struct script_view *v = r->req->lr.view;
    if (v && v->ready) v->ready(v);
}

static void on_wake(struct timer *t)
{
    lrun_continue(container_of(t, struct lrun, wake), 0);
}

struct lrun *lrun_current(lua_State *L)
{
    if (!current || current->co != L || !lstate_g.loop)
        luaL_error(L, "cannot wait in %s", lstate_g.where ? lstate_g.where : "this context");
    return current;
}

void lrun_spawn(struct lstate *st, int nargs)
{
    struct lrun *r = malloc(sizeof(*r));
    if (!r) {
        lua_pop(st->L, nargs + 1);
        log_error("out of memory starting a timer");
        return;
    }
    st->refs++;
    int n = lrun_call(r, st, NULL, "timer", nargs);
    if (n == LRUN_WAIT) return;
    if (n > 0) lua_pop(st->L, n);
    spawn_end(r);
}

void lrun_forget(struct lstate *st)
{
    for (struct lrun *r = runs, *next; r; r = next) {
        next = r->next;
        if (r->st != st) continue;
        if (r->on_cancel) r->on_cancel(r, r->cancel_arg);
        r->on_cancel = NULL;
        unlink_run(r);
        if (r->co) co_release(r, false);
        if (!r->req) {
            free(r);
            st->refs--;
        }
    }
}

/* proxy.sleep(seconds): yields the running coroutine; the loop resumes it. */
static int api_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    if (s < 0 || isnan(s)) return luaL_argerror(L, 1, "must not be negative");
    struct lrun *r = lrun_current(L);
    r->wake.cb = on_wake;
    loop_timer(lstate_g.loop, &r->wake, (uint64_t)(s * 1000.0 + 0.5));
    return lua_yield(L, 0);
}

void lrun_open(lua_State *L)
{
    lua_getglobal(L, "proxy");
    lua_pushcfunction(L, api_sleep);
    lua_setfield(L, -2, "sleep");
    lua_pop(L, 1);
}
