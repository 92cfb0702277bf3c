/* Unit tests for core/config.c: DUR/SIZE/ADDR parsing and the precedence
 * defaults < LUAPROXY_* environment < command line. */
#include "config.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static struct config cfg;
static char err[256];

/* Loads argv (argv[0] is the program name) with envp; clears err first so a
 * message left over from an earlier call is never mistaken for a new one. */
static int load(int argc, char **argv, char **envp)
{
    memset(err, 0, sizeof(err));
    return config_load(&cfg, argc, argv, envp, err, sizeof(err));
}

/* A rejected option: -EINVAL, and a single line in err naming `needle`. */
static void expect_einval(int argc, char **argv, char **envp, const char *needle)
{
    ck_assert_int_eq(load(argc, argv, envp), -EINVAL);
    ck_assert_msg(err[0] != '\0', "no message for %s", needle);
    ck_assert_msg(strstr(err, needle) != NULL, "'%s' does not name '%s'", err, needle);
    ck_assert_msg(strchr(err, '\n') == NULL, "message is not one line: '%s'", err);
}

static uint16_t port_of(const struct listen_addr *a)
{
    if (a->ss.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
}

/* ---- DUR ---------------------------------------------------------------- */

START_TEST(duration_units)
{
    static const struct {
        const char *in;
        uint64_t ms;
    } cases[] = {
        {"250ms", 250},     {"10s", 10000},  {"2m", 120000}, {"1h", 3600000},
        {"1500", 1500},     {"0", 0},        {"0s", 0},      {"7ms", 7},
        {"90m", 5400000},   {"24h", 86400000},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t ms = 12345678;
        ck_assert_msg(config_parse_duration(cases[i].in, &ms) == 0, "rejected %s", cases[i].in);
        ck_assert_msg(ms == cases[i].ms, "%s gave %llu", cases[i].in, (unsigned long long)ms);
    }
}
END_TEST

START_TEST(duration_rejects)
{
    static const char *bad[] = {
        "16q", "", "-1", "10 s", " 10s", "10s ", "s", "ms", "1.5s", "10S", "10sec", "+5",
        "99999999999999999999",   /* does not fit in 64 bits */
        "18446744073709551615s",  /* fits, but not once scaled to ms */
        "18446744073709551616",   /* UINT64_MAX + 1 */
        "5124095576030432h",      /* overflows only in the multiply by 3,600,000 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 777;
        ck_assert_msg(config_parse_duration(bad[i], &ms) < 0, "accepted '%s'", bad[i]);
        ck_assert_msg(ms == 777, "'%s' wrote the output although rejected", bad[i]);
    }
}
END_TEST

START_TEST(duration_edges)
{
    uint64_t ms;
    ck_assert_int_eq(config_parse_duration("18446744073709551615", &ms), 0);
    ck_assert(ms == UINT64_MAX);
    ck_assert_int_eq(config_parse_duration("18446744073709551615ms", &ms), 0);
    ck_assert(ms == UINT64_MAX);
    /* The largest whole number of seconds that still fits in milliseconds. */
    ck_assert_int_eq(config_parse_duration("18446744073709551s", &ms), 0);
    ck_assert(ms == 18446744073709551000ULL);
    ck_assert_int_lt(config_parse_duration("18446744073709552s", &ms), 0);
}
END_TEST

/* ---- SIZE --------------------------------------------------------------- */

START_TEST(size_units)
{
    static const struct {
        const char *in;
        uint64_t bytes;
    } cases[] = {
        {"512", 512}, {"16k", 16384}, {"1m", 1048576}, {"1g", 1073741824},
        {"0", 0},     {"3K", 3072},   {"2M", 2097152}, {"4G", 4ULL << 30},
        {"64m", 64ULL << 20},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t n = 1;
        ck_assert_msg(config_parse_size(cases[i].in, &n) == 0, "rejected %s", cases[i].in);
        ck_assert_msg(n == cases[i].bytes, "%s gave %llu", cases[i].in, (unsigned long long)n);
    }
}
END_TEST

START_TEST(size_rejects)
{
    static const char *bad[] = {
        "16q", "", "-1", "1 k", "k", "1kb", "1.5m", "1t", " 5",
        "99999999999999999999",  /* does not fit in 64 bits */
        "17179869184g",          /* 2^34 * 2^30 */
        "18014398509481984k",    /* 2^54 * 2^10 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t n = 99;
        ck_assert_msg(config_parse_size(bad[i], &n) < 0, "accepted '%s'", bad[i]);
        ck_assert_msg(n == 99, "'%s' wrote the output although rejected", bad[i]);
    }
    uint64_t n;
    ck_assert_int_eq(config_parse_size("17179869183g", &n), 0);
    ck_assert(n == 17179869183ULL << 30);
}
END_TEST

/* ---- ADDR --------------------------------------------------------------- */

START_TEST(addr_ipv4)
{
    struct listen_addr a;
    ck_assert_int_eq(config_parse_addr("127.0.0.1:8080", &a), 0);
    ck_assert_int_eq(a.ss.ss_family, AF_INET);
    ck_assert_int_eq(a.len, sizeof(struct sockaddr_in));
    ck_assert_uint_eq(port_of(&a), 8080);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.ss;
    ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    ck_assert_str_eq(a.text, "127.0.0.1:8080");

    ck_assert_int_eq(config_parse_addr("127.1.2.3:65535", &a), 0);
    ck_assert_uint_eq(port_of(&a), 65535);
    ck_assert_uint_eq(ntohl(((const struct sockaddr_in *)&a.ss)->sin_addr.s_addr), 0x7f010203);
}
END_TEST

START_TEST(addr_ipv6)
{
    struct listen_addr a;
    ck_assert_int_eq(config_parse_addr("[::1]:8080", &a), 0);
    ck_assert_int_eq(a.ss.ss_family, AF_INET6);
    ck_assert_int_eq(a.len, sizeof(struct sockaddr_in6));
    ck_assert_uint_eq(port_of(&a), 8080);
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.ss;
    ck_assert(memcmp(&sin6->sin6_addr, &in6addr_loopback, sizeof(struct in6_addr)) == 0);
    ck_assert_str_eq(a.text, "[::1]:8080");

    ck_assert_int_eq(config_parse_addr("[2001:db8::7]:443", &a), 0);
    ck_assert_int_eq(a.ss.ss_family, AF_INET6);
    ck_assert_uint_eq(port_of(&a), 443);
    sin6 = (const struct sockaddr_in6 *)&a.ss;
    ck_assert_uint_eq(sin6->sin6_addr.s6_addr[0], 0x20);
    ck_assert_uint_eq(sin6->sin6_addr.s6_addr[15], 0x07);
}
END_TEST

START_TEST(addr_any)
{
    struct listen_addr a;
    ck_assert_int_eq(config_parse_addr(":8080", &a), 0);
    ck_assert_int_eq(a.ss.ss_family, AF_INET);
    ck_assert_uint_eq(port_of(&a), 8080);
    ck_assert_uint_eq(((const struct sockaddr_in *)&a.ss)->sin_addr.s_addr, htonl(INADDR_ANY));
}
END_TEST

START_TEST(addr_rejects)
{
    static const char *bad[] = {
        "nohost:99999", "1.2.3.4", "[::1]8080", "127.0.0.1:65536", "127.0.0.1:",
        "127.0.0.1:-1", "127.0.0.1:80x", "[::1", "[::1]", "", ":", "127.0.0.1:99999999999999999999",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct listen_addr a;
        ck_assert_msg(config_parse_addr(bad[i], &a) < 0, "accepted '%s'", bad[i]);
    }
}
END_TEST

START_TEST(log_levels)
{
    enum log_level l = LOG_ERROR;
    ck_assert_int_eq(config_parse_log_level("debug", &l), 0);
    ck_assert_int_eq(l, LOG_DEBUG);
    ck_assert_int_eq(config_parse_log_level("warn", &l), 0);
    ck_assert_int_eq(l, LOG_WARN);
    ck_assert_int_eq(config_parse_log_level("error", &l), 0);
    ck_assert_int_eq(l, LOG_ERROR);
    ck_assert_int_eq(config_parse_log_level("info", &l), 0);
    ck_assert_int_eq(l, LOG_INFO);
    ck_assert_int_eq(config_parse_log_level("INFO", &l), -EINVAL);
    ck_assert_int_eq(config_parse_log_level("", &l), -EINVAL);
    ck_assert_int_eq(config_parse_log_level("trace", &l), -EINVAL);
}
END_TEST

/* ---- config_load -------------------------------------------------------- */

START_TEST(load_defaults)
{
    char *argv[] = {"luaproxy", "app.lua"};
    ck_assert_int_eq(load(ARGC(argv), argv, NULL), 0);
    ck_assert_str_eq(cfg.script, "app.lua");
    ck_assert_int_eq(cfg.listen[0].ss.ss_family, AF_INET);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 8080);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_int_eq(cfg.workers, ncpu > 0 ? ncpu : 1);
    ck_assert_int_eq(cfg.max_connections, 10000);
    ck_assert_uint_eq(cfg.header_timeout_ms, 10000);
    ck_assert_uint_eq(cfg.idle_timeout_ms, 60000);
    ck_assert_uint_eq(cfg.shutdown_timeout_ms, 30000);
    ck_assert_uint_eq(cfg.max_header_size, 16 * 1024);
    ck_assert_uint_eq(cfg.max_body_size, 1024 * 1024);
    ck_assert_uint_eq(cfg.shm_size, 64 * 1024 * 1024);
    ck_assert_uint_eq(cfg.lua_time_limit_ms, 1000);
    ck_assert_int_eq(cfg.log_level, LOG_INFO);
    ck_assert_ptr_null(cfg.access_log);
    ck_assert_ptr_null(cfg.pid_file);
    ck_assert(!cfg.admin_set && !cfg.check_only && !cfg.help && !cfg.version);
}
END_TEST

START_TEST(load_all_options)
{
    char *argv[] = {"luaproxy", "-l", "[::1]:9090", "-w", "3", "--max-connections", "77",
                    "--header-timeout", "2s", "--idle-timeout", "250ms", "--shutdown-timeout",
                    "1m", "--max-header-size", "8k", "--max-body-size", "4m", "--shm-size",
                    "1g", "--lua-time-limit", "1500", "--lua-memory-limit", "0",
                    "--access-log", "-", "--log-level", "debug", "--admin", "127.0.0.1:9901",
                    "--pid-file", "/tmp/lp.pid", "site.lua"};
    ck_assert_int_eq(load(ARGC(argv), argv, NULL), 0);
    ck_assert_int_eq(cfg.listen[0].ss.ss_family, AF_INET6);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 9090);
    ck_assert_int_eq(cfg.workers, 3);
    ck_assert_int_eq(cfg.max_connections, 77);
    ck_assert_uint_eq(cfg.header_timeout_ms, 2000);
    ck_assert_uint_eq(cfg.idle_timeout_ms, 250);
    ck_assert_uint_eq(cfg.shutdown_timeout_ms, 60000);
    ck_assert_uint_eq(cfg.max_header_size, 8192);
    ck_assert_uint_eq(cfg.max_body_size, 4 << 20);
    ck_assert_uint_eq(cfg.shm_size, 1 << 30);
    ck_assert_uint_eq(cfg.lua_time_limit_ms, 1500);
    ck_assert_uint_eq(cfg.lua_memory_limit, 0);
    ck_assert_str_eq(cfg.access_log, "-");
    ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
    ck_assert(cfg.admin_set);
    ck_assert_uint_eq(port_of(&cfg.admin), 9901);
    ck_assert_str_eq(cfg.pid_file, "/tmp/lp.pid");
    ck_assert_str_eq(cfg.script, "site.lua");
}
END_TEST

START_TEST(load_equals_form)
{
    char *argv[] = {"luaproxy", "--listen=:7070", "--workers=5", "--idle-timeout=3s",
                    "--max-body-size=512", "app.lua", "--log-level=warn"};
    ck_assert_int_eq(load(ARGC(argv), argv, NULL), 0);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 7070);
    ck_assert_int_eq(cfg.workers, 5);
    ck_assert_uint_eq(cfg.idle_timeout_ms, 3000);
    ck_assert_uint_eq(cfg.max_body_size, 512);
    ck_assert_int_eq(cfg.log_level, LOG_WARN);
    ck_assert_str_eq(cfg.script, "app.lua");
}
END_TEST

START_TEST(load_flags)
{
    char *a1[] = {"luaproxy", "-t", "app.lua"};
    ck_assert_int_eq(load(ARGC(a1), a1, NULL), 0);
    ck_assert(cfg.check_only && !cfg.help && !cfg.version);

    char *a2[] = {"luaproxy", "app.lua", "--check"};
    ck_assert_int_eq(load(ARGC(a2), a2, NULL), 0);
    ck_assert(cfg.check_only);

    /* -h and -V need no script. */
    char *a3[] = {"luaproxy", "-h"};
    ck_assert_int_eq(load(ARGC(a3), a3, NULL), 0);
    ck_assert(cfg.help && !cfg.version && !cfg.check_only);
    ck_assert_ptr_null(cfg.script);

    char *a4[] = {"luaproxy", "--help"};
    ck_assert_int_eq(load(ARGC(a4), a4, NULL), 0);
    ck_assert(cfg.help);

    char *a5[] = {"luaproxy", "-V"};
    ck_assert_int_eq(load(ARGC(a5), a5, NULL), 0);
    ck_assert(cfg.version && !cfg.help);

    char *a6[] = {"luaproxy", "--version"};
    ck_assert_int_eq(load(ARGC(a6), a6, NULL), 0);
    ck_assert(cfg.version);

    /* --check still needs the script it is meant to check. */
    char *a7[] = {"luaproxy", "-t"};
    ck_assert_int_eq(load(ARGC(a7), a7, NULL), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "script"));

    char *a8[] = {"luaproxy", "--check=yes", "app.lua"};
    expect_einval(ARGC(a8), a8, NULL, "--check");
}
END_TEST

