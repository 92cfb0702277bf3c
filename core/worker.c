/* worker: the per-process event loop. Everything here is created after the
 * fork, so no descriptor is shared with the master or a sibling. */
#include "worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accesslog.h"
#include "admin.h"
#include "conn.h"
#include "exchange.h"
#include "log.h"
#include "script.h"
#include "script_store.h"
#include "signals.h"
#include "splice.h"
#include "tls.h"
#include "stats.h"
#include "worker_state.h"

#define PUBLISH_MS 1000

static void start_drain(void);

int worker_listener_open(const struct listen_addr *a, bool reuseport)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == -1) goto fail;
    if (a->ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) == -1) goto fail;
    if (listen(fd, 4096) == -1) goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

const char *worker_listen_hint(const struct listen_addr *a, int err)
{
    if (err != -EACCES) return "";
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
    unsigned port = ntohs(a->ss.ss_family == AF_INET6 ? sin6->sin6_port : sin->sin_port);
    /* The kernel's line between privileged and other ports (1024 unless
     * the sysctl moved it): below it, bind() needs the capability. */
    unsigned first = 1024;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "re");
    if (f) {
        if (fscanf(f, "%u", &first) != 1) first = 1024;
        fclose(f);
    }
    if (port >= first) return "";
    static char hint[96];
    snprintf(hint, sizeof(hint), " (ports below %u need root or CAP_NET_BIND_SERVICE)", first);
    return hint;
}

static void accept_pause(bool pause)
{
    if (W.accept_paused == pause) return;
    W.accept_paused = pause;
    /* Re-arming with EPOLL_CTL_MOD re-checks readiness, so connections that
     * queued meanwhile produce an event at once. */
    for (int i = 0; i < W.cfg->nlisten; i++)
        if (W.listeners[i].fd != -1) loop_mod(&W.loop, &W.listeners[i], pause ? 0 : IO_READ);
}

/* Out of descriptors, accept4 fails and the listener's edge is spent with
 * connections still queued: without a retry they would wait for the next
 * new connection. Accepting pauses and resumes after 100 ms, or sooner
 * when a connection closes. */
static struct timer accept_retry;
static bool fd_starved; /* logged once until an accept succeeds again */

static void on_accept_retry(struct timer *t)
{
    if (W.nconns < W.cfg->max_connections && !W.draining) accept_pause(false);
}

static void accept_all(struct io *l)
{
    bool admin = l == &W.admin;
    bool tls = !admin && W.cfg->listen[l - W.listeners].tls;
    for (;;) {
        if (W.nconns >= W.cfg->max_connections && !admin) {
            accept_pause(true);
            return;
        }
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                if (!fd_starved) log_warn("accept: %s: new connections wait in the backlog", strerror(errno));
                fd_starved = true;
                accept_pause(true);
                accept_retry.cb = on_accept_retry;
                loop_timer(&W.loop, &accept_retry, 100);
                return;
            }
            if (errno != EAGAIN) log_warn("accept: %s", strerror(errno));
            return;
        }
        fd_starved = false;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn_accept(fd, (struct sockaddr *)&ss, len, admin, tls);
    }
}

static void on_listener(struct io *io, unsigned events)
{
    accept_all(io);
}

/* Connections the kernel already queued on a SO_REUSEPORT listener would
 * be reset by close(), not moved to a sibling: serve them, then close. */
static void listener_close(struct io *l)
{
    if (l->fd == -1) return;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            break;
        }
        conn_accept(fd, (struct sockaddr *)&ss, len, l == &W.admin, l != &W.admin && W.cfg->listen[l - W.listeners].tls);
    }
    loop_close(&W.loop, l);
}

/* A connection closed: accept again if paused, finish a drain. */
static void on_conn_closed(void)
{
    if (W.accept_paused && W.nconns < W.cfg->max_connections && !W.draining) accept_pause(false);
    if (W.draining && W.nconns == 0) W.loop.stop = true;
}

static void on_shutdown_timer(struct timer *t)
{
    log_warn("shutdown timeout: closing %d connection(s) still open", W.nconns);
    W.loop.stop = true;
}

static void start_drain(void)
{
    if (W.draining) return;
    for (int i = 0; i < W.cfg->nlisten; i++) listener_close(&W.listeners[i]);
    listener_close(&W.admin);
    timer_cancel(&W.loop.timers, &W.publish_timer);
    W.draining = true;
    log_info("worker %d draining %d connection(s)", W.id, W.nconns);
    script_shutdown();
    conn_drain_all();
    W.shutdown_timer.cb = on_shutdown_timer;
    loop_timer(&W.loop, &W.shutdown_timer, W.cfg->shutdown_timeout_ms);
    if (W.nconns == 0) W.loop.stop = true;
}

