#include "http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Byte classes for the head checks, a table lookup per byte, written out
 * here (no code runs before main to build it). The rules, one flag each:
 *   HTTP_C_TCHAR      tchar of RFC 9110 5.6.2 (names, methods): ALPHA,
 *                     DIGIT and !#$%&'*+-.^_`|~
 *   HTTP_C_NAME       a tchar but '_' (a name holding '_' is noted apart)
 *   HTTP_C_VALUE      field-value bytes: VCHAR, obs-text (0x80-0xff), SP
 *                     and HTAB; no other control, no DEL
 *   HTTP_C_TARGET     request-target bytes: VCHAR (0x21-0x7e) but '#'
 *   HTTP_C_AUTHORITY  a Host authority (reg-name or IP-literal, and ':'):
 *                     ALPHA, DIGIT and -._~%!$&'()*+,;=:[]
 * Each byte is listed once, grouped by the flags it has; the bytes not
 * listed have none. tests/unit/test_http.c checks all 256 against the
 * rules above, so a slip here fails there. The group names spell the
 * flags: T tchar, N name, V value, G tarGet, A authority. */
#define TNVGA (HTTP_C_TCHAR | HTTP_C_NAME | HTTP_C_VALUE | HTTP_C_TARGET | HTTP_C_AUTHORITY)
#define TNVG (HTTP_C_TCHAR | HTTP_C_NAME | HTTP_C_VALUE | HTTP_C_TARGET)
#define TNV (HTTP_C_TCHAR | HTTP_C_NAME | HTTP_C_VALUE)
#define TVGA (HTTP_C_TCHAR | HTTP_C_VALUE | HTTP_C_TARGET | HTTP_C_AUTHORITY)
#define VGA (HTTP_C_VALUE | HTTP_C_TARGET | HTTP_C_AUTHORITY)
#define VG (HTTP_C_VALUE | HTTP_C_TARGET)
#define V HTTP_C_VALUE
const uint8_t http_byte_class[256] = {
    /* tchar and authority */
    ['0' ... '9'] = TNVGA, ['A' ... 'Z'] = TNVGA, ['a' ... 'z'] = TNVGA,
    ['!'] = TNVGA, ['$'] = TNVGA, ['%'] = TNVGA, ['&'] = TNVGA, ['\''] = TNVGA,
    ['*'] = TNVGA, ['+'] = TNVGA, ['-'] = TNVGA, ['.'] = TNVGA, ['~'] = TNVGA,
    /* tchar, not authority */
    ['^'] = TNVG, ['`'] = TNVG, ['|'] = TNVG,
    ['#'] = TNV, /* not in a target: a fragment is never sent */
    ['_'] = TVGA, /* a tchar, but not a name byte */
    /* authority, not tchar */
    ['('] = VGA, [')'] = VGA, [','] = VGA, [':'] = VGA, [';'] = VGA, ['='] = VGA,
    ['['] = VGA, [']'] = VGA,
    /* the rest of VCHAR */
    ['"'] = VG, ['/'] = VG, ['<'] = VG, ['>'] = VG, ['?'] = VG, ['@'] = VG,
    ['\\'] = VG, ['{'] = VG, ['}'] = VG,
    /* whitespace and obs-text: values only */
    ['\t'] = V, [' '] = V, [0x80 ... 0xff] = V,
};
#undef TNVGA
#undef TNVG
#undef TNV
#undef TVGA
#undef VGA
#undef VG
#undef V

/* ASCII lower-casing, whatever the locale: every byte maps to itself but
 * 'A'-'Z', which map to 'a'-'z' (rows 0x40 and 0x50 written out). */
#define SAME16(b)                                                                                  \
    (b) + 0, (b) + 1, (b) + 2, (b) + 3, (b) + 4, (b) + 5, (b) + 6, (b) + 7, (b) + 8, (b) + 9,      \
        (b) + 10, (b) + 11, (b) + 12, (b) + 13, (b) + 14, (b) + 15
