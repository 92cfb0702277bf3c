/* Unit tests for core/balance.c: every policy through the one interface
 * (balance_choose), on upstreams built as the script builds them
 * (upstream_new, upstream_add_server, upstream_finish). The script side is
 * absent here: a NULL script_req gives the hash policy key 0 and the Lua
 * policy (lua/upstreams.c) no choice; the hash ring itself is reached with
 * its key through balance_hash_find. */
#include "balance.h"
#include "upstream_set.h"

#include "upstreams.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define NOW 1000000 /* ms; anything past the servers' down_until values below */

/* Servers 127.0.0.1:ports[i] (9001, 9002, ... when ports is NULL), weight 1
 * unless weights says otherwise. */
static struct upstream *make_on(enum balance b, int n, const int *ports, const int *weights)
{
    struct upstream *u = upstream_new("t", b, b == BALANCE_LUA ? &upstreams_lua_policy : balance_policy(b));
    ck_assert_ptr_nonnull(u);
    for (int i = 0; i < n; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", ports ? ports[i] : 9001 + i);
        ck_assert_int_eq(upstream_add_server(u, addr, weights ? weights[i] : 1), 0);
    }
    ck_assert_int_eq(upstream_finish(u), 0);
    u->rand_state = 0x9E3779B97F4A7C15ULL; /* the same sequence on every run */
    return u;
}

static struct upstream *make(enum balance b, int n, const int *weights)
{
    return make_on(b, n, NULL, weights);
}

/* The index of the server chosen, -1 for none; the call must succeed. */
static int choose(struct upstream *u, const bool *tried)
{
    struct server *s = (struct server *)1;
    ck_assert_int_eq(balance_choose(NULL, u, tried, NOW, &s), 0);
    if (!s) return -1;
    ck_assert(s >= u->servers && s < u->servers + u->nservers);
    return (int)(s - u->servers);
}

static const enum balance builtin[] = {BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_RANDOM,
                                       BALANCE_HASH};
#define NBUILTIN (int)(sizeof(builtin) / sizeof(builtin[0]))

START_TEST(policies_are_picked_by_name)
{
    static const char *const names[] = {"round_robin", "least_conn", "random", "hash", "lua"};
    for (enum balance b = BALANCE_ROUND_ROBIN; b <= BALANCE_LUA; b++) {
        struct upstream *u = make(b, 1, NULL);
        if (b != BALANCE_LUA) ck_assert_ptr_eq(u->policy, balance_policy(b));
        ck_assert_str_eq(u->policy->name, names[b]);
        ck_assert_ptr_nonnull(u->policy->choose);
        upstream_free(u);
    }
}
END_TEST

START_TEST(round_robin_weights_interleave)
{
    struct upstream *u = make(BALANCE_ROUND_ROBIN, 2, (const int[]){3, 1});
    char got[17] = {0};
    for (int i = 0; i < 16; i++) got[i] = (char)('a' + choose(u, NULL));
    ck_assert_str_eq(got, "aabaaabaaabaaaba");
    upstream_free(u);
}
END_TEST

START_TEST(round_robin_equal_weights_rotate)
{
    struct upstream *u = make(BALANCE_ROUND_ROBIN, 3, NULL);
    for (int i = 0; i < 9; i++) ck_assert_int_eq(choose(u, NULL), i % 3);
    upstream_free(u);
}
END_TEST

START_TEST(least_conn_prefers_fewer_active_per_weight)
{
    struct upstream *u = make(BALANCE_LEAST_CONN, 3, (const int[]){1, 2, 1});
    /* 2/1, 3/2, 2/1: the heavier server carries more and is still the least loaded. */
    u->servers[0].active = 2;
    u->servers[1].active = 3;
    u->servers[2].active = 2;
    for (int i = 0; i < 10; i++) ck_assert_int_eq(choose(u, NULL), 1);
    u->servers[2].active = 1; /* 1/1 < 3/2 */
    for (int i = 0; i < 10; i++) ck_assert_int_eq(choose(u, NULL), 2);
    upstream_free(u);
}
END_TEST

START_TEST(least_conn_spreads_ties)
{
    struct upstream *u = make(BALANCE_LEAST_CONN, 3, NULL);
    int n[3] = {0};
    for (int i = 0; i < 30; i++) n[choose(u, NULL)]++;
    for (int i = 0; i < 3; i++) ck_assert_int_eq(n[i], 10);
    upstream_free(u);
}
END_TEST

