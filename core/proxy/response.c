/* response: the exchange's side towards the client: the backend's
 * response head read and checked, shown to on_response and rewritten; how
 * its body travels (spliced, relayed as it came, de-chunked for HTTP/1.0,
 * chunked when unframed); and relaying it until the end. */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proxy_head.h"
#include "script.h"
#include "stats.h"
#include "worker_state.h"

/* ---- the response parser ----------------------------------------------- */

static struct exchange *ex_of(llhttp_t *p)
{
    return container_of(p->data, struct exchange, pctx);
}

static int r_on_message_begin(llhttp_t *p)
{
    struct exchange *ex = ex_of(p);
    http_request_reset(&ex->resp);
    ex->resp_head_done = ex->resp_message_done = false;
    return 0;
}

static int r_on_headers_complete(llhttp_t *p)
{
    struct exchange *ex = ex_of(p);
    ex->resp_head_done = true;
    ex->resp.head_done = true; /* trailers are not headers */
    int status = p->status_code;
    /* A HEAD answer has no body whatever its headers say; 1xx, 204 and 304
     * never have one. Those run on to on_message_complete, which pauses;
     * the others pause here so the body is not consumed by the parser. */
    bool head = ex->rq.req->method == HTTP_HEAD;
    ex->resp_skip_body = head || status < 200 || status == 204 || status == 304;
    if (ex->resp_skip_body) return status == 101 ? 2 : 1;
    return HPE_PAUSED;
}

/* Only while de-chunking for an HTTP/1.0 client, which must not get
 * Transfer-Encoding: the decoded bytes go out, ended by closing. */
static int r_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct exchange *ex = ex_of(p);
    if (ex->dechunk) buf_append(ex->out, at, len);
    return 0;
}

