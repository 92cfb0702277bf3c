/* forward: one proxied exchange.
 *
 * Request side:  head (rewritten, plus the body bytes that came with it) in
 *                one send; the rest of a Content-Length body by splice from
 *                the client socket; a chunked body raw, through the client's
 *                parser only to find where it ends.
 * Response side: the head is read into resp_buf and parsed, shown to
 *                on_response, rewritten into the client's output buffer; a
 *                Content-Length body is then spliced, a chunked one relayed
 *                as it is, an unframed one re-chunked for HTTP/1.1 clients.
 * Failures before the first response byte are retried when that is safe;
 * after the response head went out, the client connection is closed. */
#include "forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "balance.h"
#include "conn.h"
#include "http_response.h"
#include "log.h"
#include "pool.h"
#include "splice.h"
#include "stats.h"
#include "upstream.h"
#include "worker.h"


#define RESP_HEAD_MAX (64 * 1024)  /* a larger backend head is a 502 */
#define RESP_READ 16384            /* read size for relayed (non-spliced) bodies */
#define MAX_CONN_TOKENS 16

enum ex_state {
    EX_CONNECTING, /* non-blocking connect in progress */
    EX_ACTIVE,     /* request going out, response coming back */
    EX_TUNNEL,     /* after a 101: bytes both ways until one side closes */
    EX_DONE,
};

enum body_mode {
    RB_NONE,    /* no body (HEAD, 1xx, 204, 304, or Content-Length: 0) */
    RB_LENGTH,  /* Content-Length: spliced */
    RB_CHUNKED, /* relayed as received, parsed to find its end */
    RB_EOF,     /* until the backend closes; re-chunked for 1.1 clients */
};

struct exchange {
    struct http_parse_ctx pctx; /* first: the response parser's data */
    struct conn *c;
    struct upstream *up;
    struct server *srv;
    struct bconn *b;
    enum ex_state state;
    struct timer timer; /* connect_timeout, then read_timeout */
    bool *tried;        /* servers attempted, by index */
    int tried_cap;
    int attempts;
    bool reused;           /* b came from the pool */
    bool fresh_retry_done; /* the one retry after a stale pooled connection */
    bool upgrade;          /* the client asked for Connection: upgrade */
    uint64_t started_ms;
    uint64_t started_us;
    int status;           /* answered to the client (backend's or ours) */

    /* request */
    struct buf req_head;  /* rewritten head + body bytes that came with it */
    uint64_t req_left;    /* Content-Length bytes still in the client socket */
    bool req_chunked;     /* relaying a chunked body */
    bool req_done;        /* everything was written to the backend */
    bool req_started;     /* a body byte left the client socket: no replay */
    bool req_wrote;       /* a byte of the request went to a backend connection */
    bool interim_seen;    /* the backend sent a 1xx (100 Continue) */
    struct pipe_pair req_pipe;

    /* response */
    llhttp_t rp;
    struct http_request resp; /* its headers, as slices of resp_buf; url = reason */
    struct buf resp_buf;
    size_t resp_parsed;
    bool resp_head_done, resp_message_done, resp_skip_body;
    bool head_sent;       /* the response head is queued for the client */
    bool head_unflushed;  /* ... at out[head_at], with nothing written since */
    size_t head_at;
    enum body_mode mode;
    uint64_t resp_left;
    bool resp_done;
    bool backend_reusable;
    bool client_close;    /* the client connection ends after this response */
    bool chunk_out;       /* re-chunking an unframed body */
    bool dechunk;         /* an HTTP/1.0 client: a chunked body goes out decoded */
    struct pipe_pair resp_pipe;
    struct pipe_pair up_pipe; /* tunnel: client -> backend */
    bool tun_client_eof, tun_backend_eof;
    struct exchange *next_free;
};

static struct exchange *ex_pool;

uint64_t forward_spliced_bytes(void)
{
    return STAT_GET(WS->spliced_bytes);
}

static void ex_run(struct exchange *ex);
static void on_backend_event(struct bconn *b, unsigned events);
static void ex_try_server(struct exchange *ex);

/* ---- response parser callbacks -------------------------------------- */

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
    bool head = ex->c->rx->req.method == HTTP_HEAD;
    ex->resp_skip_body = head || status < 200 || status == 204 || status == 304;
    if (ex->resp_skip_body) return status == 101 ? 2 : 1;
    return HPE_PAUSED;
}

/* Only while de-chunking for an HTTP/1.0 client, which must not get
 * Transfer-Encoding: the decoded bytes go out, ended by closing. */
