/* upstreams: proxy.upstream(), the upstream objects it makes, and the
 * script's balancing hooks (balance, hash_key) of those upstreams. */
#pragma once
#include <lua.h>
#include <stdbool.h>
#include <stdint.h>

#include "lstate.h"
#include "upstream.h"

struct upstream;
struct server;

/* The registry name of the upstream objects' metatable. */
#define UPSTREAMS_MT "luaproxy.upstream"

/* Adds proxy.upstream to the proxy module and the upstream metatable. */
void upstreams_open(lua_State *L);
/* The upstream's hash_key(req), hashed, in *key (nil gives a key that
 * spreads such requests). -1: the hook failed, raised an error or
 * returned something else than a string, a number or nil (logged): the
 * request gets 500, as for any hook. A "hash" upstream's hash_key. */
int upstreams_hash_key(struct script_req *r, struct upstream *u, uint32_t *key);
/* The policy of an upstream whose balance is a function: balance(req,
 * servers) chooses a server of the list, an index of it, or nil (a 503);
 * anything else, or a failure, is -1 (logged; a 500). */
extern const struct balancer upstreams_lua_policy;
