/* upstream_names: the servers of an upstream as the script gives them
 * (addresses, names re-resolved on their TTL, unix sockets), and the
 * upstream methods that change them at run time (set_servers, servers). */
#pragma once
#include <lua.h>
#include <stdbool.h>

#include "upstream.h"

/* proxy.upstream's server list at idx into u (before upstream_finish):
 * names resolved now, each address a server. Raises a Lua error naming a
 * bad or unresolvable server. */
int upstream_names_load(lua_State *L, struct upstream *u, int idx);
/* Before upstream_free: the names' state, queries left to die. */
void upstream_names_free(struct upstream *u);
/* Pushes { addr, weight, up } for s (with room for extra fields more). */
void upstream_names_push_server(lua_State *L, const struct server *s, uint64_t now, int extra);
/* The upstream methods up:servers() and up:set_servers(list). */
int upstream_names_servers(lua_State *L);
int upstream_names_set_servers(lua_State *L);
