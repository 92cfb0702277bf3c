/* Unit tests for core/upstream_set.c: the addresses a server may be given
 * as, and the replacement of an upstream's servers (the merge of an old and
 * a new list: what stays keeps its health and is its old self's successor,
 * what goes drains), the grace period that keeps the old array until the
 * exchanges begun before the change have ended, and the pointers of an
 * older script's servers moved past a husk. No pooled connections here: the
 * pools are empty, so nothing touches a loop. */
#include "upstream_set.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/un.h>

#include "balance.h"
#include "check_run.h"

static struct server_spec spec(const char *text)
{
    struct server_spec s;
    char host[128];
    int port;
    ck_assert_int_eq(server_spec_parse(text, &s, host, sizeof(host), &port), 0);
    return s;
}

static struct upstream *make(enum balance b, const char *const *addrs, int n)
{
    struct upstream *u = upstream_new("t", b, balance_policy(b));
    ck_assert_ptr_nonnull(u);
    for (int i = 0; i < n; i++) {
        struct server_spec s = spec(addrs[i]);
        ck_assert_int_eq(upstream_add_spec(u, &s), 0);
    }
    ck_assert_int_eq(upstream_finish(u), 0);
    return u;
}

static struct upstream *replace(struct upstream *u, const char *const *addrs, int n)
{
    struct server_spec specs[8];
    for (int i = 0; i < n; i++)
        specs[i] = spec(addrs[i]);
    struct upstream *husk = upstream_replace(u, specs, n);
    ck_assert_ptr_nonnull(husk);
    return husk;
}

START_TEST(addresses_unix_sockets_and_names)
{
    struct server_spec s;
    char host[64];
    int port = 0;
    ck_assert_int_eq(server_spec_parse("127.0.0.2:8080", &s, host, sizeof(host), &port), 0);
    ck_assert_int_eq(s.addr.ss_family, AF_INET);
    ck_assert_int_eq(ntohs(((struct sockaddr_in *)&s.addr)->sin_port), 8080);
    ck_assert_str_eq(s.host, "");
    ck_assert_int_eq(server_spec_parse("[::1]:81", &s, host, sizeof(host), &port), 0);
    ck_assert_int_eq(s.addr.ss_family, AF_INET6);
    ck_assert_int_eq(server_spec_parse("unix:/run/app.sock", &s, host, sizeof(host), &port), 0);
    ck_assert_int_eq(s.addr.ss_family, AF_UNIX);
    ck_assert_str_eq(((struct sockaddr_un *)&s.addr)->sun_path, "/run/app.sock");
    ck_assert_str_eq(s.name, "unix:/run/app.sock");
    ck_assert_str_eq(s.host, "localhost");
    /* A name: its host and port, to be resolved. */
    ck_assert_int_eq(server_spec_parse("api.internal:9000", &s, host, sizeof(host), &port),
                     -EAGAIN);
    ck_assert_str_eq(host, "api.internal");
    ck_assert_int_eq(port, 9000);
    const char *bad[] = {"127.0.0.1",     "127.0.0.1:",
                         "127.0.0.1:0",   "127.0.0.1:65536",
                         "127.0.0.1:80x", "unix:relative.sock",
                         "unix:",         "[::1]80",
                         "[zz]:80",       ":80",
                         "a:b:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(server_spec_parse(bad[i], &s, host, sizeof(host), &port) == -EINVAL,
                      "%s accepted", bad[i]);
}
END_TEST

START_TEST(a_name_answer_becomes_servers_named_by_address)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.3", &a.sin_addr);
    struct server_spec s;
    server_spec_from_addr(&s, (struct sockaddr *)&a, "api.test", 8080, 3);
    ck_assert_str_eq(s.name, "127.0.0.3:8080");
    ck_assert_str_eq(s.host, "api.test:8080"); /* the Host the backend is sent */
    ck_assert_int_eq(s.weight, 3);
    ck_assert_int_eq(ntohs(((struct sockaddr_in *)&s.addr)->sin_port), 8080);
}
END_TEST