const uint8_t http_to_lower[256] = {
    SAME16(0x00), SAME16(0x10), SAME16(0x20), SAME16(0x30),
    '@', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '[', '\\', ']', '^', '_',
    SAME16(0x60), SAME16(0x70), SAME16(0x80), SAME16(0x90), SAME16(0xa0), SAME16(0xb0),
    SAME16(0xc0), SAME16(0xd0), SAME16(0xe0), SAME16(0xf0),
};
#undef SAME16

/* ---- parsing ---------------------------------------------------------- */

static struct http_parse_ctx *ctx_of(llhttp_t *p)
{
    return p->data;
}

void http_request_reset(struct http_request *r)
{
    r->url.off = r->url.len = 0;
    r->nheaders = 0;
    r->in_value = r->too_many = r->line_too_long = r->bad_chunk_ext = false;
    r->chunk_ext_len = r->ext_name_len = 0;
    r->underscore = r->bad_trailer = r->trailer_bad = false;
    r->chunk_line = r->chunk_pause = r->last_chunk = false;
    r->trailer_value = r->trailer_len = 0;
    r->target_host.off = r->target_host.len = 0;
    r->method_tok.off = r->method_tok.len = 0;
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
    struct slice *u = &c->req->url;
    extend(u, c->base, at, len);
    /* Checked as it arrives: a client sending an endless target is stopped
     * here rather than by the head size limit. The line starts at the
     * buffer's start, give or take the empty lines allowed before it. */
    if ((uint64_t)u->off + u->len + sizeof(" HTTP/1.1") > HTTP_MAX_REQUEST_LINE) {
        c->req->line_too_long = true;
        return HPE_USER;
    }
    return 0;
}

/* Fields a trailer section may not carry (RFC 9110 6.5.1): framing,
 * routing, connection management, request modifiers and credentials. A
 * backend that merged them into the header section would read the message
 * differently from us; such a trailer is refused (400) rather than edited,
 * because the chunked body travels as received. */
static bool trailer_forbidden(const char *name, size_t n)
{
    static const char *const names[] = {
        "content-length", "transfer-encoding", "host", "connection", "keep-alive",
        "proxy-connection", "te", "trailer", "upgrade", "expect", "authorization",
        "proxy-authorization", "cookie", "content-type", "content-encoding", "content-range",
        "range", "max-forwards", "forwarded", "x-forwarded-for", "x-forwarded-proto",
        "x-forwarded-host", "x-real-ip", "cache-control", "pragma",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i]) == n && http_name_eq(name, names[i], n)) return true;
    return memchr(name, '_', n) != NULL;
}

/* A trailer name, in one piece or split across reads: gathered (up to a
 * bound no forbidden name reaches) and judged when it is complete. */
static int trailer_name(llhttp_t *p, struct http_request *r, const char *at, size_t len)
{
    r->trailer_value = 0;
    if (memchr(at, '_', len)) r->trailer_bad = true;
    size_t room = sizeof(r->trailer) - r->trailer_len;
    size_t k = len < room ? len : room;
    memcpy(r->trailer + r->trailer_len, at, k);
    r->trailer_len = (uint8_t)(r->trailer_len + k);
    (void)p;
    return 0;
}

/* At the end of a trailer field (called from http_on_header_value_complete,
 * which every field passes: no callback of its own on the common path). */
__attribute__((noinline)) static int trailer_field_complete(llhttp_t *p)
{
    struct http_request *r = ctx_of(p)->req;
    bool bad = r->trailer_bad ||
               (r->trailer_len < sizeof(r->trailer) && trailer_forbidden(r->trailer, r->trailer_len));
    r->trailer_len = 0;
    r->trailer_bad = false;
    if (bad) {
        r->bad_trailer = true;
        llhttp_set_error_reason(p, "a framing, routing or credential field in the trailer section");
        return HPE_USER;
    }
    return 0;
}