/* SIGHUP from the master: it checked the script and stored its text. */
static void reload(void)
{
    size_t len;
    uint32_t gen;
    char *text = script_store_get(&len, &gen);
    if (!text) return log_error("worker %d: reload: no script text", W.id);
    if ((int)gen == script_generation()) {
        free(text);
        return;
    }
    char err[1024];
    /* The master checked the certificates; one changed since is kept out. */
    if (tls_server_load(W.cfg, true, err, sizeof(err)))
        log_error("worker %d: reload: keeping the certificates in service: %s", W.id, err);
    if (script_load(W.cfg->script, text, len, (int)gen, err, sizeof(err))) {
        STAT_ADD(WS->reload_errors, 1);
        log_error("worker %d: reload failed, keeping generation %d: %s", W.id, script_generation(), err);
    } else {
        STAT_SET(WS->generation, gen);
        log_info("worker %d: script generation %u loaded", W.id, gen);
        admin_publish();
    }
    free(text);
}

static void on_publish(struct timer *t)
{
    admin_publish();
    loop_timer(&W.loop, &W.publish_timer, PUBLISH_MS);
}

static void on_signal(struct io *io, unsigned events)
{
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT: start_drain(); break;
        case SIGUSR1:
            access_flush();
            log_reopen();
            break;
        case SIGHUP:
            if (!W.draining) reload();
            break;
        default: break;
        }
    }
}

int worker_main(const struct config *cfg, struct shm *shm, int id, int count)
{
    /* Orphaned workers drain and exit rather than serve on unsupervised. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    memset(&W, 0, sizeof(W));
    W.cfg = cfg;
    W.shm = shm;
    W.id = id;
    W.count = count;
    for (int i = 0; i < CONFIG_MAX_LISTEN; i++) W.listeners[i].fd = -1;
    W.admin.fd = W.signals.fd = -1;
    int status = 1;
    stats_attach(id);
    conn_init(on_conn_closed);

    if (loop_init(&W.loop)) {
        log_error("worker %d: epoll: %s", id, strerror(errno));
        return 1;
    }
    W.signals.cb = on_signal;
    int rc = signals_open(&W.loop, &W.signals, false);
    if (rc) {
        log_error("worker %d: signalfd: %s", id, strerror(-rc));
        goto out;
    }
    /* A signal that arrived before the signalfd existed is still pending. */
    if (getppid() == 1) start_drain();

    script_setup(cfg, shm, id, count, &W.loop);
    /* The text the master checked last (at start, or at the last reload
     * that passed), not the file, which may have changed since. */
    char err[1024];
    size_t len;
    uint32_t gen;
    char *text = script_store_get(&len, &gen);
    if (!text) {
        log_error("worker %d: no script text", id);
        goto out;
    }
    rc = script_load(cfg->script, text, len, (int)gen, err, sizeof(err));
    free(text);
    if (rc) {
        log_error("worker %d: %s", id, err);
        status = 2;
        goto out;
    }
    STAT_SET(WS->generation, gen);

    int fd;
    for (int i = 0; i < cfg->nlisten; i++) {
        struct io *l = &W.listeners[i];
        if ((fd = worker_listener_open(&cfg->listen[i], true)) < 0) {
            log_error("worker %d: cannot listen on %s: %s%s", id, cfg->listen[i].text, strerror(-fd),
                      worker_listen_hint(&cfg->listen[i], fd));
            goto out;
        }
        l->fd = fd;
        l->cb = on_listener;
        if (loop_add(&W.loop, l, IO_READ)) {
            log_error("worker %d: epoll_ctl: %s", id, strerror(errno));
            goto out;
        }
        log_debug("worker %d listening on %s", id, cfg->listen[i].text);
    }
    if (cfg->admin_set) {
        fd = worker_listener_open(&cfg->admin, true);
        if (fd < 0) {
            log_error("worker %d: cannot listen on %s (--admin): %s%s", id, cfg->admin.text, strerror(-fd),
                      worker_listen_hint(&cfg->admin, fd));
            goto out;
        }
        W.admin.fd = fd;
        W.admin.cb = on_listener;
        if (loop_add(&W.loop, &W.admin, IO_READ)) goto out;
    }
    W.publish_timer.cb = on_publish;
    on_publish(&W.publish_timer);
    loop_run(&W.loop);
    status = 0;
out:
    /* Past the shutdown timeout (or on a failed start): close what is left. */
    W.draining = false;
    while (W.conns) conn_force_close(W.conns);
    loop_run_deferred(&W.loop);
    access_flush();
    script_unload(); /* closes the upstreams and their pooled connections */
    loop_run_deferred(&W.loop);
    req_ctx_pool_free();
    exchange_pool_free();
    pipe_pool_free();
    tls_server_free();
    for (int i = 0; i < CONFIG_MAX_LISTEN; i++) loop_close(&W.loop, &W.listeners[i]);
    loop_close(&W.loop, &W.admin);
    loop_close(&W.loop, &W.signals);
    loop_free(&W.loop);
    return status;
}
