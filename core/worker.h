/* worker: one process, a listener per --listen address (SO_REUSEPORT,
 * opened after the fork),
 * one edge-triggered loop, signals read from a signalfd. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct shm;

/* Runs a worker to its end; returns the process exit status. */
int worker_main(const struct config *cfg, struct shm *shm, int id, int count);
/* A listening socket, non-blocking; SO_REUSEPORT when asked. fd or -errno. */
int worker_listener_open(const struct listen_addr *a, bool reuseport);
/* What to add to the message of a failed listen: for EACCES on a
 * privileged port, that it needs root or CAP_NET_BIND_SERVICE; else "". */
const char *worker_listen_hint(const struct listen_addr *a, int err);
