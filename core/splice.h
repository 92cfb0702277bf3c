/* splice: moving bytes socket -> pipe -> socket without copying them into
 * user space.
 *
 * splice() says EAGAIN for two different reasons on the way in: the socket
 * is empty, or the pipe is full. The helpers keep the count of bytes in the
 * pipe and always empty it before filling it again, so an EAGAIN on the way
 * in can only mean the socket is empty, and one on the way out that the
 * destination's send buffer is full. A pipe holding bytes belongs to its
 * transfer until drained; only empty pipes go back to the pool. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct pipe_pair {
    int rd, wr;  /* -1 when none is held */
    size_t len;  /* bytes inside (or in relay) */
    char *relay; /* transports that cannot splice: a user-space buffer instead (transport.h) */
    size_t roff; /* where relay's bytes start */
};

enum pump_result {
    PUMP_DONE,       /* `left` reached 0 and the pipe is empty */
    PUMP_WANT_READ,  /* the source is empty: wait for it */
    PUMP_WANT_WRITE, /* the destination is full: wait for it */
    PUMP_EOF,        /* the source closed before `left` bytes came */
    PUMP_ERROR,      /* errno says why */
};

/* Takes a pipe from the worker's pool (or makes one). 0 or -errno. */
int pipe_take(struct pipe_pair *p);
/* Gives it back (pooled if empty, closed otherwise). */
void pipe_give(struct pipe_pair *p);
void pipe_pool_free(void);

/* Moves up to *left bytes from src to dst through p, until done or blocked.
 * *left and *moved are updated; *moved counts bytes delivered to dst. */
enum pump_result splice_pump(int src, int dst, struct pipe_pair *p, uint64_t *left, uint64_t *moved);
/* Moves whatever src has (no length known: tunnels), until blocked or EOF. */
enum pump_result splice_stream(int src, int dst, struct pipe_pair *p, uint64_t *moved);
