#include "signals.h"

#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>

int signals_open(struct loop *l, struct io *io, bool children)
{
    sigset_t set;
    sigemptyset(&set);
    if (children) sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    /* Blocked, or they would act before the signalfd reads them. The master
     * blocks them before its first fork: a worker inherits the mask (so a
     * signal that comes before its signalfd exists stays pending), and
     * blocking them again there changes nothing. */
    io->fd = -1;
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1) return -errno;
    io->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (io->fd == -1) return -errno;
    return loop_add(l, io, IO_READ);
}
