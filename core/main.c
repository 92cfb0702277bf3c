/* luaproxy: command line -> configuration -> script check -> master. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "master.h"
#include "script.h"
#include "script_store.h"
#include "shm.h"
#include "stats.h"
#include "tls.h"
#include "try.h"
#include "worker.h"

#define LUAPROXY_VERSION "0.1.0"

extern char **environ;

/* Descriptors: the soft limit is often 1,024 while the hard one is much
 * higher, so take what is allowed, and say when --max-connections cannot
 * fit by what a connection can really hold at once (config.h). Past the
 * limit, accepting waits and splicing a body fails for want of a pipe. */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) == -1) getrlimit(RLIMIT_NOFILE, &rl);
    }
    uint64_t need = config_fds_needed((uint64_t)cfg->max_connections);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        log_warn("descriptor limit %llu cannot hold --max-connections %d: a connection may use %d descriptors "
                 "at once (client, backend, two splice pipes), so a worker may need %llu (%d x %d + %d spare); "
                 "%llu connections fit: raise 'ulimit -n' or lower --max-connections",
                 (unsigned long long)rl.rlim_cur, cfg->max_connections, CONFIG_FDS_PER_CONN,
                 (unsigned long long)need, CONFIG_FDS_PER_CONN, cfg->max_connections, CONFIG_FDS_SPARE,
                 (unsigned long long)config_connections_fitting(rl.rlim_cur));
}

/* The pid file is opened before anything starts, so that an unusable path
 * is a configuration error like any other, but written only once the
 * listeners are known to work: a second instance that fails on a busy port
 * must not overwrite the pid file of the one running. */
static struct {
    int fd;
    bool created; /* by us: removed again if we do not start */
} pidf = {.fd = -1};

static int pid_file_open(const char *path)
{
    pidf.fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (pidf.fd != -1) {
        pidf.created = true;
        return 0;
    }
    if (errno != EEXIST) return -errno;
    pidf.fd = open(path, O_WRONLY | O_CLOEXEC);
    return pidf.fd == -1 ? -errno : 0;
}

static int pid_file_write(void)
{
    char line[32];
    int n = snprintf(line, sizeof(line), "%d\n", (int)getpid());
    int rc = 0;
    errno = 0; /* a short write sets none */
    if (ftruncate(pidf.fd, 0) == -1 || pwrite(pidf.fd, line, (size_t)n, 0) != n) rc = errno ? -errno : -EIO;
    if (close(pidf.fd) == -1 && !rc) rc = -errno;
    pidf.fd = -1;
    return rc;
}

/* Not starting after all: leave the file as it was found. */
static void pid_file_abandon(const char *path)
{
    if (pidf.fd == -1) return;
    close(pidf.fd);
    pidf.fd = -1;
    if (pidf.created) unlink(path);
}

/* One line on stderr for a path option that cannot be used. */
static int path_error(const struct config *cfg, const char *name, const char *path, const char *what, int rc)
{
    char opt[1200];
    config_describe(cfg, name, path, opt, sizeof(opt));
    fprintf(stderr, "luaproxy: %s: %s: %s\n", opt, what, strerror(-rc));
    return 2;
}

int main(int argc, char **argv)
{
    struct config cfg;
    char err[1024];
    if (config_load(&cfg, argc, argv, environ, err, sizeof(err))) {
        fprintf(stderr, "luaproxy: %s\n", err);
        return 2;
    }
    if (cfg.help) {
        fputs(config_usage(), stdout);
        return 0;
    }
    if (cfg.version) {
        printf("luaproxy %s\n", LUAPROXY_VERSION);
        return 0;
    }
    /* --check and --try look at the script only: no log file, no pid file. */
    bool serving = !cfg.check_only && !cfg.try_request;
    int rc = log_init(cfg.log_level, serving ? cfg.access_log : NULL);
    if (rc) return path_error(&cfg, "access-log", cfg.access_log, "cannot open", rc);
    signal(SIGPIPE, SIG_IGN);

    struct shm *shm = NULL;
    rc = shm_create(cfg.shm_size, &shm);
    if (rc) {
        fprintf(stderr, "luaproxy: --shm-size %llu: cannot map shared memory: %s\n",
                (unsigned long long)cfg.shm_size, strerror(-rc));
        return 1;
    }
    script_setup(&cfg, shm, 0, cfg.workers, NULL);
    if (cfg.try_request) return try_run(&cfg);
    size_t len;
    char *text = script_read(cfg.script, &len, err, sizeof(err));
    if (!text || master_check_script(cfg.script, text, len, err, sizeof(err))) {
        fprintf(stderr, "luaproxy: %s\n", err);
        free(text);
        return 2;
    }
    /* Certificates are checked with the script: --check too. */
    if (tls_init() || tls_server_load(&cfg, !cfg.check_only, err, sizeof(err))) {
        fprintf(stderr, "luaproxy: %s\n", err[0] ? err : "TLS: cannot draw random bytes");
        free(text);
        return 2;
    }
    if (cfg.check_only) {
        printf("ok\n");
        free(text);
        return 0;
    }
    if (cfg.pid_file && (rc = pid_file_open(cfg.pid_file))) {
        free(text);
        return path_error(&cfg, "pid-file", cfg.pid_file, "cannot open for writing", rc);
    }
    int status = 1;
    const char *region = "metrics";
    rc = stats_create(cfg.workers);
    if (!rc && (rc = script_store_create())) region = "the script";
    if (!rc && script_store_put(text, len, 0)) rc = -E2BIG;
    free(text);
    if (rc == -E2BIG) {
        fprintf(stderr, "luaproxy: %s: larger than %u bytes\n", cfg.script, SCRIPT_STORE_MAX);
        status = 2;
        goto fail;
    }
    if (rc) {
        fprintf(stderr, "luaproxy: cannot map shared memory for %s: %s\n", region, strerror(-rc));
        goto fail;
    }

    /* Probes without SO_REUSEPORT: the workers' own listeners would happily
     * share the port with another process's SO_REUSEPORT socket. All held
     * open at once, so that two of our own addresses that overlap (0.0.0.0
     * and 127.0.0.1 on one port) are caught too. */
    int probes[CONFIG_MAX_LISTEN], nprobes = 0, fd = 0;
    while (nprobes < cfg.nlisten && (fd = worker_listener_open(&cfg.listen[nprobes], false)) >= 0)
        probes[nprobes++] = fd;
    for (int i = 0; i < nprobes; i++) close(probes[i]);
    if (fd < 0) {
        fprintf(stderr, "luaproxy: cannot listen on %s: %s%s\n", cfg.listen[nprobes].text, strerror(-fd),
                worker_listen_hint(&cfg.listen[nprobes], fd));
        goto fail;
    }
    if (cfg.admin_set) {
        if ((fd = worker_listener_open(&cfg.admin, false)) < 0) {
            fprintf(stderr, "luaproxy: cannot listen on %s (--admin): %s%s\n", cfg.admin.text, strerror(-fd),
                    worker_listen_hint(&cfg.admin, fd));
            goto fail;
        }
        close(fd);
    }
    raise_fd_limit(&cfg);
    if (cfg.pid_file && (rc = pid_file_write())) {
        path_error(&cfg, "pid-file", cfg.pid_file, "cannot write", rc);
        status = 2;
        goto fail;
    }
    status = master_run(&cfg, shm);
    if (cfg.pid_file) unlink(cfg.pid_file);
    shm_destroy(shm);
    tls_server_free();
    script_store_destroy();
    stats_destroy();
    return status;
fail:
    pid_file_abandon(cfg.pid_file);
    return status;
}