int http_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_parse_ctx *c = ctx_of(p);
    struct http_request *r = c->req;
    /* Trailer fields of a chunked body come through the same callbacks:
     * they are passed on as received but never join the headers (RFC 9110
     * 6.5.1), or a trailer "Host" or "X-User" would reach the script as if
     * it were a header that whatever sits in front had checked. */
    if (r->head_done) return trailer_name(p, r, at, len);
    if (r->in_value || r->nheaders == 0) {
        if (r->nheaders == HTTP_MAX_HEADERS) {
            r->too_many = true;
            return HPE_USER;
        }
        struct http_header *h = &r->headers[r->nheaders++];
        h->name.len = h->value.len = 0;
        r->in_value = false;
    }
    /* Names keep the case the client sent (the forwarded head is made of
     * the received lines); lookups compare without case. */
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
    if (r->head_done) {
        /* A trailer value in a second piece is an obs-fold, unless the first
         * piece ended only because the read did: llhttp then calls back
         * with its span still open (_span_pos0 set), not closed. Refused as
         * in the head: forwarded, the fold would reach the backend. */
        if (len && r->trailer_value == 1) {
            llhttp_set_error_reason(p, "obs-fold in the trailer section");
            r->bad_trailer = true;
            return HPE_USER;
        }
        if (len) r->trailer_value = p->_span_pos0 ? 2 : 1;
        return 0;
    }
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
    struct http_request *r = ctx_of(p)->req;
    if (r->head_done) return p->type == HTTP_REQUEST ? trailer_field_complete(p) : 0;
    /* An empty value gets no on_header_value call. */
    r->in_value = true;
    /* llhttp leaves trailing whitespace in the value; it is not part of it
     * (RFC 9110 5.5), and "chunked\t" must compare equal to "chunked". */
    struct slice *v = &r->headers[r->nheaders - 1].value;
    const char *base = ctx_of(p)->base;
    while (v->len && (base[v->off + v->len - 1] == ' ' || base[v->off + v->len - 1] == '\t')) v->len--;
    return 0;
}

static bool value_is(const char *base, struct slice v, const char *want)
{
    size_t n = strlen(want);
    return v.len == n && !strncasecmp(base + v.off, want, n);
}

