/* conn: the client side of a connection, from accept to close.
 *
 * Bytes flow: the socket is read into ctx->data; llhttp parses from ctx->pos;
 * the head stays at [0, head_len) of the buffer as slices until the request
 * ends; a Lua handler's body is copied out as it is parsed; the response is
 * built in ctx->out and written as soon as possible. Requests are handled one
 * at a time, so pipelined requests are answered in order by construction. */
#include "conn.h"
#include "conn_log.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "accesslog.h"
#include "admin.h"
#include "exchange.h"
#include "http.h"
#include "http_response.h"
#include "log.h"
#include "reply.h"
#include "stats.h"
#include "tls.h"
#include "worker_state.h"

#define LINGER_MS 2000           /* how long a closing connection is drained */

static void (*on_conn_closed)(void);

static void exchange_recorded(struct conn *c, const struct exchange_report *r);
static void script_wait(struct conn *c, bool route);
static void route_decided(struct conn *c, struct script_reply *rep, struct upstream *up);
static void request_complete(struct conn *c);
static void request_end(struct conn *c);
static void conn_drive(struct conn *c, bool readable, bool hup);
static const struct exchange_client conn_client;

void conn_init(void (*on_closed)(void))
{
    on_conn_closed = on_closed;
}

const char *conn_state_name(enum conn_state s)
{
    static const char *names[] = {"idle", "head", "body", "script", "upstream", "closing", "linger", "closed"};
    return s <= CONN_CLOSED ? names[s] : "?";
}

static void conn_free_cb(struct defer *d)
{
    free(container_of(d, struct conn, resume));
}


static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSED) return;
    if (c->ex) {
        struct exchange_report r;
        exchange_abort(c->ex, &r);
        c->ex = NULL;
        exchange_recorded(c, &r);
    }
    /* A request that never got past its head is not one worth a line. */
    if (c->ctx && !c->ctx->routed) c->ctx->logged = true;
    conn_log_request(c, 0);
    log_debug("conn fd=%d closed in state %s", c->tp.io.fd, conn_state_name(c->state));
    c->state = CONN_CLOSED;
    timer_cancel(&W.loop.timers, &c->timer);
    tls_handshake_abandoned(&c->tp, false);
    transport_release(&c->tp);
    loop_close(&W.loop, &c->tp.io);
    if (c->ctx) req_ctx_put(c->ctx);
    c->ctx = NULL;
    if (c->prev) c->prev->next = c->next;
    else W.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    W.nconns--;
    STAT_ADD(WS->connections_active, -1);
    /* Freed after this batch of events: later events of the batch may still
     * name this connection (they see fd == -1 and are skipped). Reusing the
     * resume node also covers a resume already queued. */
    c->resume.cb = conn_free_cb;
    loop_defer(&W.loop, &c->resume);
    on_conn_closed();
}

void conn_force_close(struct conn *c)
{
    conn_close(c);
}

static bool keep_alive(const struct conn *c)
{
    return c->ctx->req.keep_alive && !c->close_after && !W.draining;
}

/* A request we will not serve: answer (unless an answer is already queued),
 * then close. */
static void reject(struct conn *c, int status)
{
    struct req_ctx *ctx = c->ctx;
    log_debug("conn fd=%d rejected with %d in state %s", c->tp.io.fd, status, conn_state_name(c->state));
    conn_log_rejection(c, status);
    if (!ctx->responded) {
        /* A request line read up to its target names the method even when
         * the head is bad or incomplete: a HEAD gets no body then either. */
        bool head = ctx->req.head_done ? ctx->req.method == HTTP_HEAD
                                      : ctx->req.url.len && c->parser.method == HTTP_HEAD;
        http_simple_response(&ctx->out, status, false, head, W.loop.wall_now, http_error_body(status));
        ctx->status = status;
    }
    ctx->responded = true;
    conn_log_request(c, ctx->status);
    if (ctx->sreq) script_req_end(ctx->sreq);
    ctx->sreq = NULL;
    c->close_after = true;
    c->state = CONN_CLOSING;
    loop_timer(&W.loop, &c->timer, W.cfg->idle_timeout_ms);
}

