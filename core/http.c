#include "http.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- parsing ---------------------------------------------------------- */

static struct http_parse_ctx *ctx_of(llhttp_t *p)
{
    return p->data;
}

void http_request_reset(struct http_request *r)
{
    r->url.off = r->url.len = 0;
    r->nheaders = 0;
    r->in_value = r->too_many = false;
    r->head_done = r->message_done = false;
    r->has_body = r->chunked = r->expect_continue = r->keep_alive = r->upgrade = false;
    r->content_length = 0;
    r->head_len = 0;
}

static int on_message_begin(llhttp_t *p)
{
    http_request_reset(ctx_of(p)->req);
    return 0;
}

/* A span may arrive in pieces (one per read); the read buffer keeps the
 * head contiguous, so each piece extends the previous one. */
static void extend(struct slice *s, const char *base, const char *at, size_t len)
{
    if (s->len == 0) s->off = (uint32_t)(at - base);
    s->len += (uint32_t)len;
}

int http_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_parse_ctx *c = ctx_of(p);
    extend(&c->req->url, c->base, at, len);
    return 0;
}

int http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_parse_ctx *c = ctx_of(p);
    struct http_request *r = c->req;
    if (r->in_value || r->nheaders == 0) {
        if (r->nheaders == HTTP_MAX_HEADERS) {
            r->too_many = true;
            return HPE_USER;
        }
        struct http_header *h = &r->headers[r->nheaders++];
        h->name.len = h->value.len = 0;
        r->in_value = false;
    }
    /* Lower-case in place: names are case-insensitive, and Lua sees them
     * lower-cased; the forwarded head uses them as they are now. */
    char *w = (char *)at;
    for (size_t i = 0; i < len; i++) w[i] = (char)tolower((unsigned char)w[i]);
    extend(&r->headers[r->nheaders - 1].name, c->base, at, len);
    return 0;
}

/* Whether a value piece starting at `at` follows a line break and blanks:
 * the continuation line of an obs-fold. */
static bool after_fold(const char *base, const char *at)
{
    while (at > base && (at[-1] == ' ' || at[-1] == '\t')) at--;
    return at > base && at[-1] == '\n';
}

int http_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_parse_ctx *c = ctx_of(p);
    struct http_request *r = c->req;
    r->in_value = true;
    if (len == 0) return 0; /* an empty value: llhttp points past its line end */
    struct http_header *h = &r->headers[r->nheaders - 1];
    /* llhttp accepts obs-fold (a value continued on a line that starts
     * with a blank) and reports the continuation as one more piece. The
     * slice would then take in the line break: forwarded, it ends the head
     * early and smuggles the rest as a second request. Rejected (400, or
     * 502 from a backend), as RFC 9112 §5.2 allows. In the head the buffer
     * is contiguous, so a fold shows as a piece that does not continue the
     * previous one, or that starts a value right after a line break. */
    if (!r->head_done &&
        (h->value.len ? at != c->base + h->value.off + h->value.len : after_fold(c->base, at))) {
        llhttp_set_error_reason(p, "obs-fold (a header value continued on the next line)");
        return HPE_USER;
    }
    if (h->value.len == 0) h->value.off = (uint32_t)(at - c->base);
    h->value.len += (uint32_t)len;
    return 0;
}

int http_on_header_value_complete(llhttp_t *p)
{
    /* An empty value gets no on_header_value call. */
    ctx_of(p)->req->in_value = true;
    return 0;
}

static bool value_is(const char *base, struct slice v, const char *want)
{
    size_t n = strlen(want);
    return v.len == n && !strncasecmp(base + v.off, want, n);
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_request *r = ctx_of(p)->req;
    r->head_done = true;
    r->method = p->method;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    r->has_body = r->chunked || r->content_length > 0;
    r->keep_alive = llhttp_should_keep_alive(p);
    r->upgrade = p->upgrade;
    const struct http_header *e = http_find_header(r, ctx_of(p)->base, "expect", 6);
    r->expect_continue = e && value_is(ctx_of(p)->base, e->value, "100-continue");
    /* Pause so the connection can route before any body byte is consumed;
     * a request without a body runs on to on_message_complete instead. */
    return r->has_body ? HPE_PAUSED : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_parse_ctx *c = ctx_of(p);
    if (!c->body) return 0;
    if (c->body->len + len > c->max_body) {
        c->body_too_large = true;
        return HPE_USER;
    }
    return buf_append(c->body, at, len) ? HPE_USER : 0;
}

static int on_message_complete(llhttp_t *p)
{
    ctx_of(p)->req->message_done = true;
    return HPE_PAUSED;
}

const llhttp_settings_t http_request_settings = {
    .on_message_begin = on_message_begin,
    .on_url = http_on_url,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_header_value_complete = http_on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void http_parser_init(llhttp_t *p, struct http_parse_ctx *ctx)
{
    llhttp_init(p, HTTP_REQUEST, &http_request_settings);
    p->data = ctx;
}

const struct http_header *http_find_header(const struct http_request *req, const char *base,
                                           const char *name, size_t nlen)
{
    for (uint16_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name.len == nlen && !memcmp(base + h->name.off, name, nlen)) return h;
    }
    return NULL;
}