static int r_on_body(llhttp_t *p, const char *at, size_t len)
{
    struct exchange *ex = ex_of(p);
    if (ex->dechunk) buf_append(&ex->c->rx->out, at, len);
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

/* ---- lifecycle ------------------------------------------------------- */

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

void forward_pool_free(void)
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

static void release_backend(struct exchange *ex, bool reusable)
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

/* Metrics and the access log's upstream fields, at the end. */
static void ex_account(struct exchange *ex)
{
    struct conn_rx *rx = ex->c->rx;
    if (!ex->status) return;
    rx->status = ex->status;
    rx->up_addr = ex->srv ? ex->srv->name : NULL;
    rx->up_us = W.loop.now_us - ex->started_us;
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

/* Ends the exchange; the client connection takes over again. */
static void ex_finish(struct exchange *ex)
{
    struct conn *c = ex->c;
    ex_account(ex);
    ex->state = EX_DONE;
    timer_cancel(&W.loop.timers, &ex->timer);
    release_backend(ex, ex->backend_reusable);
    pipe_give(&ex->req_pipe);
    pipe_give(&ex->resp_pipe);
    pipe_give(&ex->up_pipe);
    /* The client's parser never saw a spliced body: start it afresh. */
    if (!c->rx->req.message_done) llhttp_reset(&c->parser);
    bool close_after = ex->client_close || !ex->req_done;
    ex_put(ex);
    conn_upstream_done(c, close_after);
}

void forward_abort(struct exchange *ex)
{
    ex->state = EX_DONE;
    timer_cancel(&W.loop.timers, &ex->timer);
    release_backend(ex, false);
    pipe_give(&ex->req_pipe);
    pipe_give(&ex->resp_pipe);
    pipe_give(&ex->up_pipe);
    ex_put(ex);
}

/* Closes the client after a failure past the response head (or when the
 * client itself went away: a normal event, logged at info, not warn). */
static void ex_close_client(struct exchange *ex, enum log_level level, const char *why)
{
    struct conn *c = ex->c;
    if (log_enabled(level))
        log_msg(level, "%s %s: %s%s; closing the client connection", ex->up->name, ex->srv ? ex->srv->name : "-",
                why, ex->head_sent ? " after the response head was sent" : "");
    ex_account(ex);
    c->ex = NULL;
    forward_abort(ex);
    conn_force_close(c);
}

static void ex_abort_client(struct exchange *ex, const char *why)
{
    ex_close_client(ex, LOG_WARN, why);
}

/* Answers the client ourselves (400, 502, 503, 504) when no response head
 * went out yet. */
static void ex_error(struct exchange *ex, int status, const char *why)
{
    struct conn *c = ex->c;
    if (ex->head_sent) return ex_abort_client(ex, why);
    /* A 408 is the client's doing: on_timer logged the line that says so. */
    if (status != 408)
        log_warn("upstream %s%s%s: %s: answering %d", ex->up->name, ex->srv ? " server " : "",
                 ex->srv ? ex->srv->name : "", why, status);
    release_backend(ex, false);
    /* Body bytes may still be on their way from the client: unless the
     * request was read to its end, the connection cannot be reused. */
    bool complete = c->rx->req.message_done || (ex->req_left == 0 && !ex->req_chunked);
    ex->client_close = ex->client_close || !complete;
    ex->req_done = complete;
    bool keep = !ex->client_close && c->rx->req.keep_alive && !W.draining && !c->close_after;
    const char *body = status == 400   ? "bad request\n"
                       : status == 408 ? "request timeout\n"
                       : status == 500 ? "internal server error\n"
                       : status == 502 ? "bad gateway\n"
                       : status == 503 ? "service unavailable\n"
                                       : "gateway timeout\n";
    /* A body after the head of a HEAD answer would be read by the client
     * as the start of its next response. */
    http_simple_response(&c->rx->out, status, keep, c->rx->req.method == HTTP_HEAD, W.loop.wall_now, body);
    ex->status = c->rx->status = status;
    ex->client_close = !keep;
    ex->resp_done = true;
    ex->backend_reusable = false;
    ex->head_sent = true;
    if (conn_flush(c) < 0) return; /* closed; the exchange went with it */
    ex_finish(ex);
}

/* Runs the client's parser over the chunked body bytes buffered at
 * [pos, end), which are then sent from [head_len, pos). -1: malformed; 0:
 * nothing parsed (the rest of a chunk-size line is awaited); 1: parsed. */
static int parse_request_chunks(struct conn *c)
{
    struct conn_rx *rx = c->rx;
    rx->pctx.req = &rx->req;
    rx->pctx.base = rx->data;
    rx->pctx.body = NULL;
    c->parser.data = &rx->pctx;
    uint32_t from = rx->pos;
    llhttp_errno_t err = http_execute(&c->parser, rx->data, &rx->pos, &rx->end);
    if (err == HPE_PAUSED) llhttp_resume(&c->parser);
    if (err != HPE_OK && err != HPE_PAUSED) return -1;
    return rx->pos > from || rx->req.message_done;
}

/* The client's chunked body is malformed: a 400 and the end of the
 * connection, or only the end when the answer already started. */
static void ex_bad_body(struct exchange *ex)
{
    ex->client_close = true;
    ex_error(ex, 400, "malformed chunked request body");
}

/* ---- the request head ------------------------------------------------ */

/* Whether Connection names the header `name` as hop-by-hop. Never for the
 * framing headers: the body travels with the framing it came with, so a
 * "Connection: transfer-encoding" that removed the header would hand the
 * other side a body it takes for the next message (request smuggling). */
static bool token_in(const char *base, const struct slice *tokens, int n, struct slice name)
{
    const char *s = base + name.off;
    for (int i = 0; i < n; i++)
        if (tokens[i].len == name.len && !strncasecmp(base + tokens[i].off, s, name.len))
            return !http_name_is(s, name.len, "content-length") &&
                   !http_name_is(s, name.len, "transfer-encoding");
    return false;
}

static bool framing_token(const char *t, size_t n)
{
    return (n == 14 && !strncasecmp(t, "content-length", 14)) ||
           (n == 17 && !strncasecmp(t, "transfer-encoding", 17)) || (n == 4 && !strncasecmp(t, "host", 4));
}

/* Splits Connection header values into tokens (names of more hop-by-hop
 * headers, besides "close", "keep-alive" and "upgrade"). */
static int connection_tokens(const struct http_request *r, const char *base, struct slice *out)
{
    int n = 0;
    for (uint16_t i = 0; i < r->nheaders; i++) {
        const struct http_header *h = &r->headers[i];
        if (!http_name_is(base + h->name.off, h->name.len, "connection")) continue;
        uint32_t p = h->value.off, end = h->value.off + h->value.len;
        while (p < end && n < MAX_CONN_TOKENS) {
            while (p < end && (base[p] == ' ' || base[p] == '\t' || base[p] == ',')) p++;
            uint32_t s = p;
            while (p < end && base[p] != ',' && base[p] != ' ' && base[p] != '\t') p++;
            /* "Connection: content-length" must not strip the framing (the
             * body would then be read as the next message) nor Host. The
             * common "keep-alive" names a header that goes anyway. */
            if (p > s && !framing_token(base + s, p - s) && !(p - s == 10 && !strncasecmp(base + s, "keep-alive", 10)))
                out[n++] = (struct slice){s, p - s};
        }
    }
    return n;
}

/* name: as received, in any case. */
static bool is_hop_by_hop(const char *name, size_t len, bool keep_upgrade)
{
    switch (len) {
    case 2: return http_name_is(name, len, "te");
    case 7:
        if (http_name_is(name, len, "trailer")) return true;
        return !keep_upgrade && http_name_is(name, len, "upgrade");
    case 10:
        return http_name_is(name, len, "keep-alive") ||
               (!keep_upgrade && http_name_is(name, len, "connection"));
    case 16: return http_name_is(name, len, "proxy-connection");
    default: return false;
    }
}

/* Headers a script may not set or remove: the framing and the hop-by-hop
 * ones belong to the proxy, and an edited Content-Length or
 * Transfer-Encoding would make the peer read the body differently from
 * how it is sent (as for local responses, such edits are ignored). */
static bool script_may_edit(const char *name, size_t len)
{
    return !(is_hop_by_hop(name, len, false) || http_name_is(name, len, "content-length") ||
             http_name_is(name, len, "transfer-encoding"));
}

static bool edited(const struct script_edits *e, const char *name, size_t len)
{
    for (size_t i = 0; e && i < e->nheaders; i++)
        if (e->headers[i].nlen == len && !strncasecmp(e->headers[i].name, name, len))
            return script_may_edit(name, len);
    return false;
}

/* inet_ntop for IPv4, by hand: it was 9 % of a proxied request's
 * instructions. out has room for 16 bytes. */
static void format_ipv4(char *out, const struct in_addr *a)
{
    const uint8_t *b = (const uint8_t *)&a->s_addr;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100) *out++ = (char)('0' + v / 100);
        if (v >= 10) *out++ = (char)('0' + v / 10 % 10);
        *out++ = (char)('0' + v % 10);
        *out++ = i < 3 ? '.' : '\0';
    }
}