START_TEST(p2c_never_down_and_spreads)
{
    struct upstream *u = make(BALANCE_RANDOM, 4, NULL);
    u->servers[2].down_until = NOW + 5000;
    int n[4] = {0};
    for (int i = 0; i < 3000; i++) n[choose(u, NULL)]++;
    ck_assert_int_eq(n[2], 0);
    for (int i = 0; i < 4; i++)
        if (i != 2) ck_assert_msg(n[i] > 700 && n[i] < 1300, "server %d chosen %d times of 3000", i, n[i]);
    upstream_free(u);
}
END_TEST

START_TEST(p2c_keeps_the_less_loaded)
{
    /* A busy server is chosen only when both draws land on it: about 1/9. */
    struct upstream *u = make(BALANCE_RANDOM, 3, NULL);
    u->servers[0].active = 50;
    int n[3] = {0};
    for (int i = 0; i < 900; i++) n[choose(u, NULL)]++;
    ck_assert_msg(n[0] > 40 && n[0] < 180, "the busy server chosen %d times of 900", n[0]);
    upstream_free(u);
}
END_TEST

START_TEST(p2c_follows_weights)
{
    struct upstream *u = make(BALANCE_RANDOM, 2, (const int[]){3, 1});
    int n[2] = {0};
    for (int i = 0; i < 4000; i++) n[choose(u, NULL)]++;
    ck_assert_msg(n[0] > 2 * n[1], "weights 3:1 chosen %d:%d", n[0], n[1]);
    upstream_free(u);
}
END_TEST

static int hash_index(struct upstream *u, uint32_t key)
{
    struct server *s = balance_hash_find(u, key, NULL, NOW);
    ck_assert_ptr_nonnull(s);
    return (int)(s - u->servers);
}

static uint32_t key_of(int i)
{
    char k[32];
    int len = snprintf(k, sizeof(k), "user-%d", i);
    return upstream_hash(k, (size_t)len);
}

START_TEST(hash_same_key_same_server)
{
    struct upstream *u = make(BALANCE_HASH, 4, NULL);
    struct upstream *v = make(BALANCE_HASH, 4, NULL);
    int n[4] = {0};
    for (int i = 0; i < 4000; i++) {
        int s = hash_index(u, key_of(i));
        ck_assert_int_eq(hash_index(u, key_of(i)), s);
        ck_assert_int_eq(hash_index(v, key_of(i)), s); /* another worker's ring agrees */
        n[s]++;
    }
    for (int i = 0; i < 4; i++) ck_assert_msg(n[i] > 600 && n[i] < 1400, "server %d has %d of 4000 keys", i, n[i]);
    /* Through the interface, without a script: key 0. */
    for (int i = 0; i < 3; i++) ck_assert_int_eq(choose(u, NULL), hash_index(u, 0));
    upstream_free(u);
    upstream_free(v);
}
END_TEST

START_TEST(hash_removing_a_server_moves_its_keys_only)
{
    /* 127.0.0.1:9003 leaves: the servers after it change position, not their keys. */
    struct upstream *four = make(BALANCE_HASH, 4, NULL);
    struct upstream *three = make_on(BALANCE_HASH, 3, (const int[]){9001, 9002, 9004}, NULL);
    static const int now_at[4] = {0, 1, -1, 2};
    int moved = 0;
    for (int i = 0; i < 4000; i++) {
        int before = hash_index(four, key_of(i)), after = hash_index(three, key_of(i));
        if (before == 2)
            moved++;
        else
            ck_assert_int_eq(after, now_at[before]);
    }
    ck_assert_msg(moved > 600 && moved < 1400, "%d of 4000 keys moved", moved);
    upstream_free(four);
    upstream_free(three);
}
END_TEST

START_TEST(hash_skips_tried_and_down_along_the_ring)
{
    struct upstream *u = make(BALANCE_HASH, 4, NULL);
    for (int i = 0; i < 200; i++) {
        uint32_t key = key_of(i);
        int first = hash_index(u, key);
        bool tried[4] = {false};
        tried[first] = true;
        struct server *s = balance_hash_find(u, key, tried, NOW);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_ne((int)(s - u->servers), first);
        /* Down instead of tried: the same next server. */
        u->servers[first].down_until = NOW + 1;
        ck_assert_ptr_eq(balance_hash_find(u, key, NULL, NOW), s);
        u->servers[first].down_until = 0;
    }
    upstream_free(u);
}
END_TEST

