/* proxy_api: the `proxy` module: logging, time, worker identity and shared
 * dicts (proxy.upstream is added by upstreams.c). */
#pragma once
#include <lua.h>

void proxy_api_open(lua_State *L);
