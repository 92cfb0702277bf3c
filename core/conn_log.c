/* conn_log: what a client connection's requests leave behind: the
 * metrics and access-log line of each request, and the info line of each
 * rejection (see conn_log.h). */
#include "conn_log.h"

#include <string.h>
#include <time.h>

#include "accesslog.h"
#include "http_response.h"
#include "log.h"
#include "stats.h"
#include "tls.h"
#include "worker_state.h"

uint64_t conn_clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* The request is over (answered, or given up on): metrics and the access
 * log, once. status 0 = no answer (logged as 499, nginx's "client closed"). */
void conn_log_request(struct conn *c, int status)
{
    struct req_ctx *ctx = c->ctx;
    if (!ctx || ctx->logged) return;
    ctx->logged = true;
    if (c->admin) return; /* the monitoring does not count itself */
    if (!status) status = ctx->status ? ctx->status : 499;
    uint64_t us = conn_clock_us() - ctx->t0_us;
    stats_request(status, us);
    if (!log_access_enabled()) return;
    struct access_entry e = {
        .peer = &c->peer.sa,
        .req = ctx->req.head_done ? &ctx->req : NULL,
        .base = ctx->data,
        .status = status,
        .bytes = ctx->flushed + buf_pending(&ctx->out) - ctx->q0 + ctx->spliced_out,
        .wall = W.loop.wall_now,
        .request_s = (double)us / 1e6,
        .upstream = ctx->up_addr,
        .upstream_s = (double)ctx->up_us / 1e6,
    };
    struct tls_info ti;
    if (tls_info(&c->tp, &ti)) {
        e.tls_version = ti.version;
        e.tls_cipher = ti.cipher;
    }
    access_log(&e);
}

/* A client can make rejections at will: each gets one info line, but at
 * most this many a second per worker, and the rest are counted. */
#define REJECT_LOG_PER_SEC 10
static struct log_budget reject_budget;

/* "rejected 400 (Invalid method encountered) from 127.0.0.1:40112": the
 * parser's own reason when it found the fault, else what the client reads. */
void conn_log_rejection(struct conn *c, int status)
{
    if (!log_enabled(LOG_INFO)) return;
    unsigned dropped;
    bool take = log_budget_take(&reject_budget, W.loop.now_ms, REJECT_LOG_PER_SEC, &dropped);
    if (dropped) log_info("%u more rejected requests were not logged in the last second", dropped);
    if (!take) return;
    const char *why = http_error_body(status);
    int why_len = (int)strcspn(why, "\n");
    llhttp_errno_t e = llhttp_get_errno(&c->parser);
    if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE && e != HPE_PAUSED_H2_UPGRADE) {
        why = llhttp_get_error_reason(&c->parser);
        why_len = why ? (int)strlen(why) : 0;
    }
    char addr[64];
    log_info("rejected %d (%.*s) from %s", status, why_len, why ? why : "", log_addr(&c->peer.sa, addr, sizeof(addr)));
}

