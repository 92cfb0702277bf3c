/* ngx: the global `ngx`, the subset of OpenResty's API that pure-Lua
 * OpenResty libraries use, mapped onto the `proxy` module. */
#pragma once
#include <lua.h>

/* Sets the global `ngx` from the `proxy` table as it is now: call it once
 * every part of proxy is in place, before the script's top level runs.
 * script_path gives ngx.config.prefix(). */
void ngx_open(lua_State *L, const char *script_path);
