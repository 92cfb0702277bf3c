#include "shm.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define SHM_MAX_DICTS 64
#define SHM_MIN_CLASS 6  /* smallest block: 64 bytes */
#define SHM_MAX_CLASS 40 /* largest block: 1 TiB, more than any region */

/* A free block. Every allocation is a power-of-two block whose first byte
 * says its class; a used block is an entry or a bucket array. */
struct block {
    uint8_t cls;
    struct block *next_free;
};

struct entry {
    uint8_t cls;         /* first, as in struct block */
    uint8_t type;        /* enum shm_type */
    uint32_t hash;
    uint32_t klen;
    uint32_t vlen;       /* string bytes after the key */
    uint64_t expires_ms; /* 0 = never */
    double num;          /* SHM_NUMBER; SHM_BOOLEAN as 0/1 */
    struct entry *next;  /* bucket chain */
    char data[];         /* key, then string value */
};

struct bucket_array {
    uint8_t cls; /* first, as in struct block */
    struct entry *slot[];
};

struct shm_dict {
    struct shm *shm;
    char name[64];
    struct bucket_array *buckets; /* NULL: slot unused */
    uint32_t nbuckets;
    uint32_t count; /* entries, expired ones included until swept */
    struct bucket_array *growing; /* the new array while a grow moves entries */
};

struct shm {
    pthread_mutex_t lock;
    size_t size;
    char *bump, *end; /* never-used memory */
    size_t free_bytes;
    struct block *free_list[SHM_MAX_CLASS + 1];
    struct shm_dict dicts[SHM_MAX_DICTS];
};

uint64_t shm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int shm_mutex_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    /* A worker killed inside a critical section must not wedge the others. */
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    int rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    return rc;
}

int shm_create(size_t size, struct shm **out)
{
    if (size < sizeof(struct shm) + 4096) size = sizeof(struct shm) + 4096;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -errno;
    struct shm *shm = p;
    memset(shm, 0, sizeof(*shm));

    int rc = shm_mutex_init(&shm->lock);
    if (rc) {
        munmap(p, size);
        return -rc;
    }
    shm->size = size;
    uintptr_t start = ((uintptr_t)(shm + 1) + 63) & ~(uintptr_t)63;
    shm->bump = (char *)start;
    shm->end = (char *)p + size;
    shm->free_bytes = (size_t)(shm->end - shm->bump);
    for (int i = 0; i < SHM_MAX_DICTS; i++) shm->dicts[i].shm = shm;
    *out = shm;
    return 0;
}

void shm_destroy(struct shm *shm)
{
    if (shm) munmap(shm, shm->size);
}

static void finish_grow(struct shm_dict *d);

static void lock(struct shm *shm)
{
    if (pthread_mutex_lock(&shm->lock) == EOWNERDEAD) {
        /* The owner died inside a critical section. Every write sequence
         * below links new data only after it is complete, so the worst left
         * behind is an unreachable block; a grow cut short is finished. */
        for (int i = 0; i < SHM_MAX_DICTS; i++)
            if (shm->dicts[i].growing) finish_grow(&shm->dicts[i]);
        pthread_mutex_consistent(&shm->lock);
    }
}

static void unlock(struct shm *shm)
{
    pthread_mutex_unlock(&shm->lock);
}

static int class_for(size_t n)
{
    int c = SHM_MIN_CLASS;
    while (c <= SHM_MAX_CLASS && ((size_t)1 << c) < n) c++;
    return c;
}

/* Own free list, then the never-used tail, then a larger free block split
 * in halves (halves go to the free lists; they are never merged back). */
