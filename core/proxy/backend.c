/* backend: the exchange's side towards the server: choosing one through
 * the upstream's balancer, a pooled connection or a new one, sending the
 * request (head, then body), and what to do when a connection fails before
 * any response byte (another connection, another server, or an answer of
 * ours). */
#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "proxy_head.h"
#include "script.h"
#include "stats.h"
#include "worker_state.h"

bool backend_ensure_tried(struct exchange *ex)
{
    int n = ex->up->nservers;
    if (ex->tried_cap < n) {
        bool *t = realloc(ex->tried, (size_t)n * sizeof(bool));
        if (!t) return false;
        ex->tried = t;
        ex->tried_cap = n;
    }
    return true;
}

/* The head for the chosen server, and the body bytes that came with it,
 * so that both leave in one send. */
static int build_request(struct exchange *ex)
{
    const struct http_request *r = ex->rq.req;
    struct script_edits ed, *e = script_req_edits(ex->rq.sreq, &ed) ? &ed : NULL;
    struct proxy_request_head h = {
        .req = r,
        .base = ex->rq.base,
        .head_len = ex->rq.head_len,
        .edits = e,
        .peer = ex->rq.peer,
        .https = ex->rq.https,
        .default_host = ex->srv->host[0] ? ex->srv->host : ex->srv->name,
        .upgrade = ex->upgrade,
    };
    ex->req_head.len = ex->req_head.off = 0;
    int rc = proxy_head_request(&ex->req_head, &h);
    script_reply_done();
    if (rc) return rc;
    if (r->has_body && !r->message_done && !r->chunked) {
        uint64_t n = ex->cl->body_take(ex->client, &ex->req_head, r->content_length);
        ex->req_left = r->content_length - n;
    }
    return 0;
}

/* true: a pooled connection, ready: the caller runs the exchange on it. */
static bool start_on(struct exchange *ex, struct bconn *b, bool reused)
{
    ex->b = b;
    b->ex = ex;
    b->on_event = ex->on_backend_event;
    ex->reused = reused;
    ex->srv->active++;
    /* A replay starts the request over; only an unstarted body gets here. */
    ex->req_head.off = 0;
    ex->req_done = false;
    ex_enter(ex, reused ? EX_SENDING_HEAD : EX_CONNECTING);
    return reused;
}

bool backend_try_server(struct exchange *ex)
{
    struct upstream *u = ex->up;
    ex_enter(ex, EX_CHOOSING);
    for (;;) {
        if (ex->attempts > u->retries) return ex_error(ex, 502, "every server tried failed"), false;
        if (ex->tried_gen != u->servers_gen) { /* replaced meanwhile (upstream_set.h): the indexes are new */
            if (!backend_ensure_tried(ex)) return ex_error(ex, 502, "out of memory"), false;
            memset(ex->tried, 0, (size_t)u->nservers * sizeof(bool));
            ex->tried_gen = u->servers_gen;
        }
        struct server *s;
        if (balance_choose(ex->rq.sreq, u, ex->tried, W.loop.now_ms, &s))
            return ex_error(ex, 500, "the script's balancing hook failed"), false;
        if (!s) {
            bool any_up = false;
            for (int i = 0; i < u->nservers; i++)
                if (upstream_server_up(&u->servers[i], W.loop.now_ms)) any_up = true;
            if (ex->attempts == 0)
                return ex_error(ex, 503, any_up || u->balance == BALANCE_LUA ? "no server chosen"
                                                                                : "every server is down"),
                       false;
            return ex_error(ex, 502, "every server tried failed"), false;
        }
        ex->attempts++;
        ex->tried[s - u->servers] = true;
        ex->srv = s;
        if (ex->attempts == 1 || !ex->req_head.len) {
            if (build_request(ex)) return ex_error(ex, 502, "out of memory"), false;
        }
        struct bconn *b = pool_get(&s->pool);
        if (b) return start_on(ex, b, true);
        int err = 0;
        b = bconn_connect(s, &err);
        if (b) return start_on(ex, b, false);
        log_warn("upstream %s server %s: connect: %s", u->name, s->name, strerror(-err));
        upstream_fail(s, W.loop.now_ms);
    }
}

bool backend_connect_failed(struct exchange *ex, int err)
{
    log_warn("upstream %s server %s: connect: %s", ex->up->name, ex->srv->name, strerror(err));
    upstream_fail(ex->srv, W.loop.now_ms);
    ex_release_backend(ex, false);
    ex->srv = NULL;
    return backend_try_server(ex);
}

void backend_connected(struct exchange *ex)
{
    ex->b->connected = true;
    ex_enter(ex, EX_SENDING_HEAD);
}

/* RFC 9110 §9.2.2: the methods a client may expect to be repeated. */
static bool idempotent(uint8_t method)
{
    switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE: return true;
    default: return false;
    }
}

/* Whether the request may go to another backend connection. Spliced body
 * bytes are gone, so a body that started to flow is never replayed; the
 * head and the body bytes that came with it are kept, but a backend that
 * closes after reading them may have acted on them: only an idempotent
 * request is sent again once a byte of it was written. */
static bool replayable(const struct exchange *ex)
{
    return !ex->req_started && (!ex->req_wrote || idempotent(ex->rq.req->method));
}