START_TEST(load_env_applied)
{
    char *argv[] = {"luaproxy", "app.lua"};
    char *envp[] = {"PATH=/bin", "LUAPROXY_MAX_BODY_SIZE=2m", "LUAPROXY_WORKERS=6",
                    "LUAPROXY_LISTEN=[::1]:8181", "LUAPROXY_IDLE_TIMEOUT=5s",
                    "LUAPROXY_ADMIN=:9000", "LUAPROXY_LOG_LEVEL=error", NULL};
    ck_assert_int_eq(load(ARGC(argv), argv, envp), 0);
    ck_assert_uint_eq(cfg.max_body_size, 2 << 20);
    ck_assert_int_eq(cfg.workers, 6);
    ck_assert_int_eq(cfg.listen[0].ss.ss_family, AF_INET6);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 8181);
    ck_assert_uint_eq(cfg.idle_timeout_ms, 5000);
    ck_assert(cfg.admin_set);
    ck_assert_uint_eq(port_of(&cfg.admin), 9000);
    ck_assert_int_eq(cfg.log_level, LOG_ERROR);
    /* Untouched by the environment: still the default. */
    ck_assert_uint_eq(cfg.header_timeout_ms, 10000);
}
END_TEST

START_TEST(load_command_line_wins)
{
    char *envp[] = {"LUAPROXY_MAX_BODY_SIZE=2m", "LUAPROXY_WORKERS=6", NULL};
    char *a1[] = {"luaproxy", "--max-body-size", "3m", "app.lua"};
    ck_assert_int_eq(load(ARGC(a1), a1, envp), 0);
    ck_assert_uint_eq(cfg.max_body_size, 3 << 20);
    ck_assert_int_eq(cfg.workers, 6);

    char *a2[] = {"luaproxy", "-w", "2", "--max-body-size=100", "app.lua"};
    ck_assert_int_eq(load(ARGC(a2), a2, envp), 0);
    ck_assert_uint_eq(cfg.max_body_size, 100);
    ck_assert_int_eq(cfg.workers, 2);

    /* A repeated option: the last one wins, as on most command lines. */
    char *a3[] = {"luaproxy", "-w", "2", "-w", "4", "app.lua"};
    ck_assert_int_eq(load(ARGC(a3), a3, envp), 0);
    ck_assert_int_eq(cfg.workers, 4);
}
END_TEST

