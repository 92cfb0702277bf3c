/* loader: require looks beside the script first (script_path's directory),
 * and a missing module is a one-line error. */
#pragma once
#include <lua.h>

void loader_open(lua_State *L, const char *script_path);
