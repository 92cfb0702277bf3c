#include "balance.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "script.h"

#define RING_POINTS 160 /* virtual nodes per unit of weight */

struct ring_point {
    uint32_t hash;
    uint16_t server;
};

/* What every built-in policy asks of a candidate: not yet tried for this
 * request and not taken out by passive health. */
static inline bool usable(const struct balance_req *r, int i)
{
    return !(r->tried && r->tried[i]) && upstream_server_up(&r->u->servers[i], r->now);
}

/* Smooth weighted round robin (as nginx does): every pick adds each weight
 * to its server's current value, takes the largest and subtracts the total
 * from it, so weights 3:1 come out a a b a rather than a a a b. */
static int choose_round_robin(const struct balance_req *r, struct server **s)
{
    struct upstream *u = r->u;
    struct server *best = NULL;
    int total = 0;
    for (int i = 0; i < u->nservers; i++) {
        if (!usable(r, i)) continue;
        struct server *c = &u->servers[i];
        c->current += c->weight;
        total += c->weight;
        if (!best || c->current > best->current) best = c;
    }
    if (best) best->current -= total;
    *s = best;
    return 0;
}

/* In flight per unit of weight, compared without division. Ties go round
 * robin, so an idle upstream is still spread across its servers. */
static int choose_least_conn(const struct balance_req *r, struct server **s)
{
    struct upstream *u = r->u;
    struct server *best = NULL;
    int start = (int)(u->rand_state++ % (uint64_t)u->nservers);
    for (int k = 0; k < u->nservers; k++) {
        int i = (start + k) % u->nservers;
        if (!usable(r, i)) continue;
        struct server *c = &u->servers[i];
        if (!best || (int64_t)c->active * best->weight < (int64_t)best->active * c->weight) best = c;
    }
    *s = best;
    return 0;
}

static uint64_t next_rand(struct upstream *u)
{
    /* xorshift64*: good enough to spread load, cheap, per upstream. */
    uint64_t x = u->rand_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    u->rand_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static struct server *weighted_random(const struct balance_req *r)
{
    struct upstream *u = r->u;
    int total = 0;
    for (int i = 0; i < u->nservers; i++)
        if (usable(r, i)) total += u->servers[i].weight;
    if (total == 0) return NULL;
    int x = (int)(next_rand(u) % (uint64_t)total);
    for (int i = 0; i < u->nservers; i++) {
        if (!usable(r, i)) continue;
        if (x < u->servers[i].weight) return &u->servers[i];
        x -= u->servers[i].weight;
    }
    return NULL;
}

/* Power of two choices ("random" in the script): two weighted random
 * picks, keep the less loaded. */
static int choose_p2c(const struct balance_req *r, struct server **s)
{
    struct server *a = weighted_random(r);
    struct server *b = weighted_random(r);
    if (!a || !b)
        *s = a ? a : b;
    else
        *s = (int64_t)b->active * a->weight < (int64_t)a->active * b->weight ? b : a;
    return 0;
}

/* Consistent hashing: the first ring point at or after the key's hash whose
 * server is usable. Adding one of n servers moves about 1/n of the keys. */
static struct server *ring_find(const struct balance_req *r, uint32_t key)
{
    struct upstream *u = r->u;
    if (u->nring == 0) return NULL;
    int lo = 0, hi = u->nring;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (u->ring[mid].hash < key) lo = mid + 1;
        else hi = mid;
    }
    for (int k = 0; k < u->nring; k++) {
        int i = u->ring[(lo + k) % u->nring].server;
        if (usable(r, i)) return &u->servers[i];
    }
    return NULL;
}

struct server *balance_hash_find(struct upstream *u, uint32_t key, const bool *tried, uint64_t now)
{
    const struct balance_req r = {.u = u, .tried = tried, .now = now};
    return ring_find(&r, key);
}

/* The key is the script's hash_key(req), hashed. */
static int choose_hash(const struct balance_req *r, struct server **s)
{
    uint32_t key = 0;
    if (r->sr && script_hash_key(r->sr, r->u, &key)) return -1;
    *s = ring_find(r, key);
    return 0;
}

static int cmp_point(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int hash_init(struct upstream *u)
{
    int n = 0;
    for (int i = 0; i < u->nservers; i++) n += RING_POINTS * u->servers[i].weight;
    u->ring = calloc((size_t)n, sizeof(*u->ring));
    if (!u->ring) return -ENOMEM;
    for (int i = 0; i < u->nservers; i++) {
        /* Points come from the server's address, not its position, so the
         * ring of the others stays the same when one is added or removed. */
        for (int k = 0; k < RING_POINTS * u->servers[i].weight; k++) {
            char label[96];
            int len = snprintf(label, sizeof(label), "%s#%d", u->servers[i].name, k);
            u->ring[u->nring].hash = upstream_hash(label, (size_t)len);
            u->ring[u->nring].server = (uint16_t)i;
            u->nring++;
        }
    }
    qsort(u->ring, (size_t)u->nring, sizeof(*u->ring), cmp_point);
    return 0;
}

static void hash_destroy(struct upstream *u)
{
    free(u->ring);
    u->ring = NULL;
    u->nring = 0;
}

/* The script's balance(req, servers). It sees every server with its
 * up and tried flags and may choose any; a tried one counts as none. */
static int choose_lua(const struct balance_req *r, struct server **s)
{
    return r->sr ? script_balance(r->sr, r->u, r->tried, s) : 0;
}

static const struct balancer policies[] = {
    [BALANCE_ROUND_ROBIN] = {.name = "round_robin", .choose = choose_round_robin},
    [BALANCE_LEAST_CONN] = {.name = "least_conn", .choose = choose_least_conn},
    [BALANCE_RANDOM] = {.name = "random", .choose = choose_p2c},
    [BALANCE_HASH] = {.name = "hash", .choose = choose_hash, .init = hash_init, .destroy = hash_destroy},
    [BALANCE_LUA] = {.name = "lua", .choose = choose_lua},
};

const struct balancer *balance_policy(enum balance b)
{
    return &policies[b];
}

int balance_choose(struct script_req *sr, struct upstream *u, const bool *tried, uint64_t now,
                   struct server **s)
{
    const struct balance_req r = {.u = u, .tried = tried, .now = now, .sr = sr};
    *s = NULL;
    return u->policy->choose(&r, s);
}