START_TEST(load_env_ignores_lookalikes)
{
    char *argv[] = {"luaproxy", "app.lua"};
    /* Neither a prefix nor a suffix of the real name may match, and flags
     * are command-line only. */
    char *envp[] = {"LUAPROXY_WORKERSX=9", "LUAPROXY_WORKER=9", "XLUAPROXY_WORKERS=9",
                    "LUAPROXY_CHECK=1", "LUAPROXY_HELP=1", "luaproxy_workers=9", NULL};
    ck_assert_int_eq(load(ARGC(argv), argv, envp), 0);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_int_eq(cfg.workers, ncpu > 0 ? ncpu : 1);
    ck_assert(!cfg.check_only && !cfg.help);
}
END_TEST

START_TEST(load_bad_env)
{
    char *argv[] = {"luaproxy", "app.lua"};
    char *e1[] = {"LUAPROXY_MAX_BODY_SIZE=2q", NULL};
    expect_einval(ARGC(argv), argv, e1, "LUAPROXY_MAX_BODY_SIZE");
    ck_assert_ptr_nonnull(strstr(err, "--max-body-size"));
    char *e2[] = {"LUAPROXY_WORKERS=0", NULL};
    expect_einval(ARGC(argv), argv, e2, "--workers");
}
END_TEST

