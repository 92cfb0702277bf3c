/* http_fix: heads that llhttp refuses but RFC 9112 allows (an unknown
 * method token, identical Content-Lengths, HTAB around values...). Only a
 * head that failed to parse comes here: it is rewritten once, in place, and
 * parsed again, so valid requests never pay for it. */
#include "http.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

bool http_head_fixable(llhttp_errno_t err)
{
    return err == HPE_INVALID_CONTENT_LENGTH || err == HPE_UNEXPECTED_CONTENT_LENGTH ||
           err == HPE_INVALID_TRANSFER_ENCODING || err == HPE_INVALID_METHOD;
}

uint32_t http_head_end(const char *p, size_t len)
{
    const char *e = memmem(p, len, "\r\n\r\n", 4);
    return e ? (uint32_t)(e - p + 4) : 0;
}

/* A Content-Length value: 1#(1*DIGIT) with OWS, every element the same
 * number. false: malformed, empty, over 2^63-1 or two numbers. */
static bool cl_value(const char *s, size_t n, uint64_t *out)
{
    bool any = false;
    size_t i = 0;
    for (;;) {
        while (i < n && (http_is_ows(s[i]) || s[i] == ',')) i++;
        if (i == n) return any;
        uint64_t v = 0;
        size_t d = i;
        while (i < n && isdigit((unsigned char)s[i])) {
            if (v > (uint64_t)(INT64_MAX - 9) / 10) return false;
            v = v * 10 + (uint64_t)(s[i++] - '0');
        }
        if (i == d || (any && v != *out)) return false;
        while (i < n && http_is_ows(s[i])) i++;
        if (i < n && s[i] != ',') return false;
        *out = v;
        any = true;
    }
}

int http_head_rewrite(char *p, uint32_t *len, uint32_t head_end, bool method_unknown,
                      struct slice *method)
{
    size_t i = http_skip_empty_lines(p, head_end), m = i;
    i += http_token_span(p + i, head_end - i);
    if (method_unknown) {
        if (i == m || p[i] != ' ') return 0;
        *method = (struct slice){(uint32_t)m, (uint32_t)(i - m)};
    }
    const char *eol = memmem(p + i, head_end - i, "\r\n", 2);
    if (!eol) return 0;
    size_t line = (size_t)(eol - p) + 2;
    struct buf nb = {0};
    if (buf_reserve(&nb, head_end)) return 0;
    buf_append(&nb, p, line);
    bool cl_seen = false;
    uint64_t cl = 0;
    int rc = 0;
    while (line + 2 < head_end) {
        const char *e = memmem(p + line, head_end - line, "\r\n", 2);
        const char *colon = memchr(p + line, ':', (size_t)(e - p) - line);
        if (!e || !colon) goto out;
        size_t nlen = (size_t)(colon - p) - line, v = nlen + 1 + line, vend = (size_t)(e - p);
        bool ows = v < vend && http_is_ows(p[v]);
        while (v < vend && http_is_ows(p[v])) v++;
        while (vend > v && http_is_ows(p[vend - 1])) vend--;
        if (http_name_is(p + line, nlen, "content-length")) {
            uint64_t n = 0;
            if (!cl_value(p + v, vend - v, &n) || (cl_seen && n != cl)) {
                rc = 400;
                goto out;
            }
            if (!cl_seen) {
                char num[24], *d = buf_format_u64(num + sizeof(num), n);
                buf_append(&nb, p + line, nlen + 1 + ows);
                buf_append(&nb, d, (size_t)(num + sizeof(num) - d));
                buf_append(&nb, "\r\n", 2);
            }
            cl_seen = true;
            cl = n;
        } else if (http_name_is(p + line, nlen, "transfer-encoding")) {
            buf_append(&nb, p + line, nlen + 1 + ows);
            buf_append(&nb, p + v, vend - v);
            buf_append(&nb, "\r\n", 2);
        } else {
            buf_append(&nb, p + line, (size_t)(e - p) + 2 - line);
        }
        line = (size_t)(e - p) + 2;
    }
    buf_append(&nb, "\r\n", 2);
    if (nb.len < head_end || method_unknown) {
        memmove(p + nb.len, p + head_end, *len - head_end);
        memcpy(p, nb.data, nb.len);
        *len = *len - head_end + (uint32_t)nb.len;
        rc = 1;
    }
out:
    buf_free(&nb);
    return rc;
}

llhttp_errno_t http_parse_again(llhttp_t *p, struct http_parse_ctx *ctx, const char *data, size_t len,
                                struct slice method, const char **stop)
{
    http_parser_init(p, ctx);
    *stop = data; /* nothing taken, unless the parser says otherwise */
    size_t from = 0;
    if (method.len) {
        /* llhttp knows a fixed list of methods: it is given a known one in
         * place of the token, then the rest of the line from the buffer. */
        llhttp_errno_t err = llhttp_execute(p, "GET ", 4);
        if (err != HPE_OK) return err;
        from = method.off + method.len + 1;
    }
    llhttp_errno_t err = llhttp_execute(p, data + from, len - from);
    *stop = err == HPE_OK ? data + len : llhttp_get_error_pos(p);
    if (method.len && ctx->req->head_done) {
        ctx->req->method = HTTP_METHOD_OTHER;
        ctx->req->method_tok = method;
    }
    return err;
}

const char *http_method_name(const struct http_request *req, const char *base, size_t *len)
{
    if (req->method == HTTP_METHOD_OTHER) {
        *len = req->method_tok.len;
        return base + req->method_tok.off;
    }
    const char *m = llhttp_method_name((llhttp_method_t)req->method);
    *len = strlen(m);
    return m;
}
