/* health: active health checks, the per-worker half. An upstream declared
 * with check = { ... } has a struct health_check; while its script is the
 * worker's current one, the worker looks at each of its servers' shared
 * slots (health_table.h) once per interval and, when the slot says it is
 * this worker's turn, probes the server: a non-blocking HTTP/1.1 GET on the
 * worker's loop, on a connection of the probe's own (never a pooled one;
 * kept for the next probe when the server keeps it alive), the whole probe
 * under the check's timeout. The result goes into the slot, where every
 * worker's balancer reads it at once. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct upstream;
struct server;
struct health_slot;
struct health_run;

#define HEALTH_PATH_MAX 1024
#define HEALTH_HOST_MAX 256

/* check = { path, interval, timeout, rise, fall, expect, host }. */
struct health_check {
    char path[HEALTH_PATH_MAX];    /* request target, "/" by default */
    char host[HEALTH_HOST_MAX];    /* Host header; "" sends the server's name */
    uint64_t interval_ms;          /* one probe per server per interval */
    uint64_t timeout_ms;           /* connect to status line */
    int rise, fall;                /* successes to come up, failures to go down */
    uint8_t expect[75];            /* bit per status 0..599: a success */
    struct health_run *run;        /* this worker's probes, while they run */
};

/* A check with the defaults: "/", 2 s, 1 s, rise 2, fall 3, any 2xx or
 * 3xx. NULL without memory. */
struct health_check *health_check_new(void);
/* u's servers were replaced (set_servers, a name re-resolved): its probes
 * start over on the new list (slots, so the up/down state, stay with the
 * addresses that stay). Nothing without a check. */
void health_restart(struct upstream *u);
/* Stops its probes, if any, and frees it. NULL is fine. */
void health_check_free(struct health_check *c);
static inline void health_expect_set(struct health_check *c, int status)
{
    c->expect[status / 8] |= (uint8_t)(1u << (status % 8));
}
static inline bool health_expected(const struct health_check *c, int status)
{
    return status >= 0 && status < 600 && (c->expect[status / 8] >> (status % 8) & 1);
}

/* The upstreams of the worker's new current script: the previous ones'
 * probes stop, these start (servers bound to their shared slots, so that a
 * server that stays keeps its state). Outside a worker (no shared table):
 * nothing. */
void health_start(struct upstream *list);
/* Stops every probe of this worker (a drain, the end). */
void health_stop(void);

/* For /metrics and /status: fn for every server of list under an active
 * check, once per distinct server. */
typedef void (*health_each_fn)(void *arg, const struct upstream *u, const struct server *s,
                               const struct health_slot *slot);
void health_each(const struct upstream *list, health_each_fn fn, void *arg);