void backend_failed(struct exchange *ex, const char *why)
{
    if (ex_head_sent(ex) || ex->resp_buf.len) return ex_error(ex, 502, why);
    /* A pooled connection the backend closed as we reused it: most likely
     * its keep-alive timeout, the request not processed. Once, on a fresh
     * connection, when replaying is safe. */
    bool replay = replayable(ex);
    if (ex->reused && !ex->fresh_retry_done && replay) {
        ex->fresh_retry_done = true;
        log_debug("upstream %s server %s: pooled connection failed (%s): retrying on a new one",
                  ex->up->name, ex->srv->name, why);
        ex_release_backend(ex, false);
        int err = 0;
        struct bconn *b = bconn_connect(ex->srv, &err);
        if (b) {
            start_on(ex, b, false);
            return;
        }
    }
    upstream_fail(ex->srv, W.loop.now_ms);
    if (ex->phase == EX_CONNECTING || replay) {
        /* Nothing was processed: another server may take it. */
        log_warn("upstream %s server %s: %s", ex->up->name, ex->srv->name, why);
        ex_release_backend(ex, false);
        ex->srv = NULL;
        /* Deep in a send or a read: the caller unwinds, and ex_run goes on
         * with the pooled connection this may have taken. */
        ex->restart = backend_try_server(ex);
        return;
    }
    ex_error(ex, 502, why);
}

/* ---- sending ----------------------------------------------------------- */

/* Sends what the backend takes of [p, p + n): the count (> 0); 0 when it
 * takes nothing more now (EPOLLOUT armed); -1 when the connection failed
 * (handled: retried or answered). */
static ssize_t backend_send(struct exchange *ex, const char *p, size_t n)
{
    for (;;) {
        ssize_t w = transport_write(&ex->b->tp, p, n);
        if (w > 0) {
            ex->req_wrote = true;
            return w;
        }
        if (w == -1 && errno == EINTR) continue;
        if (w == -1 && errno == EAGAIN) {
            loop_mod(&W.loop, &ex->b->tp.io, IO_READ | IO_WRITE);
            return 0;
        }
        backend_failed(ex, transport_strerror(&ex->b->tp, errno));
        return -1;
    }
}

/* The rest of a Content-Length body, spliced from the client. Done only
 * when the pipe is empty too: the last bytes read from the client may still
 * wait in it for the backend to take them. false when the exchange ended;
 * *blocked when it waits for either side. */
static bool send_spliced_body(struct exchange *ex, bool *blocked)
{
    uint64_t moved = 0;
    enum pump_result r = PUMP_DONE;
    if (ex->req_pipe.rd == -1 && pipe_take(&ex->req_pipe)) r = PUMP_ERROR;
    else r = transport_pump(ex->rq.transport, &ex->b->tp, &ex->req_pipe, &ex->req_left, &moved);
    if (moved || ex->req_pipe.len) ex->req_started = true;
    if (transport_can_splice(ex->rq.transport, &ex->b->tp)) STAT_ADD(WS->spliced_bytes, moved);
    /* read_timeout counts from the last progress, and while the body goes
     * up the backend owes us nothing yet. */
    if (moved) loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
    switch (r) {
    case PUMP_DONE: pipe_give(&ex->req_pipe); return true;
    case PUMP_WANT_READ: *blocked = true; return true; /* the client's next edge brings more */
    case PUMP_WANT_WRITE:
        loop_mod(&W.loop, &ex->b->tp.io, IO_READ | IO_WRITE);
        *blocked = true;
        return true;
    case PUMP_EOF: ex_close_client(ex, LOG_INFO, "client closed during the upload"); return false;
    case PUMP_ERROR:
        if (errno == EPIPE || errno == ECONNRESET) backend_failed(ex, strerror(errno));
        else ex_abort_client(ex, strerror(errno));
        return false;
    }
    return true;
}

/* A chunked body, relayed as the client's parser checks it. */
static bool send_chunked_body(struct exchange *ex, bool *blocked)
{
    for (;;) {
        const char *p;
        size_t n;
        switch (ex->cl->chunked_next(ex->client, true, &p, &n)) {
        case CHUNKED_DATA: {
            ex->chunk_pending = true;
            ssize_t w = backend_send(ex, p, n);
            if (w < 0) return false;
            if (w == 0) {
                *blocked = true;
                return true;
            }
            ex->req_started = true;
            loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
            ex->cl->chunked_sent(ex->client, (size_t)w);
            continue;
        }
        case CHUNKED_END:
            ex->chunk_pending = false;
            ex->req_chunked = false;
            return true;
        case CHUNKED_WAIT:
            ex->chunk_pending = false;
            *blocked = true;
            return true;
        case CHUNKED_BAD:
            ex->client_close = true;
            ex_error(ex, 400, "malformed chunked request body");
            return false;
        case CHUNKED_CLOSED: ex_close_client(ex, LOG_INFO, "client closed during the upload"); return false;
        }
    }
}

bool backend_send_request(struct exchange *ex)
{
    struct buf *h = &ex->req_head;
    while (buf_pending(h)) {
        ssize_t n = backend_send(ex, h->data + h->off, buf_pending(h));
        if (n <= 0) return n == 0;
        h->off += (size_t)n;
    }
    bool blocked = false;
    if (ex->req_left || ex->req_pipe.len || ex->req_chunked) {
        if (ex->phase == EX_SENDING_HEAD) ex_enter(ex, EX_SENDING_BODY);
        if ((ex->req_left || ex->req_pipe.len) && !send_spliced_body(ex, &blocked)) return false;
        if (!blocked && ex->req_chunked && !send_chunked_body(ex, &blocked)) return false;
        if (blocked) return true;
    }
    if (!ex->req_done) {
        ex->req_done = true;
        if (!ex_head_sent(ex)) ex_enter(ex, EX_WAITING);
        loop_mod(&W.loop, &ex->b->tp.io, IO_READ);
    }
    return true;
}
