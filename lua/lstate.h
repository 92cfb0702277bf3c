/* Internal to lua/: what the files behind script.h share. */
#pragma once
#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>
#include <stdatomic.h>

#include "config.h"
#include "script.h"

struct shm;

/* limits.c: time and memory limits. */
struct lmem {
    size_t used, limit;
    bool enforce; /* only user code is refused memory, never our own setup */
};

/* One loaded script. A reload builds a new one and makes it current; the
 * old one is retired and closed when the last request begun on it ends. */
struct lstate {
    lua_State *L;
    struct lmem mem;
    int errfunc_idx; /* stack slot of the traceback function */
    int reply_top;   /* stack height to return to in script_reply_done */
    /* Stack slots below reply_top that hold what every request looks up,
     * so that no call interns a name or finds a metatable by its name. */
    int upstream_mt_idx; /* the metatable of upstream objects */
    int route_key_idx;   /* the string "route" */
    int handlers_idx;    /* method number -> "on_get", ... */
    int refs;        /* requests begun on it and not ended */
    int generation;
    bool has_route, has_on_response;
    struct upstream *upstreams; /* declared by its top level (upstream->next) */
    struct lstate *next;        /* S.retired */
};

struct script_globals {
    const struct config *cfg;
    struct shm *shm;
    int worker_id, worker_count;
    int generation;          /* of the state being built */
    struct lstate *cur;      /* new requests begin on it */
    struct lstate *st;       /* the state of the call in progress */
    lua_State *L;            /* st->L */
    struct lstate *loading;  /* the state whose top level runs */
    struct lstate *retired;  /* still serving requests begun before a reload */
};
extern struct script_globals S;

/* proxy_api.c: the `proxy` module. */
void api_open(lua_State *L);
double api_now(void);
/* req.c: the `req` object, a light userdata naming a live request. */
struct lreq {
    uint64_t id;              /* the light userdata's value */
    struct script_view *view; /* NULL once the request is over */
    int env;                  /* registry ref of the edits/headers table, or LUA_NOREF */
    bool edited;              /* req:set_* was called: the forwarded head changes */
    struct lreq *next;        /* in its bucket of live requests */
};
void req_open(lua_State *L);
/* Gives r a number of its own and makes it live, bound to view. */
int req_bind(struct lreq *r, struct script_view *view);
/* Ends r: a req naming it raises an error from now on. L: r's state. */
void req_unbind(lua_State *L, struct lreq *r);
void req_push(lua_State *L, const struct lreq *r);
/* The table of r's edits and headers cache, pushed; made on first use. */
void req_push_env(lua_State *L, struct lreq *r);
void req_free_all(void);

/* script.c: calling into the script. */
void script_req_push(struct script_req *r);
/* Makes the request's state the one of the calls that follow; its L. */
lua_State *script_use(struct script_req *r);
/* Calls the function below nargs arguments under the limits; errors are
 * logged (with method and path) and leave nothing. Returns the number of
 * results on the stack, or -1. */
int script_call(struct script_req *r, const char *where, int nargs);
void script_log_error(struct script_req *r, const char *where, const char *msg);
/* A hook gave something it may not (a bad return value, ...): counted as
 * a Lua error and logged like one. */
void script_fail(struct script_req *r, const char *where, const char *msg);
/* A lower-case name -> value table; repeated headers joined with ", ". */
void push_header_table(lua_State *L, const struct http_header *hs, uint16_t n, const char *base);
/* With the env table on top: pushes env.headers, built on first use from
 * the parsed head with the set_header edits made so far applied. */
void push_cached_headers(lua_State *L, const struct http_header *hs, uint16_t n, const char *base);
/* The env table of the userdata at idx, created on first use. */
void push_env(lua_State *L, int idx);
/* obj:set_header(name, value) for req and res, with the object's env table
 * at stack index 4: validates, records the edit in the env's set_headers
 * table and keeps env.headers in step. */
void edit_header(lua_State *L);
/* fields.c: the checks of every call that sets a header, and the
 * encoding of set_path/set_query. */
/* NULL when a script may set a header of this name, else why not. */
const char *field_check_name(const char *name, size_t nlen);
/* The same check for one string value. */
const char *field_check_string(const char *name, size_t nlen, const char *v, size_t vlen);
/* Checks the value at idx for header name (a string, a number, or an
 * array of them: one line each) and pushes what to keep: a string, or a
 * fresh array of strings the script cannot change after the check. Else
 * returns why not, pushing nothing. */
const char *field_push_value(lua_State *L, const char *name, size_t nlen, int idx);
/* Pushes the value at idx (a string, or an array of them) as it reads in
 * req.headers: an array joined with ", ", nil when empty. */
void field_push_joined(lua_State *L, int idx);
/* Pushes s with what cannot go into a request line's path (query: its
 * query) percent-encoded. */
void field_push_encoded(lua_State *L, const char *s, size_t n, bool query);
/* loader.c: require looks beside the script first (script_path's
 * directory), and a missing module is a one-line error. */
void loader_open(lua_State *L, const char *script_path);
/* hooks.c: "on_get" for "GET" when the method is in the IANA registry
 * (a handler can exist), else NULL. */
const char *hooks_handler(const char *method);
/* Pushes the Allow value: the methods with a handler, HEAD with on_get. */
void hooks_push_allow(lua_State *L);
/* Logs a warning for each global function that looks like a misnamed hook. */
void hooks_check(lua_State *L, const char *path);
/* proxying.c */
extern bool script_loading;
void proxying_open(lua_State *L);
void res_open(lua_State *L);
void edits_from_env(lua_State *L, struct script_edits *e);

void *limits_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* Starts the watchdog of the calling (worker) process. */
int limits_watchdog_start(lua_State *L, uint64_t limit_ms);
/* Brackets a call into user code. */
void limits_enter(lua_State *L);
/* Returns true when the call was stopped by the time limit. */
bool limits_leave(lua_State *L);
/* For top-level code (load, check): a count hook checking the clock. */
void limits_hook_clock(lua_State *L, uint64_t limit_ms);
void limits_unhook(lua_State *L);
