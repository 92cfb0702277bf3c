/* master: forks the workers, then only supervises: restarts a worker that
 * dies (with backoff when it keeps dying), relays signals, and waits for
 * the workers to drain on shutdown. */
#pragma once
#include "config.h"

struct shm;

/* Returns the process exit status. */
int master_run(const struct config *cfg, struct shm *shm);
