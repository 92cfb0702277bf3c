/* config: defaults < LUAPROXY_* environment < command line. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* OPT_ARG and OPT_HEADER are the --try request's parts: command line only,
 * as they describe one run rather than configure a server. */
enum opt_kind { OPT_LISTEN, OPT_TLS_LISTEN, OPT_PATHS, OPT_TLS_VERSION, OPT_ADDR, OPT_INT, OPT_DUR, OPT_SIZE, OPT_STR, OPT_LEVEL, OPT_FLAG, OPT_ARG, OPT_HEADER, OPT_RESOLVER };

struct opt {
    const char *name; /* long name; the env name is derived from it */
    char short_name;
    enum opt_kind kind;
    size_t offset;
    const char *arg; /* for --help */
    const char *help;
};

#define OFF(f) offsetof(struct config, f)
static const struct opt opts[] = {
    {"listen", 'l', OPT_LISTEN, OFF(listen), "ADDR:PORT", "where clients connect, repeatable (127.0.0.1:8080)"},
    {"tls-listen", 0, OPT_TLS_LISTEN, OFF(listen), "ADDR:PORT", "an HTTPS listener, repeatable (none)"},
    {"tls-cert", 0, OPT_PATHS, OFF(tls_certs), "PATH", "certificate chain + key (PEM), or a directory of them; repeatable"},
    {"tls-ciphers", 0, OPT_STR, OFF(tls_ciphers), "LIST", "TLS cipher suites, OpenSSL names (Mozilla intermediate)"},
    {"tls-min-version", 0, OPT_TLS_VERSION, OFF(tls_min_version), "V", "oldest TLS version accepted: 1.2 or 1.3 (1.2)"},
    {"workers", 'w', OPT_INT, OFF(workers), "N", "worker processes (online CPUs)"},
    {"max-connections", 0, OPT_INT, OFF(max_connections), "N", "client connections per worker (10000)"},
    {"header-timeout", 0, OPT_DUR, OFF(header_timeout_ms), "DUR", "time to receive a request head (10s)"},
    {"idle-timeout", 0, OPT_DUR, OFF(idle_timeout_ms), "DUR", "idle keep-alive client connection (60s)"},
    {"shutdown-timeout", 0, OPT_DUR, OFF(shutdown_timeout_ms), "DUR", "graceful-shutdown drain limit (30s)"},
    {"max-header-size", 0, OPT_SIZE, OFF(max_header_size), "SIZE", "largest request head (16k)"},
    {"max-body-size", 0, OPT_SIZE, OFF(max_body_size), "SIZE", "largest body buffered for a Lua handler (1m)"},
    {"shm-size", 0, OPT_SIZE, OFF(shm_size), "SIZE", "memory for all proxy.shared dicts (64m)"},
    {"lua-time-limit", 0, OPT_DUR, OFF(lua_time_limit_ms), "DUR", "longest single Lua call (1s)"},
    {"lua-memory-limit", 0, OPT_SIZE, OFF(lua_memory_limit), "SIZE", "memory of a worker's Lua state (256m, 0 = none)"},
    {"max-timers", 0, OPT_INT, OFF(max_timers), "N", "pending Lua timers per worker (4096)"},
    {"resolver", 0, OPT_RESOLVER, OFF(resolver), "ADDR[:PORT]", "DNS server for names in scripts (/etc/resolv.conf)"},
    {"resolve-interval", 0, OPT_DUR, OFF(resolve_interval_ms), "DUR", "longest time a resolved upstream name is kept (30s)"},
    {"access-log", 0, OPT_STR, OFF(access_log), "PATH", "one line per request; - = stdout (off)"},
    {"log-level", 0, OPT_LEVEL, OFF(log_level), "LEVEL", "debug, info, warn, error (info)"},
    {"admin", 0, OPT_ADDR, OFF(admin), "ADDR:PORT", "metrics/status listener (off)"},
    {"pid-file", 0, OPT_STR, OFF(pid_file), "PATH", "write the master pid here"},
    {"check", 't', OPT_FLAG, OFF(check_only), NULL, "load and validate the script, print ok or the error"},
    {"try", 0, OPT_ARG, OFF(try_request), "'METHOD TARGET'", "dry run: route one request, print the decision"},
    {"header", 'H', OPT_HEADER, OFF(try_headers), "'NAME: VALUE'", "with --try: a request header (repeatable)"},
    {"body", 0, OPT_ARG, OFF(try_body), "STR", "with --try: the request body"},
    {"scheme", 0, OPT_ARG, OFF(try_scheme), "http|https", "with --try: the scheme the request came by (http)"},
    {"help", 'h', OPT_FLAG, OFF(help), NULL, "this help"},
    {"version", 'V', OPT_FLAG, OFF(version), NULL, "print the version"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))
