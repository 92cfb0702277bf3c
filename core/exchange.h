/* exchange: the seam between whoever asks for a request to be proxied (a
 * client connection, conn.c) and the exchange that carries it to a backend
 * and brings the response back (exchange.c and the files of proxy.h).
 *
 * The two sides meet only here. The client hands over a parsed request
 * head and a table of calls (struct exchange_client) through which the
 * exchange reaches the client's body bytes, its output and its transport;
 * the exchange never sees the client's socket, parser or buffers otherwise,
 * and conn.c never sees a backend. In h2o's terms the client table is the
 * request's connection callbacks and the exchange its generator; in
 * nginx's, exchange_* are the upstream module's entry points and the client
 * table the request's body reader and output filter.
 *
 * One request, as the calls go:
 *   client: exchange_start(req, upstream)   the head is parsed and routed
 *   exch:   body_take / chunked_next ...    the request body, as the
 *           transport_pump(client, backend)  client's parser frames it
 *   exch:   out() + flush()                 the response head and a
 *           transport_pump(backend, client)  relayed or spliced body
 *   client: exchange_event(ex, events)      the client's socket woke up
 *   exch:   done(report, close_after)       over; the client goes on
 * or, when the client goes away first, exchange_abort(ex) from the client;
 * or, when the exchange must close the client, failed(report). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "http.h"
#include "transport.h"

struct exchange;
struct script_req;
struct upstream;

/* How a chunked request body comes along (exchange_client.chunked_next). */
enum chunked_step {
    CHUNKED_DATA,   /* [*p, *p + *n) is checked body (framing included) to send */
    CHUNKED_END,    /* the last chunk and its trailers went: the body is over */
    CHUNKED_WAIT,   /* the client has to send more: its next event says so */
    CHUNKED_BAD,    /* malformed: the request gets a 400 */
    CHUNKED_CLOSED, /* the client went away in the middle of it */
};

/* What the exchange reports when it ends, for the access log and metrics. */
struct exchange_report {
    int status;         /* answered to the client (the backend's or ours); 0: none */
    const char *server; /* the server that answered ("addr:port"), or NULL */
    uint64_t us;        /* how long the exchange took */
    uint64_t spliced;   /* response body bytes spliced to the client */
};

/* The client's side of the seam. Every call takes the client pointer given
 * to exchange_start. */
struct exchange_client {
    /* The buffer the exchange appends the response to (head and relayed
     * body); the client writes it out. */
    struct buf *(*out)(void *client);
    /* Writes out what the buffer holds: 0, or -1 when the client's
     * connection failed and closed (which aborted the exchange: the caller
     * returns at once and touches nothing of it). */
    int (*flush)(void *client);
    /* A splice to the client blocked: report its writability as an event. */
    void (*want_write)(void *client);
    /* Whether the client's connection may carry another request after this
     * one (its request asked for keep-alive, and the client side does not
     * otherwise have to close: an earlier error, a graceful shutdown). */
    bool (*keep_alive)(void *client);
    /* Moves up to max request body bytes that came with the head (already
     * read from the socket) to the end of to; returns how many. */
    uint64_t (*body_take)(void *client, struct buf *to, uint64_t max);
    /* The next piece of a chunked request body, as received and checked
     * by the client's parser. Reads the client's socket only if may_read. */
    enum chunked_step (*chunked_next)(void *client, bool may_read, const char **p, size_t *n);
    /* n bytes of the last CHUNKED_DATA piece went to the backend. */
    void (*chunked_sent)(void *client, size_t n);
    /* The exchange is over: its answer was queued to out or spliced;
     * close_after: the connection cannot carry another request (the body
     * was not read to its end, or the answer is framed by the close). The
     * exchange is gone when this is called. */
    void (*done)(void *client, const struct exchange_report *r, bool close_after);
    /* The exchange cannot go on and the client must be closed now, without
     * a word more (a failure after the response head went out, or the
     * client itself went away). The exchange is gone when this is called. */
    void (*failed)(void *client, const struct exchange_report *r);
};

/* The request as the client parsed it; valid until the exchange ends. */
struct exchange_request {
    const struct http_request *req; /* its slices point into base */
    const char *base;
    uint32_t head_len;           /* [base, base + head_len) is the head */
    struct script_req *sreq;     /* the script's view: edits, on_response, balance */
    const struct sockaddr *peer; /* the client's address (X-Forwarded-For, logs) */
    bool https;                  /* it came over TLS (X-Forwarded-Proto) */
    struct transport *transport; /* the client's: for splicing bodies both ways */
};

/* Starts proxying r to u. The exchange owns the request until it calls
 * done or failed (or the client calls exchange_abort); *ex is set before
 * anything else happens, as the exchange may end within this call. */
void exchange_start(const struct exchange_client *client_calls, void *client, const struct exchange_request *r,
                    struct upstream *u, struct exchange **ex);
/* Events of the client's socket while the exchange runs. */
void exchange_event(struct exchange *ex, unsigned events);
/* The client is closing: the exchange ends without a word (done and failed
 * are not called). *r: what it answered by then (an answer of ours queued
 * whole; the response body bytes spliced), for the client's log line. */
void exchange_abort(struct exchange *ex, struct exchange_report *r);
/* on_response, which waited (a socket, a timer), is over: the response
 * goes on (called by the client when its script's view says ready). */
void exchange_script_ready(struct exchange *ex);
/* Releases pooled memory (at exit, for leak checkers). */
void exchange_pool_free(void);
