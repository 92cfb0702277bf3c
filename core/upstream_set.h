/* upstream_set: an upstream's servers replaced while it serves (a name
 * re-resolved, up:set_servers), and the addresses a server may be given
 * as ("host:port" numeric, "[v6]:port", "unix:/path").
 *
 * The servers array of an upstream is what live requests index and point
 * into (ex->srv, bconn->srv, the tried flags), so a replacement never frees
 * it at once: the old array lives on as a husk (a retired copy of the
 * upstream, whose servers point at it) until every exchange begun before
 * the replacement has ended. Servers whose address stays hand their idle
 * pooled connections and passive health to their successor in the new
 * array; connections in use follow when they are given back (pool_put
 * follows successors). The others drain: their requests finish, their
 * connections close. The wait for old exchanges is a grace period on two
 * counters, as RCU does: exchanges count themselves in the epoch current
 * when they start; a replacement flips the epoch, and the husks made before
 * the flip go once the old epoch's count falls to zero. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "upstream.h"

/* One server to be: its address, how it is shown, its weight. */
struct server_spec {
    char name[64]; /* "127.0.0.2:8080", "[::1]:80", "unix:/run/app.sock" */
    char host[64]; /* default Host header when it differs from name ("" = name) */
    bool tls;      /* given as "https://host:port" */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int weight;
};

/* "a.b.c.d:port", "[v6]:port" or "unix:/path" into *out (weight 1, host
 * "localhost" for a unix socket). 0; -EINVAL (malformed); -EAGAIN: a name
 * ("host:port" with a host that is no address), whose host and port are
 * then in host/port (hostlen bytes of room). */
int server_spec_parse(const char *text, struct server_spec *out, char *host, size_t hostlen,
                      int *port);
/* The spec of address sa (family, address and port) found for name:port:
 * named as the address, Host as the name. */
void server_spec_from_addr(struct server_spec *out, const struct sockaddr *sa, const char *name,
                           int port, int weight);

/* Appends a server to an upstream being built (before upstream_finish). */
int upstream_add_spec(struct upstream *u, const struct server_spec *sp);
/* The same from an address in any form server_spec_parse takes but a
 * name (those are resolved by the script's side). 0, -EINVAL or -ENOMEM. */
int upstream_add_server(struct upstream *u, const char *addr, int weight);

/* Replaces u's servers with specs[0..n): see above. On success the old
 * array is a husk of u (the returned pointer, for upstream_repoint), and
 * u->servers_gen has moved on. NULL: out of memory, u unchanged. */
struct upstream *upstream_replace(struct upstream *u, const struct server_spec *specs, int n);
/* After a replacement made husk: servers of list (an older script's
 * upstreams and their husks) whose successor was in husk point at that
 * server's own successor instead, so that nothing outlives the husk but
 * the exchanges the grace period waits for. */
void upstream_repoint(struct upstream *list, const struct upstream *husk);
/* Frees u's husks whose grace period is over (call from a timer, never
 * from inside an exchange's work). */
void upstream_reap(struct upstream *u);

/* The exchange's side of the grace period: enter when it starts (returns
 * its epoch), leave with that epoch when it ends. */
uint8_t upstream_epoch_enter(void);
void upstream_epoch_leave(uint8_t epoch);
/* Ends the grace period under way when its exchanges are gone, and starts
 * the next one if a husk waits for it. */
void upstream_epoch_poll(void);