_Static_assert(NOPTS <= 32, "config.from_env has one bit per option");

static void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n > 0 ? (int)n : 1;
    cfg->max_connections = 10000;
    cfg->header_timeout_ms = 10000;
    cfg->idle_timeout_ms = 60000;
    cfg->shutdown_timeout_ms = 30000;
    cfg->max_header_size = 16 * 1024;
    cfg->max_body_size = 1024 * 1024;
    cfg->shm_size = 64 * 1024 * 1024;
    cfg->lua_time_limit_ms = 1000;
    cfg->lua_memory_limit = 256 * 1024 * 1024;
    cfg->max_timers = 4096;
    cfg->tls_min_version = 12;
    cfg->resolve_interval_ms = 30000;
    cfg->log_level = LOG_INFO;
}

/* Unsigned decimal with overflow check; *end points past the digits. */
static int parse_u64(const char *s, uint64_t *out, const char **end)
{
    uint64_t v = 0;
    const char *p = s;
    if (!isdigit((unsigned char)*p)) return -EINVAL;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -ERANGE;
        v = v * 10 + d;
    }
    *out = v;
    *end = p;
    return 0;
}

static int scale(uint64_t v, uint64_t mul, uint64_t *out)
{
    if (mul && v > UINT64_MAX / mul) return -ERANGE;
    *out = v * mul;
    return 0;
}

int config_parse_duration(const char *s, uint64_t *ms)
{
    uint64_t v;
    const char *end;
    int rc = parse_u64(s, &v, &end);
    if (rc) return rc;
    uint64_t mul;
    if (!strcmp(end, "") || !strcmp(end, "ms")) mul = 1;
    else if (!strcmp(end, "s")) mul = 1000;
    else if (!strcmp(end, "m")) mul = 60 * 1000;
    else if (!strcmp(end, "h")) mul = 3600 * 1000;
    else return -EINVAL;
    return scale(v, mul, ms);
}

int config_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t v;
    const char *end;
    int rc = parse_u64(s, &v, &end);
    if (rc) return rc;
    uint64_t mul;
    if (!strcmp(end, "")) mul = 1;
    else if (!strcmp(end, "k") || !strcmp(end, "K")) mul = 1ULL << 10;
    else if (!strcmp(end, "m") || !strcmp(end, "M")) mul = 1ULL << 20;
    else if (!strcmp(end, "g") || !strcmp(end, "G")) mul = 1ULL << 30;
    else return -EINVAL;
    return scale(v, mul, bytes);
}

int config_parse_addr(const char *s, struct listen_addr *out)
{
    char host[256];
    const char *colon;
    size_t hlen;

    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') return -EINVAL;
        hlen = (size_t)(rb - s - 1);
        if (hlen >= sizeof(host)) return -EINVAL;
        memcpy(host, s + 1, hlen);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon) return -EINVAL;
        hlen = (size_t)(colon - s);
        if (hlen >= sizeof(host)) return -EINVAL;
        memcpy(host, s, hlen);
    }
    host[hlen] = '\0';

    uint64_t port;
    const char *end;
    if (parse_u64(colon + 1, &port, &end) || *end || port > 65535) return -EINVAL;

    memset(out, 0, sizeof(*out));
    snprintf(out->text, sizeof(out->text), "%s", s);
    if (hlen == 0) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
        out->len = sizeof(*sin);
        return 0;
    }
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sin->sin_addr = a4;
        out->len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sin6->sin6_addr = a6;
        out->len = sizeof(*sin6);
        return 0;
    }
    /* A name: resolved once, at start (numeric hosts never reach here). */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(host, NULL, &hints, &res) != 0) return -ENOENT;
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    if (out->ss.ss_family == AF_INET) ((struct sockaddr_in *)&out->ss)->sin_port = htons((uint16_t)port);
    else ((struct sockaddr_in6 *)&out->ss)->sin6_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

