#include "balance.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define RING_POINTS 160 /* virtual nodes per unit of weight */

struct ring_point {
    uint32_t hash;
    uint16_t server;
};

/* The hash policy's state (upstream.policy_state). */
struct ring {
    int n;
    struct ring_point points[];
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
    const struct ring *ring = u->policy_state;
    if (!ring || ring->n == 0) return NULL;
    int lo = 0, hi = ring->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (ring->points[mid].hash < key) lo = mid + 1;
        else hi = mid;
    }
    for (int k = 0; k < ring->n; k++) {
        int i = ring->points[(lo + k) % ring->n].server;
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
    if (r->sr && r->u->hash_key && r->u->hash_key(r->sr, r->u, &key)) return -1;
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
    struct ring *ring = calloc(1, sizeof(*ring) + (size_t)n * sizeof(ring->points[0]));
    if (!ring) return -ENOMEM;
    for (int i = 0; i < u->nservers; i++) {
        /* Points come from the server's address, not its position, so the
         * ring of the others stays the same when one is added or removed. */
        for (int k = 0; k < RING_POINTS * u->servers[i].weight; k++) {
            char label[96];
            int len = snprintf(label, sizeof(label), "%s#%d", u->servers[i].name, k);
            ring->points[ring->n].hash = upstream_hash(label, (size_t)len);
            ring->points[ring->n].server = (uint16_t)i;
            ring->n++;
        }
    }
    qsort(ring->points, (size_t)ring->n, sizeof(ring->points[0]), cmp_point);
    u->policy_state = ring;
    return 0;
}

static void hash_destroy(struct upstream *u)
{
    free(u->policy_state);
    u->policy_state = NULL;
}

static const struct balancer policies[] = {
    [BALANCE_ROUND_ROBIN] = {.name = "round_robin", .choose = choose_round_robin},
    [BALANCE_LEAST_CONN] = {.name = "least_conn", .choose = choose_least_conn},
    [BALANCE_RANDOM] = {.name = "random", .choose = choose_p2c},
    [BALANCE_HASH] = {.name = "hash", .choose = choose_hash, .init = hash_init, .destroy = hash_destroy},
};

const struct balancer *balance_policy(enum balance b)
{
    return b < BALANCE_LUA ? &policies[b] : NULL;
}

int balance_choose(struct script_req *sr, struct upstream *u, const bool *tried, uint64_t now,
                   struct server **s)
{
    const struct balance_req r = {.u = u, .tried = tried, .now = now, .sr = sr};
    *s = NULL;
    if (u->nservers == 0) return 0; /* a name not resolved yet, all of them gone */
    return u->policy->choose(&r, s);
}
