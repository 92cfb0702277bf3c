/* balance: choosing the server for a request, the one step that live
 * traffic (forward) and the dry run (--try) share. Every policy (round
 * robin, least connections, p2c, consistent hash, the script's balance
 * function) is one struct balancer (upstream.h), a small table of
 * functions; an upstream holds a pointer to its own from upstream_new() on,
 * so a request costs one indirect call and no decision about which policy
 * to run. The built-in ones are here; the script's balance function is a
 * policy of the script's side (lua/upstreams.c), and the hash policy asks
 * the upstream's hash_key hook, which the script's side sets: so nothing
 * here calls into the script. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "upstream.h"

struct script_req;
/* The built-in policy of an enum balance (NULL for BALANCE_LUA, which the
 * script's side provides: lua/upstreams.c), given to upstream_new(). */
const struct balancer *balance_policy(enum balance b);

/* 0 with the server in *s (NULL: none is available, a 503), or -1 when the
 * script's hook failed (logged; a 500). tried (may be NULL) marks servers
 * already attempted. */
int balance_choose(struct script_req *sr, struct upstream *u, const bool *tried, uint64_t now,
                   struct server **s);

/* The consistent-hash policy's step once the key is known: the first
 * usable server at or after key on the ring of a "hash" upstream. */
struct server *balance_hash_find(struct upstream *u, uint32_t key, const bool *tried, uint64_t now);
