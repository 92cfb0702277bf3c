#include "proxy_head.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "http_response.h"
#include "script.h"

#define MAX_CONN_TOKENS 16

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
static void client_ip(const struct sockaddr *peer, char *out, size_t size)
{
    if (peer->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, out, (socklen_t)size);
    else
        format_ipv4(out, &((const struct sockaddr_in *)peer)->sin_addr);
}

static void append_header(struct buf *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
    buf_append(b, name, nlen);
    buf_append(b, ": ", 2);
    buf_append(b, value, vlen);
    buf_append(b, "\r\n", 2);
}

/* Header lines go out as the runs of raw bytes they were received as
 * (names in the case the peer sent them; the head check let through only
 * well-formed lines): a line starts at its name and ends where the next one starts, the
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

void proxy_head_target(struct buf *out, const struct http_request *r, const char *base,
                       const struct script_edits *e)
{
    const char *url = base + r->url.off;
    const char *q = memchr(url, '?', r->url.len);
    if (e && (e->path_set || e->query_set)) {
        if (e->path_set) buf_append(out, e->path, e->path_len);
        else buf_append(out, url, q ? (size_t)(q - url) : r->url.len);
        if (e->query_set && e->query) {
            buf_append(out, "?", 1);
            buf_append(out, e->query, e->query_len);
        } else if (!e->query_set && q) {
            buf_append(out, q, r->url.len - (size_t)(q - url));
        }
    } else {
        buf_append(out, url, r->url.len);
    }
}

int proxy_head_request(struct buf *h, const struct proxy_request_head *in)
{
    const struct http_request *r = in->req;
    const char *base = in->base;
    const struct script_edits *e = in->edits;
    if (buf_reserve(h, in->head_len + 256)) return -ENOMEM;

    size_t mlen;
    const char *method = http_method_name(r, base, &mlen);
    buf_append(h, method, mlen);
    buf_append(h, " ", 1);
    proxy_head_target(h, r, base, e);
    buf_puts(h, " HTTP/1.1\r\n");

    struct slice tokens[MAX_CONN_TOKENS];
    int ntok = connection_tokens(r, base, tokens);
    bool has_host = false;
    const struct http_header *xff[8];
    int nxff = 0;
    struct line_run run = {base, r->headers, r->nheaders, in->head_len - 2, -1};
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
    if (!has_host) append_header(h, "host", 4, in->default_host, strlen(in->default_host));

    /* The script's own X-Forwarded-For/-Proto (set_header) replace ours. */
    if (!edited(e, "x-forwarded-for", 15)) {
        buf_puts(h, "x-forwarded-for: ");
        for (int i = 0; i < nxff; i++) {
            buf_append(h, base + xff[i]->value.off, xff[i]->value.len);
            buf_append(h, ", ", 2);
        }
        char addr[64];
        client_ip(in->peer, addr, sizeof(addr));
        buf_puts(h, addr);
        buf_puts(h, "\r\n");
    }
    if (!edited(e, "x-forwarded-proto", 17))
        buf_puts(h, in->https ? "x-forwarded-proto: https\r\n" : "x-forwarded-proto: http\r\n");
    if (in->upgrade) {
        const struct http_header *up = http_find_header(r, base, "upgrade", 7);
        buf_puts(h, "connection: upgrade\r\n");
        if (up) append_header(h, "upgrade", 7, base + up->value.off, up->value.len);
    }
    buf_puts(h, "\r\n");
    return buf_reserve(h, 0);
}

void proxy_head_response(struct buf *out, const struct proxy_response_head *in)
{
    const char *base = in->base;
    const struct http_request *resp = in->resp;
    const struct script_edits *e = in->edits;
    int status = in->status;
    bool switching = in->switching;
    /* "HTTP/1.1 200 OK": status is 100..599 (the parser checked it). */
    struct slice reason = resp->url;
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
    int ntok = connection_tokens(resp, base, tokens);
    struct line_run run = {base, resp->headers, resp->nheaders, in->head_len - 2, -1};
    for (uint16_t i = 0; i < resp->nheaders; i++) {
        const struct http_header *hd = &resp->headers[i];
        const char *name = base + hd->name.off;
        size_t nlen = hd->name.len;
        bool keep = !is_hop_by_hop(name, nlen, switching) && (switching || !token_in(base, tokens, ntok, hd->name));
        if (keep && http_name_is(name, nlen, "transfer-encoding") && in->drop_te)
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
    run_cut(out, &run, resp->nheaders);
    for (size_t i = 0; e && i < e->nheaders; i++)
        if (e->headers[i].value && script_may_edit(e->headers[i].name, e->headers[i].nlen))
            append_header(out, e->headers[i].name, e->headers[i].nlen, e->headers[i].value, e->headers[i].vlen);
    if (in->chunk_out) buf_puts(out, "transfer-encoding: chunked\r\n");
    if (status >= 200 && !switching) {
        if (in->close) buf_puts(out, "connection: close\r\n");
        else if (in->http10) buf_puts(out, "connection: keep-alive\r\n");
    }
    buf_puts(out, "\r\n");
}
