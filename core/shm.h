/* shm: proxy.shared dicts in one MAP_SHARED region created by the master
 * before it forks, so every worker (and every restarted worker) sees the same
 * memory at the same address.
 *
 * One robust process-shared mutex guards the region. Critical sections are a
 * hash lookup and a memcpy; nothing inside them calls Lua or can fail half
 * way, so a worker killed while holding the lock leaves consistent data and
 * the next locker only has to mark the mutex consistent again. */
#pragma once
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum shm_type { SHM_NIL, SHM_STRING, SHM_NUMBER, SHM_BOOLEAN };

struct shm_value {
    enum shm_type type;
    double num;      /* SHM_NUMBER */
    bool boolean;    /* SHM_BOOLEAN */
    const char *str; /* SHM_STRING: for set/add input; for get, points into *buf */
    size_t len;
};

/* A growable buffer that get/keys copy into, so no caller ever reads shared
 * memory without the lock. */
struct shm_buf {
    char *data;
    size_t cap;
};

struct shm;
struct shm_dict;

/* A process-shared, robust mutex in shared memory (a locker that gets
 * EOWNERDEAD repairs what it guards and calls pthread_mutex_consistent).
 * 0 or an errno value. */
int shm_mutex_init(pthread_mutex_t *m);
/* Maps size bytes shared with future children. Returns 0 or -errno. */
int shm_create(size_t size, struct shm **out);
void shm_destroy(struct shm *shm);
/* The dict with that name, created on first use (up to 64 dicts, names up to
 * 63 bytes). NULL when there is no room or no memory. */
struct shm_dict *shm_dict(struct shm *shm, const char *name);

/* now_ms and ttl_ms are on CLOCK_MONOTONIC, shared by all processes of the
 * machine. ttl_ms 0 = never expires. */
int shm_get(struct shm_dict *d, const char *key, size_t klen, uint64_t now_ms,
            struct shm_value *out, struct shm_buf *buf);                 /* 0 / -ENOENT */
int shm_set(struct shm_dict *d, const char *key, size_t klen, const struct shm_value *v,
            uint64_t ttl_ms, uint64_t now_ms);                           /* 0 / -ENOMEM */
int shm_add(struct shm_dict *d, const char *key, size_t klen, const struct shm_value *v,
            uint64_t ttl_ms, uint64_t now_ms);                           /* 0 / -EEXIST / -ENOMEM */
/* Atomic add. A missing key without init: -ENOENT; not a number: -EINVAL. */
int shm_incr(struct shm_dict *d, const char *key, size_t klen, double delta, bool has_init,
             double init, uint64_t ttl_ms, uint64_t now_ms, double *result);
/* An expired key counts as absent. */
int shm_delete(struct shm_dict *d, const char *key, size_t klen, uint64_t now_ms); /* 0 / -ENOENT */
/* Live entries. */
size_t shm_count(struct shm_dict *d, uint64_t now_ms);
/* Copies up to max keys (0 = all) into buf as (uint32 length, bytes) records.
 * Returns the number of keys, or -ENOMEM if buf could not grow. */
long shm_keys(struct shm_dict *d, size_t max, uint64_t now_ms, struct shm_buf *buf);

/* Bytes of the region still free for entries (for tests and /status). */
size_t shm_free_bytes(struct shm *shm);
uint64_t shm_now_ms(void);