int config_parse_log_level(const char *s, enum log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (!strcmp(s, names[i])) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

static const char *kind_hint(enum opt_kind k)
{
    switch (k) {
    case OPT_LISTEN:
    case OPT_TLS_LISTEN:
    case OPT_ADDR: return "expected ADDR:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
    case OPT_INT: return "expected a whole number of at least 1";
    case OPT_DUR: return "expected a duration such as 250ms, 10s, 2m or plain milliseconds";
    case OPT_SIZE: return "expected a size such as 512, 16k, 1m or 1g";
    case OPT_LEVEL: return "expected debug, info, warn or error";
    case OPT_TLS_VERSION: return "expected 1.2 or 1.3";
    case OPT_PATHS: return "expected a path";
    case OPT_RESOLVER: return "expected an IP address, optionally with :PORT, e.g. 127.0.0.1:53 or [::1]:53";
    default: return "bad value";
    }
}

/* --resolver: an IP address (no name: it would need a resolver itself),
 * optionally with :PORT; IPv6 with a port in brackets. */
static int check_resolver(const char *s)
{
    unsigned char bin[16];
    char host[64];
    const char *port = NULL;
    size_t hlen = strlen(s);
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || (rb[1] && rb[1] != ':')) return -EINVAL;
        hlen = (size_t)(rb - s - 1);
        s++;
        port = rb[1] ? rb + 2 : NULL;
    } else if (inet_pton(AF_INET6, s, bin) != 1) {
        const char *colon = strrchr(s, ':');
        if (colon) hlen = (size_t)(colon - s), port = colon + 1;
    }
    if (hlen == 0 || hlen >= sizeof(host)) return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, bin) != 1 && inet_pton(AF_INET6, host, bin) != 1) return -EINVAL;
    uint64_t p;
    const char *end;
    if (port && (parse_u64(port, &p, &end) || *end || p < 1 || p > 65535)) return -EINVAL;
    return 0;
}

/* One --listen value, or a comma-separated list of them (the environment's
 * way of giving several): each is added to the list. */
static int listen_add(struct config *cfg, const char *val, bool tls, const char *origin, char *err, size_t errlen)
{
    const char *opt = tls ? "--tls-listen" : "--listen";
    for (const char *p = val;;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        /* "a:1, b:2" reads naturally: spaces around an item are not part of it. */
        while (n && *p == ' ') p++, n--;
        while (n && p[n - 1] == ' ') n--;
        char one[300];
        struct listen_addr a;
        int rc = n < sizeof(one) ? 0 : -EINVAL;
        if (!rc) {
            memcpy(one, p, n);
            one[n] = '\0';
            rc = config_parse_addr(one, &a);
        }
        if (rc) {
            snprintf(err, errlen, "%s %s: bad value '%.*s' (%s)", origin, opt, (int)n, p,
                     rc == -ENOENT ? "host not found" : kind_hint(OPT_LISTEN));
            return -EINVAL;
        }
        for (int i = 0; i < cfg->nlisten; i++) {
            if (cfg->listen[i].len == a.len && !memcmp(&cfg->listen[i].ss, &a.ss, a.len)) {
                snprintf(err, errlen, "%s %s: %s given twice", origin, opt, one);
                return -EINVAL;
            }
        }
        if (cfg->nlisten == CONFIG_MAX_LISTEN) {
            snprintf(err, errlen, "%s %s: more than %d addresses", origin, opt, CONFIG_MAX_LISTEN);
            return -EINVAL;
        }
        a.tls = tls;
        cfg->listen[cfg->nlisten++] = a;
        if (!comma) return 0;
        p = comma + 1;
    }
}

/* One --tls-cert path, or the environment's comma-separated list (on the
 * command line a comma may be part of a path: the option repeats instead). */
static int paths_add(struct config *cfg, const char *val, const char *origin, char *err, size_t errlen)
{
    bool from_env = !strncmp(origin, "environment", 11);
    for (const char *p = val;;) {
        const char *comma = from_env ? strchr(p, ',') : NULL;
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (!n) {
            snprintf(err, errlen, "%s --tls-cert: empty path", origin);
            return -EINVAL;
        }
        if (cfg->ntls_certs == CONFIG_MAX_CERTS) {
            snprintf(err, errlen, "%s --tls-cert: more than %d paths", origin, CONFIG_MAX_CERTS);
            return -EINVAL;
        }
        cfg->tls_certs[cfg->ntls_certs++] = comma ? strndup(p, n) : p;
        if (!comma) return 0;
        p = comma + 1;
    }
}

/* The command line's addresses of one kind replace the environment's. */
static void drop_listeners(struct config *cfg, bool tls)
{
    int k = 0;
    for (int i = 0; i < cfg->nlisten; i++)
        if (cfg->listen[i].tls != tls) cfg->listen[k++] = cfg->listen[i];
    cfg->nlisten = k;
}

