/* exchange: the life of one proxied exchange, from the client's
 * exchange_start to its done or failed call: the phases and their timer,
 * the driving on events of either side, the errors we answer ourselves,
 * and the end. What happens within a phase is in backend.c, response.c and
 * tunnel.c (see proxy.h). */
#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http_response.h"
#include "stats.h"
#include "worker_state.h"

static struct exchange *ex_pool;

static void on_timer(struct timer *t);
static void on_backend_event(struct bconn *b, unsigned events);

/* ---- memory ---------------------------------------------------------- */

static struct exchange *ex_get(void)
{
    struct exchange *ex = ex_pool;
    if (ex) {
        ex_pool = ex->next_free;
    } else {
        ex = calloc(1, sizeof(*ex));
        if (!ex) return NULL;
    }
    struct buf req_head = ex->req_head, resp_buf = ex->resp_buf;
    bool *tried = ex->tried;
    int tried_cap = ex->tried_cap;
    memset(ex, 0, sizeof(*ex));
    ex->req_head = req_head;
    ex->req_head.len = ex->req_head.off = 0;
    ex->resp_buf = resp_buf;
    ex->resp_buf.len = ex->resp_buf.off = 0;
    ex->tried = tried;
    ex->tried_cap = tried_cap;
    ex->req_pipe.rd = ex->req_pipe.wr = -1;
    ex->resp_pipe.rd = ex->resp_pipe.wr = -1;
    ex->up_pipe.rd = ex->up_pipe.wr = -1;
    return ex;
}

static void ex_put(struct exchange *ex)
{
    if (ex->req_head.cap > 65536) buf_free(&ex->req_head);
    if (ex->resp_buf.cap > 65536) buf_free(&ex->resp_buf);
    ex->next_free = ex_pool;
    ex_pool = ex;
}

void exchange_pool_free(void)
{
    while (ex_pool) {
        struct exchange *ex = ex_pool;
        ex_pool = ex->next_free;
        buf_free(&ex->req_head);
        buf_free(&ex->resp_buf);
        free(ex->tried);
        free(ex);
    }
}

/* ---- phases ---------------------------------------------------------- */

void ex_enter(struct exchange *ex, enum ex_phase p)
{
    ex->phase = p;
    switch (p) {
    case EX_CONNECTING: loop_timer(&W.loop, &ex->timer, ex->up->connect_timeout_ms); break;
    /* From here read_timeout counts from the last progress: each byte
     * moved either way re-arms it (see backend.c and response.c). */
    case EX_SENDING_HEAD: loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms); break;
    case EX_TUNNEL:
    case EX_DONE: timer_cancel(&W.loop.timers, &ex->timer); break;
    default: break;
    }
}

void ex_release_backend(struct exchange *ex, bool reusable)
{
    struct bconn *b = ex->b;
    if (!b) return;
    ex->b = NULL;
    b->ex = NULL;
    if (ex->srv) ex->srv->active--;
    /* A pipe with bytes in it belongs to a transfer that did not finish:
     * it goes, not back to the pool (pipe_give closes it then). */
    if (reusable && b->connected) {
        b->requests++;
        pool_put(b);
    } else {
        bconn_close(b);
    }
}

/* Gives back everything the exchange holds; it is gone afterwards. */
static void ex_release(struct exchange *ex, bool backend_reusable)
{
    ex_enter(ex, EX_DONE);
    ex_release_backend(ex, backend_reusable);
    pipe_give(&ex->req_pipe);
    pipe_give(&ex->resp_pipe);
    pipe_give(&ex->up_pipe);
    ex_put(ex);
}

/* What the client logs. An exchange that answered (ours or the backend's
 * head) names its server; one cut short reports only an answer of ours
 * that was queued whole. */
static void ex_report(const struct exchange *ex, struct exchange_report *r, bool answered)
{
    *r = (struct exchange_report){.spliced = ex->spliced};
    if (!ex->status || !answered) return;
    r->status = ex->status;
    r->server = ex->srv ? ex->srv->name : NULL;
    r->us = W.loop.now_us - ex->started_us;
    struct server *s = ex->srv;
    if (s && s->stat && s->stat_code == ex->status) {
        STAT_ADD(s->stat->count, 1); /* the series of the last response: no lookup */
    } else {
        struct ustat *e = stats_upstream(ex->up->name, s ? s->name : "-", ex->status);
        if (s) {
            s->stat = e;
            s->stat_code = ex->status;
        }
    }
}

void ex_finish(struct exchange *ex)
{
    const struct exchange_client *cl = ex->cl;
    void *client = ex->client;
    struct exchange_report r;
    ex_report(ex, &r, true);
    bool close_after = ex->client_close || !ex->req_done;
    ex_release(ex, ex->backend_reusable);
    cl->done(client, &r, close_after);
}

