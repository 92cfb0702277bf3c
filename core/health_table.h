/* health_table: the shared half of active health checks. One MAP_SHARED
 * region, mapped by the master before it forks, holds a slot per checked
 * server, keyed by upstream name, server name and address, so that every
 * worker (a restarted one, and the next script generation after a reload)
 * finds the same slot for the same server.
 *
 * A slot holds what the workers must agree on:
 * - the server's up/down state and its run of successes or failures,
 *   changed with a compare-and-swap by whoever probed, and read by every
 *   worker's balancer with one relaxed load (health_slot_up);
 * - when the next probe is due. The worker that moves that time forward by
 *   compare-and-swap is the one that probes, so exactly one probe starts
 *   per interval whatever the number of workers. Each server has a
 *   preferred worker (its hash modulo the worker count) that claims it on
 *   time; the others claim it only once it is overdue by half an interval,
 *   so a dead or stuck worker's share is taken over and the load spreads.
 *
 * Binding a server to its slot (at load) takes a robust process-shared
 * mutex; nothing else does. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define HEALTH_SLOTS 16384 /* checked servers the machine can hold at once */

/* state: 0 is "up, nothing seen yet", which is how a server starts. */
#define HEALTH_DOWN 0x80000000u  /* out of rotation */
#define HEALTH_RUN_MASK 0x7fffu  /* successes (bits 0-14), failures (bits 15-29) in a row */

struct health_slot {
    uint32_t state;     /* HEALTH_DOWN | failures << 15 | successes */
    uint32_t used;      /* keyed (published last, under the table's lock) */
    uint64_t next_due;  /* ms (CLOCK_MONOTONIC): when the next probe starts */
    uint64_t touched;   /* ms: a worker whose script has this server last looked */
    uint64_t checks;    /* probes whose result was recorded */
    int32_t prober;     /* worker id of the last one, -1 before any */
    uint32_t hash;      /* of the key; also picks the preferred worker */
    uint32_t period_ms; /* between probes; a slot untouched for many is stale */
    uint32_t addrlen;
    uint8_t addr[28];   /* sockaddr_in or sockaddr_in6 */
    char upstream[64];
    char server[64];
};

struct health_table;

/* The region of this process tree (NULL until health_table_create). */
extern struct health_table *health_table;

/* Maps a table of nslots slots, shared with future children, and makes it
 * health_table. 0 or -errno. */
int health_table_create(uint32_t nslots);
void health_table_destroy(void);

/* The slot of (upstream, server, addr), created when new or when it was
 * left alone for so long that its state means nothing any more (a new one
 * is up, its first probe due within one period, spread by its hash). NULL
 * when the table is full. */
struct health_slot *health_table_bind(struct health_table *t, const char *upstream, const char *server,
                                      const struct sockaddr *addr, socklen_t addrlen, uint64_t period_ms,
                                      uint64_t now);

static inline bool health_slot_up(const struct health_slot *s)
{
    return !(__atomic_load_n(&s->state, __ATOMIC_RELAXED) & HEALTH_DOWN);
}

/* The worker (0..count-1) that probes the slot while it is alive. */
static inline int health_preferred(const struct health_slot *s, int count)
{
    return count > 0 ? (int)(s->hash % (uint32_t)count) : 0;
}

/* Whether the caller probes now: true when the probe was due (for the
 * preferred worker) or overdue by half a period (for another), and the
 * caller moved next_due on by one period first. *wake: when the caller
 * should look again. */
bool health_claim(struct health_slot *s, uint64_t now, bool preferred, uint64_t period_ms, uint64_t *wake);

/* The state after one probe: rise successes in a row bring a down server
 * up, fall failures take an up one down. Pure. */
uint32_t health_next_state(uint32_t state, bool ok, int rise, int fall);

/* Records a probe's result in the slot (by worker). Returns +1 when it
 * brought the server up, -1 when it took it down, 0 otherwise: exactly one
 * caller sees each change, so it is logged once. */
int health_record(struct health_slot *s, bool ok, int rise, int fall, int worker);