/* The client's address, without its port, into out (64 bytes). */
static void client_ip(const struct conn *c, char *out, size_t size)
{
    if (c->peer.sa.sa_family == AF_INET6)
        inet_ntop(AF_INET6, &c->peer.in6.sin6_addr, out, (socklen_t)size);
    else
        format_ipv4(out, &c->peer.in.sin_addr);
}

static void append_header(struct buf *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
    buf_append(b, name, nlen);
    buf_append(b, ": ", 2);
    buf_append(b, value, vlen);
    buf_append(b, "\r\n", 2);
}

/* Header lines go out as the runs of raw bytes they were received as
 * (names lower-cased in place; the head check let through only well-formed
 * lines): a line starts at its name and ends where the next one starts, the
 * last one at the head's final CRLF. Copying a run of kept lines at once
 * saves four appends per header. */
struct line_run {
    const char *base;
    const struct http_header *hs;
    uint16_t n;
    uint32_t head_end; /* offset of the CRLF that ends the head */
    int first;         /* the first kept line of the current run, or -1 */
};

static uint32_t line_start(const struct line_run *r, int i)
{
    return i < r->n ? r->hs[i].name.off : r->head_end;
}

static void run_keep(struct line_run *r, int i)
{
    if (r->first < 0) r->first = i;
}

/* Line i does not go as received: what the run holds so far goes out. */
static void run_cut(struct buf *out, struct line_run *r, int i)
{
    if (r->first < 0) return;
    uint32_t a = line_start(r, r->first);
    buf_append(out, r->base + a, line_start(r, i) - a);
    r->first = -1;
}

