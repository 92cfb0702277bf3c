/* proxying: what the script does to a proxied request: the edits req:set_*
 * make to the forwarded head, and the `res` object of on_response. */
#pragma once
#include <lua.h>
#include <stdbool.h>

#include "lstate.h"
#include "script_types.h"

/* Makes the metatable of res objects. */
void proxying_open(lua_State *L);
/* script_req_edits and script_on_response (script.h says what they do). */
bool proxying_req_edits(struct script_req *r, struct script_edits *e);
int proxying_on_response(struct script_req *r, const struct script_response *res,
                          struct script_edits *e);
/* After on_response waited: its edits in e (1), or 0 when it failed. */
int proxying_on_response_resume(struct script_req *r, struct script_edits *e);
/* The request ends: what on_response left (res, its env) is let go. */
void proxying_req_end(struct script_req *r);
