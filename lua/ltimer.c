/* ltimer: proxy.timer (ltimer.h); the callbacks run as lrun runs. */
#include "ltimer.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>

#include "log.h"
#include "loop.h"
#include "lrun.h"
#include "lstate.h"
#include "stats.h"

/* A scheduled callback: proxy.timer.at (once) or .every (again each
 * interval). Its function and arguments are a registry table
 * {fn, arg1, ..., n = nargs}. */
struct ltimer {
    struct timer t;
    struct lstate *st;
    int ref;
    uint64_t interval_ms; /* every: the period; 0: once */
    struct ltimer *prev, *next;
};

static struct ltimer *timers; /* pending, every generation's */
static int npending;
static bool closing;          /* the worker shuts down: no new timers */

int ltimer_pending(void)
{
    return npending;
}

/* A timer or run is over: the state may be closed if it was retired. */
static void state_unref(struct lstate *st)
{
    if (--st->refs == 0 && st != lstate_g.cur && lstate_g.loop && lstate_g.reaper)
        loop_defer(lstate_g.loop, lstate_g.reaper);
}

/* Starts t's callback in a run of its own: fn(premature, args...). */
static void run_start(struct ltimer *t, bool premature)
{
    struct lstate *st = t->st;
    lua_State *L = st->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
    lua_getfield(L, -1, "n");
    int nargs = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (!lua_checkstack(L, nargs + 3)) {
        lua_pop(L, 1);
        log_error("out of memory starting a timer");
        return;
    }
    int tbl = lua_gettop(L);
    lua_rawgeti(L, tbl, 1);
    lua_pushboolean(L, premature);
    for (int i = 0; i < nargs; i++) lua_rawgeti(L, tbl, i + 2);
    lua_remove(L, tbl);
    lrun_spawn(st, nargs + 1);
}

static void timer_unlink(struct ltimer *t)
{
    if (t->prev) t->prev->next = t->next;
    else timers = t->next;
    if (t->next) t->next->prev = t->prev;
    npending--;
}

static void timer_free(struct ltimer *t)
{
    luaL_unref(t->st->L, LUA_REGISTRYINDEX, t->ref);
    free(t);
}

static void on_fire(struct timer *tm)
{
    struct ltimer *t = container_of(tm, struct ltimer, t);
    struct lstate *st = t->st;
    if (t->interval_ms) {
        /* Re-armed before the callback runs, so that a slow callback
         * does not drift the schedule (as OpenResty's every). */
        loop_timer(lstate_g.loop, &t->t, t->interval_ms);
        run_start(t, false);
        return;
    }
    timer_unlink(t);
    run_start(t, false);
    timer_free(t);
    state_unref(st);
}

/* proxy.timer.at(delay, fn, ...) and every(interval, fn, ...). */
static int add_timer(lua_State *L, bool every)
{
    lua_Number delay = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (delay < 0 || isnan(delay)) return luaL_argerror(L, 1, "must not be negative");
    if (every && delay <= 0) return luaL_argerror(L, 1, "must be more than 0");
    struct lstate *st = lstate_g.loading ? lstate_g.loading : lstate_g.st;
    /* --check and the master run the top level too: timers never run there. */
    if (!lstate_g.loop || !st) {
        lua_pushboolean(L, 1);
        return 1;
    }
    /* A retired generation's code (a request begun before a reload, or a
     * premature callback) may not schedule more: its timers would outlive
     * it. OpenResty says the same while its worker exits. */
    if (closing || (st != lstate_g.cur && st != lstate_g.loading)) {
        lua_pushnil(L);
        lua_pushliteral(L, "process exiting");
        return 2;
    }
    if (npending >= lstate_g.cfg->max_timers) {
        lua_pushnil(L);
        lua_pushliteral(L, "too many pending timers");
        return 2;
    }
    int nargs = lua_gettop(L) - 2;
    lua_createtable(L, nargs + 1, 1);
    for (int i = 0; i <= nargs; i++) {
        lua_pushvalue(L, 2 + i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, nargs);
    lua_setfield(L, -2, "n");
    struct ltimer *t = calloc(1, sizeof(*t));
    if (!t) return luaL_error(L, "out of memory");
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    t->st = st;
    t->t.cb = on_fire;
    t->interval_ms = every ? (uint64_t)(delay * 1000.0 + 0.5) : 0;
    if (every && !t->interval_ms) t->interval_ms = 1;
    t->next = timers;
    if (timers) timers->prev = t;
    timers = t;
    npending++;
    st->refs++;
    loop_timer(lstate_g.loop, &t->t, (uint64_t)(delay * 1000.0 + 0.5));
    lua_pushboolean(L, 1);
    return 1;
}

static int timer_at(lua_State *L)
{
    return add_timer(L, false);
}

static int timer_every(lua_State *L)
{
    return add_timer(L, true);
}

static int timer_pending_count(lua_State *L)
{
    lua_pushinteger(L, npending);
    return 1;
}

void ltimer_open(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"at", timer_at},
        {"every", timer_every},
        {"pending", timer_pending_count},
        {NULL, NULL},
    };
    lua_getglobal(L, "proxy");
    lua_newtable(L);
    luaL_setfuncs(L, fns, 0);
    lua_setfield(L, -2, "timer");
    lua_pop(L, 1);
}

void ltimer_retire(struct lstate *st)
{
    if (st == lstate_g.cur) closing = true;
    struct ltimer *t = timers;
    while (t) {
        struct ltimer *next = t->next;
        if (t->st == st) {
            timer_cancel(&lstate_g.loop->timers, &t->t);
            timer_unlink(t);
            run_start(t, true);
            timer_free(t);
            state_unref(st);
        }
        t = next;
    }
}

void ltimer_forget(struct lstate *st)
{
    for (struct ltimer *t = timers, *next; t; t = next) {
        next = t->next;
        if (t->st != st) continue;
        if (lstate_g.loop) timer_cancel(&lstate_g.loop->timers, &t->t);
        timer_unlink(t);
        timer_free(t);
        st->refs--;
    }
}