static void write_reply(struct conn *c, struct script_reply *rep)
{
    struct req_ctx *ctx = c->ctx;
    bool kept;
    int rc = reply_write(&ctx->out, &ctx->req, rep, keep_alive(c), W.loop.wall_now, &kept);
    script_reply_done();
    ctx->responded = true;
    ctx->status = rep->status;
    if (!kept) c->close_after = true;
    if (rc) {
        log_error("out of memory writing a response of %zu bytes", rep->body_len);
        conn_close(c);
    }
}

static void update_view(struct req_ctx *ctx)
{
    ctx->view.base = ctx->data;
    ctx->view.body = ctx->body.data;
    ctx->view.body_len = ctx->body.len;
}

/* The hook waits in Lua: the connection waits with it, reading nothing
 * more, until the script says it is over (on_script_ready). A client that
 * goes away meanwhile cancels it (conn_on_io). */
static void script_wait(struct conn *c, bool route)
{
    c->state = CONN_SCRIPT;
    c->waits_route = route;
    timer_cancel(&W.loop.timers, &c->timer);
}

/* The waiting hook is over: go on from where it stopped. */
static void on_script_ready(struct script_view *v)
{
    struct req_ctx *ctx = container_of(v, struct req_ctx, view);
    struct conn *c = ctx->owner;
    if (c->state == CONN_UPSTREAM && c->ex) return exchange_script_ready(c->ex); /* on_response */
    if (c->state != CONN_SCRIPT) return;
    struct script_reply rep;
    if (c->waits_route) {
        struct upstream *up = NULL;
        c->state = CONN_HEAD; /* as while route ran */
        ctx->decision = script_route_resume(ctx->sreq, &rep, &up);
        if (c->state == CONN_CLOSED) return;
        route_decided(c, &rep, up);
        if (c->state == CONN_CLOSED || c->state == CONN_UPSTREAM || c->state == CONN_SCRIPT) return;
        /* A request without a body was complete when route ran. */
        if (c->state == CONN_HEAD && ctx->req.message_done) request_complete(c);
    } else {
        script_handle_resume(ctx->sreq, &rep);
        c->state = CONN_BODY; /* request_end decides: idle or closing */
        write_reply(c, &rep);
        if (c->state == CONN_CLOSED) return;
        request_end(c);
    }
    if (c->state == CONN_CLOSED || c->state == CONN_SCRIPT || c->state == CONN_UPSTREAM) return;
    conn_drive(c, false, c->hup);
}

/* The head is complete: validate it and let the script decide. */
static void request_route(struct conn *c)
{
    struct req_ctx *ctx = c->ctx;
    const struct config *cfg = W.cfg;
    ctx->routed = true;
    ctx->head_len = ctx->pos;
    timer_cancel(&W.loop.timers, &c->timer);
    if (ctx->head_len > cfg->max_header_size) return reject(c, 431);
    int status = http_check_head(&ctx->req, ctx->data, ctx->head_len);
    if (!status) status = http_validate_head(&ctx->req, ctx->data);
    if (status) return reject(c, status);

    ctx->view.req = &ctx->req;
    ctx->view.peer = &c->peer.sa;
    struct tls_info ti;
    ctx->view.https = tls_info(&c->tp, &ti);
    if (ctx->view.https) {
        ctx->view.tls.version = ti.version;
        ctx->view.tls.cipher = ti.cipher;
        ctx->view.tls.sni = ti.sni;
    }
    ctx->view.ready = on_script_ready;
    ctx->owner = c;
    ctx->view.body_ready = false;
    update_view(ctx);
    struct script_reply rep;
    struct upstream *up = NULL;
    if (c->admin) {
        ctx->decision = SCRIPT_RESPOND;
        admin_reply(&ctx->req, ctx->data, &rep);
    } else if (!(ctx->sreq = script_req_begin(&ctx->view))) {
        ctx->decision = SCRIPT_RESPOND;
        rep = (struct script_reply){.status = 500, .body = "internal error\n", .body_len = 15};
    } else if (script_has_route(ctx->sreq)) {
        ctx->decision = script_route(ctx->sreq, &rep, &up);
    } else {
        ctx->decision = SCRIPT_LOCAL;
    }
    if (c->state == CONN_CLOSED) return;
    if (ctx->decision == SCRIPT_WAIT) return script_wait(c, true);
    route_decided(c, &rep, up);
}