void exchange_abort(struct exchange *ex, struct exchange_report *r)
{
    ex_report(ex, r, ex->own_answer);
    ex_release(ex, false);
}

/* The client goes: report, release, and let it close. */
static void ex_drop_client(struct exchange *ex, bool answered)
{
    const struct exchange_client *cl = ex->cl;
    void *client = ex->client;
    struct exchange_report r;
    ex_report(ex, &r, answered);
    ex_release(ex, false);
    cl->failed(client, &r);
}

void ex_close_client(struct exchange *ex, enum log_level level, const char *why)
{
    if (log_enabled(level))
        log_msg(level, "%s %s: %s%s; closing the client connection", ex->up->name, ex->srv ? ex->srv->name : "-",
                why, ex_head_sent(ex) ? " after the response head was sent" : "");
    ex_drop_client(ex, true);
}

void ex_abort_client(struct exchange *ex, const char *why)
{
    ex_close_client(ex, LOG_WARN, why);
}

void ex_error(struct exchange *ex, int status, const char *why)
{
    if (ex_head_sent(ex)) return ex_abort_client(ex, why);
    /* A 408 is the client's doing: on_timer logged the line that says so. */
    if (status != 408)
        log_warn("upstream %s%s%s: %s: answering %d", ex->up->name, ex->srv ? " server " : "",
                 ex->srv ? ex->srv->name : "", why, status);
    ex_release_backend(ex, false);
    /* Body bytes may still be on their way from the client: unless the
     * request was read to its end, the connection cannot be reused. */
    const struct http_request *req = ex->rq.req;
    bool complete = req->message_done || (ex->req_left == 0 && !ex->req_chunked);
    ex->client_close = ex->client_close || !complete;
    ex->req_done = complete;
    bool keep = !ex->client_close && ex->cl->keep_alive(ex->client);
    /* A body after the head of a HEAD answer would be read by the client
     * as the start of its next response. */
    http_simple_response(ex->out, status, keep, req->method == HTTP_HEAD, W.loop.wall_now, http_error_body(status));
    ex->status = status;
    ex->own_answer = true;
    ex->client_close = !keep;
    ex->resp_done = true;
    ex->backend_reusable = false;
    ex_enter(ex, EX_RELAYING);
    if (ex->cl->flush(ex->client) < 0) return; /* closed; the exchange went with it */
    ex_finish(ex);
}

/* ---- the timer --------------------------------------------------------- */

/* Response bytes are waiting for the client's socket to take them: in the
 * output buffer, or in the pipe (a splice leaves bytes there only when the
 * client's socket is full). */
static bool client_blocked(const struct exchange *ex)
{
    return buf_pending(ex->out) || ex->resp_pipe.len;
}

/* The request body waits for the client to send more: nothing of it is
 * held back by the backend (in the pipe, or parsed and unsent). */
static bool upload_waits_for_client(const struct exchange *ex)
{
    if (ex->req_done || buf_pending(&ex->req_head)) return false;
    /* A client that asked for 100-continue may wait for it before sending. */
    if (ex->rq.req->expect_continue && !ex->interim_seen) return false;
    if (ex->req_left) return ex->req_pipe.len == 0;
    return ex->req_chunked && !ex->chunk_pending;
}

/* The info line for a read_timeout that the client caused: it names the
 * client, by address and port, rather than the backend. */
static void log_client_stall(const struct exchange *ex, const char *what, const char *then)
{
    char addr[64];
    log_info("client %s %s (upstream %s server %s): nothing moved in read_timeout (%llu ms); %s",
             log_addr(ex->rq.peer, addr, sizeof(addr)), what, ex->up->name, ex->srv->name,
             (unsigned long long)ex->up->read_timeout_ms, then);
}

