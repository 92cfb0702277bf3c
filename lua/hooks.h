/* hooks: which global functions are hooks, and a word about those that
 * look like one but are not. */
#pragma once
#include <lua.h>

/* "on_get" for "GET" when the method is in the IANA registry (a handler
 * can exist), else NULL. */
const char *hooks_handler(const char *method);
/* Pushes the Allow value: the methods with a handler, HEAD with on_get. */
void hooks_push_allow(lua_State *L);
/* Logs a warning for each global function that looks like a misnamed hook. */
void hooks_check(lua_State *L, const char *path);