/* Whether a comma-separated header value holds `token` (any case). */
static bool has_token(const char *base, struct slice v, const char *token)
{
    size_t n = strlen(token);
    const char *s = base + v.off, *end = s + v.len;
    while (s < end) {
        while (s < end && (*s == ' ' || *s == '\t' || *s == ',')) s++;
        const char *t = s;
        while (s < end && *s != ',' && *s != ' ' && *s != '\t') s++;
        if ((size_t)(s - t) == n && !strncasecmp(t, token, n)) return true;
    }
    return false;
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_request *r = ctx_of(p)->req;
    const char *base = ctx_of(p)->base;
    /* An upgrade to h2c (or h2) is never passed on: a backend that accepted
     * it would speak HTTP/2 on a tunnel the proxy no longer looks into (h2c
     * smuggling). The request goes on as a plain one, its Upgrade and
     * Connection headers dropped as hop-by-hop. llhttp reads p->upgrade
     * after this callback, so clearing it keeps the parser in HTTP/1. */
    if (p->upgrade && p->method != HTTP_CONNECT) {
        for (uint16_t i = 0; i < r->nheaders; i++) {
            const struct http_header *h = &r->headers[i];
            if (http_name_is(base + h->name.off, h->name.len, "upgrade") &&
                (has_token(base, h->value, "h2c") || has_token(base, h->value, "h2")))
                p->upgrade = 0;
        }
    }
    r->head_done = true;
    r->method = p->method;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->chunk_line = r->chunked; /* the first chunk-size line follows */
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

/* Chunk extensions pass through to the backend as received, so they are
 * held to their grammar (llhttp lets ";=x" through) and to a size: one
 * chunk's extensions may not exceed HTTP_MAX_CHUNK_EXT bytes. */
static int chunk_ext_bytes(struct http_request *r, size_t len)
{
    r->chunk_ext_len += (uint32_t)len;
    if (r->chunk_ext_len > HTTP_MAX_CHUNK_EXT) {
        r->bad_chunk_ext = true;
        return HPE_USER;
    }
    return 0;
}

static int on_chunk_ext_name(llhttp_t *p, const char *at, size_t len)
{
    struct http_request *r = ctx_of(p)->req;
    r->ext_name_len += (uint32_t)len;
    return chunk_ext_bytes(r, len);
}

static int on_chunk_ext_name_complete(llhttp_t *p)
{
    struct http_request *r = ctx_of(p)->req;
    if (r->ext_name_len == 0) {
        r->bad_chunk_ext = true;
        return HPE_USER;
    }
    r->ext_name_len = 0;
    return 0;
}

static int on_chunk_ext_value(llhttp_t *p, const char *at, size_t len)
{
    return chunk_ext_bytes(ctx_of(p)->req, len);
}

static int on_chunk_header(llhttp_t *p)
{
    struct http_request *r = ctx_of(p)->req;
    r->chunk_ext_len = 0;
    r->last_chunk = p->content_length == 0;
    return 0;
}

/* After a chunk's data: the next chunk-size line goes to llhttp only whole,
 * through http_execute (which pauses here for it). The last chunk's
 * completion comes after the trailer section: nothing follows it. */
static int on_chunk_complete(llhttp_t *p)
{
    struct http_request *r = ctx_of(p)->req;
    if (r->last_chunk) return 0;
    r->chunk_line = r->chunk_pause = true;
    return HPE_PAUSED;
}

/* RFC 9112 7.1.1 allows BWS around the ';' and '=' of a chunk extension;
 * llhttp refuses any. A whole chunk-size line at s (its LF within n bytes)
 * loses those blanks (outside quoted strings), in place; the rest of the
 * buffer moves up. Blanks elsewhere (inside the size, before the CRLF) are
 * left for llhttp to refuse. Returns the bytes removed, or -1 when the line
 * is not whole yet. */
static int chunk_line_fix(char *s, size_t n)
{
    const char *lf = memchr(s, '\n', n);
    if (!lf) return -1;
    size_t len = (size_t)(lf - s) + 1, w = 0;
    bool quoted = false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (quoted) {
            if (ch == '\\' && i + 1 < len) s[w++] = s[i++];
            else if (ch == '"') quoted = false;
        } else if (ch == '"') {
            quoted = true;
        } else if (http_is_ows(ch)) {
            size_t j = i;
            while (j < len && http_is_ows(s[j])) j++;
            char before = w ? s[w - 1] : 0, after = s[j];
            if (after == ';' || after == '=' || before == ';' || before == '=') {
                i = j - 1;
                continue;
            }
        }
        s[w++] = s[i];
    }
    if (w < len) memmove(s + w, s + len, n - len);
    return (int)(len - w);
}

llhttp_errno_t http_execute(llhttp_t *p, char *data, uint32_t *pos, uint32_t *end)
{
    struct http_request *r = ctx_of(p)->req;
    for (;;) {
        if (r->chunk_line) {
            size_t avail = *end - *pos;
            int cut = chunk_line_fix(data + *pos, avail);
            if (cut < 0) {
                /* Not whole yet: wait for the rest, within a bound. */
                if (avail <= HTTP_MAX_CHUNK_EXT + 32) return HPE_OK;
                r->bad_chunk_ext = true;
                return HPE_INVALID_CHUNK_SIZE;
            }
            *end -= (uint32_t)cut;
            r->chunk_line = false;
        }
        const char *s = data + *pos;
        llhttp_errno_t err = llhttp_execute(p, s, *end - *pos);
        *pos = err == HPE_OK ? *end : (uint32_t)(llhttp_get_error_pos(p) - data);
        if (err != HPE_PAUSED || !r->chunk_pause) return err;
        r->chunk_pause = false;
        llhttp_resume(p);
    }
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
    .on_chunk_extension_name = on_chunk_ext_name,
    .on_chunk_extension_name_complete = on_chunk_ext_name_complete,
    .on_chunk_extension_value = on_chunk_ext_value,
    .on_chunk_header = on_chunk_header,
    .on_chunk_complete = on_chunk_complete,
};

