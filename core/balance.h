/* balance: choosing the server for a request, the one step that live
 * traffic (forward) and the dry run (--try) share. Every policy (round
 * robin, least connections, p2c, consistent hash, the script's balance
 * function) is one struct balancer, a small table of functions; an
 * upstream holds a pointer to its own from upstream_new() on, so a request
 * costs one indirect call and no decision about which policy to run. The
 * policies sit above both the upstream table and the script, so that
 * neither has to know the other. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "upstream.h"

struct script_req;

/* What a policy is asked: one request's choice. */
struct balance_req {
    struct upstream *u;
    const bool *tried;     /* tried[i]: servers[i] already attempted; may be NULL */
    uint64_t now;          /* ms, against the servers' down_until */
    struct script_req *sr; /* the request's script side, for hash_key and balance; NULL
                            * (a unit test) gives hash key 0 and no choice from "lua" */
};

struct balancer {
    const char *name; /* as the script spells it: proxy.upstream{balance = name} */
    /* 0 with the server in *s (NULL: none is available), or -1 when the
     * script's hook failed (logged). Never a server that is tried. */
    int (*choose)(const struct balance_req *r, struct server **s);
    /* Optional: per-upstream state built once its servers are in (the hash
     * ring), 0 or -ENOMEM; and its release. */
    int (*init)(struct upstream *u);
    void (*destroy)(struct upstream *u);
};

/* The policy of an enum balance, picked once by upstream_new(). */
const struct balancer *balance_policy(enum balance b);

/* 0 with the server in *s (NULL: none is available, a 503), or -1 when the
 * script's hook failed (logged; a 500). tried (may be NULL) marks servers
 * already attempted. */
int balance_choose(struct script_req *sr, struct upstream *u, const bool *tried, uint64_t now,
                   struct server **s);

/* The consistent-hash policy's step once the key is known: the first
 * usable server at or after key on the ring of a "hash" upstream. */
struct server *balance_hash_find(struct upstream *u, uint32_t key, const bool *tried, uint64_t now);
