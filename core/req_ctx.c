/* req_ctx: a request's context, the memory a connection holds while a
 * request is in progress, pooled per worker; and the operations on its
 * read buffer that the body of a proxied request needs. */
#include "req_ctx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "worker_state.h"

#define CTX_INITIAL 4096          /* read buffer to start with; grows for big heads */
#define CTX_KEEP_MAX (64 * 1024)  /* larger buffers are freed before pooling */
#define CTX_POOL_MAX 256          /* idle request contexts kept for reuse */

static struct req_ctx *pool;
static int pool_len;

static uint32_t req_ctx_limit(void)
{
    /* Room for the largest allowed head plus some body or pipelined bytes. */
    uint64_t lim = W.cfg->max_header_size + 8192;
    return lim > (1u << 30) ? (1u << 30) : (uint32_t)lim;
}

/* The parse state of one request: cleared when a context is taken and
 * again as each request begins. */
void req_ctx_reset(struct req_ctx *ctx)
{
    ctx->head_len = 0;
    ctx->routed = ctx->responded = ctx->fixed = ctx->starved = false;
    ctx->fix_err = HPE_OK;
    ctx->body.len = ctx->body.off = 0;
    ctx->pctx.body = NULL;
    ctx->pctx.body_too_large = false;
}

struct req_ctx *req_ctx_get(void)
{
    struct req_ctx *ctx = pool;
    if (ctx) {
        pool = ctx->next_free;
        pool_len--;
    } else {
        ctx = calloc(1, sizeof(*ctx));
        if (!ctx) return NULL;
    }
    if (!ctx->data) {
        ctx->data = malloc(CTX_INITIAL);
        if (!ctx->data) {
            free(ctx);
            return NULL;
        }
        ctx->cap = CTX_INITIAL;
    }
    ctx->pos = ctx->end = 0;
    req_ctx_reset(ctx);
    ctx->out.len = ctx->out.off = 0;
    ctx->sreq = NULL;
    ctx->flushed = 0;
    ctx->logged = true; /* until a request begins */
    return ctx;
}

void req_ctx_put(struct req_ctx *ctx)
{
    if (ctx->sreq) script_req_end(ctx->sreq);
    ctx->sreq = NULL;
    if (pool_len >= CTX_POOL_MAX) {
        free(ctx->data);
        buf_free(&ctx->body);
        buf_free(&ctx->out);
        free(ctx);
        return;
    }
    if (ctx->cap > CTX_INITIAL) {
        free(ctx->data);
        ctx->data = NULL;
        ctx->cap = 0;
    }
    if (ctx->body.cap > CTX_KEEP_MAX) buf_free(&ctx->body);
    if (ctx->out.cap > CTX_KEEP_MAX) buf_free(&ctx->out);
    ctx->next_free = pool;
    pool = ctx;
    pool_len++;
}

void req_ctx_pool_free(void)
{
    while (pool) {
        struct req_ctx *ctx = pool;
        pool = ctx->next_free;
        free(ctx->data);
        buf_free(&ctx->body);
        buf_free(&ctx->out);
        free(ctx);
    }
    pool_len = 0;
}

bool req_ctx_grow(struct req_ctx *ctx)
{
    uint32_t lim = req_ctx_limit();
    if (ctx->cap >= lim) return false;
    uint32_t cap = ctx->cap * 2 > lim ? lim : ctx->cap * 2;
    char *p = realloc(ctx->data, cap);
    if (!p) return false;
    ctx->data = p;
    ctx->cap = cap;
    return true;
}

/* Body bytes that arrived with the head: [pos, end) of the buffer. */
uint64_t req_ctx_body_take(struct req_ctx *ctx, struct buf *to, uint64_t max)
{
    uint64_t have = ctx->end - ctx->pos;
    uint64_t n = have < max ? have : max;
    buf_append(to, ctx->data + ctx->pos, (size_t)n);
    memmove(ctx->data + ctx->pos, ctx->data + ctx->pos + n, (size_t)(have - n));
    ctx->end -= (uint32_t)n;
    return n;
}

/* Runs the parser over the chunked body bytes buffered at [pos, end),
 * which are then sent from [head_len, pos). -1: malformed; 0: nothing
 * parsed (the rest of a chunk-size line is awaited); 1: parsed. */
static int parse_body_chunks(struct req_ctx *ctx, llhttp_t *parser)
{
    ctx->pctx.req = &ctx->req;
    ctx->pctx.base = ctx->data;
    ctx->pctx.body = NULL;
    parser->data = &ctx->pctx;
    uint32_t from = ctx->pos;
    llhttp_errno_t err = http_execute(parser, ctx->data, &ctx->pos, &ctx->end);
    if (err == HPE_PAUSED) llhttp_resume(parser);
    if (err != HPE_OK && err != HPE_PAUSED) return -1;
    return ctx->pos > from || ctx->req.message_done;
}

enum chunked_step req_ctx_chunked_next(struct req_ctx *ctx, llhttp_t *parser, struct transport *from,
                                       const char **p, size_t *n)
{
    for (;;) {
        /* Parsed but unsent body bytes sit at [head_len, pos). */
        if (ctx->pos > ctx->head_len) {
            *p = ctx->data + ctx->head_len;
            *n = ctx->pos - ctx->head_len;
            return CHUNKED_DATA;
        }
        if (ctx->req.message_done) return CHUNKED_END;
        if (ctx->pos < ctx->end) {
            int parsed = parse_body_chunks(ctx, parser);
            if (parsed < 0) return CHUNKED_BAD;
            if (parsed) continue;
        }
        if (!from) return CHUNKED_WAIT;
        if (ctx->end == ctx->cap) { /* cannot happen: what was parsed went out first */
            log_warn("request body buffer full");
            return CHUNKED_CLOSED;
        }
        ssize_t got = transport_read(from, ctx->data + ctx->end, ctx->cap - ctx->end);
        if (got > 0) {
            ctx->end += (uint32_t)got;
            continue;
        }
        if (got == -1 && (errno == EAGAIN || errno == EINTR)) return CHUNKED_WAIT;
        return CHUNKED_CLOSED;
    }
}

void req_ctx_chunked_sent(struct req_ctx *ctx, size_t n)
{
    memmove(ctx->data + ctx->head_len, ctx->data + ctx->head_len + n, ctx->end - ctx->head_len - n);
    ctx->pos -= (uint32_t)n;
    ctx->end -= (uint32_t)n;
}

