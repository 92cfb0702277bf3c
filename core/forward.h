/* forward: one proxied exchange, from the moment route() names an upstream
 * to the last byte of the response. It picks a server, takes a pooled
 * connection or connects, writes the rewritten head in one send, streams
 * the body (Content-Length bodies with splice), reads and rewrites the
 * response head, and relays the body back; a 101 turns it into a tunnel.
 * The client connection waits in CONN_UPSTREAM meanwhile and hands its
 * socket events here. */
#pragma once
#include <stdint.h>

struct conn;
struct upstream;
struct exchange;

void forward_start(struct conn *c, struct upstream *u);
void forward_client_event(struct exchange *ex, unsigned events);
/* The client connection is closing: end the exchange without a word. */
void forward_abort(struct exchange *ex);
void forward_pool_free(void);
uint64_t forward_spliced_bytes(void);