/* The script's decision on a routed request: proxy it, answer it, or read
 * its body for a handler. */
static void route_decided(struct conn *c, struct script_reply *rep, struct upstream *up)
{
    struct req_ctx *ctx = c->ctx;
    const struct config *cfg = W.cfg;
    bool body_follows = ctx->req.has_body && !ctx->req.message_done;
    switch (ctx->decision) {
    case SCRIPT_UPSTREAM:
        c->state = CONN_UPSTREAM;
        /* A body (or a tunnel) is read from the socket by forward, which
         * stops at its end, not at EAGAIN: what follows it may wait there. */
        c->read_pending = !ctx->req.message_done || ctx->req.upgrade;
        struct exchange_request xr = {
            .req = &ctx->req,
            .base = ctx->data,
            .head_len = ctx->head_len,
            .sreq = ctx->sreq,
            .peer = &c->peer.sa,
            .https = ctx->view.https,
            .transport = &c->tp,
        };
        exchange_start(&conn_client, c, &xr, up, &c->ex);
        return;
    case SCRIPT_RESPOND:
        /* Answered before the body: it is read and dropped, unless the
         * client waits for 100-continue and so may never send it. */
        if (body_follows && ctx->req.expect_continue) c->close_after = true;
        ctx->pctx.body = NULL;
        write_reply(c, rep);
        break;
    case SCRIPT_WAIT: break; /* not here: script_wait */
    case SCRIPT_LOCAL:
        if (!body_follows) break;
        if (!ctx->req.chunked && ctx->req.content_length > cfg->max_body_size) return reject(c, 413);
        ctx->pctx.body = &ctx->body;
        ctx->pctx.max_body = cfg->max_body_size;
        if (ctx->req.expect_continue && ctx->req.http_minor == 1)
            buf_puts(&ctx->out, "HTTP/1.1 100 Continue\r\n\r\n");
        break;
    }
    if (c->state == CONN_CLOSED) return;
    if (body_follows) {
        c->state = CONN_BODY;
        loop_timer(&W.loop, &c->timer, cfg->idle_timeout_ms);
    }
}

static void request_end(struct conn *c)
{
    struct req_ctx *ctx = c->ctx;
    conn_log_request(c, ctx->status);
    c->served = true;
    if (ctx->sreq) script_req_end(ctx->sreq);
    ctx->sreq = NULL;
    if (!keep_alive(c) || c->close_after) {
        c->state = CONN_CLOSING;
        loop_timer(&W.loop, &c->timer, W.cfg->idle_timeout_ms);
        return;
    }
    if (ctx->req.upgrade) llhttp_reset(&c->parser); /* served locally: stay HTTP */
    c->state = CONN_IDLE;
    loop_timer(&W.loop, &c->timer, W.cfg->idle_timeout_ms);
}

static void request_complete(struct conn *c)
{
    struct req_ctx *ctx = c->ctx;
    if (!ctx->routed) {
        request_route(c);
        if (c->state >= CONN_SCRIPT) return;
    }
    if (ctx->decision == SCRIPT_LOCAL && !ctx->responded) {
        struct script_reply rep;
        update_view(ctx);
        ctx->view.body_ready = true;
        if (!script_handle(ctx->sreq, &rep)) return script_wait(c, false);
        write_reply(c, &rep);
        if (c->state == CONN_CLOSED) return;
    }
    request_end(c);
}