static void *block_alloc(struct shm *shm, size_t n)
{
    int c = class_for(n);
    if (c > SHM_MAX_CLASS) return NULL;
    size_t bsize = (size_t)1 << c;
    struct block *b = shm->free_list[c];
    if (b) {
        shm->free_list[c] = b->next_free;
    } else if ((size_t)(shm->end - shm->bump) >= bsize) {
        b = (struct block *)shm->bump;
        shm->bump += bsize;
    } else {
        int big = c + 1;
        while (big <= SHM_MAX_CLASS && !shm->free_list[big]) big++;
        if (big > SHM_MAX_CLASS) return NULL;
        b = shm->free_list[big];
        shm->free_list[big] = b->next_free;
        while (big > c) { /* keep the low half, free the high half */
            big--;
            struct block *half = (struct block *)((char *)b + ((size_t)1 << big));
            half->cls = (uint8_t)big;
            half->next_free = shm->free_list[big];
            shm->free_list[big] = half;
        }
    }
    b->cls = (uint8_t)c;
    shm->free_bytes -= bsize;
    return b;
}

static void block_free(struct shm *shm, void *p)
{
    struct block *b = p;
    b->next_free = shm->free_list[b->cls];
    shm->free_list[b->cls] = b;
    shm->free_bytes += (size_t)1 << b->cls;
}

static uint32_t hash_key(const char *k, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)k[i]) * 16777619u;
    return h;
}

static bool expired(const struct entry *e, uint64_t now)
{
    return e->expires_ms && e->expires_ms <= now;
}

static struct bucket_array *buckets_new(struct shm *shm, uint32_t n)
{
    struct bucket_array *b = block_alloc(shm, sizeof(*b) + n * sizeof(struct entry *));
    if (b) memset(b->slot, 0, n * sizeof(struct entry *));
    return b;
}

struct shm_dict *shm_dict(struct shm *shm, const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof(shm->dicts[0].name)) return NULL;
    struct shm_dict *found = NULL;
    lock(shm);
    for (int i = 0; i < SHM_MAX_DICTS && !found; i++) {
        struct shm_dict *d = &shm->dicts[i];
        if (d->buckets && !strcmp(d->name, name)) found = d;
    }
    for (int i = 0; i < SHM_MAX_DICTS && !found; i++) {
        struct shm_dict *d = &shm->dicts[i];
        if (d->buckets) continue;
        struct bucket_array *b = buckets_new(shm, 64);
        if (!b) break;
        memcpy(d->name, name, len + 1);
        d->nbuckets = 64;
        d->count = 0;
        d->buckets = b; /* last: the slot is live from here on */
        found = d;
    }
    unlock(shm);
    return found;
}

/* Finds key; removes it on the way if it expired. pprev gets the link that
 * points at the result (for unlinking). */
static struct entry *lookup(struct shm_dict *d, const char *key, size_t klen, uint32_t h,
                            uint64_t now, struct entry ***pprev)
{
    struct entry **link = &d->buckets->slot[h & (d->nbuckets - 1)];
    for (struct entry *e = *link; e; link = &e->next, e = e->next) {
        if (e->hash != h || e->klen != klen || memcmp(e->data, key, klen)) continue;
        if (expired(e, now)) {
            *link = e->next;
            d->count--;
            block_free(d->shm, e);
            return NULL;
        }
        if (pprev) *pprev = link;
        return e;
    }
    return NULL;
}

static void sweep_expired(struct shm *shm, uint64_t now)
{
    for (int i = 0; i < SHM_MAX_DICTS; i++) {
        struct shm_dict *d = &shm->dicts[i];
        if (!d->buckets) continue;
        for (uint32_t b = 0; b < d->nbuckets; b++) {
            struct entry **link = &d->buckets->slot[b];
            while (*link) {
                struct entry *e = *link;
                if (expired(e, now)) {
                    *link = e->next;
                    d->count--;
                    block_free(shm, e);
                } else {
                    link = &e->next;
                }
            }
        }
    }
}

/* Moves every entry still in the old array to d->growing, then switches.
 * Each step unlinks an entry from its old chain before linking it into the
 * new one, so both chains stay well formed at every instant: a worker killed
 * here leaves at most that one entry unreachable, and the next locker calls
 * this again to finish the move. */