static int build_request_head(struct exchange *ex)
{
    struct conn *c = ex->c;
    struct conn_rx *rx = c->rx;
    const struct http_request *r = &rx->req;
    const char *base = rx->data;
    struct buf *h = &ex->req_head;
    struct script_edits ed, *e = script_req_edits(rx->sreq, &ed) ? &ed : NULL;
    h->len = h->off = 0;
    if (buf_reserve(h, rx->head_len + 256)) return -ENOMEM;

    size_t mlen;
    const char *method = http_method_name(r, base, &mlen);
    buf_append(h, method, mlen);
    buf_append(h, " ", 1);
    const char *url = base + r->url.off;
    const char *q = memchr(url, '?', r->url.len);
    if (e && (e->path_set || e->query_set)) {
        if (e->path_set) buf_append(h, e->path, e->path_len);
        else buf_append(h, url, q ? (size_t)(q - url) : r->url.len);
        if (e->query_set && e->query) {
            buf_append(h, "?", 1);
            buf_append(h, e->query, e->query_len);
        } else if (!e->query_set && q) {
            buf_append(h, q, r->url.len - (size_t)(q - url));
        }
    } else {
        buf_append(h, url, r->url.len);
    }
    buf_puts(h, " HTTP/1.1\r\n");

    struct slice tokens[MAX_CONN_TOKENS];
    int ntok = connection_tokens(r, base, tokens);
    bool has_host = false;
    const struct http_header *xff[8];
    int nxff = 0;
    struct line_run run = {base, r->headers, r->nheaders, rx->head_len - 2, -1};
    for (uint16_t i = 0; i < r->nheaders; i++) {
        const struct http_header *hd = &r->headers[i];
        const char *name = base + hd->name.off;
        size_t nlen = hd->name.len;
        bool keep = !is_hop_by_hop(name, nlen, false) && !token_in(base, tokens, ntok, hd->name) &&
                    !edited(e, name, nlen);
        if (keep && http_name_is(name, nlen, "x-forwarded-for")) {
            if (nxff < 8) xff[nxff++] = hd;
            keep = false;
        }
        if (keep && http_name_is(name, nlen, "x-forwarded-proto")) keep = false;
        /* Like nginx (underscores_in_headers off): a backend may read '_'
         * as '-' and take "Transfer_Encoding" or "X_Forwarded_For" for the
         * real field; such names are not sent on. */
        if (keep && r->underscore && memchr(name, '_', nlen)) keep = false;
        if (keep && http_name_is(name, nlen, "host")) {
            has_host = true;
            if (r->target_host.len) { /* absolute-form: its authority is the Host */
                run_cut(h, &run, i);
                append_header(h, name, nlen, base + r->target_host.off, r->target_host.len);
                continue;
            }
        }
        /* Framing goes in one canonical form ("Content-Length: 10", not
         * "010"; "chunked", not "cHuNkeD "), so that no backend can read
         * the body differently from how it is sent. */
        if (keep && http_name_is(name, nlen, "content-length")) {
            char num[24];
            int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)r->content_length);
            run_cut(h, &run, i);
            append_header(h, name, nlen, num, (size_t)n);
            continue;
        }
        if (keep && http_name_is(name, nlen, "transfer-encoding")) {
            run_cut(h, &run, i);
            append_header(h, name, nlen, "chunked", 7);
            continue;
        }
        if (keep) run_keep(&run, i);
        else run_cut(h, &run, i);
    }
    run_cut(h, &run, r->nheaders);
    if (!has_host && r->target_host.len && !edited(e, "host", 4)) {
        append_header(h, "Host", 4, base + r->target_host.off, r->target_host.len);
        has_host = true;
    }
    for (size_t i = 0; e && i < e->nheaders; i++) {
        if (!e->headers[i].value || !script_may_edit(e->headers[i].name, e->headers[i].nlen)) continue;
        if (e->headers[i].nlen == 4 && !strncasecmp(e->headers[i].name, "host", 4)) has_host = true;
        append_header(h, e->headers[i].name, e->headers[i].nlen, e->headers[i].value, e->headers[i].vlen);
    }
    if (!has_host) append_header(h, "host", 4, ex->srv->name, strlen(ex->srv->name));

    /* The script's own X-Forwarded-For/-Proto (set_header) replace ours. */
    if (!edited(e, "x-forwarded-for", 15)) {
        buf_puts(h, "x-forwarded-for: ");
        for (int i = 0; i < nxff; i++) {
            buf_append(h, base + xff[i]->value.off, xff[i]->value.len);
            buf_append(h, ", ", 2);
        }
        char addr[64];
        client_ip(c, addr, sizeof(addr));
        buf_puts(h, addr);
        buf_puts(h, "\r\n");
    }
    if (!edited(e, "x-forwarded-proto", 17)) buf_puts(h, "x-forwarded-proto: http\r\n");
    if (ex->upgrade) {
        const struct http_header *up = http_find_header(r, base, "upgrade", 7);
        buf_puts(h, "connection: upgrade\r\n");
        if (up) append_header(h, "upgrade", 7, base + up->value.off, up->value.len);
    }
    buf_puts(h, "\r\n");
    script_reply_done();
    return buf_reserve(h, 0);
}

/* Body bytes that arrived with the head join it, so that the head and the
 * start of the body leave in one send. */
static void take_buffered_body(struct exchange *ex)
{
    struct conn_rx *rx = ex->c->rx;
    const struct http_request *r = &rx->req;
    if (!r->has_body || r->message_done || r->chunked) return;
    uint64_t have = rx->end - rx->pos;
    uint64_t n = have < r->content_length ? have : r->content_length;
    buf_append(&ex->req_head, rx->data + rx->pos, (size_t)n);
    memmove(rx->data + rx->pos, rx->data + rx->pos + n, (size_t)(have - n));
    rx->end -= (uint32_t)n;
    ex->req_left = r->content_length - n;
}

/* ---- choosing a server and connecting --------------------------------- */

static bool ensure_tried(struct exchange *ex)
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

/* Response bytes are waiting for the client's socket to take them: in the
 * output buffer, or in the pipe (a splice leaves bytes there only when the
 * client's socket is full). */
static bool client_blocked(const struct exchange *ex)
{
    return buf_pending(&ex->c->rx->out) || ex->resp_pipe.len;
}

/* The request body waits for the client to send more: nothing of it is
 * held back by the backend (in the pipe, or parsed and unsent). */
static bool upload_waits_for_client(const struct exchange *ex)
{
    if (ex->req_done || buf_pending(&ex->req_head)) return false;
    /* A client that asked for 100-continue may wait for it before sending. */
    if (ex->c->rx->req.expect_continue && !ex->interim_seen) return false;
    if (ex->req_left) return ex->req_pipe.len == 0;
    return ex->req_chunked && ex->c->rx->pos == ex->c->rx->head_len;
}

/* The info line for a read_timeout that the client caused: it names the
 * client, by address and port, rather than the backend. */
static void log_client_stall(const struct exchange *ex, const char *what, const char *then)
{
    char addr[64];
    log_info("client %s %s (upstream %s server %s): nothing moved in read_timeout (%llu ms); %s",
             log_addr(&ex->c->peer.sa, addr, sizeof(addr)), what, ex->up->name, ex->srv->name,
             (unsigned long long)ex->up->read_timeout_ms, then);
}

