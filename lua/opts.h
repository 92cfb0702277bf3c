/* opts: the options of proxy.upstream's tables (the upstream's own, and
 * its check = { ... }), read the same way by upstreams.c and lhealth.c. */
#pragma once
#include <lua.h>
#include <stdint.h>

/* An option of a table at index t: a duration (a string, or a number of
 * seconds) in ms, or a whole number >= min; def when absent. A bad value
 * raises an error naming proxy.upstream and key. */
uint64_t opt_duration(lua_State *L, int t, const char *key, uint64_t def);
int opt_int(lua_State *L, int t, const char *key, int def, int min);