static void on_timer(struct timer *t)
{
    struct exchange *ex = container_of(t, struct exchange, timer);
    if (ex->phase == EX_CONNECTING) {
        upstream_fail(ex->srv, W.loop.now_ms);
        log_warn("upstream %s server %s: connect timed out", ex->up->name, ex->srv->name);
        ex_release_backend(ex, false);
        ex->srv = NULL;
        return backend_try_server(ex);
    }
    if (ex_head_sent(ex) && client_blocked(ex)) {
        /* Response bytes wait for the client: it, not the backend, made no
         * progress for read_timeout (the one timer of the exchange, re-armed
         * by every byte moved). */
        log_client_stall(ex, "stopped reading the response", "closing the client connection");
        return ex_close_client(ex, LOG_DEBUG, "client stopped reading");
    }
    if (!ex_head_sent(ex) && upload_waits_for_client(ex)) {
        /* The backend waits for the rest of the body as much as we do: a
         * 408 for the client (nginx's client_body_timeout), and no failure
         * counted against the server, or one slow uploader could take it
         * out of rotation. */
        log_client_stall(ex, "stopped sending the request body", "answering 408");
        ex->client_close = true;
        return ex_error(ex, 408, "client stopped sending the request body");
    }
    if (ex->phase == EX_SCRIPT) return ex_error(ex, 504, "on_response did not finish within read_timeout");
    if (!ex_head_sent(ex)) upstream_fail(ex->srv, W.loop.now_ms);
    ex_error(ex, 504, "no response within read_timeout");
}

/* ---- driving ----------------------------------------------------------- */

void exchange_start(const struct exchange_client *cl, void *client, const struct exchange_request *rq,
                    struct upstream *u, struct exchange **slot)
{
    struct exchange *ex = ex_get();
    if (!ex || (ex->up = u, !backend_ensure_tried(ex))) {
        log_error("out of memory starting a proxied exchange");
        if (ex) ex_put(ex);
        *slot = NULL;
        struct exchange_report r = {0};
        cl->failed(client, &r);
        return;
    }
    *slot = ex;
    ex->cl = cl;
    ex->client = client;
    ex->rq = *rq;
    ex->out = cl->out(client);
    memset(ex->tried, 0, (size_t)u->nservers * sizeof(bool));
    ex->timer.cb = on_timer;
    ex->started_us = W.loop.now_us;
    const struct http_request *r = rq->req;
    ex->upgrade = r->upgrade;
    ex->req_chunked = r->chunked && !r->message_done;
    response_init(ex);
    /* Chunks that came with the head are checked before any byte goes to
     * a backend: a malformed body read in one piece with its head is a 400
     * that no backend ever sees. */
    if (ex->req_chunked) {
        const char *p;
        size_t n;
        enum chunked_step step = cl->chunked_next(client, false, &p, &n);
        if (step == CHUNKED_BAD) {
            ex->client_close = true;
            return ex_error(ex, 400, "malformed chunked request body");
        }
        ex->chunk_pending = step == CHUNKED_DATA || step == CHUNKED_END;
    }
    backend_try_server(ex);
}

void ex_run(struct exchange *ex, bool backend_readable)
{
    if (ex->phase == EX_TUNNEL) return tunnel_run(ex);
    if (ex->phase < EX_SENDING_HEAD || ex->phase == EX_SCRIPT || ex->phase == EX_DONE) return;
    bool just_sent = false;
    if (!ex->req_done) {
        if (!backend_send_request(ex)) return;
        just_sent = ex->req_done;
    }
    /* The request has just gone out: the answer cannot be there yet unless
     * this is a readable event, and its arrival will be an edge (every
     * earlier readable event was read to EAGAIN; a pooled connection is
     * idle only when drained). Reading now would only find EAGAIN. */
    if (!ex_head_sent(ex) && just_sent && !backend_readable && !ex->resp_buf.len) return;
    if (!ex_head_sent(ex) && !response_read_head(ex)) return;
    if (ex->phase == EX_TUNNEL) return tunnel_run(ex);
    if (ex_head_sent(ex) && !response_relay(ex)) return;
    if (ex->resp_done && !buf_pending(ex->out)) {
        if (!ex->req_done) ex->backend_reusable = false; /* answered before the body was read */
        ex_finish(ex);
    }
}

static void on_backend_event(struct bconn *b, unsigned events)
{
    struct exchange *ex = b->ex;
    if (ex->phase == EX_CONNECTING) {
        if (!(events & (IO_WRITE | IO_ERROR))) return;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(b->tp.io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (!backend_connected(ex, err)) return;
    }
    ex_run(ex, events & (IO_READ | IO_HUP | IO_ERROR));
}

void ex_take_backend(struct exchange *ex, struct bconn *b)
{
    ex->b = b;
    b->ex = ex;
    b->on_event = on_backend_event;
}

void exchange_event(struct exchange *ex, unsigned events)
{
    if ((events & IO_ERROR) && ex->phase != EX_TUNNEL) {
        /* The client is gone: nobody to answer. */
        log_debug("client went away during a proxied exchange");
        return ex_drop_client(ex, ex->own_answer);
    }
    if ((events & IO_WRITE) && !(events & IO_READ) && ex->phase != EX_TUNNEL && !buf_pending(ex->out) &&
        ex->mode != RB_LENGTH)
        return;
    ex_run(ex, false);
}