static void finish_grow(struct shm_dict *d)
{
    struct bucket_array *nb = d->growing;
    uint32_t n = d->nbuckets * 2;
    for (uint32_t i = 0; i < d->nbuckets; i++) {
        struct entry *e;
        while ((e = d->buckets->slot[i])) {
            d->buckets->slot[i] = e->next;
            e->next = nb->slot[e->hash & (n - 1)];
            nb->slot[e->hash & (n - 1)] = e;
        }
    }
    struct bucket_array *old = d->buckets;
    d->buckets = nb;
    d->nbuckets = n;
    d->growing = NULL;
    block_free(d->shm, old);
}

/* Doubles the bucket array when the load passes 1; failure is harmless
 * (chains just get longer). */
static void maybe_grow(struct shm_dict *d)
{
    if (d->count < d->nbuckets || d->nbuckets >= (1u << 30)) return;
    d->growing = buckets_new(d->shm, d->nbuckets * 2);
    if (d->growing) finish_grow(d);
}

static struct entry *entry_new(struct shm_dict *d, const char *key, size_t klen, uint32_t h,
                               const struct shm_value *v, uint64_t ttl_ms, uint64_t now)
{
    size_t vlen = v->type == SHM_STRING ? v->len : 0;
    if (klen > UINT32_MAX || vlen > UINT32_MAX) return NULL;
    size_t need = sizeof(struct entry) + klen + vlen;
    struct entry *e = block_alloc(d->shm, need);
    if (!e) {
        sweep_expired(d->shm, now);
        e = block_alloc(d->shm, need);
        if (!e) return NULL;
    }
    e->type = (uint8_t)v->type;
    e->hash = h;
    e->klen = (uint32_t)klen;
    e->vlen = (uint32_t)vlen;
    e->expires_ms = ttl_ms ? now + ttl_ms : 0;
    e->num = v->type == SHM_NUMBER ? v->num : v->type == SHM_BOOLEAN ? (double)v->boolean : 0;
    e->next = NULL;
    memcpy(e->data, key, klen);
    if (vlen) memcpy(e->data + klen, v->str, vlen);
    return e;
}

/* Inserts or replaces; the new entry is complete before it is linked. */
static int store(struct shm_dict *d, const char *key, size_t klen, const struct shm_value *v,
                 uint64_t ttl_ms, uint64_t now, bool only_new)
{
    uint32_t h = hash_key(key, klen);
    struct entry **link = NULL;
    struct entry *old = lookup(d, key, klen, h, now, &link);
    if (old && only_new) return -EEXIST;
    if (v->type == SHM_NIL) { /* set(k, nil) deletes */
        if (old) {
            *link = old->next;
            d->count--;
            block_free(d->shm, old);
        }
        return 0;
    }
    struct entry *e = entry_new(d, key, klen, h, v, ttl_ms, now);
    if (!e) return -ENOMEM;
    if (old) {
        /* entry_new may have swept expired entries out of this very chain,
         * freeing the one link pointed into: find old's link again. */
        lookup(d, key, klen, h, now, &link);
        e->next = old->next;
        *link = e;
        block_free(d->shm, old);
    } else {
        struct entry **head = &d->buckets->slot[h & (d->nbuckets - 1)];
        e->next = *head;
        *head = e;
        d->count++;
        maybe_grow(d);
    }
    return 0;
}

int shm_set(struct shm_dict *d, const char *key, size_t klen, const struct shm_value *v,
            uint64_t ttl_ms, uint64_t now_ms)
{
    lock(d->shm);
    int rc = store(d, key, klen, v, ttl_ms, now_ms, false);
    unlock(d->shm);
    return rc;
}

int shm_add(struct shm_dict *d, const char *key, size_t klen, const struct shm_value *v,
            uint64_t ttl_ms, uint64_t now_ms)
{
    lock(d->shm);
    int rc = store(d, key, klen, v, ttl_ms, now_ms, true);
    unlock(d->shm);
    return rc;
}

