/* Unit tests for core/shm.c: shared dicts in one MAP_SHARED region, guarded
 * by a robust process-shared mutex. */
#include "shm.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct shm *shm;
static struct shm_dict *d;
static struct shm_buf buf;

static void setup(void)
{
    ck_assert_int_eq(shm_create(16 * 1024 * 1024, &shm), 0);
    d = shm_dict(shm, "test");
    ck_assert_ptr_nonnull(d);
    memset(&buf, 0, sizeof(buf));
}

static void teardown(void)
{
    free(buf.data);
    shm_destroy(shm);
}

/* Value constructors and key-as-C-string wrappers, to keep tests short. */
static struct shm_value str(const char *s)
{
    return (struct shm_value){.type = SHM_STRING, .str = s, .len = strlen(s)};
}
static struct shm_value num(double n)
{
    return (struct shm_value){.type = SHM_NUMBER, .num = n};
}
static struct shm_value boolean(bool b)
{
    return (struct shm_value){.type = SHM_BOOLEAN, .boolean = b};
}

static int set(struct shm_dict *dict, const char *k, struct shm_value v, uint64_t ttl, uint64_t now)
{
    return shm_set(dict, k, strlen(k), &v, ttl, now);
}
static int add(struct shm_dict *dict, const char *k, struct shm_value v, uint64_t ttl, uint64_t now)
{
    return shm_add(dict, k, strlen(k), &v, ttl, now);
}
static int get(struct shm_dict *dict, const char *k, uint64_t now, struct shm_value *out)
{
    return shm_get(dict, k, strlen(k), now, out, &buf);
}
static int del(struct shm_dict *dict, const char *k)
{
    return shm_delete(dict, k, strlen(k), 0);
}

/* ---- basic operations --------------------------------------------------- */

START_TEST(delete_of_expired_key_is_not_found)
{
    ck_assert_int_eq(set(d, "t", str("v"), 500, 1000), 0);
    ck_assert_int_eq(shm_delete(d, "t", 1, 1499), 0);
    ck_assert_int_eq(set(d, "t", str("v"), 500, 1000), 0);
    ck_assert_int_eq(shm_delete(d, "t", 1, 1500), -ENOENT);
}
END_TEST