static void on_timer(struct timer *t)
{
    struct exchange *ex = container_of(t, struct exchange, timer);
    if (ex->state == EX_CONNECTING) {
        upstream_fail(ex->srv, W.loop.now_ms);
        log_warn("upstream %s server %s: connect timed out", ex->up->name, ex->srv->name);
        release_backend(ex, false);
        ex->srv = NULL;
        return ex_try_server(ex);
    }
    if (ex->head_sent && client_blocked(ex)) {
        /* Response bytes wait for the client: it, not the backend, made no
         * progress for read_timeout (the one timer of the exchange, re-armed
         * by every byte moved). */
        log_client_stall(ex, "stopped reading the response", "closing the client connection");
        return ex_close_client(ex, LOG_DEBUG, "client stopped reading");
    }
    if (!ex->head_sent && upload_waits_for_client(ex)) {
        /* The backend waits for the rest of the body as much as we do: a
         * 408 for the client (nginx's client_body_timeout), and no failure
         * counted against the server, or one slow uploader could take it
         * out of rotation. */
        log_client_stall(ex, "stopped sending the request body", "answering 408");
        ex->client_close = true;
        return ex_error(ex, 408, "client stopped sending the request body");
    }
    if (!ex->head_sent) upstream_fail(ex->srv, W.loop.now_ms);
    ex_error(ex, 504, "no response within read_timeout");
}

static void start_on(struct exchange *ex, struct bconn *b, bool reused)
{
    ex->b = b;
    ex->reused = reused;
    b->ex = ex;
    b->on_event = on_backend_event;
    ex->srv->active++;
    /* A replay starts the request over; only an unstarted body gets here. */
    ex->req_head.off = 0;
    ex->req_done = false;
    if (reused) {
        ex->state = EX_ACTIVE;
        loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
        ex_run(ex);
    } else {
        ex->state = EX_CONNECTING;
        loop_timer(&W.loop, &ex->timer, ex->up->connect_timeout_ms);
    }
}

