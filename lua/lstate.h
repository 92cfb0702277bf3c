/* lstate: the worker's Lua states and the one way of calling into them.
 * Every file of lua/ that runs script code does it through lstate_call();
 * script.c, above, builds, swaps and closes the states. */
#pragma once
#include <lua.h>
#include <stdbool.h>

#include "config.h"
#include "loop.h"
#include "limit.h"
#include "lrun.h"
#include "req.h"

struct shm;

/* One loaded script. A reload builds a new one and makes it current; the
 * old one is retired and closed when the last request begun on it ends. */
struct lstate {
    lua_State *L;
    struct limit_mem mem;
    int errfunc_idx; /* stack slot of the traceback function */
    int reply_top;   /* stack height to return to in script_reply_done */
    /* Stack slots below reply_top that hold what every request looks up,
     * so that no call interns a name or finds a metatable by its name. */
    int upstream_mt_idx; /* the metatable of upstream objects */
    int route_key_idx;   /* the string "route" */
    int handlers_idx;    /* method number -> "on_get", ... */
    int refs;            /* requests begun on it and not ended, pending timers and runs */
    /* Coroutines whose run finished, for the next run (lrun.c). */
#define LSTATE_CO_POOL 32
    lua_State *free_co[LSTATE_CO_POOL];
    int free_co_ref[LSTATE_CO_POOL];
    int nfree_co;
    int generation;
    bool has_route, has_on_response;
    struct upstream *upstreams; /* declared by its top level (upstream->next) */
    struct lstate *next;        /* lstate_g.retired */
};

/* The Lua side of one request (script.h's struct script_req). */
struct script_req {
    struct lreq lr;    /* what the script's req names, and its view */
    struct lstate *st; /* the state it began on: every call of it goes there */
    struct lrun run;   /* its route or handler, while that runs or waits */
    const char *hook;  /* ... its name ("route", "on_get") */
    bool head_only;    /* ... a HEAD answered by on_get */
    int res_ref, res_env_ref; /* on_response's res and its edits, while it runs */
    struct script_req *next_free;
};

/* The worker's Lua side, as W is the worker's. */
struct lstate_globals {
    const struct config *cfg;
    struct shm *shm;
    int worker_id, worker_count;
    struct loop *loop;       /* the worker's event loop; NULL outside a worker */
    int generation;         /* of the state being built */
    struct lstate *cur;     /* new requests begin on it */
    struct lstate *st;      /* the state of the call in progress */
    lua_State *L;           /* st->L */
    struct lstate *loading; /* the state whose top level runs, else NULL */
    struct lstate *retired; /* still serving requests begun before a reload */
    struct defer *reaper;   /* closes retired states no longer in use (script.c's) */
    const char *where;      /* the hook or code running now, for "cannot wait in ..." */
};
extern struct lstate_globals lstate_g;

/* Makes st the state of the calls that follow; its L. Inline: every
 * request calls it a few times. */
static inline lua_State *lstate_use(struct lstate *st)
{
    lstate_g.st = st;
    lstate_g.L = st->L;
    return st->L;
}
/* Calls the function below nargs arguments on r's state under the limits;
 * errors are logged (with method and path) and leave nothing. Returns the
 * number of results on the stack, or -1. */
int lstate_call(struct script_req *r, const char *where, int nargs);
/* Brackets a stretch of Lua run for r: names the request in the crash
 * slot the master reads if the worker dies meanwhile. */
void lstate_enter_request(struct script_req *r);
void lstate_leave_request(void);
/* A hook gave something it may not (a bad return value, ...): counted as
 * a Lua error and logged like one. */
void lstate_fail(struct script_req *r, const char *where, const char *msg);
/* --try: errors go to fn instead of the log (script_set_error_hook). */
void lstate_set_error_hook(void (*fn)(const char *where, const char *msg));
