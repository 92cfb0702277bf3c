/* stats: what /metrics and /status report, kept in one MAP_SHARED region
 * that the master creates before it forks.
 *
 * Each worker owns a slot and is its only writer: counters are bumped with
 * relaxed atomic stores (a plain add on x86), so the hot path takes no lock
 * and no atomic read-modify-write. Whoever serves /metrics reads every slot
 * and sums; a reading may be a few increments behind, never torn. A slot
 * outlives its worker: a restarted worker goes on counting where the dead
 * one stopped, so the sums never go backwards (Prometheus counters).
 *
 * The text of the script the workers load on a reload is not here but in
 * script_store.h, a region of its own. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATS_CODES 600          /* requests by status code 0..599 */
#define STATS_BUCKETS 14         /* request-duration histogram, + the +Inf bucket */
#define STATS_UPSTREAM_SLOTS 512 /* (upstream, server, code) series per worker */
#define STATS_TLS_FAIL_REASONS 7
#define STATS_STATUS_MAX 32768   /* a worker's /status fragment (JSON) */

/* Upper bounds of the histogram buckets, in microseconds. */
extern const uint64_t stats_bucket_us[STATS_BUCKETS - 1];

struct ustat {
    uint32_t used; /* published last (release); readers skip 0 */
    uint16_t code;
    char upstream[64];
    char server[64];
    uint64_t count;
};

/* The request a worker is running Lua for, if any: written by the worker
 * around each Lua call for a request (stats_lua_enter/leave: a few bytes
 * copied, no lock, no syscall), read by the master when the worker dies, to
 * say in its log line which request it died on. */
#define STATS_LUA_PATH 128
struct lua_running {
    uint32_t active;        /* stored last (release); 0: no request in Lua */
    uint32_t path_total;    /* the path's whole length; more than path holds: truncated */
    char method[16];        /* NUL-terminated */
    char path[STATS_LUA_PATH]; /* its first bytes, not terminated */
};

struct wstats {
    int32_t pid;
    uint32_t generation;         /* of the script this worker runs */
    uint64_t started_unix;
    int64_t connections_active;
    uint64_t connections_total;
    uint64_t requests[STATS_CODES];
    uint64_t hist[STATS_BUCKETS]; /* per bucket, not cumulative */
    uint64_t hist_sum_us;
    uint64_t pool_reuses;
    uint64_t spliced_bytes;
    uint64_t lua_errors;
    uint64_t reload_errors;      /* the master's check passed, this worker's load did not */
    uint64_t tls_handshakes, tls_resumed;           /* client connections (listeners) */
    uint64_t tls_failed[STATS_TLS_FAIL_REASONS];    /* by reason: tls_fail_names (core/tls.h) */
    uint64_t tls_up_handshakes, tls_up_resumed, tls_up_verify_failed; /* backend connections */
    struct lua_running lua;
    struct ustat up[STATS_UPSTREAM_SLOTS];
    uint32_t status_seq;         /* seqlock over status: odd while it is written */
    uint32_t status_len;
    char status[STATS_STATUS_MAX];
};

struct stats {
    uint32_t nworkers;
    uint32_t generation;      /* successful reloads */
    uint64_t started_unix;
    uint64_t reloads_ok, reloads_failed;
    uint64_t worker_restarts;
    int32_t master_pid;
    struct wstats w[];
};

extern struct stats *ST;  /* NULL until stats_create */
extern struct wstats *WS; /* this worker's slot (a private dummy elsewhere) */

/* Maps the region for nworkers slots. 0 or -errno. */
int stats_create(int nworkers);
void stats_destroy(void);
/* A worker takes its slot. */
void stats_attach(int worker_id);

#define STAT_ADD(field, n) __atomic_store_n(&(field), (field) + (n), __ATOMIC_RELAXED)
#define STAT_SET(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)
#define STAT_GET(field) __atomic_load_n(&(field), __ATOMIC_RELAXED)

/* One finished request: status and duration. */
void stats_request(int status, uint64_t us);
/* One proxied response from a server of an upstream. Returns the series it
 * counted in (NULL when the table is full): a caller may keep it and count
 * the next response of the same series with STAT_ADD(e->count, 1). */
struct ustat *stats_upstream(const char *upstream, const char *server, int status);

/* A worker publishes its /status fragment; readers copy it consistently. */
void stats_status_publish(const char *json, size_t len);
size_t stats_status_read(int worker, char *out, size_t cap);

/* Around a Lua call for a request (lua/script.c): records the method and
 * path (its first STATS_LUA_PATH bytes) in this worker's shared slot, so
 * that the master can name the request if the worker dies in the call. */
void stats_lua_enter(const char *method, size_t mlen, const char *path, size_t len);
void stats_lua_leave(void);