START_TEST(hash_weight_takes_more_keys)
{
    struct upstream *u = make(BALANCE_HASH, 2, (const int[]){3, 1});
    int n[2] = {0};
    for (int i = 0; i < 4000; i++) n[hash_index(u, key_of(i))]++;
    ck_assert_msg(n[0] > 2 * n[1], "weights 3:1 got %d:%d keys", n[0], n[1]);
    upstream_free(u);
}
END_TEST

/* Every built-in policy, looped over builtin[]: tried servers are skipped. */
START_TEST(tried_servers_are_skipped)
{
    struct upstream *u = make(builtin[_i], 4, NULL);
    for (int keep = 0; keep < 4; keep++) {
        bool tried[4] = {true, true, true, true};
        tried[keep] = false;
        for (int k = 0; k < 20; k++) ck_assert_int_eq(choose(u, tried), keep);
    }
    bool some[4] = {true, false, true, false};
    for (int k = 0; k < 40; k++) {
        int s = choose(u, some);
        ck_assert(s == 1 || s == 3);
    }
    bool all[4] = {true, true, true, true};
    ck_assert_int_eq(choose(u, all), -1);
    upstream_free(u);
}
END_TEST

START_TEST(down_servers_are_skipped)
{
    struct upstream *u = make(builtin[_i], 3, NULL);
    u->servers[0].down_until = NOW + 1;
    u->servers[2].down_until = NOW + 1;
    for (int k = 0; k < 20; k++) ck_assert_int_eq(choose(u, NULL), 1);
    u->servers[2].down_until = NOW; /* the time is up: back in rotation */
    bool seen[3] = {false};
    for (int k = 0; k < 60; k++) seen[choose(u, NULL)] = true;
    ck_assert(!seen[0]);
    if (builtin[_i] != BALANCE_HASH) ck_assert(seen[1] && seen[2]); /* one key stays on one server */
    upstream_free(u);
}
END_TEST

START_TEST(all_down_gives_none)
{
    struct upstream *u = make(builtin[_i], 3, NULL);
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < u->max_fails; k++) upstream_fail(&u->servers[i], NOW - 1);
    for (int i = 0; i < 3; i++) ck_assert(!upstream_server_up(&u->servers[i], NOW));
    ck_assert_int_eq(choose(u, NULL), -1);
    upstream_ok(&u->servers[1]);
    ck_assert_int_eq(choose(u, NULL), 1);
    upstream_free(u);
}
END_TEST

START_TEST(lua_without_a_script_chooses_none)
{
    struct upstream *u = make(BALANCE_LUA, 2, NULL);
    ck_assert_int_eq(choose(u, NULL), -1);
    upstream_free(u);
}
END_TEST

static Suite *balance_suite(void)
{
    Suite *s = suite_create("balance");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, policies_are_picked_by_name);
    tcase_add_test(tc, round_robin_weights_interleave);
    tcase_add_test(tc, round_robin_equal_weights_rotate);
    tcase_add_test(tc, least_conn_prefers_fewer_active_per_weight);
    tcase_add_test(tc, least_conn_spreads_ties);
    tcase_add_test(tc, p2c_never_down_and_spreads);
    tcase_add_test(tc, p2c_keeps_the_less_loaded);
    tcase_add_test(tc, p2c_follows_weights);
    tcase_add_test(tc, hash_same_key_same_server);
    tcase_add_test(tc, hash_removing_a_server_moves_its_keys_only);
    tcase_add_test(tc, hash_skips_tried_and_down_along_the_ring);
    tcase_add_test(tc, hash_weight_takes_more_keys);
    tcase_add_loop_test(tc, tried_servers_are_skipped, 0, NBUILTIN);
    tcase_add_loop_test(tc, down_servers_are_skipped, 0, NBUILTIN);
    tcase_add_loop_test(tc, all_down_gives_none, 0, NBUILTIN);
    tcase_add_test(tc, lua_without_a_script_chooses_none);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(balance_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