static int buf_reserve(struct shm_buf *buf, size_t n)
{
    if (buf->cap >= n) return 0;
    size_t cap = buf->cap ? buf->cap : 256;
    while (cap < n) cap *= 2;
    char *p = realloc(buf->data, cap);
    if (!p) return -ENOMEM;
    buf->data = p;
    buf->cap = cap;
    return 0;
}

int shm_get(struct shm_dict *d, const char *key, size_t klen, uint64_t now_ms,
            struct shm_value *out, struct shm_buf *buf)
{
    uint32_t h = hash_key(key, klen);
    int rc = 0;
    lock(d->shm);
    struct entry *e = lookup(d, key, klen, h, now_ms, NULL);
    if (!e) {
        rc = -ENOENT;
    } else {
        out->type = (enum shm_type)e->type;
        out->num = e->num;
        out->boolean = e->num != 0;
        out->len = e->vlen;
        out->str = NULL;
        if (e->type == SHM_STRING) {
            /* Growing the buffer under the lock is a plain realloc, not Lua. */
            rc = buf_reserve(buf, e->vlen + 1);
            if (!rc) {
                memcpy(buf->data, e->data + e->klen, e->vlen);
                buf->data[e->vlen] = '\0';
                out->str = buf->data;
            }
        }
    }
    unlock(d->shm);
    return rc;
}

int shm_incr(struct shm_dict *d, const char *key, size_t klen, double delta, bool has_init,
             double init, uint64_t ttl_ms, uint64_t now_ms, double *result)
{
    uint32_t h = hash_key(key, klen);
    int rc = 0;
    lock(d->shm);
    struct entry *e = lookup(d, key, klen, h, now_ms, NULL);
    if (e) {
        if (e->type != SHM_NUMBER) rc = -EINVAL;
        else *result = (e->num += delta);
    } else if (!has_init) {
        rc = -ENOENT;
    } else {
        struct shm_value v = {.type = SHM_NUMBER, .num = init + delta};
        rc = store(d, key, klen, &v, ttl_ms, now_ms, true);
        if (!rc) *result = v.num;
    }
    unlock(d->shm);
    return rc;
}

int shm_delete(struct shm_dict *d, const char *key, size_t klen, uint64_t now_ms)
{
    uint32_t h = hash_key(key, klen);
    int rc = -ENOENT;
    lock(d->shm);
    struct entry **link = NULL;
    struct entry *e = lookup(d, key, klen, h, now_ms, &link);
    if (e) {
        *link = e->next;
        d->count--;
        block_free(d->shm, e);
        rc = 0;
    }
    unlock(d->shm);
    return rc;
}

size_t shm_count(struct shm_dict *d, uint64_t now_ms)
{
    size_t n = 0;
    lock(d->shm);
    for (uint32_t b = 0; b < d->nbuckets; b++)
        for (struct entry *e = d->buckets->slot[b]; e; e = e->next)
            if (!expired(e, now_ms)) n++;
    unlock(d->shm);
    return n;
}

long shm_keys(struct shm_dict *d, size_t max, uint64_t now_ms, struct shm_buf *buf)
{
    long n = 0;
    size_t used = 0;
    lock(d->shm);
    for (uint32_t b = 0; b < d->nbuckets; b++) {
        for (struct entry *e = d->buckets->slot[b]; e; e = e->next) {
            if (expired(e, now_ms)) continue;
            if (max && (size_t)n >= max) goto done;
            if (buf_reserve(buf, used + 4 + e->klen)) {
                n = -ENOMEM;
                goto done;
            }
            uint32_t kl = e->klen;
            memcpy(buf->data + used, &kl, 4);
            memcpy(buf->data + used + 4, e->data, kl);
            used += 4 + kl;
            n++;
        }
    }
done:
    unlock(d->shm);
    return n;
}

size_t shm_free_bytes(struct shm *shm)
{
    lock(shm);
    size_t n = shm->free_bytes;
    unlock(shm);
    return n;
}
