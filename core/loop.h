/* loop: the worker's event loop. epoll (edge-triggered) stays behind these
 * few functions; the owner of a descriptor is a struct io, found through
 * epoll_data.ptr. Also owns the timer heap, the cached clocks and a queue of
 * deferred work that runs after each batch of events. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "timer.h"

/* The struct that embeds a struct io, timer or defer, from a pointer to it:
 * how every callback finds its owner. */
#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

enum {
    IO_READ = 1,  /* readable, or the peer closed */
    IO_WRITE = 2, /* writable */
    IO_ERROR = 4, /* error or hang-up; handlers treat it as readable+writable */
    IO_HUP = 8,   /* the peer shut down its side (EPOLLRDHUP) */
};

struct io;
typedef void (*io_cb)(struct io *io, unsigned events);

struct io {
    int fd;        /* -1 once closed: events fetched earlier are then ignored */
    unsigned mask; /* IO_READ|IO_WRITE currently registered */
    io_cb cb;
};

/* Deferred work: runs once after the current batch of events. */
struct defer;
typedef void (*defer_cb)(struct defer *d);
struct defer {
    struct defer *next;
    bool queued;
    defer_cb cb;
};

struct loop {
    int epfd;
    bool stop;
    uint64_t now_ms;  /* CLOCK_MONOTONIC, updated once per turn */
    uint64_t now_us;  /* the same instant in microseconds */
    double wall_now;  /* Unix time, updated once per turn */
    struct timer_heap timers;
    struct defer *deferred, **deferred_tail;
};

int loop_init(struct loop *l);
void loop_free(struct loop *l);
/* Registers io->fd for mask (edge-triggered). Returns 0 or -errno. */
int loop_add(struct loop *l, struct io *io, unsigned mask);
/* Changes the mask; a no-op (no syscall) when it is unchanged. */
int loop_mod(struct loop *l, struct io *io, unsigned mask);
/* Unregisters and closes io->fd, and marks io closed. */
void loop_close(struct loop *l, struct io *io);
void loop_defer(struct loop *l, struct defer *d);
/* Runs the deferred work queued so far (the loop does it after each batch). */
void loop_run_deferred(struct loop *l);
/* Runs until l->stop. */
void loop_run(struct loop *l);
/* One turn: waits for events (not at all unless block; otherwise until the
 * next timer), handles them, fires due timers, runs deferred work. Returns
 * the number of events, or -errno when epoll_wait failed. The fuzz targets
 * drive the loop with it, one turn at a time. */
int loop_once(struct loop *l, bool block);
void loop_update_time(struct loop *l);
/* Arms t relative to the loop's cached now. */
int loop_timer(struct loop *l, struct timer *t, uint64_t after_ms);
