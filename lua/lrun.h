/* lrun: script code running in a coroutine, so that it may wait.
 *
 * A request's route and handlers and every timer callback run as a "run":
 * the function in a coroutine of the state it belongs to. A call that waits
 * (proxy.sleep; sockets next) arms the run's wake timer and yields; the
 * worker's loop serves everything else, and the timer resumes the run.
 * --lua-time-limit brackets each resume: the stretches between waits count,
 * the waits do not. Coroutines that finished are kept for the next run, so
 * a hook that never waits costs about what a plain protected call does. */
#pragma once
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "timer.h"

struct lstate;
struct script_req;

struct lrun {
    struct timer wake;     /* ends a wait */
    struct lstate *st;
    lua_State *co;
    int co_ref;            /* the coroutine, anchored in the registry */
    const char *where;     /* "route", "on_get", "a timer": for errors and "cannot wait in" */
    struct script_req *req; /* the request it runs for; NULL: a timer callback */
    int rc;                /* lua_resume's last result: LUA_YIELD while waiting */
    uint64_t spent_ms;     /* Lua time of its stretches so far (the time limit adds them up) */
    bool active;
    /* What it waits on, told when the run is dropped while waiting (a
     * socket lets go of it); set by the call that waits. */
    void (*on_cancel)(struct lrun *r, void *arg);
    void *cancel_arg;
    struct lrun *prev, *next; /* every active run of the worker */
};

/* Runs the function below nargs arguments on st's main stack in r (its
 * fields zeroed or from an earlier run), as `where`. Returns the number of
 * results, moved to the main stack; -1 when it failed (logged, counted);
 * LRUN_WAIT when it waits: r stays active, and when it is over
 * r->req's view->ready is called (a request), or r is freed (a timer run
 * made with lrun_spawn). */
#define LRUN_WAIT (-2)
int lrun_call(struct lrun *r, struct lstate *st, struct script_req *req, const char *where, int nargs);
/* After a waiting request run finished: its results moved to the main
 * stack (their number), or -1 when it failed (logged when it did). */
int lrun_collect(struct lrun *r);
/* Ends r wherever it is: a waiting run is dropped and its coroutine with
 * it (a client went away, a state is closed). */
void lrun_cancel(struct lrun *r);
/* A timer callback: a run of its own, freed when it ends. */
void lrun_spawn(struct lstate *st, int nargs);
/* Drops every run of st (its state is being closed). */
void lrun_forget(struct lstate *st);
/* The run whose coroutine L is, or raises "cannot wait in <where>": for a
 * C function about to wait. */
struct lrun *lrun_current(lua_State *L);
/* Resumes a waiting run with nargs values pushed on its coroutine (what
 * the call that waited returns), and ends it if it finishes. From the
 * worker's loop only. */
void lrun_continue(struct lrun *r, int nargs);
/* Adds proxy.sleep to the proxy module. */
void lrun_open(lua_State *L);
