/* lhealth: the check = { ... } option of proxy.upstream, read into the
 * core's struct health_check (core/health.h). */
#pragma once
#include <lua.h>

struct health_check;

/* The value of opts.check, on the top of the stack (popped): NULL when
 * nil, else a new check (the caller owns it). A mistake raises a Lua error
 * naming proxy.upstream and the option. */
struct health_check *lhealth_check(lua_State *L);