static void request_begin(struct conn *c)
{
    struct req_ctx *ctx = c->ctx;
    if (ctx->pos) { /* the previous request is done with: move what follows to the front */
        memmove(ctx->data, ctx->data + ctx->pos, ctx->end - ctx->pos);
        ctx->end -= ctx->pos;
        ctx->pos = 0;
    }
    req_ctx_reset(ctx);
    ctx->t0_us = W.loop.now_us;
    ctx->q0 = ctx->flushed + buf_pending(&ctx->out);
    ctx->spliced_out = 0;
    ctx->status = 0;
    ctx->logged = false;
    ctx->up_addr = NULL;
    ctx->up_us = 0;
    c->state = CONN_HEAD;
    /* The first head's time counts from the accept (a client that waits
     * before its first byte gains nothing); a later one's from its start. */
    if (c->served) loop_timer(&W.loop, &c->timer, W.cfg->header_timeout_ms);
}

/* The head llhttp refused (ctx->fix_err), once it is all in the buffer:
 * rewritten (http_head_rewrite) and parsed again from its start. false:
 * waiting for more of it, or rejected. */
static bool head_parse_again(struct conn *c, llhttp_errno_t *err)
{
    struct req_ctx *ctx = c->ctx;
    uint32_t end = http_head_end(ctx->data, ctx->end);
    if (!end || end > W.cfg->max_header_size) {
        if (ctx->end > W.cfg->max_header_size) reject(c, 431);
        ctx->pos = ctx->end;
        return false;
    }
    llhttp_errno_t first = ctx->fix_err;
    ctx->fix_err = HPE_OK;
    ctx->fixed = true;
    struct slice method = {0};
    int rc = http_head_rewrite(ctx->data, &ctx->end, end, first == HPE_INVALID_METHOD, &method);
    if (rc != 1) {
        reject(c, rc ? rc : http_error_status(first, &ctx->req, ctx->data, ctx->end));
        return false;
    }
    const char *stop;
    *err = http_parse_again(&c->parser, &ctx->pctx, ctx->data, ctx->end, method, &stop);
    ctx->pos = (uint32_t)(stop - ctx->data);
    return true;
}

/* Parses and answers what is buffered, request after request. */
static void conn_process(struct conn *c)
{
    while (c->ctx && c->state <= CONN_BODY) {
        struct req_ctx *ctx = c->ctx;
        if ((ctx->pos == ctx->end && !ctx->fix_err) || buf_pending(&ctx->out) > BUF_OUT_HIGH_WATER) break;
        if (c->state == CONN_IDLE) request_begin(c);

        ctx->pctx.req = &ctx->req;
        ctx->pctx.base = ctx->data;
        c->parser.data = &ctx->pctx;
        llhttp_errno_t err;
        if (ctx->fix_err) {
            if (!head_parse_again(c, &err)) break;
        } else {
            err = http_execute(&c->parser, ctx->data, &ctx->pos, &ctx->end);
        }

        if (c->state == CONN_HEAD && !ctx->routed && !ctx->fixed && http_head_fixable(err)) {
            /* Refused by llhttp, perhaps allowed by RFC 9112: wait for the
             * whole head, then rewrite it and parse it again. */
            ctx->fix_err = err;
        } else if (err == HPE_PAUSED) {
            llhttp_resume(&c->parser);
            if (ctx->req.message_done) request_complete(c);
            else request_route(c);
        } else if (err == HPE_PAUSED_UPGRADE) {
            llhttp_resume_after_upgrade(&c->parser);
        } else if (err == HPE_USER && ctx->req.too_many) {
            reject(c, 431);
        } else if (err == HPE_USER && ctx->pctx.body_too_large) {
            reject(c, 413);
        } else if (err != HPE_OK) {
            log_debug("conn fd=%d parse error %s: %s", c->tp.io.fd, llhttp_errno_name(err),
                      llhttp_get_error_reason(&c->parser));
            reject(c, http_error_status(err, &ctx->req, ctx->data, ctx->end));
        } else if (c->state == CONN_HEAD && ctx->pos > W.cfg->max_header_size) {
            reject(c, 431);
        } else if (c->state == CONN_BODY) {
            /* Every body byte parsed so far was copied out (or dropped);
             * what is left is the start of a chunk-size line. */
            uint32_t left = ctx->end - ctx->pos;
            memmove(ctx->data + ctx->head_len, ctx->data + ctx->pos, left);
            ctx->pos = ctx->head_len;
            ctx->end = ctx->head_len + left;
            ctx->starved = left > 0;
            if (left) break; /* until more arrives */
        }
    }
}

