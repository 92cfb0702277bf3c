/* worker_state: W, the state of this worker process that its modules
 * share: the configuration, the event loop, the shared memory, the open
 * client connections and whether a graceful shutdown is under way. It sits
 * below every module of a worker, so that reading W makes no arrow back up
 * to worker.c, which owns the listeners and the signals. */
#pragma once
#include <stdbool.h>

#include "config.h"
#include "loop.h"

struct shm;
struct conn;

struct worker {
    const struct config *cfg;
    struct loop loop;
    struct shm *shm;
    int id, count;
    struct io listeners[CONFIG_MAX_LISTEN]; /* one per cfg->listen[i] */
    struct io admin;    /* --admin: /metrics and /status */
    struct io signals;
    struct timer publish_timer; /* this worker's /status part, once a second */
    int nconns;
    bool accept_paused; /* at --max-connections: new clients wait in the backlog */
    bool draining;      /* graceful shutdown: answers carry Connection: close */
    struct timer shutdown_timer;
    struct conn *conns; /* every open client connection, for shutdown */
};

extern struct worker W;
