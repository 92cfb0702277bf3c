/* conn: a client connection, from accept to close.
 *
 * The input side is a state machine (conn_state); the output side is a
 * buffer flushed whenever it holds bytes, with EPOLLOUT armed only while
 * some are left. Per-request memory (read buffer, parsed head, body, output)
 * lives in a struct req_ctx, the request's context, taken from a per-worker
 * pool while a request is in progress and given back when the connection
 * goes idle, so an idle keep-alive connection costs only its struct conn.
 *
 * Only this file touches a client's socket, parser and buffers. A proxied
 * request is handed to an exchange through the seam of exchange.h, which
 * reaches back only through the calls this file gives it. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include <llhttp.h>

#include "loop.h"
#include "req_ctx.h"
#include "timer.h"
#include "transport.h"

enum conn_state {
    CONN_IDLE,     /* between requests (or before the first): no request bytes parsed */
    CONN_HEAD,     /* receiving a request head */
    CONN_BODY,     /* receiving a body for a Lua handler, or discarding one */
    CONN_SCRIPT,   /* route or the handler waits in Lua (a timer, a socket) */
    CONN_UPSTREAM, /* the request is being proxied; forward owns the exchange */
    CONN_CLOSING,  /* last response queued: write it, then close */
    CONN_LINGER,   /* written and shut down for writing: drain the peer, then close */
    CONN_CLOSED,
};

const char *conn_state_name(enum conn_state s);

struct conn {
    struct transport tp;
    enum conn_state state;
    bool admin;        /* accepted on the --admin listener: /metrics, /status */
    bool eof;          /* the client shut down its side */
    bool close_after;  /* no keep-alive after the current request */
    bool read_blocked; /* stopped reading with bytes possibly left in the socket */
    bool read_pending; /* the socket may hold unread bytes (an edge was taken, or a body spliced) */
    bool skip_read;    /* the next resume need not read: nothing can be waiting */
    bool served;       /* a request ended: the next head gets a header timeout of its own */
    bool hup;          /* the peer's FIN was reported: read to EOF, not to a short read */
    bool waits_route;  /* in CONN_SCRIPT: route waits (else the handler) */
    struct timer timer;
    struct defer resume; /* deferred: read or process again on the next turn */
    llhttp_t parser;
    struct req_ctx *ctx; /* NULL while idle with nothing buffered */
    struct exchange *ex; /* the proxied exchange while in CONN_UPSTREAM */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } peer;
    struct conn *prev, *next; /* W.conns */
};

/* Once per worker: on_closed runs after each connection closes (the
 * worker resumes accepting, or ends a graceful shutdown). */
void conn_init(void (*on_closed)(void));
/* Takes an accepted, non-blocking socket (of a TLS listener: tls). */
void conn_accept(int fd, const struct sockaddr *peer, socklen_t plen, bool admin, bool tls);
/* Closes at once, whatever the state. */
void conn_force_close(struct conn *c);
/* Graceful shutdown: close idle connections, mark the rest. */
void conn_drain_all(void);