/* Reads what fits into the buffer. */
static void conn_read(struct conn *c, bool hup)
{
    for (;;) {
        if (c->state == CONN_LINGER) {
            char sink[4096];
            ssize_t n = transport_read(&c->tp, sink, sizeof(sink));
            if (n > 0) continue;
            if (n == -1 && errno == EINTR) continue;
            if (n == -1 && errno == EAGAIN) return;
            conn_close(c);
            return;
        }
        if (c->state > CONN_BODY) {
            c->read_blocked = true;
            return;
        }
        if (!c->ctx && !(c->ctx = req_ctx_get())) {
            log_error("out of memory for a connection buffer");
            conn_close(c);
            return;
        }
        struct req_ctx *ctx = c->ctx;
        if (ctx->end == ctx->cap && ((c->state == CONN_BODY && !ctx->starved) || !req_ctx_grow(ctx))) {
            c->read_blocked = true;
            return;
        }
        size_t room = ctx->cap - ctx->end;
        ssize_t n = transport_read(&c->tp, ctx->data + ctx->end, room);
        if (n > 0) {
            ctx->end += (uint32_t)n;
            ctx->starved = false;
            /* A short read drained the socket: edge-triggered epoll reports
             * the next arrival, so no EAGAIN round trip is needed, unless
             * the peer also closed and that edge was consumed already. */
            if ((size_t)n < room && !hup) return;
            continue;
        }
        if (n == 0) {
            c->eof = true;
            return;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        conn_close(c);
        return;
    }
}

/* Writes ctx->out; 0, or -1 when the connection closed. Arms EPOLLOUT only
 * while bytes are left. */
static int conn_flush(struct conn *c)
{
    struct req_ctx *ctx = c->ctx;
    bool moved = false;
    while (ctx && buf_pending(&ctx->out)) {
        ssize_t n = transport_write(&c->tp, ctx->out.data + ctx->out.off, buf_pending(&ctx->out));
        if (n > 0) {
            buf_consume(&ctx->out, (size_t)n);
            ctx->flushed += (uint64_t)n;
            moved = true;
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && errno == EAGAIN) {
            /* A client still taking its answer is not idle: like nginx's
             * send_timeout, --idle-timeout counts from its last progress,
             * so a slow reader of a large local answer is not cut off. */
            if (moved && (c->state == CONN_IDLE || c->state == CONN_CLOSING))
                loop_timer(&W.loop, &c->timer, W.cfg->idle_timeout_ms);
            return loop_mod(&W.loop, &c->tp.io, IO_READ | IO_WRITE);
        }
        conn_close(c);
        return -1;
    }
    return loop_mod(&W.loop, &c->tp.io, c->tp.read_wants_write ? IO_READ | IO_WRITE : IO_READ);
}

/* After reading, processing and writing: the transitions that depend on
 * what is left in the buffers. */
static void conn_settle(struct conn *c)
{
    if (c->state == CONN_CLOSED) return;
    struct req_ctx *ctx = c->ctx;
    bool out_pending = ctx && buf_pending(&ctx->out);
    bool in_pending = ctx && ctx->pos < ctx->end && !ctx->starved;

    if (c->state == CONN_CLOSING && !out_pending) {
        /* Half-close, then drain: closing with unread input would make the
         * kernel send a reset that can destroy the answer in flight. */
        transport_shutdown(&c->tp);
        c->state = CONN_LINGER;
        loop_timer(&W.loop, &c->timer, LINGER_MS);
        conn_read(c, true);
        return;
    }
    if (c->state == CONN_IDLE && !in_pending) {
        if ((c->eof || W.draining) && !out_pending) return conn_close(c);
        if (c->eof) {
            c->state = CONN_CLOSING;
            return;
        }
        if (!out_pending && ctx) {
            req_ctx_put(ctx);
            c->ctx = NULL;
        }
    }
    if (c->eof && (c->state == CONN_HEAD || c->state == CONN_BODY) && !in_pending)
        return conn_close(c); /* the client left in the middle of a request */
    if (c->read_blocked && c->state <= CONN_BODY && (!ctx || ctx->end < ctx->cap)) {
        c->read_blocked = false;
        loop_defer(&W.loop, &c->resume);
    }
}

static void conn_drive(struct conn *c, bool readable, bool hup)
{
    if (readable) conn_read(c, hup);
    for (;;) {
        if (c->state == CONN_CLOSED) return;
        conn_process(c);
        if (c->state == CONN_CLOSED) return;
        if (conn_flush(c) < 0) return;
        /* conn_process stops at the output high-water mark with requests
         * still buffered; when the flush made room, nothing else would wake
         * them, so go on. Each round parses or drains, so this ends. */
        struct req_ctx *ctx = c->ctx;
        if (!ctx || c->state > CONN_BODY || ctx->pos == ctx->end || ctx->starved ||
            buf_pending(&ctx->out) > BUF_OUT_HIGH_WATER)
            break;
    }
    conn_settle(c);
}

static void conn_on_io(struct io *io, unsigned events)
{
    struct conn *c = container_of(io, struct conn, tp.io);
    /* Edge-triggered: the FIN is reported once. A read that stops early
     * (buffer full, or in another state) must still find it later. */
    if (events & (IO_HUP | IO_ERROR)) c->hup = true;
    if (c->state == CONN_SCRIPT) {
        /* Its hook waits in Lua. A client that went away cancels it: its
         * sockets close and nothing is written. Bytes that come meanwhile
         * are read once it is over. */
        if (events & (IO_HUP | IO_ERROR)) return conn_close(c);
        if (events & IO_READ) c->read_blocked = true;
        return;
    }
    if (c->state == CONN_UPSTREAM) {
        if (events & (IO_READ | IO_HUP | IO_ERROR)) c->read_pending = true;
        return exchange_event(c->ex, events);
    }
    /* A TLS handshake message waited for room: the read goes on. */
    conn_drive(c, (events & IO_READ) || ((events & IO_WRITE) && c->tp.read_wants_write), c->hup);
}

/* ---- the client's side of the exchange seam (exchange.h) -------------- */

static struct buf *ex_out(void *client)
{
    return &((struct conn *)client)->ctx->out;
}

static int ex_flush(void *client)
{
    return conn_flush(client);
}

static void ex_want_write(void *client)
{
    struct conn *c = client;
    loop_mod(&W.loop, &c->tp.io, IO_READ | IO_WRITE);
}

static bool ex_keep_alive(void *client)
{
    return keep_alive(client);
}

static uint64_t ex_body_take(void *client, struct buf *to, uint64_t max)
{
    return req_ctx_body_take(((struct conn *)client)->ctx, to, max);
}

static enum chunked_step ex_chunked_next(void *client, bool may_read, const char **p, size_t *n)
{
    struct conn *c = client;
    return req_ctx_chunked_next(c->ctx, &c->parser, may_read ? &c->tp : NULL, p, n);
}

static void ex_chunked_sent(void *client, size_t n)
{
    req_ctx_chunked_sent(((struct conn *)client)->ctx, n);
}

/* What the exchange answered, for the access log and metrics. */
static void exchange_recorded(struct conn *c, const struct exchange_report *r)
{
    struct req_ctx *ctx = c->ctx;
    ctx->spliced_out += r->spliced;
    if (!r->status) return;
    ctx->status = r->status;
    ctx->up_addr = r->server;
    ctx->up_us = r->us;
}

static void ex_done(void *client, const struct exchange_report *r, bool close_after)
{
    struct conn *c = client;
    c->ex = NULL;
    exchange_recorded(c, r);
    /* The parser never saw a spliced body: start it afresh. */
    if (!c->ctx->req.message_done) llhttp_reset(&c->parser);
    if (close_after) c->close_after = true;
    c->state = CONN_BODY; /* request_end decides: idle or closing */
    request_end(c);
    /* Pipelined requests may be waiting in the buffer or the socket: on the
     * next turn, so an exchange that ended at once cannot recurse here. The
     * socket was last read to a short read (edge-triggered: drained) unless
     * an event came during the exchange or the exchange read a body from
     * it; otherwise a read now would only find EAGAIN (one syscall of six). */
    c->skip_read = !c->read_pending;
    c->read_pending = false;
    loop_defer(&W.loop, &c->resume);
}

static void ex_failed(void *client, const struct exchange_report *r)
{
    struct conn *c = client;
    c->ex = NULL;
    exchange_recorded(c, r);
    conn_close(c);
}

static const struct exchange_client conn_client = {
    .out = ex_out,
    .flush = ex_flush,
    .want_write = ex_want_write,
    .keep_alive = ex_keep_alive,
    .body_take = ex_body_take,
    .chunked_next = ex_chunked_next,
    .chunked_sent = ex_chunked_sent,
    .done = ex_done,
    .failed = ex_failed,
};

static void conn_on_resume(struct defer *d)
{
    struct conn *c = container_of(d, struct conn, resume);
    bool readable = !c->skip_read || c->hup;
    c->skip_read = false;
    conn_drive(c, readable, c->hup);
}

static void conn_on_timer(struct timer *t)
{
    struct conn *c = container_of(t, struct conn, timer);
    switch (c->state) {
    case CONN_HEAD:
    case CONN_BODY:
        reject(c, 408);
        if (conn_flush(c) == 0) conn_settle(c);
        break;
    case CONN_SCRIPT:
    case CONN_UPSTREAM:
        break;
    default: /* idle keep-alive, a client not reading, or the linger is over */
        tls_handshake_abandoned(&c->tp, true);
        conn_close(c);
        break;
    }
}

void conn_accept(int fd, const struct sockaddr *peer, socklen_t plen, bool admin, bool tls)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory accepting a connection");
        close(fd);
        return;
    }
    c->tp.io.fd = fd;
    c->tp.io.cb = conn_on_io;
    c->tp.ops = &transport_plain;
    if (tls && tls_accept(&c->tp)) {
        log_error("out of memory for a TLS connection");
        close(fd);
        free(c);
        return;
    }
    c->admin = admin;
    memcpy(&c->peer, peer, plen < sizeof(c->peer) ? plen : sizeof(c->peer));
    c->timer.cb = conn_on_timer;
    c->resume.cb = conn_on_resume;
    http_parser_init(&c->parser, NULL); /* the setup the unit tests check */
    if (loop_add(&W.loop, &c->tp.io, IO_READ)) {
        log_error("epoll_ctl: %s", strerror(errno));
        transport_release(&c->tp);
        close(fd);
        free(c);
        return;
    }
    c->state = CONN_IDLE;
    c->next = W.conns;
    if (W.conns) W.conns->prev = c;
    W.conns = c;
    W.nconns++;
    STAT_ADD(WS->connections_active, 1);
    STAT_ADD(WS->connections_total, 1);
    /* Until its first request is complete, a connection has header-timeout
     * to send it; one that sends nothing at all is closed without a word. */
    loop_timer(&W.loop, &c->timer, W.cfg->header_timeout_ms);
}

void conn_drain_all(void)
{
    struct conn *c = W.conns;
    while (c) {
        struct conn *next = c->next;
        c->close_after = true;
        if (c->state == CONN_IDLE) {
            /* A request may wait unread in the socket (its edge not handled
             * yet): the kernel has it, so it is served, not reset. Idle
             * ones are closed by conn_settle, as W.draining is set. */
            conn_drive(c, true, false);
            bool busy = c->ctx && (c->ctx->pos < c->ctx->end || buf_pending(&c->ctx->out));
            if (c->state == CONN_IDLE && !busy) conn_close(c);
        }
        c = next;
    }
}
