/* master: forks the workers, then only supervises: restarts a worker that
 * dies (with backoff when it keeps dying), relays signals, and waits for
 * the workers to drain on shutdown. */
#pragma once
#include "config.h"

struct shm;

/* Checks a script's text (compile and top level, in a scratch state) in a
 * child process, so that a script that crashes or corrupts its process
 * (through ffi, say) takes down only the child, never the master. 0, or -1
 * with one line in err. */
int master_check_script(const char *path, const char *text, size_t len, char *err, size_t errlen);

/* Returns the process exit status. */
int master_run(const struct config *cfg, struct shm *shm);