void http_parser_init(llhttp_t *p, struct http_parse_ctx *ctx)
{
    llhttp_init(p, HTTP_REQUEST, &http_request_settings);
    p->data = ctx;
}

/* A word-at-a-time version (SWAR) cost more than this loop under
 * callgrind: the names compared are short, and most calls are matches. */
bool http_name_eq(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (http_to_lower[(unsigned char)s[i]] != (unsigned char)lower[i]) return false;
    return true;
}

const struct http_header *http_find_header(const struct http_request *req, const char *base,
                                           const char *name, size_t nlen)
{
    for (uint16_t i = 0; i < req->nheaders; i++) {
        const struct http_header *h = &req->headers[i];
        if (h->name.len == nlen && http_name_eq(base + h->name.off, name, nlen)) return h;
    }
    return NULL;
}

/* ---- validation ------------------------------------------------------ */

static bool is_tchar(unsigned char ch)
{
    return http_byte_class[ch] & HTTP_C_TCHAR;
}

static bool is_value_char(unsigned char ch)
{
    return http_byte_class[ch] & HTTP_C_VALUE;
}

/* "HTTP/" DIGIT "." DIGIT. */
static bool is_version(const char *s, size_t n)
{
    return n == 8 && !memcmp(s, "HTTP/", 5) && isdigit((unsigned char)s[5]) && s[6] == '.' &&
           isdigit((unsigned char)s[7]);
}

static int version_status(const char *v)
{
    return v[5] == '1' && (v[7] == '0' || v[7] == '1') ? 0 : 505;
}

/* The request line starts after the empty lines (CRLF only) that RFC 9112
 * 2.2 lets a server skip. Returns its offset. */
size_t http_skip_empty_lines(const char *p, size_t len)
{
    size_t i = 0;
    while (i + 1 < len && p[i] == '\r' && p[i + 1] == '\n') i += 2;
    return i;
}

/* Eight field-value bytes at once: true when none is a control (below 0x20
 * or 0x7f; bytes from 0x80 are obs-text). The bit tricks may report a
 * control that is not there, never miss one: the byte loop then decides. */
static bool word_is_plain(const char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t below = (x - 0x20 * ones) & ~x & highs;
    uint64_t del = x ^ (0x7f * ones);
    del = (del - ones) & ~del & highs;
    return !(below | del);
}

/* *( field-name ":" OWS field-value OWS CRLF ) CRLF from offset i to
 * exactly len: no obs-fold, no bare CR or LF, no control in a value. The
 * head ends with LF, which is neither a tchar nor a value byte: the scans
 * of a name and of a value stop at it without checking the length. */
static bool fields_ok(const char *p, size_t i, size_t len, bool *underscore)
{
    if (len < 2 || p[len - 1] != '\n') return false;
    for (;;) {
        if (i + 1 < len && p[i] == '\r' && p[i + 1] == '\n') return i + 2 == len;
        size_t n = i;
        while (http_byte_class[(unsigned char)p[i]] & HTTP_C_NAME) i++;
        if (p[i] == '_') { /* noted here, where the name is read anyway */
            *underscore = true;
            while (is_tchar((unsigned char)p[i])) i++;
        }
        if (i == n || p[i] != ':') return false; /* also a line starting with SP/HTAB */
        i++;
        while (i + 8 <= len && word_is_plain(p + i)) i += 8;
        while (is_value_char((unsigned char)p[i])) i++;
        if (i + 1 >= len || p[i] != '\r' || p[i + 1] != '\n') return false;
        i += 2;
    }
}

