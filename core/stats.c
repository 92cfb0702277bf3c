#include "stats.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* 1 ms .. 10 s, roughly Prometheus' defaults with finer low buckets: a
 * proxy's requests take microseconds to milliseconds. */
const uint64_t stats_bucket_us[STATS_BUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 10000000,
};

static struct wstats dummy; /* counts of a process that is not a worker */
struct stats *ST;
struct wstats *WS = &dummy;
static size_t region_size;

int stats_create(int nworkers)
{
    size_t slots = sizeof(struct stats) + (size_t)nworkers * sizeof(struct wstats);
    slots = (slots + 4095) & ~(size_t)4095;
    region_size = slots;
    /* Pages nobody touches cost nothing: most of the upstream tables stay
     * unbacked. */
    void *p = mmap(NULL, region_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -errno;
    ST = p;
    ST->nworkers = (uint32_t)nworkers;
    ST->started_unix = (uint64_t)time(NULL);
    ST->master_pid = (int32_t)getpid();
    return 0;
}

void stats_destroy(void)
{
    if (ST) munmap(ST, region_size);
    ST = NULL;
    WS = &dummy;
}

void stats_attach(int worker_id)
{
    if (!ST || worker_id < 0 || (uint32_t)worker_id >= ST->nworkers) return;
    WS = &ST->w[worker_id];
    STAT_SET(WS->pid, (int32_t)getpid());
    STAT_SET(WS->started_unix, (uint64_t)time(NULL));
    /* A predecessor killed mid-publish left the seqlock odd. */
    if (WS->status_seq & 1) STAT_ADD(WS->status_seq, 1);
    /* A gauge starts again from nothing; counters carry on. */
    STAT_SET(WS->connections_active, 0);
    STAT_SET(WS->lua.active, 0);
}

void stats_request(int status, uint64_t us)
{
    if (status < 0 || status >= STATS_CODES) status = 0;
    STAT_ADD(WS->requests[status], 1);
    int b = 0;
    while (b < STATS_BUCKETS - 1 && us > stats_bucket_us[b]) b++;
    STAT_ADD(WS->hist[b], 1);
    STAT_ADD(WS->hist_sum_us, us);
}

static uint32_t series_hash(const char *u, const char *s, int code)
{
    uint32_t h = 2166136261u ^ (uint32_t)code;
    for (; *u; u++) h = (h ^ (uint8_t)*u) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

struct ustat *stats_upstream(const char *upstream, const char *server, int status)
{
    uint32_t h = series_hash(upstream, server, status);
    for (uint32_t i = 0; i < STATS_UPSTREAM_SLOTS; i++) {
        struct ustat *e = &WS->up[(h + i) % STATS_UPSTREAM_SLOTS];
        if (e->used) {
            if (e->code == status && !strcmp(e->upstream, upstream) && !strcmp(e->server, server)) {
                STAT_ADD(e->count, 1);
                return e;
            }
            continue;
        }
        /* Only this worker writes its slot: fill, then publish. */
        e->code = (uint16_t)status;
        strncpy(e->upstream, upstream, sizeof(e->upstream) - 1);
        strncpy(e->server, server, sizeof(e->server) - 1);
        STAT_SET(e->count, 1);
        __atomic_store_n(&e->used, 1, __ATOMIC_RELEASE);
        return e;
    }
    /* Full: a script with hundreds of servers; those series go uncounted. */
    return NULL;
}

void stats_mirror_dropped(const char *upstream)
{
    /* A few mirror upstreams at most: a scan beats hashing. */
    for (int i = 0; i < STATS_MIRROR_SLOTS; i++) {
        struct mstat *e = &WS->mirror[i];
        if (e->used) {
            if (!strcmp(e->upstream, upstream)) return STAT_ADD(e->dropped, 1);
            continue;
        }
        strncpy(e->upstream, upstream, sizeof(e->upstream) - 1);
        STAT_SET(e->dropped, 1);
        __atomic_store_n(&e->used, 1, __ATOMIC_RELEASE);
        return;
    }
}

void stats_status_publish(const char *json, size_t len)
{
    if (len > STATS_STATUS_MAX) len = 0;
    __atomic_add_fetch(&WS->status_seq, 1, __ATOMIC_ACQ_REL);
    memcpy(WS->status, json, len);
    STAT_SET(WS->status_len, (uint32_t)len);
    __atomic_add_fetch(&WS->status_seq, 1, __ATOMIC_ACQ_REL);
}

size_t stats_status_read(int worker, char *out, size_t cap)
{
    struct wstats *w = &ST->w[worker];
    for (int tries = 0; tries < 1000; tries++) {
        uint32_t seq = __atomic_load_n(&w->status_seq, __ATOMIC_ACQUIRE);
        if (seq & 1) continue;
        size_t n = STAT_GET(w->status_len);
        if (n > cap) n = 0;
        memcpy(out, w->status, n);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&w->status_seq, __ATOMIC_RELAXED) == seq) return n;
    }
    return 0; /* its writer died mid-write: report nothing for it */
}

void stats_lua_enter(const char *method, size_t mlen, const char *path, size_t len)
{
    struct lua_running *s = &WS->lua;
    /* A method is any token (unknown ones too), not NUL-terminated. */
    size_t m = mlen < sizeof(s->method) - 1 ? mlen : sizeof(s->method) - 1;
    memcpy(s->method, method, m);
    s->method[m] = '\0';
    s->path_total = len > UINT32_MAX ? UINT32_MAX : (uint32_t)len;
    memcpy(s->path, path, len < sizeof(s->path) ? len : sizeof(s->path));
    __atomic_store_n(&s->active, 1, __ATOMIC_RELEASE);
}

void stats_lua_leave(void)
{
    __atomic_store_n(&WS->lua.active, 0, __ATOMIC_RELAXED);
}