START_TEST(types_round_trip)
{
    struct shm_value v;
    ck_assert_int_eq(get(d, "s", 0, &v), -ENOENT);
    ck_assert_int_eq(set(d, "s", str("hello"), 0, 0), 0);
    ck_assert_int_eq(set(d, "n", num(-2.5), 0, 0), 0);
    ck_assert_int_eq(set(d, "t", boolean(true), 0, 0), 0);
    ck_assert_int_eq(set(d, "f", boolean(false), 0, 0), 0);
    ck_assert_int_eq(set(d, "e", str(""), 0, 0), 0);

    ck_assert_int_eq(get(d, "s", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_STRING);
    ck_assert_uint_eq(v.len, 5);
    ck_assert_str_eq(v.str, "hello");
    ck_assert_int_eq(get(d, "n", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_NUMBER);
    ck_assert_double_eq(v.num, -2.5);
    ck_assert_int_eq(get(d, "t", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_BOOLEAN);
    ck_assert(v.boolean);
    ck_assert_int_eq(get(d, "f", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_BOOLEAN);
    ck_assert(!v.boolean);
    ck_assert_int_eq(get(d, "e", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_STRING);
    ck_assert_uint_eq(v.len, 0);
    ck_assert_uint_eq(shm_count(d, 0), 5);
}
END_TEST

START_TEST(overwrite_changes_type)
{
    struct shm_value v;
    ck_assert_int_eq(set(d, "k", str("a long string value that takes a bigger block"), 0, 0), 0);
    ck_assert_int_eq(set(d, "k", num(42), 0, 0), 0);
    ck_assert_int_eq(get(d, "k", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_NUMBER);
    ck_assert_double_eq(v.num, 42);
    ck_assert_int_eq(set(d, "k", str("x"), 0, 0), 0);
    ck_assert_int_eq(get(d, "k", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_STRING);
    ck_assert_str_eq(v.str, "x");
    ck_assert_uint_eq(shm_count(d, 0), 1);
}
END_TEST

START_TEST(binary_keys_and_values)
{
    /* Keys and values are counted bytes: NULs inside are data. */
    static const char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'}, val[] = {'x', 0, 'y', 0};
    struct shm_value v = {.type = SHM_STRING, .str = val, .len = sizeof(val)}, out;
    ck_assert_int_eq(shm_set(d, k1, sizeof(k1), &v, 0, 0), 0);
    ck_assert_int_eq(shm_get(d, k2, sizeof(k2), 0, &out, &buf), -ENOENT);
    ck_assert_int_eq(shm_get(d, k1, 1, 0, &out, &buf), -ENOENT);
    ck_assert_int_eq(shm_get(d, k1, sizeof(k1), 0, &out, &buf), 0);
    ck_assert_uint_eq(out.len, sizeof(val));
    ck_assert(memcmp(out.str, val, sizeof(val)) == 0);
}
END_TEST

START_TEST(large_value)
{
    size_t n = 300 * 1000;
    char *big = malloc(n);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i < n; i++) big[i] = (char)('a' + i % 26);
    struct shm_value v = {.type = SHM_STRING, .str = big, .len = n}, out;
    ck_assert_int_eq(shm_set(d, "big", 3, &v, 0, 0), 0);
    ck_assert_int_eq(get(d, "big", 0, &out), 0);
    ck_assert_uint_eq(out.len, n);
    ck_assert(memcmp(out.str, big, n) == 0);
    ck_assert_uint_ge(buf.cap, n);
    free(big);
}
END_TEST

START_TEST(delete_and_nil)
{
    struct shm_value v;
    ck_assert_int_eq(del(d, "missing"), -ENOENT);
    ck_assert_int_eq(set(d, "a", num(1), 0, 0), 0);
    ck_assert_int_eq(set(d, "b", num(2), 0, 0), 0);
    ck_assert_int_eq(del(d, "a"), 0);
    ck_assert_int_eq(get(d, "a", 0, &v), -ENOENT);
    ck_assert_int_eq(del(d, "a"), -ENOENT);
    /* set(k, nil) deletes, and is fine on a missing key. */
    struct shm_value nil = {.type = SHM_NIL};
    ck_assert_int_eq(shm_set(d, "b", 1, &nil, 0, 0), 0);
    ck_assert_int_eq(get(d, "b", 0, &v), -ENOENT);
    ck_assert_int_eq(shm_set(d, "zz", 2, &nil, 0, 0), 0);
    ck_assert_uint_eq(shm_count(d, 0), 0);
}
END_TEST

START_TEST(add_semantics)
{
    struct shm_value v;
    ck_assert_int_eq(add(d, "k", str("first"), 0, 0), 0);
    ck_assert_int_eq(add(d, "k", str("second"), 0, 0), -EEXIST);
    ck_assert_int_eq(get(d, "k", 0, &v), 0);
    ck_assert_str_eq(v.str, "first");

    /* A live key with a TTL is still there; an expired one is not. */
    ck_assert_int_eq(add(d, "t", num(1), 500, 1000), 0);
    ck_assert_int_eq(add(d, "t", num(2), 0, 1499), -EEXIST);
    ck_assert_int_eq(add(d, "t", num(3), 0, 1500), 0);
    ck_assert_int_eq(get(d, "t", 99999, &v), 0); /* no TTL any more */
    ck_assert_double_eq(v.num, 3);
}
END_TEST

START_TEST(ttl_expiry)
{
    struct shm_value v;
    ck_assert_int_eq(set(d, "k", str("v"), 500, 1000), 0);
    ck_assert_int_eq(get(d, "k", 1499, &v), 0);
    ck_assert_str_eq(v.str, "v");
    ck_assert_uint_eq(shm_count(d, 1499), 1);
    ck_assert_uint_eq(shm_count(d, 1500), 0);
    ck_assert_int_eq(get(d, "k", 1500, &v), -ENOENT);
    /* ttl 0 never expires; a later set replaces the TTL. */
    ck_assert_int_eq(set(d, "p", num(1), 0, 1000), 0);
    ck_assert_int_eq(get(d, "p", UINT64_MAX, &v), 0);
    ck_assert_int_eq(set(d, "q", num(1), 100, 1000), 0);
    ck_assert_int_eq(set(d, "q", num(2), 1000, 1050), 0);
    ck_assert_int_eq(get(d, "q", 2049, &v), 0);
    ck_assert_double_eq(v.num, 2);
    ck_assert_int_eq(get(d, "q", 2050, &v), -ENOENT);
}
END_TEST

START_TEST(incr_semantics)
{
    double r = 0;
    ck_assert_int_eq(shm_incr(d, "c", 1, 1, false, 0, 0, 0, &r), -ENOENT);
    ck_assert_int_eq(shm_count(d, 0), 0);
    ck_assert_int_eq(shm_incr(d, "c", 1, 5, true, 10, 0, 0, &r), 0);
    ck_assert_double_eq(r, 15);
    ck_assert_int_eq(shm_incr(d, "c", 1, -20, false, 0, 0, 0, &r), 0);
    ck_assert_double_eq(r, -5);
    ck_assert_int_eq(shm_incr(d, "c", 1, 0.5, true, 1000, 0, 0, &r), 0); /* init ignored */
    ck_assert_double_eq(r, -4.5);
    struct shm_value v;
    ck_assert_int_eq(get(d, "c", 0, &v), 0);
    ck_assert_int_eq(v.type, SHM_NUMBER);
    ck_assert_double_eq(v.num, -4.5);

    ck_assert_int_eq(set(d, "s", str("12"), 0, 0), 0);
    ck_assert_int_eq(shm_incr(d, "s", 1, 1, true, 0, 0, 0, &r), -EINVAL);
    ck_assert_int_eq(set(d, "b", boolean(true), 0, 0), 0);
    ck_assert_int_eq(shm_incr(d, "b", 1, 1, false, 0, 0, 0, &r), -EINVAL);
    ck_assert_int_eq(get(d, "s", 0, &v), 0);
    ck_assert_str_eq(v.str, "12");

    /* init with a TTL creates a key that expires; an expired counter is
     * missing again. */
    ck_assert_int_eq(shm_incr(d, "t", 1, 1, true, 0, 100, 1000, &r), 0);
    ck_assert_int_eq(shm_incr(d, "t", 1, 1, false, 0, 0, 1099, &r), 0);
    ck_assert_double_eq(r, 2);
    ck_assert_int_eq(shm_incr(d, "t", 1, 1, false, 0, 0, 1100, &r), -ENOENT);
}
END_TEST

START_TEST(keys_and_max)
{
    char k[32];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof(k), "key-%d", i);
        ck_assert_int_eq(set(d, k, num(i), i < 30 ? 10 : 0, 0), 0);
    }
    /* At now=10 the first 30 have expired. */
    ck_assert_uint_eq(shm_count(d, 10), 70);
    ck_assert_int_eq(shm_keys(d, 0, 10, &buf), 70);
    char seen[100] = {0};
    size_t off = 0;
    for (int i = 0; i < 70; i++) {
        uint32_t len;
        memcpy(&len, buf.data + off, 4);
        ck_assert_uint_lt(len, sizeof(k));
        memcpy(k, buf.data + off + 4, len);
        k[len] = '\0';
        off += 4 + len;
        int n = -1;
        ck_assert_int_eq(sscanf(k, "key-%d", &n), 1);
        ck_assert_int_ge(n, 30);
        ck_assert_int_lt(n, 100);
        ck_assert_msg(!seen[n], "key %d listed twice", n);
        seen[n] = 1;
    }
    ck_assert_int_eq(shm_keys(d, 7, 10, &buf), 7);
    ck_assert_int_eq(shm_keys(d, 70, 10, &buf), 70);
    ck_assert_int_eq(shm_keys(d, 1000, 10, &buf), 70);
    ck_assert_int_eq(shm_keys(d, 0, 0, &buf), 100);
    ck_assert_int_eq(shm_keys(shm_dict(shm, "empty"), 0, 0, &buf), 0);
}
END_TEST

/* ---- dicts -------------------------------------------------------------- */

START_TEST(dicts_are_independent)
{
    struct shm_dict *a = shm_dict(shm, "alpha"), *b = shm_dict(shm, "beta");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_ne(a, b);
    ck_assert_ptr_eq(shm_dict(shm, "alpha"), a);
    ck_assert_ptr_eq(shm_dict(shm, "test"), d);

    struct shm_value v;
    ck_assert_int_eq(set(a, "k", str("in alpha"), 0, 0), 0);
    ck_assert_int_eq(get(b, "k", 0, &v), -ENOENT);
    ck_assert_int_eq(set(b, "k", num(7), 0, 0), 0);
    ck_assert_int_eq(get(a, "k", 0, &v), 0);
    ck_assert_str_eq(v.str, "in alpha");
    ck_assert_int_eq(del(b, "k"), 0);
    ck_assert_int_eq(get(a, "k", 0, &v), 0);
    ck_assert_uint_eq(shm_count(a, 0), 1);
    ck_assert_uint_eq(shm_count(b, 0), 0);
}
END_TEST

START_TEST(dict_limits)
{
    char name[80];
    ck_assert_ptr_null(shm_dict(shm, ""));
    memset(name, 'n', 64);
    name[64] = '\0';
    ck_assert_ptr_null(shm_dict(shm, name)); /* 64 bytes: one too long */
    name[63] = '\0';
    struct shm_dict *longest = shm_dict(shm, name);
    ck_assert_ptr_nonnull(longest);
    ck_assert_ptr_eq(shm_dict(shm, name), longest);
    /* "test" and the 63-byte one exist: 62 more fill the 64 slots. */
    for (int i = 0; i < 62; i++) {
        snprintf(name, sizeof(name), "dict%d", i);
        ck_assert_ptr_nonnull(shm_dict(shm, name));
    }
    ck_assert_ptr_null(shm_dict(shm, "one-too-many"));
    ck_assert_ptr_nonnull(shm_dict(shm, "dict5")); /* existing ones still found */
}
END_TEST

/* ---- memory ------------------------------------------------------------- */

START_TEST(exhaustion_and_reuse)
{
    struct shm *small;
    ck_assert_int_eq(shm_create(64 * 1024, &small), 0);
    struct shm_dict *sd = shm_dict(small, "s");
    ck_assert_ptr_nonnull(sd);
    size_t free0 = shm_free_bytes(small);
    ck_assert_uint_gt(free0, 0);

    char k[32], val[100];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    int n = 0, rc;
    while ((rc = set(sd, (snprintf(k, sizeof(k), "k%06d", n), k), str(val), 0, 0)) == 0) {
        n++;
        ck_assert_int_lt(n, 64 * 1024); /* it must run out long before this */
    }
    ck_assert_int_eq(rc, -ENOMEM);
    ck_assert_int_gt(n, 50);
    ck_assert_uint_lt(shm_free_bytes(small), free0);
    ck_assert_uint_eq(shm_count(sd, 0), (size_t)n);

    /* Everything stored is intact, and a failed set changed nothing. */
    struct shm_value v;
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof(k), "k%06d", i);
        ck_assert_int_eq(get(sd, k, 0, &v), 0);
        ck_assert_str_eq(v.str, val);
    }
    snprintf(k, sizeof(k), "k%06d", n);
    ck_assert_int_eq(get(sd, k, 0, &v), -ENOENT);

    /* Deleting makes room for as many entries of the same size. */
    size_t before = shm_free_bytes(small);
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof(k), "k%06d", i);
        ck_assert_int_eq(del(sd, k), 0);
    }
    ck_assert_uint_gt(shm_free_bytes(small), before);
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof(k), "new%04d", i);
        ck_assert_int_eq(set(sd, k, str(val), 0, 0), 0);
    }
    ck_assert_int_eq(set(sd, "one-more", str(val), 0, 0), -ENOMEM);
    ck_assert_uint_eq(shm_count(sd, 0), (size_t)n);
    shm_destroy(small);
}
END_TEST

