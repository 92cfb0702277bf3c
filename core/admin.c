#include "admin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"
#include "worker_state.h"

static struct buf body;
static struct script_header hdr;

static void putf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0) buf_append(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Within a Prometheus label value or a JSON string: \, " and controls. */
static void put_escaped(struct buf *b, const char *s, bool json)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\' || ch == '"') {
            char e[2] = {'\\', (char)ch};
            buf_append(b, e, 2);
        } else if (ch == '\n') {
            buf_puts(b, "\\n");
        } else if (ch < 0x20) {
            if (json) putf(b, "\\u%04x", ch);
        } else {
            buf_append(b, s, 1);
        }
    }
}

#define SUM(field)                                                                                  \
    ({                                                                                              \
        uint64_t total_ = 0;                                                                        \
        for (uint32_t w_ = 0; w_ < ST->nworkers; w_++) total_ += STAT_GET(ST->w[w_].field);         \
        total_;                                                                                     \
    })

static void metric_head(struct buf *b, const char *name, const char *type, const char *help)
{
    putf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

struct series {
    const struct ustat *e;
    uint64_t count;
};

static int series_cmp(const void *a, const void *b)
{
    const struct ustat *x = ((const struct series *)a)->e, *y = ((const struct series *)b)->e;
    int c = strcmp(x->upstream, y->upstream);
    if (!c) c = strcmp(x->server, y->server);
    if (!c) c = (int)x->code - (int)y->code;
    return c;
}

static void upstream_series(struct buf *b)
{
    size_t n = 0, cap = (size_t)ST->nworkers * STATS_UPSTREAM_SLOTS;
    struct series *all = malloc(cap * sizeof(*all));
    if (!all) return;
    for (uint32_t w = 0; w < ST->nworkers; w++)
        for (int i = 0; i < STATS_UPSTREAM_SLOTS; i++) {
            const struct ustat *e = &ST->w[w].up[i];
            if (!__atomic_load_n(&e->used, __ATOMIC_ACQUIRE)) continue;
            all[n++] = (struct series){e, STAT_GET(e->count)};
        }
    qsort(all, n, sizeof(*all), series_cmp);
    for (size_t i = 0; i < n;) {
        uint64_t total = 0;
        size_t j = i;
        while (j < n && series_cmp(&all[i], &all[j]) == 0) total += all[j++].count;
        buf_puts(b, "luaproxy_upstream_requests_total{upstream=\"");
        put_escaped(b, all[i].e->upstream, false);
        buf_puts(b, "\",server=\"");
        put_escaped(b, all[i].e->server, false);
        putf(b, "\",code=\"%d\"} %llu\n", all[i].e->code, (unsigned long long)total);
        i = j;
    }
    free(all);
}

static void tls_series(struct buf *b)
{
    metric_head(b, "luaproxy_tls_handshakes_total", "counter", "TLS handshakes completed with clients.");
    putf(b, "luaproxy_tls_handshakes_total %llu\n", (unsigned long long)SUM(tls_handshakes));
    metric_head(b, "luaproxy_tls_resumptions_total", "counter", "Client TLS handshakes that resumed a session.");
    putf(b, "luaproxy_tls_resumptions_total %llu\n", (unsigned long long)SUM(tls_resumed));
    metric_head(b, "luaproxy_tls_handshake_failures_total", "counter", "Client TLS handshakes that failed, by reason.");
    for (int i = 0; i < TLS_FAIL_N; i++)
        putf(b, "luaproxy_tls_handshake_failures_total{reason=\"%s\"} %llu\n", tls_fail_names[i],
             (unsigned long long)SUM(tls_failed[i]));
    metric_head(b, "luaproxy_upstream_tls_handshakes_total", "counter", "TLS handshakes completed with backends.");
    putf(b, "luaproxy_upstream_tls_handshakes_total %llu\n", (unsigned long long)SUM(tls_up_handshakes));
    metric_head(b, "luaproxy_upstream_tls_resumptions_total", "counter", "Backend TLS handshakes that resumed a session.");
    putf(b, "luaproxy_upstream_tls_resumptions_total %llu\n", (unsigned long long)SUM(tls_up_resumed));
    metric_head(b, "luaproxy_upstream_tls_verify_failures_total", "counter",
                "Backend certificates that failed verification.");
    putf(b, "luaproxy_upstream_tls_verify_failures_total %llu\n", (unsigned long long)SUM(tls_up_verify_failed));
}

static void render_metrics(struct buf *b)
{
    metric_head(b, "luaproxy_requests_total", "counter", "Requests answered, by status code.");
    for (int code = 0; code < STATS_CODES; code++) {
        uint64_t n = SUM(requests[code]);
        if (n) putf(b, "luaproxy_requests_total{code=\"%d\"} %llu\n", code, (unsigned long long)n);
    }
    metric_head(b, "luaproxy_request_duration_seconds", "histogram",
                "Time from a request's first byte to its end.");
    uint64_t cum = 0;
    for (int i = 0; i < STATS_BUCKETS; i++) {
        cum += SUM(hist[i]);
        if (i < STATS_BUCKETS - 1)
            putf(b, "luaproxy_request_duration_seconds_bucket{le=\"%g\"} %llu\n", (double)stats_bucket_us[i] / 1e6,
                 (unsigned long long)cum);
        else
            putf(b, "luaproxy_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    putf(b, "luaproxy_request_duration_seconds_sum %.6f\n", (double)SUM(hist_sum_us) / 1e6);
    putf(b, "luaproxy_request_duration_seconds_count %llu\n", (unsigned long long)cum);

    metric_head(b, "luaproxy_upstream_requests_total", "counter",
                "Proxied requests by upstream, server and status code.");
    upstream_series(b);

    int64_t active = 0;
    for (uint32_t w = 0; w < ST->nworkers; w++) active += STAT_GET(ST->w[w].connections_active);
    metric_head(b, "luaproxy_connections_active", "gauge", "Open client connections.");
    putf(b, "luaproxy_connections_active %lld\n", (long long)active);
    metric_head(b, "luaproxy_connections_total", "counter", "Client connections accepted.");
    putf(b, "luaproxy_connections_total %llu\n", (unsigned long long)SUM(connections_total));
    metric_head(b, "luaproxy_pool_reuses_total", "counter", "Requests sent on a pooled backend connection.");
    putf(b, "luaproxy_pool_reuses_total %llu\n", (unsigned long long)SUM(pool_reuses));
    metric_head(b, "luaproxy_spliced_bytes_total", "counter", "Body bytes moved with splice().");
    putf(b, "luaproxy_spliced_bytes_total %llu\n", (unsigned long long)SUM(spliced_bytes));
    tls_series(b);
    metric_head(b, "luaproxy_reloads_total", "counter", "Reloads (SIGHUP) by result of the master's check.");
    putf(b, "luaproxy_reloads_total{result=\"ok\"} %llu\n", (unsigned long long)STAT_GET(ST->reloads_ok));
    putf(b, "luaproxy_reloads_total{result=\"failed\"} %llu\n", (unsigned long long)STAT_GET(ST->reloads_failed));
    metric_head(b, "luaproxy_lua_errors_total", "counter", "Lua errors and limit aborts in hooks and handlers.");
    putf(b, "luaproxy_lua_errors_total %llu\n", (unsigned long long)SUM(lua_errors));
    metric_head(b, "luaproxy_worker_restarts_total", "counter", "Workers that died and were restarted.");
    putf(b, "luaproxy_worker_restarts_total %llu\n", (unsigned long long)STAT_GET(ST->worker_restarts));
    metric_head(b, "luaproxy_generation", "gauge", "Successful reloads since start (proxy.generation).");
    putf(b, "luaproxy_generation %u\n", STAT_GET(ST->generation));
    metric_head(b, "luaproxy_workers", "gauge", "Worker processes configured.");
    putf(b, "luaproxy_workers %u\n", ST->nworkers);
}

void admin_publish(void)
{
    static struct buf b;
    b.len = b.off = 0;
    putf(&b, "{\"id\":%d,\"pid\":%d,\"generation\":%d,\"connections\":%d,\"upstreams\":[", W.id, (int)getpid(),
         script_generation(), W.nconns);
    bool first = true;
    for (const struct upstream *u = script_upstreams(); u; u = u->next) {
        buf_puts(&b, first ? "{\"name\":\"" : ",{\"name\":\"");
        first = false;
        put_escaped(&b, u->name, true);
        putf(&b, "\",\"balance\":\"%s\",\"servers\":[", u->policy->name);
        for (int i = 0; i < u->nservers; i++) {
            const struct server *s = &u->servers[i];
            buf_puts(&b, i ? ",{\"addr\":\"" : "{\"addr\":\"");
            put_escaped(&b, s->name, true);
            putf(&b, "\",\"up\":%s,\"fails\":%d,\"active\":%d,\"idle\":%d}",
                 upstream_server_up(s, W.loop.now_ms) ? "true" : "false", s->fails, s->active, s->pool.count);
        }
        buf_puts(&b, "]}");
    }
    buf_puts(&b, "]}");
    stats_status_publish(b.data, b.len);
}

static void render_status(struct buf *b)
{
    admin_publish(); /* this worker's part is always fresh */
    time_t now = time(NULL);
    putf(b, "{\"master_pid\":%d,\"uptime_seconds\":%lld,\"generation\":%u,", ST->master_pid,
         (long long)(now - (time_t)ST->started_unix), STAT_GET(ST->generation));
    putf(b, "\"reloads\":{\"ok\":%llu,\"failed\":%llu},\"worker_restarts\":%llu,\"workers\":[",
         (unsigned long long)STAT_GET(ST->reloads_ok), (unsigned long long)STAT_GET(ST->reloads_failed),
         (unsigned long long)STAT_GET(ST->worker_restarts));
    char *part = malloc(STATS_STATUS_MAX);
    for (uint32_t w = 0; w < ST->nworkers; w++) {
        if (w) buf_puts(b, ",");
        size_t n = part ? stats_status_read((int)w, part, STATS_STATUS_MAX) : 0;
        if (n) buf_append(b, part, n);
        else putf(b, "{\"id\":%u,\"pid\":%d,\"starting\":true}", w, STAT_GET(ST->w[w].pid));
    }
    free(part);
    buf_puts(b, "]}\n");
}

void admin_reply(const struct http_request *req, const char *base, struct script_reply *rep)
{
    const char *url = http_slice(base, req->url);
    size_t len = req->url.len;
    const char *q = memchr(url, '?', len);
    if (q) len = (size_t)(q - url);
    body.len = body.off = 0;
    *rep = (struct script_reply){.status = 200};
    const char *type = "text/plain; charset=utf-8";
    bool get = req->method == HTTP_GET || req->method == HTTP_HEAD;
    if (len == 8 && !memcmp(url, "/metrics", 8) && get && ST) {
        render_metrics(&body);
        type = "text/plain; version=0.0.4; charset=utf-8";
    } else if (len == 7 && !memcmp(url, "/status", 7) && get && ST) {
        render_status(&body);
        type = "application/json";
    } else if ((len == 8 && !memcmp(url, "/metrics", 8)) || (len == 7 && !memcmp(url, "/status", 7))) {
        rep->status = 405;
        buf_puts(&body, "method not allowed\n");
    } else {
        rep->status = 404;
        buf_puts(&body, "not found: try /metrics or /status\n");
    }
    hdr = (struct script_header){.name = "Content-Type", .nlen = 12, .value = type, .vlen = strlen(type)};
    rep->headers = &hdr;
    rep->nheaders = 1;
    rep->body = body.data;
    rep->body_len = body.len;
    if (!rep->body) rep->body = "";
}
