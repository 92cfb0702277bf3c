/* buf: a growable byte buffer. Growth doubles; allocation failures are
 * reported (-ENOMEM), never fatal. */
#pragma once
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How many bytes a client's output buffer may hold before whatever fills it
 * (the next pipelined request, or a backend's response) waits for it to
 * drain: enough to keep a socket busy, small enough to bound memory. */
#define BUF_OUT_HIGH_WATER (256 * 1024)

struct buf {
    char *data;
    size_t len; /* bytes held */
    size_t off; /* bytes already consumed from the front (written out) */
    size_t cap;
};

static inline int buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return 0;
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->cap - b->len >= extra) return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap - b->len < extra) {
        if (cap > (SIZE_MAX >> 1)) return -ENOMEM;
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

static inline int buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static inline int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

/* Bytes not yet consumed. */
static inline size_t buf_pending(const struct buf *b)
{
    return b->len - b->off;
}

static inline void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off == b->len) b->off = b->len = 0;
}

static inline void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->off = b->cap = 0;
}

/* Writes v in decimal so that it ends at end; returns where it starts. */
static inline char *buf_format_u64(char *end, uint64_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}
