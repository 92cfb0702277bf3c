/* upstreams: proxy.upstream(), the upstream objects it makes, and the
 * script's balancing hooks (balance, hash_key) of those upstreams. */
#pragma once
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "lstate.h"

struct upstream;
struct server;

/* The registry name of the upstream objects' metatable. */
#define UPSTREAMS_MT "luaproxy.upstream"

/* Adds proxy.upstream to the proxy module and the upstream metatable. */
void upstreams_open(lua_State *L);
/* script_hash_key and script_balance (script.h says what they do). */
int upstreams_hash_key(struct script_req *r, struct upstream *u, uint32_t *key);
int upstreams_balance(struct script_req *r, struct upstream *u, const bool *tried,
                      struct server **chosen);
