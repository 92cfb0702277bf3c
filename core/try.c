/* try: a routing dry run. `luaproxy --try "GET /api/users" -H "X-User: 42"
 * script.lua` prints where that request would go, without any network.
 *
 * The request is written out as HTTP/1.1 text and parsed by the same llhttp
 * callbacks as a client's request, so the script sees the very `req` object
 * a worker would build (lua/req.c reads it from struct http_request). The
 * decision then takes the worker's path: script_route, then the upstream's
 * policy (hash_key, a Lua balancer, or a built-in one) or script_handle.
 * Only the outcome differs: it is printed instead of acted on. on_response
 * is not run, as there is no backend to answer. */
#include "try.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "balance.h"
#include "buf.h"
#include "http.h"
#include "http_response.h"
#include "proxy_head.h"
#include "reply.h"
#include "script.h"
#include "upstream.h"

static char script_error[1024]; /* the first script error, as one line */

static void on_script_error(const char *where, const char *msg)
{
    if (script_error[0]) return;
    /* msg carries a traceback after the first line: one line is enough here. */
    size_t n = strcspn(msg, "\n");
    snprintf(script_error, sizeof(script_error), "error in %s: %.*s", where, (int)n, msg);
}

static int usage_error(const char *what, const char *value, const char *why)
{
    fprintf(stderr, "luaproxy: %s '%s': %s\n", what, value, why);
    return 2;
}

static bool has_header(const struct config *cfg, const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < cfg->try_headers.n; i++) {
        const char *h = cfg->try_headers.v[i];
        if (!strncasecmp(h, name, n) && h[n] == ':') return true;
    }
    return false;
}

/* "METHOD TARGET [HTTP/1.x]" and the --header/--body options, as the text a
 * client would send. The parser judges the method and the target. */
static int build_request(const struct config *cfg, struct buf *out)
{
    char method[64], target[8192], version[16] = "HTTP/1.1", extra[2];
    const char *spec = cfg->try_request;
    int n = sscanf(spec, "%63s %8191s %15s %1s", method, target, version, extra);
    if (n < 2 || n > 3)
        return usage_error("--try", spec, "expected 'METHOD TARGET' or 'METHOD TARGET HTTP/1.x'");
    buf_puts(out, method);
    buf_puts(out, " ");
    buf_puts(out, target);
    buf_puts(out, " ");
    buf_puts(out, version);
    buf_puts(out, "\r\n");

    for (int i = 0; i < cfg->try_headers.n; i++) {
        const char *h = cfg->try_headers.v[i];
        const char *colon = strchr(h, ':');
        if (!colon || !http_valid_name(h, (size_t)(colon - h)))
            return usage_error("--header", h, "expected 'Name: value' with a token for a name");
        const char *v = colon + 1, *end = colon + strlen(colon);
        while (*v == ' ' || *v == '\t')
            v++;
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if (!http_valid_value(v, (size_t)(end - v)))
            return usage_error("--header", h, "a value may not hold CR, LF or NUL");
        buf_append(out, h, (size_t)(colon - h));
        buf_puts(out, ": ");
        buf_append(out, v, (size_t)(end - v));
        buf_puts(out, "\r\n");
    }
    if (!has_header(cfg, "host") && strcmp(version, "HTTP/1.0")) {
        /* HTTP/1.1 requires a Host: the address clients reach us at. */
        buf_puts(out, "Host: ");
        if (cfg->listen[0].text[0] == ':') buf_puts(out, "127.0.0.1");
        buf_puts(out, cfg->listen[0].text);
        buf_puts(out, "\r\n");
    }
    size_t blen = cfg->try_body ? strlen(cfg->try_body) : 0;
    if (blen && !has_header(cfg, "content-length") && !has_header(cfg, "transfer-encoding")) {
        char cl[64];
        snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", blen);
        buf_puts(out, cl);
    }
    buf_puts(out, "\r\n");
    if (blen) buf_append(out, cfg->try_body, blen);
    return buf_reserve(out, 0) ? usage_error("--try", spec, "out of memory") : 0;
}

