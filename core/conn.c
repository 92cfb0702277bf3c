/* conn: the client side of a connection, from accept to close.
 *
 * Bytes flow: the socket is read into rx->data; llhttp parses from rx->pos;
 * the head stays at [0, head_len) of the buffer as slices until the request
 * ends; a Lua handler's body is copied out as it is parsed; the response is
 * built in rx->out and written as soon as possible. Requests are handled one
 * at a time, so pipelined requests are answered in order by construction. */
#include "conn.h"

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
#include "forward.h"
#include "http.h"
#include "http_response.h"
#include "log.h"
#include "stats.h"
#include "worker.h"

#define RX_INITIAL 4096          /* read buffer to start with; grows for big heads */
#define RX_KEEP_MAX (64 * 1024)  /* larger buffers are freed before pooling */
#define RX_POOL_MAX 256          /* idle request contexts kept for reuse */
#define LINGER_MS 2000           /* how long a closing connection is drained */

static struct conn_rx *rx_pool;
static int rx_pool_len;

const char *conn_state_name(enum conn_state s)
{
    static const char *names[] = {"idle", "head", "body", "upstream", "closing", "linger", "closed"};
    return s <= CONN_CLOSED ? names[s] : "?";
}

static uint32_t rx_limit(void)
{
    /* Room for the largest allowed head plus some body or pipelined bytes. */
    uint64_t lim = W.cfg->max_header_size + 8192;
    return lim > (1u << 30) ? (1u << 30) : (uint32_t)lim;
}

/* The parse state of one request: cleared when a context is taken and
 * again as each request begins. */
static void rx_request_reset(struct conn_rx *rx)
{
    rx->head_len = 0;
    rx->routed = rx->responded = rx->fixed = rx->starved = false;
    rx->fix_err = HPE_OK;
    rx->body.len = rx->body.off = 0;
    rx->pctx.body = NULL;
    rx->pctx.body_too_large = false;
}

static struct conn_rx *rx_get(void)
{
    struct conn_rx *rx = rx_pool;
    if (rx) {
        rx_pool = rx->next_free;
        rx_pool_len--;
    } else {
        rx = calloc(1, sizeof(*rx));
        if (!rx) return NULL;
    }
    if (!rx->data) {
        rx->data = malloc(RX_INITIAL);
        if (!rx->data) {
            free(rx);
            return NULL;
        }
        rx->cap = RX_INITIAL;
    }
    rx->pos = rx->end = 0;
    rx_request_reset(rx);
    rx->out.len = rx->out.off = 0;
    rx->sreq = NULL;
    rx->flushed = 0;
    rx->logged = true; /* until a request begins */
    return rx;
}

static void rx_put(struct conn_rx *rx)
{
    if (rx->sreq) script_req_end(rx->sreq);
    rx->sreq = NULL;
    if (rx_pool_len >= RX_POOL_MAX) {
        free(rx->data);
        buf_free(&rx->body);
        buf_free(&rx->out);
        free(rx);
        return;
    }
    if (rx->cap > RX_INITIAL) {
        free(rx->data);
        rx->data = NULL;
        rx->cap = 0;
    }
    if (rx->body.cap > RX_KEEP_MAX) buf_free(&rx->body);
    if (rx->out.cap > RX_KEEP_MAX) buf_free(&rx->out);
    rx->next_free = rx_pool;
    rx_pool = rx;
    rx_pool_len++;
}

void conn_pool_free(void)
{
    while (rx_pool) {
        struct conn_rx *rx = rx_pool;
        rx_pool = rx->next_free;
        free(rx->data);
        buf_free(&rx->body);
        buf_free(&rx->out);
        free(rx);
    }
    rx_pool_len = 0;
}

static bool rx_grow(struct conn_rx *rx)
{
    uint32_t lim = rx_limit();
    if (rx->cap >= lim) return false;
    uint32_t cap = rx->cap * 2 > lim ? lim : rx->cap * 2;
    char *p = realloc(rx->data, cap);
    if (!p) return false;
    rx->data = p;
    rx->cap = cap;
    return true;
}

