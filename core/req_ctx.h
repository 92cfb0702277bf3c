/* req_ctx: a request's context. A client connection (conn.c) takes one
 * from the worker's pool when bytes of a request arrive and gives it back
 * when it goes idle, so an idle keep-alive connection costs only its
 * struct conn. Here too: the read buffer's operations for the body of a
 * proxied request, which the connection offers the exchange (exchange.h). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"
#include "exchange.h"
#include "http.h"
#include "script.h"
#include "transport.h"

/* A request's context: its memory, pooled by the worker. */
struct req_ctx {
    char *data;
    uint32_t cap, pos, end; /* parsed up to pos; received up to end */
    uint32_t head_len;      /* [0, head_len) is the current request's head */
    bool routed;            /* the head went through route() */
    bool responded;         /* the answer to the current request is queued */
    bool fixed;             /* the head was rewritten and parsed again (once only) */
    bool starved;           /* [pos, end) is part of a chunk-size line: parse when more arrives */
    llhttp_errno_t fix_err; /* llhttp refused the head: rewrite it once it is whole */
    enum script_decision decision;
    struct http_request req;
    struct http_parse_ctx pctx;
    struct buf body;
    struct buf out;
    struct script_view view;
    struct script_req *sreq;
    /* for the access log and metrics */
    uint64_t t0_us;        /* the request began (loop time of its first bytes) */
    uint64_t flushed;      /* bytes of out written, all requests so far */
    uint64_t q0;           /* bytes queued to out before this request */
    uint64_t spliced_out;  /* body bytes spliced to the client for it */
    int status;            /* of its answer, once known */
    bool logged;
    const char *up_addr;   /* proxied: the server that answered */
    uint64_t up_us;        /* and how long the exchange took */
    void *owner;           /* the connection it serves */
    struct req_ctx *next_free;
};

/* A context with an empty buffer (NULL when out of memory). */
struct req_ctx *req_ctx_get(void);
/* Back to the pool (its script request ended); large buffers are freed. */
void req_ctx_put(struct req_ctx *ctx);
/* Releases the pool (at exit, for leak checkers). */
void req_ctx_pool_free(void);
/* Doubles the read buffer, up to what the largest allowed head needs. */
bool req_ctx_grow(struct req_ctx *ctx);
/* The parse state of one request: cleared as each request begins. */
void req_ctx_reset(struct req_ctx *ctx);

/* Moves up to max body bytes that came with the head ([pos, end)) to to. */
uint64_t req_ctx_body_take(struct req_ctx *ctx, struct buf *to, uint64_t max);
/* The next checked piece of a chunked body (exchange.h); reads from
 * `from` when more is needed and it is not NULL. */
enum chunked_step req_ctx_chunked_next(struct req_ctx *ctx, llhttp_t *parser, struct transport *from,
                                       const char **p, size_t *n);
void req_ctx_chunked_sent(struct req_ctx *ctx, size_t n);