int http_check_syntax(const char *p, size_t len)
{
    struct http_request r = {0};
    return http_check_head(&r, p, len);
}

int http_check_head(struct http_request *req, const char *p, size_t len)
{
    size_t i = http_skip_empty_lines(p, len), line = i;
    /* request-line = method SP request-target SP HTTP-version CRLF */
    size_t m = i;
    while (i < len && is_tchar((unsigned char)p[i])) i++;
    if (i == m || i >= len || p[i] != ' ') return 400;
    size_t t = ++i;
    while (i < len && (http_byte_class[(unsigned char)p[i]] & HTTP_C_TARGET)) i++;
    if (i == t || i >= len || p[i] != ' ') return 400;
    size_t v = ++i;
    while (i < len && p[i] != '\r' && p[i] != '\n') i++;
    if (i - line + 2 > HTTP_MAX_REQUEST_LINE) return 414;
    if (!is_version(p + v, i - v)) return 400;
    int vs = version_status(p + v);
    if (vs) return vs;
    if (i + 1 >= len || p[i] != '\r' || p[i + 1] != '\n') return 400;
    return fields_ok(p, i + 2, len, &req->underscore) ? 0 : 400;
}

bool http_response_head_ok(const char *p, size_t len)
{
    /* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF; the
     * SP before an empty reason is often left out, and allowed here. */
    if (len < 14 || !is_version(p, 8) || p[8] != ' ') return false;
    for (int k = 9; k < 12; k++)
        if (!isdigit((unsigned char)p[k])) return false;
    size_t i = 12;
    if (p[i] == ' ')
        while (++i < len && is_value_char((unsigned char)p[i])) {}
    if (i + 1 >= len || p[i] != '\r' || p[i + 1] != '\n') return false;
    bool underscore = false;
    return fields_ok(p, i + 2, len, &underscore);
}

/* uri-host [ ":" port ]: reg-name or IP-literal characters, no '/', '@',
 * whitespace or controls (those would make vhost routing guess). */
static bool valid_authority(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(http_byte_class[(unsigned char)s[i]] & HTTP_C_AUTHORITY)) return false;
    return true;
}

/* absolute-form ("http://host/path?q"): the target is rewritten in place
 * as a slice: it becomes "/path?q". Host must name the same authority. */
static int normalise_absolute(struct http_request *req, const char *base, struct http_header *host)
{
    const char *u = base + req->url.off;
    size_t n = req->url.len, skip;
    if (n > 7 && !strncasecmp(u, "http://", 7)) skip = 7;
    else if (n > 8 && !strncasecmp(u, "https://", 8)) skip = 8;
    else return 400;
    size_t a = skip;
    while (a < n && u[a] != '/' && u[a] != '?') a++;
    /* No path ("http://h" or "http://h?q") is refused rather than guessed. */
    if (a == skip || a == n || u[a] != '/') return 400;
    if (!valid_authority(u + skip, a - skip) || memchr(u + skip, '@', a - skip)) return 400;
    /* The target's authority replaces Host (RFC 9112 3.2.2): whatever Host
     * said, the script, the logs and the backend see the target's name
     * (the forwarded head carries it, see target_host). */
    struct slice auth = {req->url.off + (uint32_t)skip, (uint32_t)(a - skip)};
    if (host) host->value = auth;
    req->target_host = auth;
    req->url.off += (uint32_t)a;
    req->url.len -= (uint32_t)a;
    return 0;
}

bool http_te_is_plain(const struct http_request *msg, const char *base)
{
    int te = 0;
    for (uint16_t i = 0; i < msg->nheaders; i++) {
        const struct http_header *h = &msg->headers[i];
        if (http_name_is(base + h->name.off, h->name.len, "transfer-encoding") &&
            (++te > 1 || !value_is(base, h->value, "chunked")))
            return false;
    }
    return true;
}

