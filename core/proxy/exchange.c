/* exchange: the top of the proxy wing: an exchange's start, its timer, and
 * its driving on events of either side. What happens within a phase is in
 * response.c, backend.c and tunnel.c; how an exchange ends (its phases'
 * transitions, the errors we answer ourselves, the report) is in ending.c,
 * below them all (see proxy.h). */
#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http_response.h"
#include "stats.h"
#include "worker_state.h"

static void on_timer(struct timer *t);
static void on_backend_event(struct bconn *b, unsigned events);
static void ex_run(struct exchange *ex, bool backend_readable);

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
        if (backend_try_server(ex)) ex_run(ex, false);
        return;
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
    ex->tried_gen = u->servers_gen;
    ex->epoch = upstream_epoch_enter();
    ex->timer.cb = on_timer;
    ex->on_backend_event = on_backend_event;
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
    if (backend_try_server(ex)) ex_run(ex, false);
}

/* Drives the exchange as far as it goes now; backend_readable: for an
 * event of the backend's socket that may carry bytes to read. */
static void ex_run(struct exchange *ex, bool backend_readable)
{
again:
    if (ex->phase == EX_TUNNEL) return tunnel_run(ex);
    if (ex->phase < EX_SENDING_HEAD || ex->phase == EX_SCRIPT || ex->phase == EX_DONE) return;
    bool just_sent = false;
    if (!ex->req_done) {
        if (!backend_send_request(ex)) goto stopped;
        just_sent = ex->req_done;
    }
    /* The request has just gone out: the answer cannot be there yet unless
     * this is a readable event, and its arrival will be an edge (every
     * earlier readable event was read to EAGAIN; a pooled connection is
     * idle only when drained). Reading now would only find EAGAIN. */
    if (!ex_head_sent(ex) && just_sent && !backend_readable && !ex->resp_buf.len) return;
    if (!ex_head_sent(ex) && !response_read_head(ex)) goto stopped;
    if (ex->phase == EX_TUNNEL) return tunnel_run(ex);
    if (ex_head_sent(ex) && !response_relay(ex)) return;
    if (ex->resp_done && !buf_pending(ex->out)) {
        if (!ex->req_done) ex->backend_reusable = false; /* answered before the body was read */
        ex_finish(ex);
    }
    return;
stopped:
    /* A connection that failed before any answer was replaced by a pooled
     * one (backend_failed): go on with it. An exchange that ended has
     * restart cleared (ex_release). */
    if (ex->restart) {
        ex->restart = false;
        backend_readable = false;
        goto again;
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
        if (err) {
            if (backend_connect_failed(ex, err)) ex_run(ex, false);
            return;
        }
        backend_connected(ex);
    }
    ex_run(ex, events & (IO_READ | IO_HUP | IO_ERROR));
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

void exchange_script_ready(struct exchange *ex)
{
    if (ex->phase != EX_SCRIPT) return;
    if (!response_script_ready(ex)) return;
    /* Edges that came while on_response waited were not acted on: look. */
    ex_run(ex, true);
}
