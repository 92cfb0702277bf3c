#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define RING_POINTS 160 /* virtual nodes per unit of weight */

uint32_t upstream_hash(const char *s, size_t n)
{
    /* FNV-1a, then a murmur3 finalizer so that near-identical keys ("k1",
     * "k2") spread over the whole ring. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

bool upstream_server_up(const struct server *s, uint64_t now)
{
    return s->down_until == 0 || s->down_until <= now;
}

static bool usable(const struct server *s, const bool *tried, uint64_t now)
{
    return !(tried && tried[s - s->up->servers]) && upstream_server_up(s, now);
}

/* Smooth weighted round robin (as nginx does): every pick adds each weight
 * to its server's current value, takes the largest and subtracts the total
 * from it, so weights 3:1 come out a a b a rather than a a a b. */
static struct server *pick_round_robin(struct upstream *u, uint32_t key, const bool *tried, uint64_t now)
{
    struct server *best = NULL;
    int total = 0;
    for (int i = 0; i < u->nservers; i++) {
        struct server *s = &u->servers[i];
        if (!usable(s, tried, now)) continue;
        s->current += s->weight;
        total += s->weight;
        if (!best || s->current > best->current) best = s;
    }
    if (best) best->current -= total;
    return best;
}

/* In flight per unit of weight, compared without division. Ties go round
 * robin, so an idle upstream is still spread across its servers. */
static struct server *pick_least_conn(struct upstream *u, uint32_t key, const bool *tried, uint64_t now)
{
    struct server *best = NULL;
    int start = (int)(u->rand_state++ % (uint64_t)u->nservers);
    for (int k = 0; k < u->nservers; k++) {
        struct server *s = &u->servers[(start + k) % u->nservers];
        if (!usable(s, tried, now)) continue;
        if (!best || (int64_t)s->active * best->weight < (int64_t)best->active * s->weight) best = s;
    }
    return best;
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

static struct server *weighted_random(struct upstream *u, const bool *tried, uint64_t now)
{
    int total = 0;
    for (int i = 0; i < u->nservers; i++)
        if (usable(&u->servers[i], tried, now)) total += u->servers[i].weight;
    if (total == 0) return NULL;
    int r = (int)(next_rand(u) % (uint64_t)total);
    for (int i = 0; i < u->nservers; i++) {
        struct server *s = &u->servers[i];
        if (!usable(s, tried, now)) continue;
        if (r < s->weight) return s;
        r -= s->weight;
    }
    return NULL;
}

/* Power of two choices: two weighted random picks, keep the less loaded. */
static struct server *pick_random(struct upstream *u, uint32_t key, const bool *tried, uint64_t now)
{
    struct server *a = weighted_random(u, tried, now);
    struct server *b = weighted_random(u, tried, now);
    if (!a || !b) return a ? a : b;
    return (int64_t)b->active * a->weight < (int64_t)a->active * b->weight ? b : a;
}

/* Consistent hashing: the first ring point at or after the key's hash whose
 * server is usable. Adding one of n servers moves about 1/n of the keys. */
static struct server *pick_hash(struct upstream *u, uint32_t key, const bool *tried, uint64_t now)
{
    if (u->nring == 0) return NULL;
    int lo = 0, hi = u->nring;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (u->ring[mid].hash < key) lo = mid + 1;
        else hi = mid;
    }
    for (int k = 0; k < u->nring; k++) {
        struct server *s = &u->servers[u->ring[(lo + k) % u->nring].server];
        if (usable(s, tried, now)) return s;
    }
    return NULL;
}

static const struct balancer balancers[] = {
    [BALANCE_ROUND_ROBIN] = {"round_robin", pick_round_robin},
    [BALANCE_LEAST_CONN] = {"least_conn", pick_least_conn},
    [BALANCE_RANDOM] = {"random", pick_random},
    [BALANCE_HASH] = {"hash", pick_hash},
    [BALANCE_LUA] = {"lua", NULL},
};

const char *upstream_balance_name(enum balance b)
{
    return balancers[b].name;
}

struct upstream *upstream_new(const char *name, enum balance b)
{
    struct upstream *u = calloc(1, sizeof(*u));
    if (!u) return NULL;
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->balance = b;
    u->policy = &balancers[b];
    u->keepalive = 32;
    u->keepalive_timeout_ms = 60000;
    u->connect_timeout_ms = 1000;
    u->read_timeout_ms = 30000;
    u->send_timeout_ms = 30000;
    u->retries = 1;
    u->max_fails = 3;
    u->fail_timeout_ms = 10000;
    u->rand_state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)u;
    u->script_ref = -1;
    return u;
}

int upstream_add_server(struct upstream *u, const char *addr, int weight)
{
    struct listen_addr la;
    if (weight < 1 || config_parse_addr(addr, &la)) return -EINVAL;
    struct server *s = realloc(u->servers, (size_t)(u->nservers + 1) * sizeof(*s));
    if (!s) return -ENOMEM;
    u->servers = s;
    s = &u->servers[u->nservers++];
    memset(s, 0, sizeof(*s));
    snprintf(s->name, sizeof(s->name), "%s", addr);
    s->addr = la.ss;
    s->addrlen = la.len;
    s->weight = weight;
    pool_init(&s->pool);
    return 0;
}

static int cmp_point(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

int upstream_finish(struct upstream *u)
{
    /* The servers array no longer moves: give each its back pointer. */
    for (int i = 0; i < u->nservers; i++) {
        u->servers[i].up = u;
        pool_attach(&u->servers[i].pool, &u->servers[i]);
    }
    if (u->balance != BALANCE_HASH) return 0;
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

void upstream_free(struct upstream *u)
{
    if (!u) return;
    for (int i = 0; i < u->nservers; i++) pool_close_all(&u->servers[i].pool);
    free(u->servers);
    free(u->ring);
    free(u);
}

static struct server *find_successor(const struct server *s, struct upstream *new_list)
{
    for (struct upstream *n = new_list; n; n = n->next) {
        if (strcmp(n->name, s->up->name)) continue;
        for (int i = 0; i < n->nservers; i++) {
            struct server *t = &n->servers[i];
            if (t->addrlen == s->addrlen && !memcmp(&t->addr, &s->addr, s->addrlen)) return t;
        }
        return NULL;
    }
    return NULL;
}

void upstream_handover(struct upstream *old_list, struct upstream *new_list, bool carry_health)
{
    for (struct upstream *u = old_list; u; u = u->next) {
        u->retired = true;
        for (int i = 0; i < u->nservers; i++) {
            struct server *s = &u->servers[i];
            s->successor = find_successor(s, new_list);
            if (s->successor && carry_health) {
                s->successor->fails = s->fails;
                s->successor->fail_since = s->fail_since;
                s->successor->down_until = s->down_until;
            }
            pool_move(&s->pool, s->successor);
        }
    }
}

struct server *upstream_pick(struct upstream *u, uint32_t key, const bool *tried, uint64_t now)
{
    return u->policy->pick ? u->policy->pick(u, key, tried, now) : NULL;
}

void upstream_fail(struct server *s, uint64_t now)
{
    struct upstream *u = s->up;
    if (u->max_fails <= 0) return;
    if (s->fails == 0 || now - s->fail_since > u->fail_timeout_ms) {
        s->fails = 0;
        s->fail_since = now;
    }
    if (++s->fails >= u->max_fails) {
        s->down_until = now + u->fail_timeout_ms;
        s->fails = 0;
    }
}

void upstream_ok(struct server *s)
{
    s->fails = 0;
    s->down_until = 0;
}
