/* lhealth: the check = { ... } option of proxy.upstream, read into the
 * core's struct health_check (core/health.h). */
#pragma once
#include <lua.h>

struct health_check;

/* opts.check of the options table at index opts: NULL when absent, else a
 * new check (the caller owns it). A mistake raises a Lua error naming
 * proxy.upstream and the option. */
struct health_check *lhealth_check(lua_State *L, int opts);