START_TEST(what_stays_keeps_its_health_what_goes_drains)
{
    const char *before[] = {"127.0.0.1:80", "127.0.0.2:80"};
    const char *after[] = {"127.0.0.2:80", "127.0.0.3:80"};
    struct upstream *u = make(BALANCE_ROUND_ROBIN, before, 2);
    u->servers[1].down_until = 5000;
    u->servers[1].fails = 2;
    struct server *old = u->servers;
    struct upstream *husk = replace(u, after, 2);
    ck_assert_int_eq(u->nservers, 2);
    ck_assert_uint_eq(u->servers_gen, 1);
    ck_assert_str_eq(u->servers[0].name, "127.0.0.2:80");
    ck_assert_uint_eq(u->servers[0].down_until, 5000);
    ck_assert_int_eq(u->servers[0].fails, 2);
    ck_assert_uint_eq(u->servers[1].down_until, 0);
    ck_assert_ptr_eq(u->servers[0].up, u);
    ck_assert_ptr_eq(u->servers[0].pool.srv, &u->servers[0]);
    /* The old array is the husk's, still readable by what points into it. */
    ck_assert_ptr_eq(husk->servers, old);
    ck_assert(husk->retired);
    ck_assert_ptr_eq(old[0].up, husk);
    ck_assert_ptr_null(old[0].successor);               /* gone: drains */
    ck_assert_ptr_eq(old[1].successor, &u->servers[0]); /* stays */
    upstream_free(u);
}
END_TEST

START_TEST(the_old_array_waits_for_exchanges_begun_before)
{
    const char *a[] = {"127.0.0.1:80"}, *b[] = {"127.0.0.2:80"}, *c[] = {"127.0.0.3:80"};
    struct upstream *u = make(BALANCE_ROUND_ROBIN, a, 1);
    uint8_t before = upstream_epoch_enter();
    replace(u, b, 1);
    uint8_t after = upstream_epoch_enter();
    upstream_epoch_poll();
    upstream_reap(u);
    ck_assert_ptr_nonnull(u->husks); /* "before" may still use it */
    /* A second change while the first waits waits for the next period. */
    replace(u, c, 1);
    upstream_epoch_leave(before);
    upstream_epoch_poll();
    upstream_reap(u);
    ck_assert_ptr_nonnull(u->husks);
    ck_assert_ptr_null(u->husks->next); /* the first husk went */
    upstream_epoch_leave(after);        /* began before the second change */
    upstream_epoch_poll();
    upstream_reap(u);
    ck_assert_ptr_null(u->husks);
    upstream_free(u);
}
END_TEST

START_TEST(an_older_scripts_servers_follow_past_the_husk)
{
    const char *a[] = {"127.0.0.1:80", "127.0.0.2:80"}, *b[] = {"127.0.0.2:80"};
    struct upstream *cur = make(BALANCE_ROUND_ROBIN, a, 2);
    struct upstream *older = make(BALANCE_ROUND_ROBIN, a, 2);
    older->servers[0].successor = &cur->servers[0];
    older->servers[1].successor = &cur->servers[1];
    struct upstream *husk = replace(cur, b, 1);
    upstream_repoint(older, husk);
    ck_assert_ptr_null(older->servers[0].successor);
    ck_assert_ptr_eq(older->servers[1].successor, &cur->servers[0]);
    upstream_free(older);
    upstream_free(cur);
}
END_TEST

START_TEST(the_hash_ring_is_rebuilt_and_no_servers_choose_none)
{
    const char *a[] = {"127.0.0.1:80", "127.0.0.2:80"},
               *b[] = {"127.0.0.3:80", "127.0.0.4:80", "127.0.0.5:80"};
    struct upstream *u = make(BALANCE_HASH, a, 2);
    replace(u, b, 3);
    for (uint32_t key = 0; key < 200; key++) {
        struct server *s = balance_hash_find(u, key * 7919u, NULL, 0);
        ck_assert(s >= u->servers && s < u->servers + 3);
    }
    replace(u, b, 0);
    struct server *s = (struct server *)1;
    ck_assert_int_eq(balance_choose(NULL, u, NULL, 0, &s), 0);
    ck_assert_ptr_null(s);
    upstream_free(u);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        addresses_unix_sockets_and_names,
        a_name_answer_becomes_servers_named_by_address,
        what_stays_keeps_its_health_what_goes_drains,
        the_old_array_waits_for_exchanges_begun_before,
        an_older_scripts_servers_follow_past_the_husk,
        the_hash_ring_is_rebuilt_and_no_servers_choose_none,
    };
    return check_run_tests("upstream_set", NULL, NULL, 0, tests, CHECK_COUNT(tests));
}