START_TEST(load_bad_options)
{
    char *a1[] = {"luaproxy", "--bogus", "app.lua"};
    expect_einval(ARGC(a1), a1, NULL, "--bogus");
    char *a2[] = {"luaproxy", "-x", "app.lua"};
    expect_einval(ARGC(a2), a2, NULL, "-x");
    char *a3[] = {"luaproxy", "--workers", "0", "app.lua"};
    expect_einval(ARGC(a3), a3, NULL, "--workers");
    char *a4[] = {"luaproxy", "-w", "many", "app.lua"};
    expect_einval(ARGC(a4), a4, NULL, "--workers");
    char *a5[] = {"luaproxy", "app.lua", "--listen"};
    expect_einval(ARGC(a5), a5, NULL, "--listen");
    char *a6[] = {"luaproxy", "--header-timeout", "16q", "app.lua"};
    expect_einval(ARGC(a6), a6, NULL, "--header-timeout");
    char *a7[] = {"luaproxy", "--max-header-size=99999999999999999999", "app.lua"};
    expect_einval(ARGC(a7), a7, NULL, "--max-header-size");
    char *a8[] = {"luaproxy", "--listen", "1.2.3.4", "app.lua"};
    expect_einval(ARGC(a8), a8, NULL, "--listen");
    char *a9[] = {"luaproxy", "--log-level", "loud", "app.lua"};
    expect_einval(ARGC(a9), a9, NULL, "--log-level");
    char *a10[] = {"luaproxy", "--access-log=", "app.lua"};
    expect_einval(ARGC(a10), a10, NULL, "--access-log");
    char *a11[] = {"luaproxy", "--max-connections", "10x", "app.lua"};
    expect_einval(ARGC(a11), a11, NULL, "--max-connections");
    /* A prefix of a long option is not that option. */
    char *a12[] = {"luaproxy", "--max", "5", "app.lua"};
    expect_einval(ARGC(a12), a12, NULL, "--max");
}
END_TEST