/* Parses text as a worker parses a client's bytes; the body (whatever its
 * size) lands in body. Returns 0, or 2 after saying why the server would
 * refuse it. */
static int parse_request(const struct config *cfg, struct buf *text, struct http_request *req,
                         struct buf *body)
{
    llhttp_t parser;
    struct http_parse_ctx ctx = {
        .req = req, .base = text->data, .body = body, .max_body = UINT64_MAX};
    http_parser_init(&parser, &ctx);
    uint32_t pos = 0, end = (uint32_t)text->len;
    bool fixed = false;
    while (!req->message_done) {
        llhttp_errno_t err = http_execute(&parser, text->data, &pos, &end);
        if (!fixed && !req->head_done && http_head_fixable(err)) {
            /* as a connection does (head_parse_again in conn.c) */
            struct slice m = {0};
            fixed = true;
            if (http_head_rewrite(text->data, &end, http_head_end(text->data, end),
                                  err == HPE_INVALID_METHOD, &m) == 1) {
                const char *stop;
                err = http_parse_again(&parser, &ctx, text->data, end, m, &stop);
                pos = (uint32_t)(stop - text->data);
            }
        }
        text->len = end;
        if (err == HPE_OK) break;
        if (err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE) {
            char why[160];
            snprintf(why, sizeof(why), "not a valid request (%s; the server would answer %d)",
                     req->too_many ? "more than 100 header lines"
                                   : llhttp_get_error_reason(&parser),
                     req->too_many ? 431 : http_error_status(err, req, text->data, text->len));
            return usage_error("--try", cfg->try_request, why);
        }
        if (err == HPE_PAUSED)
            llhttp_resume(&parser);
        else
            llhttp_resume_after_upgrade(&parser);
    }
    if (!req->message_done)
        return usage_error("--try", cfg->try_request,
                           "the request is incomplete (a Content-Length larger than --body?)");
    const char *head_end = memmem(text->data, text->len, "\r\n\r\n", 4);
    if (head_end && (uint64_t)(head_end + 4 - text->data) > cfg->max_header_size)
        return usage_error("--try", cfg->try_request,
                           "the head is over --max-header-size (the server would answer 431)");
    int status = head_end ? http_check_head(req, text->data, (size_t)(head_end + 4 - text->data)) : 0;
    if (!status) status = http_validate_head(req, text->data);
    if (status) {
        char why[128];
        snprintf(why, sizeof(why), "the server would refuse it with %d %s%s", status,
                 http_reason(status),
                 status == 400 ? " (HTTP/1.1 needs exactly one Host header)" : "");
        return usage_error("--try", cfg->try_request, why);
    }
    return 0;
}

static double wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Prints the response exactly as the server would write it, with the head's
 * CRLFs turned into plain newlines for reading. */
static void print_reply(const struct http_request *req, const struct script_reply *rep)
{
    struct buf out = {0};
    bool kept;
    if (reply_write(&out, req, rep, req->keep_alive, wall_now(), &kept)) {
        fprintf(stderr, "luaproxy: out of memory\n");
        buf_free(&out);
        return;
    }
    const char *end = memmem(out.data, out.len, "\r\n\r\n", 4);
    size_t head = end ? (size_t)(end - out.data) + 4 : out.len;
    for (size_t i = 0; i < head; i++)
        if (out.data[i] != '\r') putchar(out.data[i]);
    fwrite(out.data + head, 1, out.len - head, stdout);
    buf_free(&out);
}

static void print_forward(const struct http_request *req, const char *base, struct script_req *sr)
{
    struct script_edits e;
    bool edited = script_req_edits(sr, &e);
    struct buf target = {0};
    proxy_head_target(&target, req, base, edited ? &e : NULL);
    size_t mlen;
    const char *method = http_method_name(req, base, &mlen);
    printf("forward: %.*s %.*s HTTP/1.1\n", (int)mlen, method, (int)target.len, target.data);
    buf_free(&target);
    for (size_t i = 0; edited && i < e.nheaders; i++) {
        const struct script_header *h = &e.headers[i];
        if (h->value)
            printf("set-header: %.*s: %.*s\n", (int)h->nlen, h->name, (int)h->vlen, h->value);
        else
            printf("remove-header: %.*s\n", (int)h->nlen, h->name);
    }
    script_reply_done();
}

