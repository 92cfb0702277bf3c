#include "master.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "log.h"
#include "loop.h"
#include "script.h"
#include "script_store.h"
#include "tls.h"
#include "signals.h"
#include "stats.h"
#include "worker.h"

#define RESTART_MIN_MS 100    /* first delay after a worker dies young */
#define RESTART_MAX_MS 10000  /* the longest delay between restarts */
#define STABLE_MS 5000        /* a worker that lived this long resets the backoff */

struct slot {
    pid_t pid;             /* 0: not running */
    uint64_t started_ms;
    uint64_t backoff_ms;   /* next restart delay if it dies young */
    struct timer restart;  /* pending restart */
    int id;
};

static struct {
    const struct config *cfg;
    struct shm *shm;
    struct loop loop;
    struct io signals;
    struct slot *slots;
    int nslots;
    bool stopping;
    struct timer kill_timer;
    uint64_t crashes;
} M;


/* A forked child leaves through _exit(), which skips the atexit hook where
 * LeakSanitizer looks for leaks: in a sanitizer build, look now (a report
 * ends the process with a non-zero status). */
static _Noreturn void child_exit(int status)
{
#if defined(__SANITIZE_ADDRESS__)
    __lsan_do_leak_check();
#endif
    _exit(status);
}

static void spawn(struct slot *s)
{
    pid_t pid = fork();
    if (pid == -1) {
        log_error("fork: %s", strerror(errno));
        s->backoff_ms = RESTART_MAX_MS;
        loop_timer(&M.loop, &s->restart, s->backoff_ms);
        return;
    }
    if (pid == 0) {
        /* The master's epoll set and signalfd would otherwise be shared
         * with this child, and deliver the master's events here too. */
        close(M.loop.epfd);
        close(M.signals.fd);
        child_exit(worker_main(M.cfg, M.shm, s->id, M.nslots));
    }
    s->pid = pid;
    s->started_ms = M.loop.now_ms;
    log_debug("worker %d started, pid %d", s->id, (int)pid);
}

static void on_restart(struct timer *t)
{
    struct slot *s = container_of(t, struct slot, restart);
    if (!M.stopping && s->pid == 0) spawn(s);
}

static bool all_exited(void)
{
    for (int i = 0; i < M.nslots; i++)
        if (M.slots[i].pid) return false;
    return true;
}

/* "while running Lua for GET /path" or "with no request in Lua", from the
 * dead worker's slot, which is then cleared for its successor. The path is
 * the client's bytes: anything unprintable is written as \xHH. */
static void lua_running_text(int id, char *out, size_t outlen)
{
    struct lua_running *l = ST ? &ST->w[id].lua : NULL;
    if (!l || !__atomic_load_n(&l->active, __ATOMIC_ACQUIRE)) {
        snprintf(out, outlen, "with no request in Lua");
        return;
    }
    l->method[sizeof(l->method) - 1] = '\0';
    size_t n = (size_t)snprintf(out, outlen, "while running Lua for %s ", l->method);
    size_t len = l->path_total < sizeof(l->path) ? l->path_total : sizeof(l->path);
    for (size_t i = 0; i < len && n + 8 < outlen; i++) {
        unsigned char ch = (unsigned char)l->path[i];
        if (ch > 0x20 && ch < 0x7f) out[n++] = (char)ch;
        else n += (size_t)snprintf(out + n, outlen - n, "\\x%02X", ch);
    }
    out[n] = '\0';
    if (l->path_total > len) snprintf(out + n, outlen - n, "... (%u bytes)", l->path_total);
    l->active = 0;
}

static void reap(void)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct slot *s = NULL;
        for (int i = 0; i < M.nslots; i++)
            if (M.slots[i].pid == pid) s = &M.slots[i];
        if (!s) continue;
        s->pid = 0;
        if (M.stopping) {
            log_debug("worker %d (pid %d) exited", s->id, (int)pid);
            continue;
        }
        M.crashes++;
        STAT_ADD(ST->worker_restarts, 1);
        char during[STATS_LUA_PATH * 4 + 64];
        lua_running_text(s->id, during, sizeof(during));
        if (WIFSIGNALED(status))
            log_error("worker %d (pid %d) killed by signal %d (%s) %s; restarting", s->id, (int)pid,
                      WTERMSIG(status), strsignal(WTERMSIG(status)), during);
        else
            log_error("worker %d (pid %d) exited with status %d %s; restarting", s->id, (int)pid,
                      WEXITSTATUS(status), during);
        /* A worker that dies young is restarted later and later, so a script
         * that crashes at once does not turn the master into a fork loop. */
        uint64_t lived = M.loop.now_ms - s->started_ms;
        if (lived >= STABLE_MS) s->backoff_ms = 0;
        uint64_t delay = s->backoff_ms;
        s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : RESTART_MIN_MS;
        if (s->backoff_ms > RESTART_MAX_MS) s->backoff_ms = RESTART_MAX_MS;
        if (delay) log_warn("worker %d: restart in %llu ms", s->id, (unsigned long long)delay);
        loop_timer(&M.loop, &s->restart, delay);
    }
    if (M.stopping && all_exited()) M.loop.stop = true;
}

static void signal_workers(int sig)
{
    for (int i = 0; i < M.nslots; i++)
        if (M.slots[i].pid) kill(M.slots[i].pid, sig);
}

static void on_kill_timer(struct timer *t)
{
    log_warn("workers still running past the shutdown timeout: killing them");
    signal_workers(SIGKILL);
}