START_TEST(load_script_count)
{
    char *a1[] = {"luaproxy", "-w", "2"};
    ck_assert_int_eq(load(ARGC(a1), a1, NULL), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "script"));
    ck_assert_ptr_null(strchr(err, '\n'));

    char *a2[] = {"luaproxy", "a.lua", "b.lua"};
    expect_einval(ARGC(a2), a2, NULL, "b.lua");

    /* After "--" even a dash-led name is the script. */
    char *a3[] = {"luaproxy", "-w", "2", "--", "-odd.lua"};
    ck_assert_int_eq(load(ARGC(a3), a3, NULL), 0);
    ck_assert_str_eq(cfg.script, "-odd.lua");
    ck_assert_int_eq(cfg.workers, 2);
}
END_TEST

START_TEST(usage_lists_options)
{
    const char *u = config_usage();
    static const char *names[] = {"--listen", "--workers", "--max-connections",
                                  "--header-timeout", "--idle-timeout", "--shutdown-timeout",
                                  "--max-header-size", "--max-body-size", "--shm-size",
                                  "--lua-time-limit", "--access-log", "--log-level", "--admin",
                                  "--pid-file", "--check", "--help", "--version"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        ck_assert_msg(strstr(u, names[i]) != NULL, "usage lacks %s", names[i]);
    ck_assert_ptr_nonnull(strstr(u, "LUAPROXY_"));
}
END_TEST

/* --listen is repeatable; LUAPROXY_LISTEN takes a comma-separated list;
 * the command line's addresses replace the environment's. */
START_TEST(listen_repeatable)
{
    char *a1[] = {"luaproxy", "-l", "127.0.0.1:7001", "--listen", "[::1]:7002", "--listen=:7003", "app.lua"};
    ck_assert_int_eq(load(ARGC(a1), a1, NULL), 0);
    ck_assert_int_eq(cfg.nlisten, 3);
    ck_assert_int_eq(cfg.listen[0].ss.ss_family, AF_INET);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 7001);
    ck_assert_int_eq(cfg.listen[1].ss.ss_family, AF_INET6);
    ck_assert_uint_eq(port_of(&cfg.listen[1]), 7002);
    ck_assert_uint_eq(port_of(&cfg.listen[2]), 7003);
    ck_assert_str_eq(cfg.listen[1].text, "[::1]:7002");

    char *a2[] = {"luaproxy", "app.lua"};
    ck_assert_int_eq(load(ARGC(a2), a2, NULL), 0);
    ck_assert_int_eq(cfg.nlisten, 1);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 8080);

    char *env[] = {"LUAPROXY_LISTEN=127.0.0.1:7101, [::1]:7102", NULL};
    ck_assert_int_eq(load(ARGC(a2), a2, env), 0);
    ck_assert_int_eq(cfg.nlisten, 2);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 7101);
    ck_assert_uint_eq(port_of(&cfg.listen[1]), 7102);
    ck_assert_int_eq(cfg.listen[1].ss.ss_family, AF_INET6);

    char *a3[] = {"luaproxy", "-l", "127.0.0.1:7201", "-l", "127.0.0.1:7202", "app.lua"};
    ck_assert_int_eq(load(ARGC(a3), a3, env), 0);
    ck_assert_int_eq(cfg.nlisten, 2);
    ck_assert_uint_eq(port_of(&cfg.listen[0]), 7201);
    ck_assert_uint_eq(port_of(&cfg.listen[1]), 7202);
}
END_TEST

