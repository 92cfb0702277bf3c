#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define LOOP_BATCH 256

int loop_init(struct loop *l)
{
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd == -1) return -errno;
    l->stop = false;
    timer_heap_init(&l->timers);
    l->deferred = NULL;
    l->deferred_tail = &l->deferred;
    loop_update_time(l);
    return 0;
}

void loop_free(struct loop *l)
{
    if (l->epfd != -1) close(l->epfd);
    l->epfd = -1;
    timer_heap_free(&l->timers);
}

void loop_update_time(struct loop *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    l->now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    l->now_ms = l->now_us / 1000;
    clock_gettime(CLOCK_REALTIME, &ts);
    l->wall_now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint32_t to_epoll(unsigned mask)
{
    /* EPOLLRDHUP: a peer's FIN is seen without a read, which is how an idle
     * pooled backend connection closed by the backend is noticed. */
    uint32_t ev = EPOLLET | EPOLLRDHUP;
    if (mask & IO_READ) ev |= EPOLLIN;
    if (mask & IO_WRITE) ev |= EPOLLOUT;
    return ev;
}

int loop_add(struct loop *l, struct io *io, unsigned mask)
{
    struct epoll_event ev = {.events = to_epoll(mask), .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) == -1) return -errno;
    io->mask = mask;
    return 0;
}

int loop_mod(struct loop *l, struct io *io, unsigned mask)
{
    if (io->mask == mask) return 0;
    struct epoll_event ev = {.events = to_epoll(mask), .data.ptr = io};
    if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) == -1) return -errno;
    io->mask = mask;
    return 0;
}

void loop_close(struct loop *l, struct io *io)
{
    if (io->fd == -1) return;
    /* close() alone removes the descriptor from the epoll set, unless a dup
     * of it lives on; none does here, so no EPOLL_CTL_DEL syscall. */
    (void)l;
    close(io->fd);
    io->fd = -1;
    io->mask = 0;
}

void loop_defer(struct loop *l, struct defer *d)
{
    if (d->queued) return;
    d->queued = true;
    d->next = NULL;
    *l->deferred_tail = d;
    l->deferred_tail = &d->next;
}

void loop_run_deferred(struct loop *l)
{
    /* Work deferred while running this list waits for the next turn, so a
     * connection that keeps re-queueing itself cannot starve the others. */
    struct defer *d = l->deferred;
    l->deferred = NULL;
    l->deferred_tail = &l->deferred;
    while (d) {
        struct defer *next = d->next;
        d->queued = false;
        d->cb(d);
        d = next;
    }
}

int loop_timer(struct loop *l, struct timer *t, uint64_t after_ms)
{
    return timer_set(&l->timers, t, l->now_ms + after_ms);
}

int loop_once(struct loop *l, bool block)
{
    struct epoll_event events[LOOP_BATCH];
    int timeout = -1;
    if (l->deferred || !block) {
        timeout = 0;
    } else {
        int64_t next = timer_next_in(&l->timers, l->now_ms);
        if (next >= 0) timeout = next > 60000 ? 60000 : (int)next;
    }
    int n = epoll_wait(l->epfd, events, LOOP_BATCH, timeout);
    if (n == -1) {
        if (errno != EINTR) return -errno;
        n = 0;
    }
    loop_update_time(l);
    for (int i = 0; i < n; i++) {
        struct io *io = events[i].data.ptr;
        /* Closed by an earlier handler of this batch: the struct is still
         * allocated (frees are deferred), but the event is stale. */
        if (io->fd == -1) continue;
        uint32_t e = events[i].events;
        unsigned what = 0;
        if (e & (EPOLLIN | EPOLLRDHUP)) what |= IO_READ;
        if (e & EPOLLOUT) what |= IO_WRITE;
        if (e & EPOLLRDHUP) what |= IO_HUP;
        if (e & (EPOLLERR | EPOLLHUP)) what |= IO_ERROR | IO_READ | IO_WRITE;
        io->cb(io, what);
    }
    timer_run(&l->timers, l->now_ms);
    loop_run_deferred(l);
    return n;
}

void loop_run(struct loop *l)
{
    while (!l->stop)
        if (loop_once(l, true) < 0) break;
}