int http_validate_head(struct http_request *req, const char *base)
{
    if (req->http_major != 1 || req->http_minor > 1) return 505;
    if (req->method == HTTP_CONNECT) return 501; /* a reverse proxy opens no tunnels */
    /* llhttp takes lengths up to 2^64-1; a backend or a client library
     * holding them in an off_t would read a negative length. */
    if (req->content_length > INT64_MAX) return 400;
    int hosts = 0, te = 0;
    struct http_header *host = NULL, *tenc = NULL;
    for (uint16_t i = 0; i < req->nheaders; i++) {
        struct http_header *h = &req->headers[i];
        const char *name = base + h->name.off;
        if (http_name_is(name, h->name.len, "host")) {
            hosts++;
            host = h;
        }
        if (http_name_is(name, h->name.len, "transfer-encoding")) {
            te++;
            tenc = h;
        }
    }
    /* HTTP/1.1 requires exactly one Host (RFC 9112 3.2). */
    if (hosts > 1 || (hosts == 0 && req->http_minor == 1)) return 400;
    if (host && !valid_authority(base + host->value.off, host->value.len)) return 400;
    if (tenc) {
        /* Only one lone "chunked" is accepted: lists and other codings are
         * where request smuggling hides. A 1.0 message with
         * Transfer-Encoding has faulty framing (RFC 9112 6.1). */
        if (te > 1 || tenc->value.len == 0 || req->http_minor == 0) return 400;
        if (!value_is(base, tenc->value, "chunked")) return 501;
    }
    const char *u = base + req->url.off;
    if (req->url.len == 0) return 400;
    if (u[0] == '*') return req->url.len == 1 && req->method == HTTP_OPTIONS ? 0 : 400;
    if (u[0] != '/') return normalise_absolute(req, base, host);
    return 0;
}

int http_error_status(llhttp_errno_t err, const struct http_request *req, const char *data,
                      size_t len)
{
    if (err == HPE_USER && req->line_too_long) return 414;
    if (err == HPE_USER && req->too_many) return 431;
    /* An unknown method that is not a token either. */
    if (err == HPE_INVALID_METHOD) return 400;
    if (err == HPE_INVALID_VERSION || err == HPE_PAUSED_H2_UPGRADE) {
        /* 505 only for a well-formed version other than 1.0 and 1.1. */
        size_t i = http_skip_empty_lines(data, len), e = i;
        while (e < len && data[e] != '\r' && data[e] != '\n') e++;
        size_t sp = e;
        while (sp > i && data[sp - 1] != ' ') sp--;
        return sp > i && e < len && is_version(data + sp, e - sp) && version_status(data + sp)
                   ? 505
                   : 400;
    }
    /* (in a chunked body's trailer section it is a malformed body: 400) */
    if (err == HPE_INVALID_TRANSFER_ENCODING && !(req->head_done && req->chunked)) {
        /* Two Transfer-Encoding headers, or an empty one: malformed. */
        int te = 0;
        for (uint16_t i = 0; i < req->nheaders; i++) {
            const struct http_header *h = &req->headers[i];
            if (http_name_is(data + h->name.off, h->name.len, "transfer-encoding")) {
                te++;
                if (h->value.len == 0) return 400;
            }
        }
        return te > 1 ? 400 : 501;
    }
    return 400;
}

bool http_valid_name(const char *s, size_t n)
{
    if (n == 0) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i])) return false;
    return true;
}

void http_lower(char *dst, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = (char)http_to_lower[(unsigned char)src[i]];
}

bool http_valid_value(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\r' || ch == '\n' || ch == '\0') return false;
    }
    return true;
}

size_t http_token_span(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)p[i])) i++;
    return i;
}