int http_validate_head(const struct http_request *req, const char *base)
{
    if (req->http_major != 1 || req->http_minor > 1) return 505;
    /* llhttp ends a CONNECT at its head whatever its framing headers say,
     * while we would wait for the body they announce; and a reverse proxy
     * opens no tunnels. */
    if (req->method == HTTP_CONNECT) return 501;
    int hosts = 0, te = 0;
    for (uint16_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        const char *name = base + h->name.off;
        if (h->name.len == 4 && !memcmp(name, "host", 4)) hosts++;
        if (h->name.len == 17 && !memcmp(name, "transfer-encoding", 17)) {
            /* Only a lone "chunked" is accepted: lists and other codings are
             * where request smuggling hides. */
            if (++te > 1) return 400;
            if (!value_is(base, h->value, "chunked")) return 501;
        }
    }
    /* HTTP/1.1 requires exactly one Host (RFC 9112 §3.2). */
    if (hosts > 1 || (hosts == 0 && req->http_minor == 1)) return 400;
    return 0;
}

int http_error_status(llhttp_errno_t err)
{
    switch (err) {
    case HPE_INVALID_TRANSFER_ENCODING: return 501;
    case HPE_INVALID_VERSION: return 505;
    default: return 400;
    }
}

/* ---- writing ---------------------------------------------------------- */

const char *http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return status < 200 ? "Informational" : status < 300 ? "OK" : status < 400 ? "Redirect"
                    : status < 500 ? "Client Error" : "Server Error";
    }
}

const char *http_date(double wall_now)
{
    static char cached[40];
    static time_t cached_sec = -1;
    time_t sec = (time_t)wall_now;
    if (sec != cached_sec) {
        struct tm tm;
        gmtime_r(&sec, &tm);
        strftime(cached, sizeof(cached), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_sec = sec;
    }
    return cached;
}

bool http_valid_name(const char *s, size_t n)
{
    static const char *specials = "!#$%&'*+-.^_`|~";
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        /* ch != 0: strchr would find the terminator and call NUL a token. */
        if (ch == 0 || (!isalnum(ch) && !strchr(specials, ch))) return false;
    }
    return true;
}

bool http_valid_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == '\0') return false;
    }
    return true;
}

static bool no_body_status(int status)
{
    return status < 200 || status == 204 || status == 304;
}

int http_response_begin(struct buf *out, const struct http_response *r)
{
    char line[80];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d %s\r\n", r->status, http_reason(r->status));
    return buf_append(out, line, (size_t)n);
}

static bool name_is(const char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && !strncasecmp(name, want, nlen);
}

int http_response_header(struct buf *out, struct http_response *r, const char *name, size_t nlen,
                         const char *value, size_t vlen)
{
    /* Framing belongs to the server: a handler's own length or connection
     * headers could contradict the body actually sent. */
    if (name_is(name, nlen, "content-length") || name_is(name, nlen, "transfer-encoding") ||
        name_is(name, nlen, "connection"))
        return 1;
    if (name_is(name, nlen, "server")) r->has_server = true;
    if (name_is(name, nlen, "date")) r->has_date = true;
    int rc = buf_reserve(out, nlen + vlen + 4);
    if (rc) return rc;
    buf_append(out, name, nlen);
    buf_append(out, ": ", 2);
    buf_append(out, value, vlen);
    buf_append(out, "\r\n", 2);
    return 0;
}

int http_response_end(struct buf *out, const struct http_response *r, double wall_now,
                      const char *body, size_t blen)
{
    char tail[256];
    int n = 0;
    if (!r->has_server) n += snprintf(tail + n, sizeof(tail) - (size_t)n, "Server: luaproxy\r\n");
    if (!r->has_date)
        n += snprintf(tail + n, sizeof(tail) - (size_t)n, "Date: %s\r\n", http_date(wall_now));
    bool bodyless = no_body_status(r->status);
    if (!bodyless)
        n += snprintf(tail + n, sizeof(tail) - (size_t)n, "Content-Length: %zu\r\n", blen);
    if (!r->keep_alive)
        n += snprintf(tail + n, sizeof(tail) - (size_t)n, "Connection: close\r\n");
    else if (r->http10)
        n += snprintf(tail + n, sizeof(tail) - (size_t)n, "Connection: keep-alive\r\n");
    n += snprintf(tail + n, sizeof(tail) - (size_t)n, "\r\n");
    if (bodyless || r->head_only) blen = 0;
    int rc = buf_reserve(out, (size_t)n + blen);
    if (rc) return rc;
    buf_append(out, tail, (size_t)n);
    return buf_append(out, body, blen);
}

int http_simple_response(struct buf *out, int status, bool keep_alive, bool head_only, double wall_now,
                         const char *body)
{
    struct http_response r = {.status = status, .keep_alive = keep_alive, .head_only = head_only};
    int rc = http_response_begin(out, &r);
    if (!rc && body)
        rc = http_response_header(out, &r, "Content-Type", 12, "text/plain", 10) < 0 ? -ENOMEM : 0;
    if (!rc) rc = http_response_end(out, &r, wall_now, body, body ? strlen(body) : 0);
    return rc;
}
