#include "accesslog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "loop.h"
#include "timestamp.h"
#include "worker_state.h"

#define FLUSH_AT (32 * 1024)

static struct buf pending;
static struct defer flusher;
/* "[22/Nov/2026:10:00:00 +0000]", remade once a second. */
static struct timestamp clf_time = {.style = TIMESTAMP_CLF};

static void put_quoted(struct buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    buf_reserve(out, n * 4 + 2);
    buf_append(out, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') {
            char esc[4] = {'\\', 'x', hex[ch >> 4], hex[ch & 15]};
            buf_append(out, esc, 4);
        } else {
            buf_append(out, &s[i], 1);
        }
    }
    buf_append(out, "\"", 1);
}

static void put_header(struct buf *out, const struct access_entry *e, const char *name, size_t nlen)
{
    const struct http_header *h = e->req ? http_find_header(e->req, e->base, name, nlen) : NULL;
    if (!h) {
        buf_puts(out, " \"-\"");
        return;
    }
    buf_puts(out, " ");
    put_quoted(out, http_slice(e->base, h->value), h->value.len);
}

void access_format(struct buf *out, const struct access_entry *e)
{
    char addr[INET6_ADDRSTRLEN] = "-";
    if (e->peer && e->peer->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)e->peer)->sin_addr, addr, sizeof(addr));
    else if (e->peer && e->peer->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)e->peer)->sin6_addr, addr, sizeof(addr));
    char line[160];
    int n = snprintf(line, sizeof(line), "%s - - %s ", addr, timestamp_text(&clf_time, e->wall));
    buf_append(out, line, (size_t)n);
    if (e->req) {
        char first[4096];
        size_t mlen;
        const char *method = http_method_name(e->req, e->base, &mlen);
        int m = snprintf(first, sizeof(first), "%.*s %.*s HTTP/%d.%d", (int)mlen, method, (int)e->req->url.len,
                         http_slice(e->base, e->req->url), e->req->http_major, e->req->http_minor);
        if (m >= (int)sizeof(first)) m = (int)sizeof(first) - 1;
        put_quoted(out, first, (size_t)m);
    } else {
        buf_puts(out, "\"-\"");
    }
    n = snprintf(line, sizeof(line), " %d %llu", e->status, (unsigned long long)e->bytes);
    buf_append(out, line, (size_t)n);
    put_header(out, e, "referer", 7);
    put_header(out, e, "user-agent", 10);
    if (e->upstream)
        n = snprintf(line, sizeof(line), " %.3f %s %.3f", e->request_s, e->upstream, e->upstream_s);
    else
        n = snprintf(line, sizeof(line), " %.3f - -", e->request_s);
    buf_append(out, line, (size_t)n);
    if (e->tls_version) {
        n = snprintf(line, sizeof(line), " %s %s", e->tls_version, e->tls_cipher);
        buf_append(out, line, (size_t)n);
    }
    buf_append(out, "\n", 1);
}

void access_flush(void)
{
    if (buf_pending(&pending)) log_access(pending.data + pending.off, buf_pending(&pending));
    pending.len = pending.off = 0;
}

static void on_flush(struct defer *d)
{
    access_flush();
}

void access_log(const struct access_entry *e)
{
    access_format(&pending, e);
    if (buf_pending(&pending) >= FLUSH_AT) {
        access_flush();
        return;
    }
    flusher.cb = on_flush;
    loop_defer(&W.loop, &flusher);
}