/* Checks the script as it is now in a scratch state; only if that passes,
 * stores its text for the workers (who load exactly those bytes) and tells
 * them. Requests in flight are untouched either way. */
static void reload(void)
{
    char err[1024];
    size_t len;
    char *text = script_read(M.cfg->script, &len, err, sizeof(err));
    int rc = text ? master_check_script(M.cfg->script, text, len, err, sizeof(err)) : -1;
    /* The certificates go with the script: both pass, or neither changes.
     * Installed here too, so that a worker forked later starts with them. */
    if (!rc) rc = tls_server_load(M.cfg, true, err, sizeof(err));
    uint32_t gen = STAT_GET(ST->generation) + 1;
    if (!rc && (rc = script_store_put(text, len, gen)))
        snprintf(err, sizeof(err), "%s: larger than %u bytes", M.cfg->script, SCRIPT_STORE_MAX);
    free(text);
    if (rc) {
        STAT_ADD(ST->reloads_failed, 1);
        log_error("reload failed, keeping the running script: %s", err);
        return;
    }
    STAT_SET(ST->generation, gen);
    STAT_ADD(ST->reloads_ok, 1);
    log_info("reload: %s checked, generation %u", M.cfg->script, gen);
    signal_workers(SIGHUP);
}

int master_check_script(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) == -1) return script_check_text(path, text, len, err, errlen);
    pid_t pid = fork();
    if (pid == -1) {
        close(p[0]);
        close(p[1]);
        return script_check_text(path, text, len, err, errlen);
    }
    if (pid == 0) {
        close(p[0]);
        char e[1024];
        int rc = script_check_text(path, text, len, e, sizeof(e));
        if (rc && write(p[1], e, strlen(e)) < 0) rc = -1;
        child_exit(rc ? 2 : 0);
    }
    close(p[1]);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(p[0], err + n, errlen - 1 - n);
        if (r > 0 && (n += (size_t)r) < errlen - 1) continue;
        if (r == -1 && errno == EINTR) continue;
        break;
    }
    err[n] = '\0';
    close(p[0]);
    int status;
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFSIGNALED(status))
        snprintf(err, errlen, "%s: the script's top level crashed the process checking it (signal %d, %s)", path,
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (!n)
        snprintf(err, errlen, "%s: the check failed (exit status %d)", path, WEXITSTATUS(status));
    return -1;
}

/* SIGUSR1 (logrotate): the master reopens its access log (the one a
 * restarted worker inherits) and tells the workers to reopen theirs. One
 * line says so here; a worker logs only if its reopen fails. The error log
 * is stderr, which whoever started us owns. */
static void reopen_logs(void)
{
    const char *path = M.cfg->access_log;
    if (!path) log_info("SIGUSR1: no access log to reopen (the error log is stderr)");
    else if (!strcmp(path, "-")) log_info("SIGUSR1: the access log is stdout, nothing to reopen");
    else if (!log_reopen()) log_info("SIGUSR1: access log %s reopened, workers told to reopen theirs", path);
    signal_workers(SIGUSR1);
}

static void on_signal(struct io *io, unsigned events)
{
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD: reap(); break;
        case SIGTERM:
        case SIGINT:
            if (M.stopping) break;
            M.stopping = true;
            log_info("shutting down: draining workers (at most %llu ms)",
                     (unsigned long long)M.cfg->shutdown_timeout_ms);
            for (int i = 0; i < M.nslots; i++) timer_cancel(&M.loop.timers, &M.slots[i].restart);
            signal_workers(SIGTERM);
            M.kill_timer.cb = on_kill_timer;
            loop_timer(&M.loop, &M.kill_timer, M.cfg->shutdown_timeout_ms + 1000);
            if (all_exited()) M.loop.stop = true;
            break;
        case SIGHUP: reload(); break;
        case SIGUSR1: reopen_logs(); break;
        default: break;
        }
    }
}

int master_run(const struct config *cfg, struct shm *shm)
{
    M.cfg = cfg;
    M.shm = shm;
    M.nslots = cfg->workers;
    M.slots = calloc((size_t)M.nslots, sizeof(*M.slots));
    if (!M.slots || loop_init(&M.loop)) {
        log_error("master: out of resources");
        return 1;
    }
    /* Before the first fork: the workers inherit the blocked mask and read
     * the same signals (but SIGCHLD) from their own signalfd. */
    M.signals.cb = on_signal;
    int rc = signals_open(&M.loop, &M.signals, true);
    if (rc) {
        log_error("master: signalfd: %s", strerror(-rc));
        return 1;
    }
    for (int i = 0; i < M.nslots; i++) {
        M.slots[i].id = i;
        M.slots[i].restart.cb = on_restart;
        spawn(&M.slots[i]);
    }
    char on[CONFIG_MAX_LISTEN * 80] = ""; /* "https://" + 64 + ", " each */
    for (int i = 0, n = 0; i < cfg->nlisten; i++)
        n += snprintf(on + n, sizeof(on) - (size_t)n, "%s%s%s", i ? ", " : "", cfg->listen[i].tls ? "https://" : "", cfg->listen[i].text);
    log_info("luaproxy started: %d worker(s) on %s, script %s", M.nslots, on, cfg->script);
    loop_run(&M.loop);
    log_info("luaproxy stopped");
    loop_close(&M.loop, &M.signals);
    loop_free(&M.loop);
    free(M.slots);
    return 0;
}