START_TEST(exhaustion_sweeps_expired)
{
    /* When the region is full, entries whose TTL has passed make room. */
    struct shm *small;
    ck_assert_int_eq(shm_create(64 * 1024, &small), 0);
    struct shm_dict *sd = shm_dict(small, "s");
    char k[32], val[100];
    memset(val, 'v', sizeof(val) - 1);
    val[sizeof(val) - 1] = '\0';
    int n = 0;
    while (set(sd, (snprintf(k, sizeof(k), "t%06d", n), k), str(val), 100, 1000) == 0) n++;
    ck_assert_int_gt(n, 50);
    ck_assert_int_eq(set(sd, "late", str(val), 0, 1099), -ENOMEM);
    ck_assert_int_eq(set(sd, "late", str(val), 0, 1100), 0);
    struct shm_value v;
    ck_assert_int_eq(get(sd, "late", 5000, &v), 0);
    shm_destroy(small);
}
END_TEST

START_TEST(many_keys)
{
    /* Far past the first bucket arrays: every key must survive each rehash. */
    enum { N = 50000 };
    char k[32];
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key:%d", i);
        ck_assert_int_eq(set(d, k, num(i * 3), 0, 0), 0);
    }
    ck_assert_uint_eq(shm_count(d, 0), N);
    ck_assert_int_eq(shm_keys(d, 0, 0, &buf), N);
    struct shm_value v;
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key:%d", i);
        ck_assert_int_eq(get(d, k, 0, &v), 0);
        ck_assert_double_eq(v.num, i * 3);
    }
    for (int i = 0; i < N; i += 2) {
        snprintf(k, sizeof(k), "key:%d", i);
        ck_assert_int_eq(del(d, k), 0);
    }
    ck_assert_uint_eq(shm_count(d, 0), N / 2);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof(k), "key:%d", i);
        ck_assert_int_eq(get(d, k, 0, &v), i % 2 ? 0 : -ENOENT);
    }
}
END_TEST