static int apply(struct config *cfg, const struct opt *o, const char *val, const char *origin,
                 char *err, size_t errlen)
{
    void *field = (char *)cfg + o->offset;
    int rc = 0;
    switch (o->kind) {
    case OPT_LISTEN:
    case OPT_TLS_LISTEN: return listen_add(cfg, val, o->kind == OPT_TLS_LISTEN, origin, err, errlen);
    case OPT_PATHS: return paths_add(cfg, val, origin, err, errlen);
    case OPT_TLS_VERSION:
        if (!strcmp(val, "1.2") || !strcmp(val, "TLSv1.2")) cfg->tls_min_version = 12;
        else if (!strcmp(val, "1.3") || !strcmp(val, "TLSv1.3")) cfg->tls_min_version = 13;
        else rc = -EINVAL;
        break;
    case OPT_ADDR:
        rc = config_parse_addr(val, field);
        if (!rc && o->offset == OFF(admin)) cfg->admin_set = true;
        break;
    case OPT_INT: {
        uint64_t v;
        const char *end;
        rc = parse_u64(val, &v, &end);
        if (!rc && (*end || v < 1 || v > 1000000)) rc = -EINVAL;
        if (!rc) *(int *)field = (int)v;
        break;
    }
    case OPT_DUR: rc = config_parse_duration(val, field); break;
    case OPT_SIZE: rc = config_parse_size(val, field); break;
    case OPT_LEVEL: rc = config_parse_log_level(val, field); break;
    case OPT_STR:
        if (!*val) rc = -EINVAL;
        else *(const char **)field = val;
        break;
    case OPT_RESOLVER:
        rc = check_resolver(val);
        if (!rc) *(const char **)field = val;
        break;
    case OPT_FLAG: *(bool *)field = true; break;
    case OPT_ARG: *(const char **)field = val; break;
    case OPT_HEADER:
        if (cfg->try_headers.n == CONFIG_MAX_TRY_HEADERS) {
            snprintf(err, errlen, "option --%s: more than %d headers", o->name, CONFIG_MAX_TRY_HEADERS);
            return -EINVAL;
        }
        cfg->try_headers.v[cfg->try_headers.n++] = val;
        break;
    }
    if (rc) {
        snprintf(err, errlen, "%s --%s: bad value '%s' (%s)", origin, o->name, val,
                 rc == -ERANGE ? "number too large" : rc == -ENOENT ? "host not found" : kind_hint(o->kind));
        return -EINVAL;
    }
    return 0;
}

/* "max-header-size" -> "LUAPROXY_MAX_HEADER_SIZE" */
static void env_name(const char *name, char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen, "LUAPROXY_");
    for (const char *p = name; *p && n + 1 < outlen; p++)
        out[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[n] = '\0';
}

static const char *env_get(char **envp, const char *key)
{
    size_t klen = strlen(key);
    for (char **e = envp; e && *e; e++)
        if (!strncmp(*e, key, klen) && (*e)[klen] == '=') return *e + klen + 1;
    return NULL;
}