static int r_on_message_complete(llhttp_t *p)
{
    ex_of(p)->resp_message_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t response_settings = {
    .on_message_begin = r_on_message_begin,
    .on_status = http_on_url,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_header_value_complete = http_on_header_value_complete,
    .on_headers_complete = r_on_headers_complete,
    .on_body = r_on_body,
    .on_message_complete = r_on_message_complete,
};

void response_init(struct exchange *ex)
{
    llhttp_init(&ex->rp, HTTP_RESPONSE, &response_settings);
    ex->pctx.req = &ex->resp;
    ex->rp.data = &ex->pctx;
}

/* ---- the head ---------------------------------------------------------- */

/* The client's head, with on_response's edits (or none). */
static void write_response_head(struct exchange *ex, const struct script_edits *e)
{
    const char *base = ex->resp_buf.data;
    int status = ex->rp.status_code;
    bool switching = status == 101 && ex->upgrade;
    struct proxy_response_head h = {
        .status = status,
        .resp = &ex->resp,
        .base = base,
        .head_len = (uint32_t)ex->resp_parsed,
        .edits = e,
        .switching = switching,
        .drop_te = ex->mode != RB_CHUNKED || ex->dechunk,
        .chunk_out = ex->chunk_out,
        .close = ex->client_close,
        .http10 = ex->rq.req->http_minor == 0,
    };
    proxy_head_response(ex->out, &h);
    script_reply_done();
}

/* 1: the head is queued; 0: on_response failed (logged); -1: on_response
 * waits (the exchange waits in EX_SCRIPT; exchange_script_ready goes on). */
static int build_response_head(struct exchange *ex)
{
    struct script_edits ed, *e = NULL;
    int status = ex->rp.status_code;
    if (status >= 200 && script_has_on_response(ex->rq.sreq)) {
        /* In the exchange: res must outlive a wait. */
        ex->sres = (struct script_response){
            .status = status,
            .headers = ex->resp.headers,
            .nheaders = ex->resp.nheaders,
            .base = ex->resp_buf.data,
            .server = ex->srv->name,
        };
        int rc = script_on_response(ex->rq.sreq, &ex->sres, &ed);
        if (rc < 0) return -1;
        if (!rc) {
            script_reply_done();
            return 0;
        }
        e = &ed;
    }
    write_response_head(ex, e);
    return 1;
}

/* Decides how the body travels and whether each side stays reusable. */
static void plan_body(struct exchange *ex)
{
    const struct http_request *req = ex->rq.req;
    llhttp_t *p = &ex->rp;
    ex->backend_reusable = llhttp_should_keep_alive(p);
    /* An answer before the request was all sent (a 413 to an upload the
     * backend will not read): the rest of the body is still coming from
     * the client, so the connection ends after this response; its head
     * says so. */
    ex->client_close = !ex->cl->keep_alive(ex->client) || !ex->req_done;
    if (ex->resp_skip_body) {
        ex->mode = RB_NONE;
    } else if (p->flags & F_CHUNKED) {
        ex->mode = RB_CHUNKED;
        if (req->http_minor == 0) {
            ex->dechunk = true;
            ex->client_close = true;
        }
    } else if (p->flags & F_CONTENT_LENGTH) {
        ex->mode = p->content_length ? RB_LENGTH : RB_NONE;
        ex->resp_left = p->content_length;
    } else {
        /* No framing: the body ends when the backend closes. That ends the
         * backend connection's reuse, not the client's: a 1.1 client gets
         * it chunked. */
        ex->mode = RB_EOF;
        ex->backend_reusable = false;
        if (req->http_minor == 1) ex->chunk_out = true;
        else ex->client_close = true;
    }
}

static void chunk_frame(struct buf *out, const char *data, size_t len)
{
    char hex[24];
    int n = snprintf(hex, sizeof(hex), "%zx\r\n", len);
    buf_append(out, hex, (size_t)n);
    buf_append(out, data, len);
    buf_append(out, "\r\n", 2);
}

/* Moves the bytes of resp_buf that follow what the parser consumed into
 * the client's output, according to the body mode. */
static bool relay_buffered(struct exchange *ex)
{
    struct buf *rb = &ex->resp_buf;
    struct buf *out = ex->out;
    size_t avail = rb->len - ex->resp_parsed;
    const char *p = rb->data + ex->resp_parsed;
    switch (ex->mode) {
    case RB_NONE:
        if (avail) ex->backend_reusable = false; /* stray bytes: never reuse */
        ex->resp_done = true;
        break;
    case RB_LENGTH: {
        size_t n = avail < ex->resp_left ? avail : (size_t)ex->resp_left;
        buf_append(out, p, n);
        ex->resp_left -= n;
        if (avail > n) ex->backend_reusable = false;
        if (ex->resp_left == 0) ex->resp_done = true;
        break;
    }
    case RB_CHUNKED: {
        if (!avail) break;
        ex->pctx.base = rb->data; /* trailers are headers too */
        llhttp_errno_t err = llhttp_execute(&ex->rp, p, avail);
        size_t used = err == HPE_OK ? avail : (size_t)(llhttp_get_error_pos(&ex->rp) - p);
        if (err != HPE_OK && err != HPE_PAUSED) {
            if (ex->head_unflushed) {
                /* Came with the head, which is still only queued: take it
                 * back and answer 502 instead of a bare close. */
                out->len = ex->head_at;
                ex_enter(ex, EX_WAITING);
                upstream_fail(ex->srv, W.loop.now_ms);
                return ex_error(ex, 502, "malformed chunked response"), false;
            }
            return ex_abort_client(ex, "malformed chunked response"), false;
        }
        if (!ex->dechunk) buf_append(out, p, used);
        if (ex->resp_message_done) {
            ex->resp_done = true;
            if (used < avail) ex->backend_reusable = false;
        }
        break;
    }
    case RB_EOF:
        if (ex->chunk_out && avail) chunk_frame(out, p, avail);
        else buf_append(out, p, avail);
        break;
    }
    rb->len = 0;
    ex->resp_parsed = 0;
    return true;
}

static bool response_head_queued(struct exchange *ex);

static bool on_response_head(struct exchange *ex)
{
    int status = ex->rp.status_code;
    if (ex->resp.too_many) return ex_error(ex, 502, "response head has too many headers"), false;
    /* llhttp lets an obs-fold or a bare LF through, which would end the
     * head early for the client and turn the rest into its body. */
    if (!http_response_head_ok(ex->resp_buf.data, ex->resp_parsed)) {
        upstream_fail(ex->srv, W.loop.now_ms);
        return ex_error(ex, 502, "malformed response head"), false;
    }
    /* Another transfer coding (gzip, ...) would reach the client without
     * its name once the header is replaced by our framing. */
    if (!http_te_is_plain(&ex->resp, ex->resp_buf.data)) {
        upstream_fail(ex->srv, W.loop.now_ms);
        return ex_error(ex, 502, "response Transfer-Encoding other than chunked"), false;
    }
    /* llhttp takes any three digits; the client may not (a "000" went out
     * as status 0), and below 200 we would send no body whatever the
     * framing headers say. */
    if (status < 100 || status > 599) return ex_error(ex, 502, "status code out of 100-599"), false;
    if (status >= 100 && status < 200 && status != 101) {
        /* Interim (100 Continue, 103): passed on, except to an HTTP/1.0
         * client, which must not get one (RFC 9110 15.2); the final one
         * follows. */
        ex->interim_seen = true;
        if (ex->rq.req->http_minor > 0) write_response_head(ex, NULL); /* on_response sees final ones */
        llhttp_resume(&ex->rp);
        memmove(ex->resp_buf.data, ex->resp_buf.data + ex->resp_parsed, ex->resp_buf.len - ex->resp_parsed);
        ex->resp_buf.len -= ex->resp_parsed;
        ex->resp_parsed = 0;
        return true;
    }
    if (status == 101 && !ex->upgrade) return ex_error(ex, 502, "101 without an upgrade request"), false;
    /* Without Upgrade and Connection: upgrade (RFC 9110 §7.8) the client
     * cannot know the protocol changed, and would read the tunnel's bytes
     * as HTTP responses. */
    if (status == 101 && (ex->rp.flags & (F_UPGRADE | F_CONNECTION_UPGRADE)) != (F_UPGRADE | F_CONNECTION_UPGRADE))
        return ex_error(ex, 502, "101 without Upgrade and Connection: upgrade"), false;
    upstream_ok(ex->srv);
    plan_body(ex);
    ex->head_at = ex->out->len;
    int rc = build_response_head(ex);
    if (rc == 0) return ex_error(ex, 500, "on_response failed"), false;
    if (rc < 0) {
        /* on_response waits: the response stays in resp_buf, unread bytes
         * in the backend's socket, until exchange_script_ready. */
        ex_enter(ex, EX_SCRIPT);
        return false;
    }
    return response_head_queued(ex);
}

/* The final response head is queued: relay what came with it. */
static bool response_head_queued(struct exchange *ex)
{
    int status = ex->rp.status_code;
    ex->status = status;
    ex->head_unflushed = true;
    if (status == 101) {
        tunnel_start(ex);
        return true;
    }
    ex_enter(ex, EX_RELAYING);
    if (ex->resp_message_done) llhttp_resume(&ex->rp);
    else if (ex->mode == RB_CHUNKED) llhttp_resume(&ex->rp);
    bool ok = relay_buffered(ex);
    ex->head_unflushed = false;
    return ok;
}

bool response_script_ready(struct exchange *ex)
{
    struct script_edits ed;
    int rc = script_on_response_resume(ex->rq.sreq, &ed);
    if (!rc) {
        script_reply_done();
        ex_enter(ex, EX_WAITING);
        return ex_error(ex, 500, "on_response failed"), false;
    }
    write_response_head(ex, &ed);
    return response_head_queued(ex);
}

/* Reads the response head. Returns false when the exchange ended. */
bool response_read_head(struct exchange *ex)
{
    struct buf *rb = &ex->resp_buf;
    for (;;) {
        /* Bytes after an interim response are parsed before reading more:
         * the final response may have come in the same read. */
        size_t old = ex->resp_parsed;
        if (old == rb->len) {
            if (rb->len >= RESP_HEAD_MAX) return ex_error(ex, 502, "response head too large"), false;
            if (buf_reserve(rb, RESP_READ)) return ex_error(ex, 502, "out of memory"), false;
            ssize_t n = transport_read(&ex->b->tp, rb->data + rb->len, RESP_READ);
            if (n == 0) return backend_failed(ex, "backend closed the connection before answering"), false;
            if (n == -1) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return true;
                return backend_failed(ex, transport_strerror(&ex->b->tp, errno)), false;
            }
            rb->len += (size_t)n;
            loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
        }
        const char *p = rb->data + old;
        ex->pctx.base = rb->data;
        llhttp_errno_t err = llhttp_execute(&ex->rp, p, rb->len - old);
        ex->resp_parsed = err == HPE_OK ? rb->len : (size_t)(llhttp_get_error_pos(&ex->rp) - rb->data);
        if (err == HPE_OK) continue;
        if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
            if (!on_response_head(ex)) return false;
            if (ex_head_sent(ex)) return true;
            /* An interim response (100 Continue): the client may be waiting
             * for it before it sends the body. */
            if (ex->cl->flush(ex->client) < 0) return false;
            continue;
        }
        upstream_fail(ex->srv, W.loop.now_ms);
        const char *why = ex->resp.too_many ? "response head has more than 100 header lines"
                          : llhttp_get_error_reason(&ex->rp) ? llhttp_get_error_reason(&ex->rp)
                                                             : llhttp_errno_name(err);
        return ex_error(ex, 502, why), false;
    }
}

