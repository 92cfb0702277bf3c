/* luaproxy: command line -> configuration -> script check -> master. */
#include <errno.h>
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
#include "shm.h"
#include "stats.h"
#include "try.h"
#include "worker.h"

#define LUAPROXY_VERSION "0.1.0"

extern char **environ;

/* Descriptors: the soft limit is often 1,024 while the hard one is much
 * higher; every client connection, backend connection and splice pipe
 * needs some, so take what is allowed and say when it is not enough. */
static void raise_fd_limit(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Each process has its own table: a worker needs one descriptor per
     * client, plus backend connections and pipes while proxying. */
    rlim_t need = (rlim_t)cfg->max_connections + 64;
    if (rl.rlim_cur < need)
        log_warn("descriptor limit %llu is below what --max-connections %d needs (%llu per worker at least): "
                 "raise 'ulimit -n' or lower --max-connections",
                 (unsigned long long)rl.rlim_cur, cfg->max_connections, (unsigned long long)need);
}

static int write_pid_file(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) return -errno;
    fprintf(f, "%d\n", (int)getpid());
    return fclose(f) ? -errno : 0;
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
    log_init(cfg.log_level, cfg.access_log);
    signal(SIGPIPE, SIG_IGN);

    struct shm *shm = NULL;
    int rc = shm_create(cfg.shm_size, &shm);
    if (rc) {
        fprintf(stderr, "luaproxy: --shm-size %llu: cannot map shared memory: %s\n",
                (unsigned long long)cfg.shm_size, strerror(-rc));
        return 1;
    }
    script_setup(&cfg, shm, 0, cfg.workers);
    if (cfg.try_request) return try_run(&cfg);
    size_t len;
    char *text = script_read(cfg.script, &len, err, sizeof(err));
    if (!text || master_check_script(cfg.script, text, len, err, sizeof(err))) {
        fprintf(stderr, "luaproxy: %s\n", err);
        free(text);
        return 2;
    }
    if (cfg.check_only) {
        printf("ok\n");
        free(text);
        return 0;
    }
    rc = stats_create(cfg.workers);
    if (!rc && stats_script_store(text, len, 0)) rc = -E2BIG;
    free(text);
    if (rc == -E2BIG) {
        fprintf(stderr, "luaproxy: %s: larger than %u bytes\n", cfg.script, STATS_SCRIPT_MAX);
        return 2;
    }
    if (rc) {
        fprintf(stderr, "luaproxy: cannot map shared memory for metrics: %s\n", strerror(-rc));
        return 1;
    }

    /* A probe without SO_REUSEPORT: the workers' own listeners would happily
     * share the port with another process's SO_REUSEPORT socket. */
    int fd = worker_listener_open(&cfg.listen, false);
    if (fd < 0) {
        fprintf(stderr, "luaproxy: cannot listen on %s: %s\n", cfg.listen.text, strerror(-fd));
        return 1;
    }
    close(fd);
    if (cfg.admin_set) {
        if ((fd = worker_listener_open(&cfg.admin, false)) < 0) {
            fprintf(stderr, "luaproxy: cannot listen on %s (--admin): %s\n", cfg.admin.text, strerror(-fd));
            return 1;
        }
        close(fd);
    }
    raise_fd_limit(&cfg);
    if (cfg.pid_file && (rc = write_pid_file(cfg.pid_file))) {
        fprintf(stderr, "luaproxy: --pid-file %s: %s\n", cfg.pid_file, strerror(-rc));
        return 1;
    }
    int status = master_run(&cfg, shm);
    if (cfg.pid_file) unlink(cfg.pid_file);
    shm_destroy(shm);
    stats_destroy();
    return status;
}
