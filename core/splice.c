#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#define PIPE_POOL_MAX 64
#define PIPE_SIZE (256 * 1024) /* asked for; the kernel may give less */

static struct {
    int rd, wr;
} pool[PIPE_POOL_MAX];
static int npool;
static size_t pipe_cap = 65536; /* what the kernel actually granted */

int pipe_take(struct pipe_pair *p)
{
    p->len = 0;
    if (npool) {
        npool--;
        p->rd = pool[npool].rd;
        p->wr = pool[npool].wr;
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) == -1) return -errno;
    /* A larger pipe means fewer splice calls per megabyte; the kernel caps
     * it at /proc/sys/fs/pipe-max-size and may refuse past a user quota. */
    int got = fcntl(fds[1], F_SETPIPE_SZ, PIPE_SIZE);
    if (got > 0) pipe_cap = (size_t)got;
    p->rd = fds[0];
    p->wr = fds[1];
    return 0;
}

void pipe_give(struct pipe_pair *p)
{
    free(p->relay);
    p->relay = NULL;
    if (p->rd == -1) return;
    if (p->len == 0 && npool < PIPE_POOL_MAX) {
        pool[npool].rd = p->rd;
        pool[npool].wr = p->wr;
        npool++;
    } else {
        close(p->rd);
        close(p->wr);
    }
    p->rd = p->wr = -1;
    p->len = 0;
}

void pipe_pool_free(void)
{
    while (npool) {
        npool--;
        close(pool[npool].rd);
        close(pool[npool].wr);
    }
}

static enum pump_result drain(int dst, struct pipe_pair *p, uint64_t *moved)
{
    while (p->len) {
        ssize_t n = splice(p->rd, NULL, dst, NULL, p->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            p->len -= (size_t)n;
            *moved += (uint64_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && errno == EAGAIN) return PUMP_WANT_WRITE;
        if (n == 0) errno = EPIPE;
        return PUMP_ERROR;
    }
    return PUMP_DONE;
}

enum pump_result splice_pump(int src, int dst, struct pipe_pair *p, uint64_t *left, uint64_t *moved)
{
    for (;;) {
        enum pump_result r = drain(dst, p, moved);
        if (r != PUMP_DONE) return r;
        if (*left == 0) return PUMP_DONE;
        size_t want = *left < pipe_cap ? (size_t)*left : pipe_cap;
        ssize_t n = splice(src, NULL, p->wr, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            p->len += (size_t)n;
            *left -= (uint64_t)n;
            continue;
        }
        if (n == 0) return PUMP_EOF;
        if (errno == EINTR) continue;
        /* The pipe is empty here, so this EAGAIN is the socket's. */
        if (errno == EAGAIN) return PUMP_WANT_READ;
        return PUMP_ERROR;
    }
}

enum pump_result splice_stream(int src, int dst, struct pipe_pair *p, uint64_t *moved)
{
    uint64_t unbounded = UINT64_MAX; /* a stream ends only at EOF */
    return splice_pump(src, dst, p, &unbounded, moved);
}
