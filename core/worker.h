/* worker: one process, a listener per --listen address (SO_REUSEPORT,
 * opened after the fork),
 * one edge-triggered loop, signals read from a signalfd. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

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

/* Runs a worker to its end; returns the process exit status. */
int worker_main(const struct config *cfg, struct shm *shm, int id, int count);
/* A listening socket, non-blocking; SO_REUSEPORT when asked. fd or -errno. */
int worker_listener_open(const struct listen_addr *a, bool reuseport);
/* What to add to the message of a failed listen: for EACCES on a
 * privileged port, that it needs root or CAP_NET_BIND_SERVICE; else "". */
const char *worker_listen_hint(const struct listen_addr *a, int err);
/* A connection closed: accept again if paused, finish a drain. */
void worker_conn_closed(void);