static void conn_free_cb(struct defer *d)
{
    free(container_of(d, struct conn, resume));
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The request is over (answered, or given up on): metrics and the access
 * log, once. status 0 = no answer (logged as 499, nginx's "client closed"). */
static void request_finish(struct conn *c, int status)
{
    struct conn_rx *rx = c->rx;
    if (!rx || rx->logged) return;
    rx->logged = true;
    if (c->admin) return; /* the monitoring does not count itself */
    if (!status) status = rx->status ? rx->status : 499;
    uint64_t us = mono_us() - rx->t0_us;
    stats_request(status, us);
    if (!log_access_enabled()) return;
    struct access_entry e = {
        .peer = &c->peer.sa,
        .req = rx->req.head_done ? &rx->req : NULL,
        .base = rx->data,
        .status = status,
        .bytes = rx->flushed + buf_pending(&rx->out) - rx->q0 + rx->spliced_out,
        .wall = W.loop.wall_now,
        .request_s = (double)us / 1e6,
        .upstream = rx->up_addr,
        .upstream_s = (double)rx->up_us / 1e6,
    };
    access_log(&e);
}

static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSED) return;
    /* A request that never got past its head is not one worth a line. */
    if (c->rx && !c->rx->routed) c->rx->logged = true;
    request_finish(c, 0);
    log_debug("conn fd=%d closed in state %s", c->io.fd, conn_state_name(c->state));
    if (c->ex) forward_abort(c->ex);
    c->ex = NULL;
    c->state = CONN_CLOSED;
    timer_cancel(&W.loop.timers, &c->timer);
    loop_close(&W.loop, &c->io);
    if (c->rx) rx_put(c->rx);
    c->rx = NULL;
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
    worker_conn_closed();
}

void conn_force_close(struct conn *c)
{
    conn_close(c);
}

static bool keep_alive(const struct conn *c)
{
    return c->rx->req.keep_alive && !c->close_after && !W.draining;
}

static const char *reject_body(int status)
{
    switch (status) {
    case 400: return "bad request\n";
    case 408: return "request timeout\n";
    case 413: return "request body too large\n";
    case 414: return "request line too long\n";
    case 431: return "request header too large\n";
    case 501: return "not implemented\n";
    case 505: return "http version not supported\n";
    default: return "error\n";
    }
}

/* A client can make rejections at will: each gets one info line, but at
 * most this many a second per worker, and the rest are counted. */
#define REJECT_LOG_PER_SEC 10
static struct log_budget reject_budget;

/* "rejected 400 (Invalid method encountered) from 127.0.0.1:40112": the
 * parser's own reason when it found the fault, else what the client reads. */
static void log_rejection(struct conn *c, int status)
{
    if (!log_enabled(LOG_INFO)) return;
    unsigned dropped;
    bool take = log_budget_take(&reject_budget, W.loop.now_ms, REJECT_LOG_PER_SEC, &dropped);
    if (dropped) log_info("%u more rejected requests were not logged in the last second", dropped);
    if (!take) return;
    const char *why = reject_body(status);
    int why_len = (int)strcspn(why, "\n");
    llhttp_errno_t e = llhttp_get_errno(&c->parser);
    if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE && e != HPE_PAUSED_H2_UPGRADE) {
        why = llhttp_get_error_reason(&c->parser);
        why_len = why ? (int)strlen(why) : 0;
    }
    char addr[64];
    log_info("rejected %d (%.*s) from %s", status, why_len, why ? why : "", log_addr(&c->peer.sa, addr, sizeof(addr)));
}

/* A request we will not serve: answer (unless an answer is already queued),
 * then close. */
static void reject(struct conn *c, int status)
{
    struct conn_rx *rx = c->rx;
    log_debug("conn fd=%d rejected with %d in state %s", c->io.fd, status, conn_state_name(c->state));
    log_rejection(c, status);
    if (!rx->responded) {
        /* A request line read up to its target names the method even when
         * the head is bad or incomplete: a HEAD gets no body then either. */
        bool head = rx->req.head_done ? rx->req.method == HTTP_HEAD
                                      : rx->req.url.len && c->parser.method == HTTP_HEAD;
        http_simple_response(&rx->out, status, false, head, W.loop.wall_now, reject_body(status));
        rx->status = status;
    }
    rx->responded = true;
    request_finish(c, rx->status);
    if (rx->sreq) script_req_end(rx->sreq);
    rx->sreq = NULL;
    c->close_after = true;
    c->state = CONN_CLOSING;
    loop_timer(&W.loop, &c->timer, W.cfg->idle_timeout_ms);
}