static int failed(void)
{
    fprintf(stderr, "luaproxy: %s\n", script_error);
    return 2;
}

int try_run(const struct config *cfg)
{
    struct buf text = {0}, body = {0};
    struct http_request req;
    struct script_req *sr = NULL;
    struct script_reply rep;
    struct upstream *up = NULL;
    char err[1024];
    memset(&req, 0, sizeof(req));
    int rc = build_request(cfg, &text);
    if (!rc) rc = parse_request(cfg, &text, &req, &body);
    if (rc) goto out;

    script_set_error_hook(on_script_error);
    size_t len;
    char *script = script_read(cfg->script, &len, err, sizeof(err));
    int failed_load = !script || script_load(cfg->script, script, len, 0, err, sizeof(err));
    free(script);
    if (failed_load) {
        fprintf(stderr, "luaproxy: %s\n", err);
        rc = 2;
        goto out;
    }

    /* The client, as a worker would see it: loopback, port unknown. */
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct script_view view = {
        .req = &req, .base = text.data, .peer = (const struct sockaddr *)&peer};
    /* --scheme https: as a TLS listener would see it, with the defaults a
     * client of today negotiates, and the Host as the name it asked for. */
    char sni[256] = "";
    if (cfg->try_scheme && !strcmp(cfg->try_scheme, "https")) {
        const struct http_header *host = http_find_header(&req, text.data, "host", 4);
        if (host) {
            snprintf(sni, sizeof(sni), "%.*s", (int)host->value.len, text.data + host->value.off);
            char *colon = strrchr(sni, ':');
            if (colon && !strchr(sni, ']')) *colon = '\0';
        }
        view.https = true;
        view.tls.version = "TLSv1.3";
        view.tls.cipher = "TLS_AES_128_GCM_SHA256";
        view.tls.sni = sni[0] ? sni : NULL;
    }
    sr = script_req_begin(&view);
    if (!sr) {
        fprintf(stderr, "luaproxy: out of memory\n");
        rc = 2;
        goto unload;
    }
    enum script_decision d = script_has_route(sr) ? script_route(sr, &rep, &up) : SCRIPT_LOCAL;
    if (script_error[0]) {
        rc = failed();
        goto end;
    }
    if (d == SCRIPT_UPSTREAM) {
        /* The server a fresh worker would pick first (no retries); a failed
         * hook leaves its error in script_error. */
        struct server *s;
        if (balance_choose(sr, up, NULL, 0, &s) || script_error[0]) {
            rc = failed();
            goto end;
        }
        printf("upstream: %s\nbalance: %s\n", up->name, up->policy->name);
        if (s)
            printf("server: %s\n", s->name);
        else
            printf("server: none (the client would get 503)\n");
        print_forward(&req, text.data, sr);
        goto end;
    }
    if (d == SCRIPT_LOCAL && body.len > cfg->max_body_size) {
        static const char too_large[] = "request body too large\n";
        rep = (struct script_reply){
            .status = 413, .body = too_large, .body_len = sizeof(too_large) - 1};
        printf("local: rejected (the body is over --max-body-size)\n");
        print_reply(&req, &rep);
        goto end;
    }
    if (d == SCRIPT_LOCAL) {
        view.body = body.data;
        view.body_len = body.len;
        view.body_ready = true;
        script_handle(sr, &rep);
        if (script_error[0]) {
            script_reply_done();
            rc = failed();
            goto end;
        }
    }
    printf("local: %s\n", d == SCRIPT_RESPOND ? "route" : "handler");
    print_reply(&req, &rep);
    script_reply_done();
end:
    script_req_end(sr);
unload:
    script_set_error_hook(NULL);
    script_unload();
out:
    fflush(stdout);
    buf_free(&text);
    buf_free(&body);
    return rc;
}