START_TEST(listen_rejects)
{
    char *a1[] = {"luaproxy", "-l", "127.0.0.1:7001", "-l", "127.0.0.1:7001", "app.lua"};
    expect_einval(ARGC(a1), a1, NULL, "--listen");
    ck_assert_ptr_nonnull(strstr(err, "twice"));

    char *a2[] = {"luaproxy", "app.lua"};
    char *env[] = {"LUAPROXY_LISTEN=127.0.0.1:7101,nowhere", NULL};
    expect_einval(ARGC(a2), a2, env, "LUAPROXY_LISTEN");
    ck_assert_ptr_nonnull(strstr(err, "'nowhere'"));

    char *a3[] = {"luaproxy", "-l", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,127.0.0.1:5,"
                  "127.0.0.1:6,127.0.0.1:7,127.0.0.1:8,127.0.0.1:9,127.0.0.1:10,127.0.0.1:11,"
                  "127.0.0.1:12,127.0.0.1:13,127.0.0.1:14,127.0.0.1:15,127.0.0.1:16,127.0.0.1:17",
                  "app.lua"};
    expect_einval(ARGC(a3), a3, NULL, "more than 16");
}
END_TEST

/* The descriptor budget: 6 per connection (client, backend, two pipes)
 * plus a fixed spare, and its inverse. */