/* ---- across processes --------------------------------------------------- */

static void wait_children(pid_t *pids, int n)
{
    for (int i = 0; i < n; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed (%#x)",
                      i, status);
    }
}

static void incr_children(struct shm_dict *dict, const char *key, int nchild, int times)
{
    pid_t pids[16];
    for (int c = 0; c < nchild; c++) {
        pids[c] = fork();
        ck_assert_int_ne(pids[c], -1);
        if (pids[c] == 0) {
            double r;
            for (int i = 0; i < times; i++)
                if (shm_incr(dict, key, strlen(key), 1, true, 0, 0, 0, &r)) _exit(1);
            _exit(0);
        }
    }
    wait_children(pids, nchild);
}

START_TEST(cross_process_incr)
{
    alarm(60);
    incr_children(d, "hits", 8, 10000);
    struct shm_value v;
    ck_assert_int_eq(get(d, "hits", 0, &v), 0);
    ck_assert_double_eq(v.num, 80000);
}
END_TEST

START_TEST(children_see_parent_writes)
{
    ck_assert_int_eq(set(d, "from-parent", str("hi"), 0, 0), 0);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        struct shm_value v;
        struct shm_dict *same = shm_dict(shm, "test");
        if (same != d || get(d, "from-parent", 0, &v) || strcmp(v.str, "hi")) _exit(1);
        _exit(set(shm_dict(shm, "made-by-child"), "c", num(9), 0, 0) ? 1 : 0);
    }
    wait_children(&pid, 1);
    struct shm_value v;
    ck_assert_int_eq(get(shm_dict(shm, "made-by-child"), "c", 0, &v), 0);
    ck_assert_double_eq(v.num, 9);
}
END_TEST

