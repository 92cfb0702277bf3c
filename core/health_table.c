#include "health_table.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "shm.h"

/* A slot nobody looked at for this long (and for 10 of its periods) keeps
 * no meaningful state: a server removed from the script and added again
 * much later starts afresh, and its slot may serve another server. */
#define HEALTH_STALE_MS 60000

struct health_table {
    pthread_mutex_t lock; /* robust: taken only to bind a server to a slot */
    size_t size;
    uint32_t nslots;
    struct health_slot slots[];
};

struct health_table *health_table;

int health_table_create(uint32_t nslots)
{
    size_t size = sizeof(struct health_table) + (size_t)nslots * sizeof(struct health_slot);
    /* Untouched pages cost nothing: a few servers use a few pages. */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -errno;
    struct health_table *t = p;
    int rc = shm_mutex_init(&t->lock);
    if (rc) {
        munmap(p, size);
        return -rc;
    }
    t->size = size;
    t->nslots = nslots;
    health_table = t;
    return 0;
}

void health_table_destroy(void)
{
    if (health_table) munmap(health_table, health_table->size);
    health_table = NULL;
}

static uint32_t key_hash(const char *upstream, const char *server, const void *addr, socklen_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a over the three parts, each ended by a 0 */
    for (const char *c = upstream;; c++) {
        h = (h ^ (uint8_t)*c) * 16777619u;
        if (!*c) break;
    }
    for (const char *c = server;; c++) {
        h = (h ^ (uint8_t)*c) * 16777619u;
        if (!*c) break;
    }
    for (socklen_t i = 0; i < len; i++) h = (h ^ ((const uint8_t *)addr)[i]) * 16777619u;
    return h;
}

static bool stale(const struct health_slot *s, uint64_t now)
{
    uint64_t age = (uint64_t)s->period_ms * 10;
    if (age < HEALTH_STALE_MS) age = HEALTH_STALE_MS;
    return now > s->touched + age;
}

static bool same_key(const struct health_slot *s, uint32_t h, const char *upstream, const char *server,
                     const void *addr, socklen_t len)
{
    return s->hash == h && s->addrlen == len && !memcmp(s->addr, addr, len) && !strcmp(s->upstream, upstream) &&
           !strcmp(s->server, server);
}

/* A fresh state for (a new key in) s. Its first probe comes within one
 * period, at a point its hash spreads, so that a thousand servers are not
 * all probed in the same millisecond. */
static void slot_reset(struct health_slot *s, uint64_t period_ms, uint64_t now)
{
    __atomic_store_n(&s->state, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->next_due, now + (period_ms ? s->hash % period_ms : 0), __ATOMIC_RELAXED);
    __atomic_store_n(&s->checks, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&s->prober, -1, __ATOMIC_RELAXED);
}

struct health_slot *health_table_bind(struct health_table *t, const char *upstream, const char *server,
                                      const struct sockaddr *addr, socklen_t addrlen, uint64_t period_ms,
                                      uint64_t now)
{
    if (!t || addrlen > sizeof(t->slots[0].addr)) return NULL;
    uint32_t h = key_hash(upstream, server, addr, addrlen);
    struct health_slot *found = NULL, *reuse = NULL;
    if (pthread_mutex_lock(&t->lock) == EOWNERDEAD) {
        /* A slot is keyed before it is marked used, so the dead binder left
         * at worst a slot that is not used yet: nothing to repair. */
        pthread_mutex_consistent(&t->lock);
    }
    /* Linear probing. A used slot never becomes unused again (a stale one
     * is given a new key in place), so a key's run of slots stays whole. */
    for (uint32_t i = 0; i < t->nslots; i++) {
        struct health_slot *s = &t->slots[(h + i) % t->nslots];
        if (!s->used) {
            if (!reuse) reuse = s;
            break;
        }
        if (same_key(s, h, upstream, server, addr, addrlen)) {
            found = s;
            if (stale(s, now)) slot_reset(s, period_ms, now);
            break;
        }
        if (!reuse && stale(s, now)) reuse = s;
    }
    if (!found && reuse) {
        found = reuse;
        found->hash = h;
        found->addrlen = addrlen;
        memcpy(found->addr, addr, addrlen);
        snprintf(found->upstream, sizeof(found->upstream), "%s", upstream);
        snprintf(found->server, sizeof(found->server), "%s", server);
        slot_reset(found, period_ms, now);
        __atomic_store_n(&found->used, 1, __ATOMIC_RELEASE);
    }
    if (found) {
        found->period_ms = (uint32_t)period_ms;
        __atomic_store_n(&found->touched, now, __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&t->lock);
    return found;
}

bool health_claim(struct health_slot *s, uint64_t now, bool preferred, uint64_t period_ms, uint64_t *wake)
{
    uint64_t lag = preferred ? 0 : period_ms / 2;
    __atomic_store_n(&s->touched, now, __ATOMIC_RELAXED);
    uint64_t due = __atomic_load_n(&s->next_due, __ATOMIC_ACQUIRE);
    if (now < due + lag) {
        *wake = due + lag;
        return false;
    }
    /* On the period's grid when on time, so that a taker's lag does not
     * add up round after round; from now when a round was missed. */
    uint64_t next = due + period_ms > now ? due + period_ms : now + period_ms;
    if (!__atomic_compare_exchange_n(&s->next_due, &due, next, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        *wake = due + lag; /* another worker claimed it: due is its next */
        return false;
    }
    *wake = next + lag;
    return true;
}

uint32_t health_next_state(uint32_t state, bool ok, int rise, int fall)
{
    uint32_t down = state & HEALTH_DOWN;
    uint32_t succ = state & HEALTH_RUN_MASK, fails = (state >> 15) & HEALTH_RUN_MASK;
    if (ok) {
        fails = 0;
        if (succ < HEALTH_RUN_MASK) succ++;
        if (down && succ >= (uint32_t)rise) down = 0;
    } else {
        succ = 0;
        if (fails < HEALTH_RUN_MASK) fails++;
        if (!down && fails >= (uint32_t)fall) down = HEALTH_DOWN;
    }
    return down | fails << 15 | succ;
}

int health_record(struct health_slot *s, bool ok, int rise, int fall, int worker)
{
    uint32_t old = __atomic_load_n(&s->state, __ATOMIC_RELAXED), next;
    do {
        next = health_next_state(old, ok, rise, fall);
    } while (!__atomic_compare_exchange_n(&s->state, &old, next, false, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED));
    __atomic_add_fetch(&s->checks, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->prober, worker, __ATOMIC_RELAXED);
    if ((old ^ next) & HEALTH_DOWN) return next & HEALTH_DOWN ? -1 : 1;
    return 0;
}