START_TEST(fd_budget)
{
    ck_assert_uint_eq(config_fds_needed(0), 64);
    ck_assert_uint_eq(config_fds_needed(1), 70);
    ck_assert_uint_eq(config_fds_needed(10000), 60064);
    ck_assert_uint_eq(config_connections_fitting(60064), 10000);
    ck_assert_uint_eq(config_connections_fitting(60063), 9999);
    ck_assert_uint_eq(config_connections_fitting(20000), 3322);
    ck_assert_uint_eq(config_connections_fitting(64), 0);
    ck_assert_uint_eq(config_connections_fitting(10), 0);
    for (uint64_t n = 0; n < 2000; n++) {
        ck_assert_uint_eq(config_connections_fitting(config_fds_needed(n)), n);
        ck_assert_uint_lt(config_connections_fitting(config_fds_needed(n) - 1), n + (n == 0));
    }
}
END_TEST

/* A message about a path names the option the way it was given: the
 * command line's name, or the environment variable when that set it. */
START_TEST(describe_names_the_origin)
{
    char out[128];
    char *a1[] = {"luaproxy", "--access-log", "/a.log", "app.lua"};
    ck_assert_int_eq(load(ARGC(a1), a1, NULL), 0);
    config_describe(&cfg, "access-log", cfg.access_log, out, sizeof(out));
    ck_assert_str_eq(out, "--access-log /a.log");

    char *a2[] = {"luaproxy", "app.lua"};
    char *env[] = {"LUAPROXY_ACCESS_LOG=/b.log", "LUAPROXY_PID_FILE=/p.pid", NULL};
    ck_assert_int_eq(load(ARGC(a2), a2, env), 0);
    config_describe(&cfg, "access-log", cfg.access_log, out, sizeof(out));
    ck_assert_str_eq(out, "LUAPROXY_ACCESS_LOG=/b.log");
    config_describe(&cfg, "pid-file", cfg.pid_file, out, sizeof(out));
    ck_assert_str_eq(out, "LUAPROXY_PID_FILE=/p.pid");

    /* The command line overrides the environment, and so does the name. */
    char *a3[] = {"luaproxy", "--pid-file", "/q.pid", "app.lua"};
    ck_assert_int_eq(load(ARGC(a3), a3, env), 0);
    config_describe(&cfg, "pid-file", cfg.pid_file, out, sizeof(out));
    ck_assert_str_eq(out, "--pid-file /q.pid");
    config_describe(&cfg, "access-log", cfg.access_log, out, sizeof(out));
    ck_assert_str_eq(out, "LUAPROXY_ACCESS_LOG=/b.log");
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *parse = tcase_create("parse");
    tcase_add_test(parse, duration_units);
    tcase_add_test(parse, duration_rejects);
    tcase_add_test(parse, duration_edges);
    tcase_add_test(parse, size_units);
    tcase_add_test(parse, size_rejects);
    tcase_add_test(parse, addr_ipv4);
    tcase_add_test(parse, addr_ipv6);
    tcase_add_test(parse, addr_any);
    tcase_add_test(parse, addr_rejects);
    tcase_add_test(parse, log_levels);
    suite_add_tcase(s, parse);

    TCase *ld = tcase_create("load");
    tcase_add_test(ld, load_defaults);
    tcase_add_test(ld, load_all_options);
    tcase_add_test(ld, load_equals_form);
    tcase_add_test(ld, load_flags);
    tcase_add_test(ld, load_env_applied);
    tcase_add_test(ld, load_command_line_wins);
    tcase_add_test(ld, load_env_ignores_lookalikes);
    tcase_add_test(ld, load_bad_env);
    tcase_add_test(ld, load_bad_options);
    tcase_add_test(ld, load_script_count);
    tcase_add_test(ld, usage_lists_options);
    tcase_add_test(ld, describe_names_the_origin);
    tcase_add_test(ld, listen_repeatable);
    tcase_add_test(ld, listen_rejects);
    tcase_add_test(ld, fd_budget);
    suite_add_tcase(s, ld);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