static void on_alarm(int sig)
{
    static const char msg[] = "shm: lock still held by a dead child (alarm)\n";
    ssize_t rc = write(2, msg, sizeof(msg) - 1);
    (void)rc;
    _exit(3);
}

/* Children killed with SIGKILL in the middle of a stream of sets (so, often
 * while they hold the lock) must not wedge the survivors: the parent keeps
 * reading and writing, bounded by alarm(), and at the end the lock must still
 * exclude: concurrent increments lose nothing. */
START_TEST(robust_lock_survives_killed_writer)
{
    signal(SIGALRM, on_alarm);
    alarm(60);
    static char val[4096];
    memset(val, 'x', sizeof(val));
    struct shm_value big = {.type = SHM_STRING, .str = val, .len = sizeof(val)}, v;
    ck_assert_int_eq(set(d, "stable", str("ok"), 0, 0), 0);

    for (int round = 0; round < 40; round++) {
        pid_t pid = fork();
        ck_assert_int_ne(pid, -1);
        if (pid == 0) {
            char k[16];
            for (unsigned i = 0;; i++) {
                snprintf(k, sizeof(k), "w%u", i % 64);
                shm_set(d, k, strlen(k), &big, 0, 0);
            }
        }
        /* Let the child get going, contending with us, then kill it. */
        for (int i = 0; i < 200; i++) {
            ck_assert_int_eq(get(d, "stable", 0, &v), 0);
            ck_assert_str_eq(v.str, "ok");
        }
        struct timespec ts = {0, (round % 5) * 200000L};
        nanosleep(&ts, NULL);
        ck_assert_int_eq(kill(pid, SIGKILL), 0);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        ck_assert_int_eq(get(d, "stable", 0, &v), 0);
        ck_assert_str_eq(v.str, "ok");
        ck_assert_int_eq(set(d, "after", num(round), 0, 0), 0);
        ck_assert_int_eq(get(d, "after", 0, &v), 0);
        ck_assert_double_eq(v.num, round);
    }
    ck_assert_uint_le(shm_count(d, 0), 2 + 64);
    incr_children(d, "after-kills", 4, 10000);
    ck_assert_int_eq(get(d, "after-kills", 0, &v), 0);
    ck_assert_double_eq(v.num, 40000);
    alarm(0);
}
END_TEST

