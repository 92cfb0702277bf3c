#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "tls.h"
#include "health.h"

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

struct upstream *upstream_new(const char *name, enum balance b, const struct balancer *policy)
{
    struct upstream *u = calloc(1, sizeof(*u));
    if (!u) return NULL;
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->balance = b;
    u->policy = policy;
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
    u->tls_verify = true;
    return u;
}

int upstream_finish(struct upstream *u)
{
    /* The servers array no longer moves: give each its back pointer. */
    for (int i = 0; i < u->nservers; i++) {
        u->servers[i].up = u;
        pool_attach(&u->servers[i].pool, &u->servers[i]);
    }
    return u->policy->init ? u->policy->init(u) : 0;
}

void upstream_free(struct upstream *u)
{
    if (!u) return;
    for (int i = 0; i < u->nservers; i++) pool_close_all(&u->servers[i].pool);
    if (u->holds) { /* mirror copies in flight: the last one's release frees it */
        u->orphaned = true;
        return;
    }
    for (int i = 0; i < u->nservers; i++) tls_session_free(u->servers[i].tls_session);
    while (u->husks) { /* old server arrays (upstream_set.c): no request is left on them */
        struct upstream *h = u->husks;
        u->husks = h->next;
        upstream_free(h);
    }
    tls_client_free(u->tls_ctx);
    free(u->tls_ca);
    if (u->policy->destroy) u->policy->destroy(u);
    health_check_free(u->check);
    free(u->servers);
    free(u);
}

void upstream_hold(struct upstream *u)
{
    u->holds++;
}

void upstream_release(struct upstream *u)
{
    if (--u->holds == 0 && u->orphaned) upstream_free(u);
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
