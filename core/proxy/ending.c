/* ending: the bottom of the proxy wing: an exchange's memory, its phase
 * transitions (ex_enter), and how it ends: done (ex_finish), with an
 * answer of ours (ex_error), or with the client closed (ex_close_client,
 * exchange_abort). Every other file of the wing calls down to it. */
#include "proxy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http_response.h"
#include "stats.h"
#include "worker_state.h"

static struct exchange *ex_pool;

/* ---- memory ---------------------------------------------------------- */

struct exchange *ex_get(void)
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

void ex_put(struct exchange *ex)
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
    ex->restart = false;
    ex_release_backend(ex, backend_reusable);
    upstream_epoch_leave(ex->epoch);
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
void ex_drop_client(struct exchange *ex, bool answered)
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

