/* config: the one configuration struct, its defaults, LUAPROXY_* environment
 * variables and the command line (in that order of precedence, last wins). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

struct listen_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64]; /* as given, for logs */
    bool tls;      /* --tls-listen: HTTPS */
};

#define CONFIG_MAX_TRY_HEADERS 64
#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_CERTS 32

struct config {
    struct listen_addr listen[CONFIG_MAX_LISTEN]; /* --listen and --tls-listen; at least one */
    int nlisten;
    const char *tls_certs[CONFIG_MAX_CERTS]; /* --tls-cert, repeatable: files or directories */
    int ntls_certs;
    const char *tls_ciphers;   /* --tls-ciphers; NULL = Mozilla intermediate */
    int tls_min_version;       /* --tls-min-version: 12 or 13 */
    int workers;
    int max_connections;
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t shutdown_timeout_ms;
    uint64_t max_header_size;
    uint64_t max_body_size;
    uint64_t shm_size;
    uint64_t lua_time_limit_ms;
    uint64_t lua_memory_limit; /* bytes one worker's Lua state may hold; 0 = none */
    int max_timers;            /* pending proxy.timer timers per worker */
    const char *access_log;    /* NULL = off, "-" = stdout */
    enum log_level log_level;
    bool admin_set;
    struct listen_addr admin;
    const char *pid_file;
    const char *resolver;      /* --resolver: DNS servers for c-ares; NULL = /etc/resolv.conf */
    uint64_t resolve_interval_ms; /* --resolve-interval: an upstream name is re-resolved at least so often */
    const char *script;
    bool check_only; /* -t: validate the script and exit */
    const char *try_request; /* --try "METHOD TARGET": a routing dry run (core/try.c) */
    struct {
        const char *v[CONFIG_MAX_TRY_HEADERS];
        int n;
    } try_headers;            /* --header "Name: value", repeatable, for --try */
    const char *try_body;     /* --body, for --try */
    const char *try_scheme;   /* --scheme http|https, for --try */
    bool help;
    bool version;
    uint32_t from_env; /* bit i: option i of the table in config.c came from LUAPROXY_* */
};

/* Fills *cfg from defaults, then envp (LUAPROXY_*), then argv. Returns 0, or
 * -EINVAL with one line naming the option in err. envp may be NULL. */
int config_load(struct config *cfg, int argc, char **argv, char **envp, char *err, size_t errlen);

/* "250ms", "10s", "2m", "1h" or plain milliseconds. */
int config_parse_duration(const char *s, uint64_t *ms);
/* "512", "16k", "1m", "1g" (powers of 1024). */
int config_parse_size(const char *s, uint64_t *bytes);
/* "127.0.0.1:8080", "[::1]:8080", "localhost:80", ":8080" (all addresses). */
int config_parse_addr(const char *s, struct listen_addr *out);
int config_parse_log_level(const char *s, enum log_level *out);

/* Where an option's value came from, for a message about it:
 * "--access-log /x.log" or "LUAPROXY_ACCESS_LOG=/x.log". name is the long
 * option name; value the value in force. */
void config_describe(const struct config *cfg, const char *name, const char *value, char *out,
                     size_t outlen);

/* Descriptors a worker may need for --max-connections. A client connection
 * can hold CONFIG_FDS_PER_CONN at once: its socket, its backend's, a pipe
 * (two ends) splicing the request body up and one splicing the response
 * down - both while a backend answers before the upload is over - or the
 * two pipes of a tunnel. CONFIG_FDS_SPARE covers the rest of a worker:
 * stdio, epoll, signalfd, listeners, the access log, idle pooled backend
 * connections. Each worker has its own table, so this is per process. */
#define CONFIG_FDS_PER_CONN 6
#define CONFIG_FDS_SPARE 64
uint64_t config_fds_needed(uint64_t max_connections);
/* How many connections fit in a descriptor limit by the same count. */
uint64_t config_connections_fitting(uint64_t fd_limit);

const char *config_usage(void);
