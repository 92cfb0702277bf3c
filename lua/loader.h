/* loader: require looks beside the script first (script_path's directory),
 * and a missing module is a one-line error. */
#pragma once
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

void loader_open(lua_State *L, const char *script_path);
/* The absolute directory of path (no trailing '/', except for "/"), in
 * dir; false if it cannot be known. */
bool loader_script_dir(const char *path, char *dir, size_t len);
