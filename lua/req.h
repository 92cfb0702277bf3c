/* req: the `req` object, a light userdata naming a live request. */
#pragma once
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "script_types.h"

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
