/* Unit tests for core/signals.c: which signals reach the signalfd of the
 * master (SIGCHLD too) and of a worker, through the event loop. */
#include "signals.h"
#include "check_run.h"

#include <check.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static struct loop loop;
static struct io io;
static int seen[65];

static void on_signal(struct io *s, unsigned events)
{
    struct signalfd_siginfo si;
    while (read(s->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo < 65) seen[si.ssi_signo]++;
}

static void open_signals(bool children)
{
    ck_assert_int_eq(loop_init(&loop), 0);
    io.cb = on_signal;
    ck_assert_int_eq(signals_open(&loop, &io, children), 0);
    ck_assert_int_ge(io.fd, 0);
}

/* A child that exits at once, reaped: its SIGCHLD is pending by then. */
static void child_ends(void)
{
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) _exit(0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
}

START_TEST(control_signals_are_read_not_acted_on)
{
    open_signals(false);
    /* Unblocked, SIGTERM, SIGINT and SIGHUP would end this process. */
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    for (size_t i = 0; i < CHECK_COUNT(sigs); i++)
        ck_assert_int_eq(raise(sigs[i]), 0);
    child_ends();
    ck_assert_int_gt(loop_once(&loop, false), 0);
    for (size_t i = 0; i < CHECK_COUNT(sigs); i++)
        ck_assert_int_eq(seen[sigs[i]], 1);
    ck_assert_int_eq(seen[SIGCHLD], 0); /* a worker has no children to hear of */
}
END_TEST

START_TEST(the_master_hears_of_its_children)
{
    open_signals(true);
    child_ends();
    ck_assert_int_eq(raise(SIGUSR1), 0);
    ck_assert_int_gt(loop_once(&loop, false), 0);
    ck_assert_int_eq(seen[SIGCHLD], 1);
    ck_assert_int_eq(seen[SIGUSR1], 1);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        control_signals_are_read_not_acted_on,
        the_master_hears_of_its_children,
    };
    return check_run_tests("signals", NULL, NULL, 0, tests, CHECK_COUNT(tests));
}