START_TEST(create_rejects_impossible_size)
{
    struct shm *huge = NULL;
    ck_assert_int_lt(shm_create(SIZE_MAX - 4095, &huge), 0);
    ck_assert_ptr_null(huge);
}
END_TEST

static Suite *shm_suite(void)
{
    Suite *s = suite_create("shm");
    TCase *ops = tcase_create("ops");
    tcase_add_checked_fixture(ops, setup, teardown);
    tcase_add_test(ops, delete_of_expired_key_is_not_found);
    tcase_add_test(ops, types_round_trip);
    tcase_add_test(ops, overwrite_changes_type);
    tcase_add_test(ops, binary_keys_and_values);
    tcase_add_test(ops, large_value);
    tcase_add_test(ops, delete_and_nil);
    tcase_add_test(ops, add_semantics);
    tcase_add_test(ops, ttl_expiry);
    tcase_add_test(ops, incr_semantics);
    tcase_add_test(ops, keys_and_max);
    tcase_add_test(ops, dicts_are_independent);
    tcase_add_test(ops, dict_limits);
    suite_add_tcase(s, ops);

    TCase *mem = tcase_create("memory");
    tcase_add_checked_fixture(mem, setup, teardown);
    tcase_set_timeout(mem, 60);
    tcase_add_test(mem, exhaustion_and_reuse);
    tcase_add_test(mem, exhaustion_sweeps_expired);
    tcase_add_test(mem, many_keys);
    tcase_add_test(mem, create_rejects_impossible_size);
    suite_add_tcase(s, mem);

    TCase *proc = tcase_create("processes");
    tcase_add_checked_fixture(proc, setup, teardown);
    tcase_set_timeout(proc, 120);
    tcase_add_test(proc, cross_process_incr);
    tcase_add_test(proc, children_see_parent_writes);
    tcase_add_test(proc, robust_lock_survives_killed_writer);
    suite_add_tcase(s, proc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(shm_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