int config_load(struct config *cfg, int argc, char **argv, char **envp, char *err, size_t errlen)
{
    config_defaults(cfg);

    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        if (o->kind == OPT_FLAG || o->kind == OPT_ARG || o->kind == OPT_HEADER) continue;
        char key[64];
        env_name(o->name, key, sizeof(key));
        const char *v = env_get(envp, key);
        if (v) {
            char origin[80];
            snprintf(origin, sizeof(origin), "environment %s:", key);
            if (apply(cfg, o, v, origin, err, errlen)) return -EINVAL;
            cfg->from_env |= 1u << i;
        }
    }

    /* The command line's --listen, --tls-listen and --tls-cert values
     * replace the environment's. */
    bool listen_from_env = cfg->nlisten > 0, tls_listen_from_env = listen_from_env;
    bool certs_from_env = cfg->ntls_certs > 0;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || !strcmp(a, "-")) {
            if (cfg->script) {
                snprintf(err, errlen, "unexpected argument '%s' (one script only)", a);
                return -EINVAL;
            }
            cfg->script = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            options_done = true;
            continue;
        }
        const struct opt *o = NULL;
        const char *val = NULL;
        if (a[1] == '-') {
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            for (size_t k = 0; k < NOPTS; k++)
                if (strlen(opts[k].name) == nlen && !strncmp(opts[k].name, name, nlen)) o = &opts[k];
            if (eq) val = eq + 1;
        } else if (a[2] == '\0') {
            for (size_t k = 0; k < NOPTS; k++)
                if (opts[k].short_name == a[1]) o = &opts[k];
        }
        if (!o) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", a);
            return -EINVAL;
        }
        if (o->kind == OPT_FLAG) {
            if (val) {
                snprintf(err, errlen, "option --%s takes no value", o->name);
                return -EINVAL;
            }
        } else if (!val) {
            if (i + 1 >= argc) {
                snprintf(err, errlen, "option --%s needs a value (%s)", o->name, kind_hint(o->kind));
                return -EINVAL;
            }
            val = argv[++i];
        }
        if (o->kind == OPT_LISTEN && listen_from_env) {
            drop_listeners(cfg, false);
            listen_from_env = false;
        }
        if (o->kind == OPT_TLS_LISTEN && tls_listen_from_env) {
            drop_listeners(cfg, true);
            tls_listen_from_env = false;
        }
        if (o->kind == OPT_PATHS && certs_from_env) {
            cfg->ntls_certs = 0; /* the environment's copies stay allocated: a few bytes, once */
            certs_from_env = false;
        }
        if (apply(cfg, o, val ? val : "", "option", err, errlen)) return -EINVAL;
        cfg->from_env &= ~(1u << (o - opts));
    }

    if (!cfg->nlisten) config_parse_addr("127.0.0.1:8080", &cfg->listen[cfg->nlisten++]);
    bool any_tls = false;
    for (int i = 0; i < cfg->nlisten; i++) any_tls |= cfg->listen[i].tls;
    if (any_tls && !cfg->ntls_certs) {
        snprintf(err, errlen, "option --tls-listen needs a certificate (--tls-cert PATH)");
        return -EINVAL;
    }
    if ((cfg->try_headers.n || cfg->try_body || cfg->try_scheme) && !cfg->try_request) {
        snprintf(err, errlen, "option --%s is only used with --try",
                 cfg->try_body ? "body" : cfg->try_scheme ? "scheme" : "header");
        return -EINVAL;
    }
    if (cfg->try_scheme && strcmp(cfg->try_scheme, "http") && strcmp(cfg->try_scheme, "https")) {
        snprintf(err, errlen, "option --scheme: bad value '%s' (expected http or https)", cfg->try_scheme);
        return -EINVAL;
    }
    if (cfg->try_request && cfg->check_only) {
        snprintf(err, errlen, "options --try and --check exclude each other");
        return -EINVAL;
    }
    if (!cfg->script && !cfg->help && !cfg->version) {
        snprintf(err, errlen, "no script given (usage: luaproxy [OPTIONS] SCRIPT.lua)");
        return -EINVAL;
    }
    return 0;
}

uint64_t config_fds_needed(uint64_t max_connections)
{
    return max_connections * CONFIG_FDS_PER_CONN + CONFIG_FDS_SPARE;
}

uint64_t config_connections_fitting(uint64_t fd_limit)
{
    return fd_limit > CONFIG_FDS_SPARE ? (fd_limit - CONFIG_FDS_SPARE) / CONFIG_FDS_PER_CONN : 0;
}

void config_describe(const struct config *cfg, const char *name, const char *value, char *out,
                     size_t outlen)
{
    for (size_t i = 0; i < NOPTS; i++) {
        if (strcmp(opts[i].name, name)) continue;
        if (cfg->from_env & (1u << i)) {
            char key[64];
            env_name(name, key, sizeof(key));
            snprintf(out, outlen, "%s=%s", key, value);
            return;
        }
        break;
    }
    snprintf(out, outlen, "--%s %s", name, value);
}

const char *config_usage(void)
{
    static char buf[4096];
    if (buf[0]) return buf;
    size_t n = (size_t)snprintf(buf, sizeof(buf),
                                "usage: luaproxy [OPTIONS] SCRIPT.lua\n"
                                "       luaproxy --try 'METHOD TARGET' [-H 'NAME: VALUE']... [--body STR] SCRIPT.lua\n\n"
                                "Every option that takes a value, except --try, --header, --body and --scheme, can\n"
                                "also be set as LUAPROXY_<NAME> in the environment (e.g. LUAPROXY_MAX_BODY_SIZE=2m);\n"
                                "the command line wins. LUAPROXY_LISTEN, LUAPROXY_TLS_LISTEN and\n"
                                "LUAPROXY_TLS_CERT take comma-separated lists.\n\n");
    for (size_t i = 0; i < NOPTS && n < sizeof(buf); i++) {
        char left[64];
        const struct opt *o = &opts[i];
        if (o->short_name)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "  %-32s %s\n", left, o->help);
    }
    if (n < sizeof(buf))
        snprintf(buf + n, sizeof(buf) - n,
                 "\nDUR: 250ms, 10s, 2m or plain milliseconds. SIZE: 512, 16k, 1m, 1g.\n"
                 "Signals: HUP reload, TERM/INT graceful stop, USR1 reopen logs.\n");
    return buf;
}