/* Picks the next server and starts on it; 502/503 when none is left. */
static void ex_try_server(struct exchange *ex)
{
    struct upstream *u = ex->up;
    for (;;) {
        if (ex->attempts > u->retries) return ex_error(ex, 502, "every server tried failed");
        struct server *s;
        if (balance_choose(ex->c->rx->sreq, ex->up, ex->tried, W.loop.now_ms, &s)) return ex_error(ex, 500, "the script's balancing hook failed");
        if (!s) {
            bool any_up = false;
            for (int i = 0; i < u->nservers; i++)
                if (upstream_server_up(&u->servers[i], W.loop.now_ms)) any_up = true;
            if (ex->attempts == 0)
                return ex_error(ex, 503, any_up || u->balance == BALANCE_LUA ? "no server chosen"
                                                                                : "every server is down");
            return ex_error(ex, 502, "every server tried failed");
        }
        ex->attempts++;
        ex->tried[s - u->servers] = true;
        ex->srv = s;
        if (ex->attempts == 1 || !ex->req_head.len) {
            if (build_request_head(ex)) return ex_error(ex, 502, "out of memory");
            take_buffered_body(ex);
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

void forward_start(struct conn *c, struct upstream *u)
{
    struct exchange *ex = ex_get();
    if (!ex || (ex->up = u, !ensure_tried(ex))) {
        log_error("out of memory starting a proxied exchange");
        if (ex) ex_put(ex);
        conn_force_close(c);
        return;
    }
    ex->c = c;
    c->ex = ex;
    memset(ex->tried, 0, (size_t)u->nservers * sizeof(bool));
    ex->timer.cb = on_timer;
    ex->started_ms = W.loop.now_ms;
    ex->started_us = W.loop.now_us;
    const struct http_request *r = &c->rx->req;
    ex->upgrade = r->upgrade;
    ex->req_chunked = r->chunked && !r->message_done;
    llhttp_init(&ex->rp, HTTP_RESPONSE, &response_settings);
    ex->pctx.req = &ex->resp;
    ex->rp.data = &ex->pctx;
    /* Chunks that came with the head are checked before any byte goes to
     * a backend: a malformed body read in one piece with its head is a 400
     * that no backend ever sees. */
    if (ex->req_chunked && c->rx->pos < c->rx->end && parse_request_chunks(c) < 0) return ex_bad_body(ex);
    ex_try_server(ex);
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
    return !ex->req_started && (!ex->req_wrote || idempotent(ex->c->rx->req.method));
}

/* A connection failed before any response byte. */
static void backend_failed(struct exchange *ex, const char *why)
{
    if (ex->head_sent || ex->resp_buf.len) return ex_error(ex, 502, why);
    /* A pooled connection the backend closed as we reused it: most likely
     * its keep-alive timeout, the request not processed. Once, on a fresh
     * connection, when replaying is safe. */
    bool replay = replayable(ex);
    if (ex->reused && !ex->fresh_retry_done && replay) {
        ex->fresh_retry_done = true;
        log_debug("upstream %s server %s: pooled connection failed (%s): retrying on a new one",
                  ex->up->name, ex->srv->name, why);
        release_backend(ex, false);
        int err = 0;
        struct bconn *b = bconn_connect(ex->srv, &err);
        if (b) return start_on(ex, b, false);
    }
    upstream_fail(ex->srv, W.loop.now_ms);
    if (ex->state == EX_CONNECTING || replay) {
        /* Nothing was processed: another server may take it. */
        log_warn("upstream %s server %s: %s", ex->up->name, ex->srv->name, why);
        release_backend(ex, false);
        ex->srv = NULL;
        ex->state = EX_ACTIVE;
        return ex_try_server(ex);
    }
    ex_error(ex, 502, why);
}

/* ---- request body ---------------------------------------------------- */

/* Sends what the backend takes of [p, p + n): the count (> 0); 0 when it
 * takes nothing more now (EPOLLOUT armed); -1 when the connection failed
 * (handled: retried or answered). */
static ssize_t backend_send(struct exchange *ex, const char *p, size_t n)
{
    for (;;) {
        ssize_t w = send(ex->b->io.fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            ex->req_wrote = true;
            return w;
        }
        if (w == -1 && errno == EINTR) continue;
        if (w == -1 && errno == EAGAIN) {
            loop_mod(&W.loop, &ex->b->io, IO_READ | IO_WRITE);
            return 0;
        }
        backend_failed(ex, strerror(errno));
        return -1;
    }
}

/* Returns false when the exchange ended. */
static bool send_request(struct exchange *ex)
{
    struct conn *c = ex->c;
    struct conn_rx *rx = c->rx;
    int bfd = ex->b->io.fd;
    struct buf *h = &ex->req_head;
    while (buf_pending(h)) {
        ssize_t n = backend_send(ex, h->data + h->off, buf_pending(h));
        if (n <= 0) return n == 0;
        h->off += (size_t)n;
    }
    /* Done only when the pipe is empty too: the last bytes read from the
     * client may still wait in it for the backend to take them. */
    if (ex->req_left || ex->req_pipe.len) {
        uint64_t moved = 0;
        enum pump_result r = PUMP_DONE;
        if (ex->req_pipe.rd == -1 && pipe_take(&ex->req_pipe)) r = PUMP_ERROR;
        else r = splice_pump(c->io.fd, bfd, &ex->req_pipe, &ex->req_left, &moved);
        if (moved || ex->req_pipe.len) ex->req_started = true;
        STAT_ADD(WS->spliced_bytes, moved);
        /* read_timeout counts from the last progress, and while the body
         * goes up the backend owes us nothing yet. */
        if (moved) loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
        switch (r) {
        case PUMP_DONE: break;
        case PUMP_WANT_READ: return true; /* the client's next edge brings more */
        case PUMP_WANT_WRITE: loop_mod(&W.loop, &ex->b->io, IO_READ | IO_WRITE); return true;
        case PUMP_EOF: ex_close_client(ex, LOG_INFO, "client closed during the upload"); return false;
        case PUMP_ERROR:
            if (errno == EPIPE || errno == ECONNRESET) backend_failed(ex, strerror(errno));
            else ex_abort_client(ex, strerror(errno));
            return false;
        }
        pipe_give(&ex->req_pipe);
    }
    while (ex->req_chunked) {
        /* Parsed but unsent body bytes sit at [head_len, pos). */
        while (rx->pos > rx->head_len) {
            ssize_t n = backend_send(ex, rx->data + rx->head_len, rx->pos - rx->head_len);
            if (n <= 0) return n == 0;
            ex->req_started = true;
            loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
            memmove(rx->data + rx->head_len, rx->data + rx->head_len + n, rx->end - rx->head_len - (size_t)n);
            rx->pos -= (uint32_t)n;
            rx->end -= (uint32_t)n;
        }
        if (rx->req.message_done) {
            ex->req_chunked = false;
            break;
        }
        if (rx->pos < rx->end) {
            int parsed = parse_request_chunks(c);
            if (parsed < 0) {
                ex_bad_body(ex);
                return false;
            }
            if (parsed) continue;
        }
        if (rx->end == rx->cap) { /* cannot happen: the loop above empties it */
            ex_abort_client(ex, "request body buffer full");
            return false;
        }
        ssize_t n = recv(c->io.fd, rx->data + rx->end, rx->cap - rx->end, 0);
        if (n > 0) {
            rx->end += (uint32_t)n;
            continue;
        }
        if (n == -1 && (errno == EAGAIN || errno == EINTR)) return true;
        ex_close_client(ex, LOG_INFO, "client closed during the upload");
        return false;
    }
    if (!ex->req_done) {
        ex->req_done = true;
        loop_mod(&W.loop, &ex->b->io, IO_READ);
    }
    return true;
}

/* ---- response -------------------------------------------------------- */

static bool client_out_full(struct exchange *ex)
{
    return buf_pending(&ex->c->rx->out) > BUF_OUT_HIGH_WATER;
}

/* false: on_response failed (logged). */
static bool build_response_head(struct exchange *ex)
{
    struct conn *c = ex->c;
    struct conn_rx *rx = c->rx;
    struct buf *out = &rx->out;
    const char *base = ex->resp_buf.data;
    int status = ex->rp.status_code;
    bool switching = status == 101 && ex->upgrade;
    struct script_edits ed, *e = NULL;

    if (status >= 200 && script_has_on_response(rx->sreq)) {
        struct script_response res = {
            .status = status,
            .headers = ex->resp.headers,
            .nheaders = ex->resp.nheaders,
            .base = base,
            .server = ex->srv->name,
        };
        if (!script_on_response(rx->sreq, &res, &ed)) {
            script_reply_done();
            return false;
        }
        e = &ed;
    }

    /* "HTTP/1.1 200 OK": status is 100..599 (the parser checked it). */
    struct slice reason = ex->resp.url;
    char line[16] = "HTTP/1.1 ";
    line[9] = (char)('0' + status / 100);
    line[10] = (char)('0' + status / 10 % 10);
    line[11] = (char)('0' + status % 10);
    line[12] = ' ';
    buf_append(out, line, 13);
    if (reason.len) buf_append(out, base + reason.off, reason.len > 60 ? 60 : reason.len);
    else buf_puts(out, http_reason(status));
    buf_append(out, "\r\n", 2);

    struct slice tokens[MAX_CONN_TOKENS];
    int ntok = connection_tokens(&ex->resp, base, tokens);
    struct line_run run = {base, ex->resp.headers, ex->resp.nheaders, (uint32_t)ex->resp_parsed - 2, -1};
    for (uint16_t i = 0; i < ex->resp.nheaders; i++) {
        const struct http_header *hd = &ex->resp.headers[i];
        const char *name = base + hd->name.off;
        size_t nlen = hd->name.len;
        bool keep = !is_hop_by_hop(name, nlen, switching) && (switching || !token_in(base, tokens, ntok, hd->name));
        if (keep && http_name_is(name, nlen, "transfer-encoding") && (ex->mode != RB_CHUNKED || ex->dechunk))
            keep = false;
        /* 1xx and 204 never have a body, and may not say they have one
         * (RFC 9110 §8.6); a client that believes the header would take
         * the next response for that body. */
        if (keep && (status < 200 || status == 204) && http_name_is(name, nlen, "content-length"))
            keep = false;
        if (keep && edited(e, name, nlen)) keep = false;
        if (keep) run_keep(&run, i);
        else run_cut(out, &run, i);
    }
    run_cut(out, &run, ex->resp.nheaders);
    for (size_t i = 0; e && i < e->nheaders; i++)
        if (e->headers[i].value && script_may_edit(e->headers[i].name, e->headers[i].nlen))
            append_header(out, e->headers[i].name, e->headers[i].nlen, e->headers[i].value, e->headers[i].vlen);
    if (ex->chunk_out) buf_puts(out, "transfer-encoding: chunked\r\n");
    if (status >= 200 && !switching) {
        if (ex->client_close) buf_puts(out, "connection: close\r\n");
        else if (rx->req.http_minor == 0) buf_puts(out, "connection: keep-alive\r\n");
    }
    buf_puts(out, "\r\n");
    script_reply_done();
    return true;
}

/* Decides how the body travels and whether each side stays reusable. */
static void plan_body(struct exchange *ex)
{
    struct conn *c = ex->c;
    const struct http_request *req = &c->rx->req;
    llhttp_t *p = &ex->rp;
    ex->backend_reusable = llhttp_should_keep_alive(p);
    /* An answer before the request was all sent (a 413 to an upload the
     * backend will not read): the rest of the body is still coming from
     * the client, so the connection ends after this response; its head
     * says so. */
    ex->client_close = !req->keep_alive || c->close_after || W.draining || !ex->req_done;
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
    struct buf *out = &ex->c->rx->out;
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
                ex->head_sent = false;
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
        if (ex->c->rx->req.http_minor > 0 && !build_response_head(ex))
            return ex_error(ex, 500, "on_response failed"), false;
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
    size_t head_at = ex->c->rx->out.len;
    if (!build_response_head(ex)) return ex_error(ex, 500, "on_response failed"), false;
    ex->head_sent = true;
    ex->status = status;
    ex->head_at = head_at;
    ex->head_unflushed = true;
    if (status == 101) {
        ex->state = EX_TUNNEL;
        ex->backend_reusable = false;
        ex->client_close = true;
        timer_cancel(&W.loop.timers, &ex->timer);
        /* Bytes the backend sent after its 101 belong to the tunnel. */
        buf_append(&ex->c->rx->out, ex->resp_buf.data + ex->resp_parsed, ex->resp_buf.len - ex->resp_parsed);
        ex->resp_buf.len = ex->resp_parsed = 0;
        return true;
    }
    if (ex->resp_message_done) llhttp_resume(&ex->rp);
    else if (ex->mode == RB_CHUNKED) llhttp_resume(&ex->rp);
    bool ok = relay_buffered(ex);
    ex->head_unflushed = false;
    return ok;
}

/* Reads the response head. Returns false when the exchange ended. */
static bool read_head(struct exchange *ex)
{
    struct buf *rb = &ex->resp_buf;
    int bfd = ex->b->io.fd;
    for (;;) {
        /* Bytes after an interim response are parsed before reading more:
         * the final response may have come in the same read. */
        size_t old = ex->resp_parsed;
        if (old == rb->len) {
            if (rb->len >= RESP_HEAD_MAX) return ex_error(ex, 502, "response head too large"), false;
            if (buf_reserve(rb, RESP_READ)) return ex_error(ex, 502, "out of memory"), false;
            ssize_t n = recv(bfd, rb->data + rb->len, RESP_READ, 0);
            if (n == 0) return backend_failed(ex, "backend closed the connection before answering"), false;
            if (n == -1) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) return true;
                return backend_failed(ex, strerror(errno)), false;
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
            if (ex->head_sent) return true;
            /* An interim response (100 Continue): the client may be waiting
             * for it before it sends the body. */
            if (conn_flush(ex->c) < 0) return false;
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
static bool relay_body(struct exchange *ex)
{
    struct conn *c = ex->c;
    struct conn_rx *rx = c->rx;
    int bfd = ex->b->io.fd;
    while (!ex->resp_done) {
        if (buf_pending(&rx->out)) {
            if (conn_flush(c) < 0) return false;
            if (buf_pending(&rx->out)) return true; /* EPOLLOUT is armed */
        }
        if (ex->mode == RB_LENGTH) {
            if (ex->resp_pipe.rd == -1 && pipe_take(&ex->resp_pipe))
                return ex_abort_client(ex, "no pipe for the response"), false;
            uint64_t moved = 0;
            enum pump_result r = splice_pump(bfd, c->io.fd, &ex->resp_pipe, &ex->resp_left, &moved);
            STAT_ADD(WS->spliced_bytes, moved);
            rx->spliced_out += moved;
            if (moved) loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
            switch (r) {
            case PUMP_DONE: ex->resp_done = true; continue;
            case PUMP_WANT_READ: return true;
            case PUMP_WANT_WRITE: loop_mod(&W.loop, &c->io, IO_READ | IO_WRITE); return true;
            case PUMP_EOF: return ex_abort_client(ex, "backend closed before the end of the body"), false;
            case PUMP_ERROR: /* the client went away (EPIPE, ECONNRESET), or the backend */
                return ex_close_client(ex, errno == EPIPE ? LOG_INFO : LOG_WARN, strerror(errno)), false;
            }
        }
        /* Chunked and unframed bodies pass through user space. */
        if (client_out_full(ex)) return true;
        struct buf *rb = &ex->resp_buf;
        rb->len = 0;
        ex->resp_parsed = 0;
        if (buf_reserve(rb, RESP_READ)) return ex_abort_client(ex, "out of memory"), false;
        ssize_t n = recv(bfd, rb->data, RESP_READ, 0);
        if (n > 0) {
            rb->len = (size_t)n;
            loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
            if (!relay_buffered(ex)) return false;
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && errno == EAGAIN) return true;
        if (n == 0 && ex->mode == RB_EOF) {
            if (ex->chunk_out) buf_puts(&rx->out, "0\r\n\r\n");
            ex->resp_done = true;
            continue;
        }
        return ex_abort_client(ex, n == 0 ? "backend closed before the end of the body" : strerror(errno)),
               false;
    }
    if (buf_pending(&rx->out)) {
        if (conn_flush(c) < 0) return false;
        if (buf_pending(&rx->out)) return true;
    }
    return true;
}

/* ---- tunnel ---------------------------------------------------------- */

static void tunnel_run(struct exchange *ex)
{
    struct conn *c = ex->c;
    int bfd = ex->b->io.fd, cfd = c->io.fd;
    if (buf_pending(&c->rx->out)) {
        if (conn_flush(c) < 0) return;
        if (buf_pending(&c->rx->out)) return;
    }
    /* Client bytes that came with the upgrade request go first. */
    struct conn_rx *rx = c->rx;
    if (rx->end > rx->pos) {
        ssize_t n = send(bfd, rx->data + rx->pos, rx->end - rx->pos, MSG_NOSIGNAL);
        if (n > 0) rx->pos += (uint32_t)n;
        if (rx->end > rx->pos) {
            loop_mod(&W.loop, &ex->b->io, IO_READ | IO_WRITE);
            if (n == -1 && errno != EAGAIN) return ex_abort_client(ex, "tunnel closed");
            return;
        }
    }
    if ((ex->resp_pipe.rd == -1 && pipe_take(&ex->resp_pipe)) || (ex->up_pipe.rd == -1 && pipe_take(&ex->up_pipe)))
        return ex_abort_client(ex, "no pipe for the tunnel");
    uint64_t moved = 0;
    if (!ex->tun_backend_eof) {
        enum pump_result r = splice_stream(bfd, cfd, &ex->resp_pipe, &moved);
        if (r == PUMP_WANT_WRITE) loop_mod(&W.loop, &c->io, IO_READ | IO_WRITE);
        if (r == PUMP_EOF) {
            ex->tun_backend_eof = true;
            shutdown(cfd, SHUT_WR);
        }
        if (r == PUMP_ERROR) ex->tun_backend_eof = ex->tun_client_eof = true;
    }
    if (!ex->tun_client_eof) {
        enum pump_result r = splice_stream(cfd, bfd, &ex->up_pipe, &moved);
        if (r == PUMP_WANT_WRITE) loop_mod(&W.loop, &ex->b->io, IO_READ | IO_WRITE);
        if (r == PUMP_EOF) {
            ex->tun_client_eof = true;
            shutdown(bfd, SHUT_WR);
        }
        if (r == PUMP_ERROR) ex->tun_backend_eof = ex->tun_client_eof = true;
    }
    STAT_ADD(WS->spliced_bytes, moved);
    if (ex->tun_backend_eof && ex->tun_client_eof) {
        ex->resp_done = true;
        ex->req_done = true;
        ex->client_close = true;
        ex_finish(ex);
    }
}

/* ---- driving --------------------------------------------------------- */

/* ex_run is running for a backend event that may carry readable data. */
static bool backend_readable;

static void ex_run(struct exchange *ex)
{
    if (ex->state == EX_TUNNEL) return tunnel_run(ex);
    if (ex->state != EX_ACTIVE) return;
    bool just_sent = false;
    if (!ex->req_done) {
        if (!send_request(ex)) return;
        just_sent = ex->req_done;
    }
    /* The request has just gone out: the answer cannot be there yet unless
     * this is a readable event, and its arrival will be an edge (every
     * earlier readable event was read to EAGAIN; a pooled connection is
     * idle only when drained). Reading now would only find EAGAIN. */
    if (!ex->head_sent && just_sent && !backend_readable && !ex->resp_buf.len) return;
    if (!ex->head_sent && !read_head(ex)) return;
    if (ex->state == EX_TUNNEL) return tunnel_run(ex);
    if (ex->head_sent && !relay_body(ex)) return;
    if (ex->resp_done && !buf_pending(&ex->c->rx->out)) {
        if (!ex->req_done) ex->backend_reusable = false; /* answered before the body was read */
        ex_finish(ex);
    }
}

static void on_backend_event(struct bconn *b, unsigned events)
{
    struct exchange *ex = b->ex;
    if (ex->state == EX_CONNECTING) {
        if (!(events & (IO_WRITE | IO_ERROR))) return;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(b->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            log_warn("upstream %s server %s: connect: %s", ex->up->name, ex->srv->name, strerror(err));
            upstream_fail(ex->srv, W.loop.now_ms);
            release_backend(ex, false);
            ex->srv = NULL;
            return ex_try_server(ex);
        }
        b->connected = true;
        ex->state = EX_ACTIVE;
        loop_timer(&W.loop, &ex->timer, ex->up->read_timeout_ms);
    }
    backend_readable = events & (IO_READ | IO_HUP | IO_ERROR);
    ex_run(ex);
    backend_readable = false;
}

void forward_client_event(struct exchange *ex, unsigned events)
{
    if ((events & IO_ERROR) && ex->state != EX_TUNNEL) {
        /* The client is gone: nobody to answer. */
        struct conn *c = ex->c;
        log_debug("client went away during a proxied exchange");
        conn_force_close(c);
        return;
    }
    if ((events & IO_WRITE) && !(events & IO_READ) && ex->state != EX_TUNNEL &&
        !buf_pending(&ex->c->rx->out) && ex->mode != RB_LENGTH)
        return;
    ex_run(ex);
}
