/* signals: the control signals, read through a signalfd in the event loop
 * rather than by handlers: SIGTERM and SIGINT (stop), SIGHUP (reload),
 * SIGUSR1 (reopen the logs), and in the master SIGCHLD (a worker ended).
 * The master and each worker open one; the set is written once, here. */
#pragma once
#include <stdbool.h>

#include "loop.h"

/* Blocks the signals (children=true adds SIGCHLD), opens a signalfd for
 * them into io->fd (io->cb set by the caller) and adds it to l for
 * reading. 0 or -errno; io->fd is -1 when no signalfd was opened. */
int signals_open(struct loop *l, struct io *io, bool children);