static void write_reply(struct conn *c, struct script_reply *rep)
{
    struct conn_rx *rx = c->rx;
    struct http_response r = {
        .status = rep->status,
        .keep_alive = keep_alive(c) && rep->status >= 200,
        .http10 = rx->req.http_minor == 0,
        .head_only = rep->head_only || rx->req.method == HTTP_HEAD,
    };
    int rc = http_response_begin(&rx->out, &r);
    for (size_t i = 0; !rc && i < rep->nheaders; i++) {
        struct script_header *h = &rep->headers[i];
        if (http_response_header(&rx->out, &r, h->name, h->nlen, h->value, h->vlen) < 0) rc = -ENOMEM;
    }
    if (!rc) rc = http_response_end(&rx->out, &r, W.loop.wall_now, rep->body, rep->body_len);
    script_reply_done();
    rx->responded = true;
    rx->status = rep->status;
    if (!r.keep_alive) c->close_after = true;
    if (rc) {
        log_error("out of memory writing a response of %zu bytes", rep->body_len);
        conn_close(c);
    }
}

static void update_view(struct conn_rx *rx)
{
    rx->view.base = rx->data;
    rx->view.body = rx->body.data;
    rx->view.body_len = rx->body.len;
}

/* The head is complete: validate it and let the script decide. */
static void request_route(struct conn *c)
{
    struct conn_rx *rx = c->rx;
    const struct config *cfg = W.cfg;
    rx->routed = true;
    rx->head_len = rx->pos;
    timer_cancel(&W.loop.timers, &c->timer);
    if (rx->head_len > cfg->max_header_size) return reject(c, 431);
    int status = http_check_head(&rx->req, rx->data, rx->head_len);
    if (!status) status = http_validate_head(&rx->req, rx->data);
    if (status) return reject(c, status);

    rx->view.req = &rx->req;
    rx->view.peer = &c->peer.sa;
    rx->view.body_ready = false;
    update_view(rx);
    struct script_reply rep;
    struct upstream *up = NULL;
    if (c->admin) {
        rx->decision = SCRIPT_RESPOND;
        admin_reply(&rx->req, rx->data, &rep);
    } else if (!(rx->sreq = script_req_begin(&rx->view))) {
        rx->decision = SCRIPT_RESPOND;
        rep = (struct script_reply){.status = 500, .body = "internal error\n", .body_len = 15};
    } else if (script_has_route(rx->sreq)) {
        rx->decision = script_route(rx->sreq, &rep, &up);
    } else {
        rx->decision = SCRIPT_LOCAL;
    }
    if (c->state == CONN_CLOSED) return;

    bool body_follows = rx->req.has_body && !rx->req.message_done;
    switch (rx->decision) {
    case SCRIPT_UPSTREAM:
        c->state = CONN_UPSTREAM;
        /* A body (or a tunnel) is read from the socket by forward, which
         * stops at its end, not at EAGAIN: what follows it may wait there. */
        c->read_pending = !rx->req.message_done || rx->req.upgrade;
        forward_start(c, up);
        return;
    case SCRIPT_RESPOND:
        /* Answered before the body: it is read and dropped, unless the
         * client waits for 100-continue and so may never send it. */
        if (body_follows && rx->req.expect_continue) c->close_after = true;
        rx->pctx.body = NULL;
        write_reply(c, &rep);
        break;
    case SCRIPT_LOCAL:
        if (!body_follows) break;
        if (!rx->req.chunked && rx->req.content_length > cfg->max_body_size) return reject(c, 413);
        rx->pctx.body = &rx->body;
        rx->pctx.max_body = cfg->max_body_size;
        if (rx->req.expect_continue && rx->req.http_minor == 1)
            buf_puts(&rx->out, "HTTP/1.1 100 Continue\r\n\r\n");
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
    struct conn_rx *rx = c->rx;
    request_finish(c, rx->status);
    c->served = true;
    if (rx->sreq) script_req_end(rx->sreq);
    rx->sreq = NULL;
    if (!keep_alive(c) || c->close_after) {
        c->state = CONN_CLOSING;
        loop_timer(&W.loop, &c->timer, W.cfg->idle_timeout_ms);
        return;
    }
    if (rx->req.upgrade) llhttp_reset(&c->parser); /* served locally: stay HTTP */
    c->state = CONN_IDLE;
    loop_timer(&W.loop, &c->timer, W.cfg->idle_timeout_ms);
}

static void request_complete(struct conn *c)
{
    struct conn_rx *rx = c->rx;
    if (!rx->routed) {
        request_route(c);
        if (c->state >= CONN_UPSTREAM) return;
    }
    if (rx->decision == SCRIPT_LOCAL && !rx->responded) {
        struct script_reply rep;
        update_view(rx);
        rx->view.body_ready = true;
        script_handle(rx->sreq, &rep);
        write_reply(c, &rep);
        if (c->state == CONN_CLOSED) return;
    }
    request_end(c);
}

static void request_begin(struct conn *c)
{
    struct conn_rx *rx = c->rx;
    if (rx->pos) { /* the previous request is done with: move what follows to the front */
        memmove(rx->data, rx->data + rx->pos, rx->end - rx->pos);
        rx->end -= rx->pos;
        rx->pos = 0;
    }
    rx_request_reset(rx);
    rx->t0_us = W.loop.now_us;
    rx->q0 = rx->flushed + buf_pending(&rx->out);
    rx->spliced_out = 0;
    rx->status = 0;
    rx->logged = false;
    rx->up_addr = NULL;
    rx->up_us = 0;
    c->state = CONN_HEAD;
    /* The first head's time counts from the accept (a client that waits
     * before its first byte gains nothing); a later one's from its start. */
    if (c->served) loop_timer(&W.loop, &c->timer, W.cfg->header_timeout_ms);
}

/* The head llhttp refused (rx->fix_err), once it is all in the buffer:
 * rewritten (http_head_rewrite) and parsed again from its start. false:
 * waiting for more of it, or rejected. */
static bool head_parse_again(struct conn *c, llhttp_errno_t *err)
{
    struct conn_rx *rx = c->rx;
    uint32_t end = http_head_end(rx->data, rx->end);
    if (!end || end > W.cfg->max_header_size) {
        if (rx->end > W.cfg->max_header_size) reject(c, 431);
        rx->pos = rx->end;
        return false;
    }
    llhttp_errno_t first = rx->fix_err;
    rx->fix_err = HPE_OK;
    rx->fixed = true;
    struct slice method = {0};
    int rc = http_head_rewrite(rx->data, &rx->end, end, first == HPE_INVALID_METHOD, &method);
    if (rc != 1) {
        reject(c, rc ? rc : http_error_status(first, &rx->req, rx->data, rx->end));
        return false;
    }
    const char *stop;
    *err = http_parse_again(&c->parser, &rx->pctx, rx->data, rx->end, method, &stop);
    rx->pos = (uint32_t)(stop - rx->data);
    return true;
}

/* Parses and answers what is buffered, request after request. */
static void conn_process(struct conn *c)
{
    while (c->rx && c->state <= CONN_BODY) {
        struct conn_rx *rx = c->rx;
        if ((rx->pos == rx->end && !rx->fix_err) || buf_pending(&rx->out) > BUF_OUT_HIGH_WATER) break;
        if (c->state == CONN_IDLE) request_begin(c);

        rx->pctx.req = &rx->req;
        rx->pctx.base = rx->data;
        c->parser.data = &rx->pctx;
        llhttp_errno_t err;
        if (rx->fix_err) {
            if (!head_parse_again(c, &err)) break;
        } else {
            err = http_execute(&c->parser, rx->data, &rx->pos, &rx->end);
        }

        if (c->state == CONN_HEAD && !rx->routed && !rx->fixed && http_head_fixable(err)) {
            /* Refused by llhttp, perhaps allowed by RFC 9112: wait for the
             * whole head, then rewrite it and parse it again. */
            rx->fix_err = err;
        } else if (err == HPE_PAUSED) {
            llhttp_resume(&c->parser);
            if (rx->req.message_done) request_complete(c);
            else request_route(c);
        } else if (err == HPE_PAUSED_UPGRADE) {
            llhttp_resume_after_upgrade(&c->parser);
        } else if (err == HPE_USER && rx->req.too_many) {
            reject(c, 431);
        } else if (err == HPE_USER && rx->pctx.body_too_large) {
            reject(c, 413);
        } else if (err != HPE_OK) {
            log_debug("conn fd=%d parse error %s: %s", c->io.fd, llhttp_errno_name(err),
                      llhttp_get_error_reason(&c->parser));
            reject(c, http_error_status(err, &rx->req, rx->data, rx->end));
        } else if (c->state == CONN_HEAD && rx->pos > W.cfg->max_header_size) {
            reject(c, 431);
        } else if (c->state == CONN_BODY) {
            /* Every body byte parsed so far was copied out (or dropped);
             * what is left is the start of a chunk-size line. */
            uint32_t left = rx->end - rx->pos;
            memmove(rx->data + rx->head_len, rx->data + rx->pos, left);
            rx->pos = rx->head_len;
            rx->end = rx->head_len + left;
            rx->starved = left > 0;
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
            ssize_t n = recv(c->io.fd, sink, sizeof(sink), 0);
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
        if (!c->rx && !(c->rx = rx_get())) {
            log_error("out of memory for a connection buffer");
            conn_close(c);
            return;
        }
        struct conn_rx *rx = c->rx;
        if (rx->end == rx->cap && ((c->state == CONN_BODY && !rx->starved) || !rx_grow(rx))) {
            c->read_blocked = true;
            return;
        }
        size_t room = rx->cap - rx->end;
        ssize_t n = recv(c->io.fd, rx->data + rx->end, room, 0);
        if (n > 0) {
            rx->end += (uint32_t)n;
            rx->starved = false;
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

int conn_flush(struct conn *c)
{
    struct conn_rx *rx = c->rx;
    bool moved = false;
    while (rx && buf_pending(&rx->out)) {
        ssize_t n = send(c->io.fd, rx->out.data + rx->out.off, buf_pending(&rx->out), MSG_NOSIGNAL);
        if (n > 0) {
            buf_consume(&rx->out, (size_t)n);
            rx->flushed += (uint64_t)n;
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
            return loop_mod(&W.loop, &c->io, IO_READ | IO_WRITE);
        }
        conn_close(c);
        return -1;
    }
    return loop_mod(&W.loop, &c->io, IO_READ);
}

/* After reading, processing and writing: the transitions that depend on
 * what is left in the buffers. */
static void conn_settle(struct conn *c)
{
    if (c->state == CONN_CLOSED) return;
    struct conn_rx *rx = c->rx;
    bool out_pending = rx && buf_pending(&rx->out);
    bool in_pending = rx && rx->pos < rx->end && !rx->starved;

    if (c->state == CONN_CLOSING && !out_pending) {
        /* Half-close, then drain: closing with unread input would make the
         * kernel send a reset that can destroy the answer in flight. */
        shutdown(c->io.fd, SHUT_WR);
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
        if (!out_pending && rx) {
            rx_put(rx);
            c->rx = NULL;
        }
    }
    if (c->eof && (c->state == CONN_HEAD || c->state == CONN_BODY) && !in_pending)
        return conn_close(c); /* the client left in the middle of a request */
    if (c->read_blocked && c->state <= CONN_BODY && (!rx || rx->end < rx->cap)) {
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
        struct conn_rx *rx = c->rx;
        if (!rx || c->state > CONN_BODY || rx->pos == rx->end || rx->starved ||
            buf_pending(&rx->out) > BUF_OUT_HIGH_WATER)
            break;
    }
    conn_settle(c);
}

static void conn_on_io(struct io *io, unsigned events)
{
    struct conn *c = container_of(io, struct conn, io);
    /* Edge-triggered: the FIN is reported once. A read that stops early
     * (buffer full, or in another state) must still find it later. */
    if (events & (IO_HUP | IO_ERROR)) c->hup = true;
    if (c->state == CONN_UPSTREAM) {
        if (events & (IO_READ | IO_HUP | IO_ERROR)) c->read_pending = true;
        return forward_client_event(c->ex, events);
    }
    conn_drive(c, events & IO_READ, c->hup);
}

void conn_upstream_done(struct conn *c, bool close_after)
{
    c->ex = NULL;
    if (close_after) c->close_after = true;
    c->state = CONN_BODY; /* request_end decides: idle or closing */
    request_end(c);
    /* Pipelined requests may be waiting in the buffer or the socket: on the
     * next turn, so an exchange that ended at once cannot recurse here. The
     * socket was last read to a short read (edge-triggered: drained) unless
     * an event came during the exchange or forward read a body from it;
     * otherwise a read now would only find EAGAIN (one syscall of six). */
    c->skip_read = !c->read_pending;
    c->read_pending = false;
    loop_defer(&W.loop, &c->resume);
}

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
    case CONN_UPSTREAM:
        break;
    default: /* idle keep-alive, a client not reading, or the linger is over */
        conn_close(c);
        break;
    }
}

void conn_accept(int fd, const struct sockaddr *peer, socklen_t plen, bool admin)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        log_error("out of memory accepting a connection");
        close(fd);
        return;
    }
    c->io.fd = fd;
    c->io.cb = conn_on_io;
    c->admin = admin;
    memcpy(&c->peer, peer, plen < sizeof(c->peer) ? plen : sizeof(c->peer));
    c->timer.cb = conn_on_timer;
    c->resume.cb = conn_on_resume;
    http_parser_init(&c->parser, NULL); /* the setup the unit tests check */
    if (loop_add(&W.loop, &c->io, IO_READ)) {
        log_error("epoll_ctl: %s", strerror(errno));
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
            bool busy = c->rx && (c->rx->pos < c->rx->end || buf_pending(&c->rx->out));
            if (c->state == CONN_IDLE && !busy) conn_close(c);
        }
        c = next;
    }
}