/* Relays the body until blocked. Returns false when the exchange ended. */
bool response_relay(struct exchange *ex)
{
    struct buf *out = ex->out;
    while (!ex->resp_done) {
        if (buf_pending(out)) {
            if (ex->cl->flush(ex->client) < 0) return false;
            if (buf_pending(out)) return true; /* EPOLLOUT is armed */
        }
        if (ex->mode == RB_LENGTH) {
            if (ex->resp_pipe.rd == -1 && pipe_take(&ex->resp_pipe))
                return ex_abort_client(ex, "no pipe for the response"), false;
            uint64_t moved = 0;
            enum pump_result r = transport_pump(&ex->b->tp, ex->rq.transport, &ex->resp_pipe, &ex->resp_left, &moved);
            if (transport_can_splice(&ex->b->tp, ex->rq.transport)) STAT_ADD(WS->spliced_bytes, moved);
            ex->spliced += moved;
            if (moved) loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
            switch (r) {
            case PUMP_DONE: ex->resp_done = true; continue;
            case PUMP_WANT_READ: return true;
            case PUMP_WANT_WRITE: ex->cl->want_write(ex->client); return true;
            case PUMP_EOF: return ex_abort_client(ex, "backend closed before the end of the body"), false;
            case PUMP_ERROR: /* the client went away (EPIPE, ECONNRESET), or the backend */
                return ex_close_client(ex, errno == EPIPE ? LOG_INFO : LOG_WARN, strerror(errno)), false;
            }
        }
        /* Chunked and unframed bodies pass through user space. */
        if (buf_pending(out) > BUF_OUT_HIGH_WATER) return true;
        struct buf *rb = &ex->resp_buf;
        rb->len = 0;
        ex->resp_parsed = 0;
        if (buf_reserve(rb, RESP_READ)) return ex_abort_client(ex, "out of memory"), false;
        ssize_t n = transport_read(&ex->b->tp, rb->data, RESP_READ);
        if (n > 0) {
            rb->len = (size_t)n;
            loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
            if (!relay_buffered(ex)) return false;
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && errno == EAGAIN) return true;
        if (n == 0 && ex->mode == RB_EOF) {
            if (ex->chunk_out) buf_puts(out, "0\r\n\r\n");
            ex->resp_done = true;
            continue;
        }
        return ex_abort_client(ex, n == 0 ? "backend closed before the end of the body" : strerror(errno)),
               false;
    }
    if (buf_pending(out)) {
        if (ex->cl->flush(ex->client) < 0) return false;
        if (buf_pending(out)) return true;
    }
    return true;
}

