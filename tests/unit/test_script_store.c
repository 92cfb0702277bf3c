/* Unit tests for core/script_store.c: the checked script's text and
 * generation, shared from the master with the workers it forked. */
#include "script_store.h"
#include "check_run.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void setup(void)
{
    ck_assert_int_eq(script_store_create(), 0);
}

static void teardown(void)
{
    script_store_destroy();
}

START_TEST(round_trip_and_limit)
{
    const char *text = "function on_get() return 200 end\n";
    ck_assert_int_eq(script_store_put(text, strlen(text), 7), 0);
    size_t len;
    uint32_t gen;
    char *copy = script_store_get(&len, &gen);
    ck_assert_ptr_nonnull(copy);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_str_eq(copy, text);
    ck_assert_uint_eq(gen, 7);
    free(copy);
    static char big[SCRIPT_STORE_MAX];
    ck_assert_int_eq(script_store_put(big, sizeof(big), 8), -E2BIG);
    ck_assert_int_eq(script_store_put(big, sizeof(big) - 1, 9), 0); /* the largest that fits */
    copy = script_store_get(&len, &gen);
    ck_assert_uint_eq(len, sizeof(big) - 1);
    ck_assert_uint_eq(gen, 9);
    free(copy);
    ck_assert_int_eq(script_store_put(text, strlen(text), 10), 0);
    ck_assert_int_eq(script_store_put(big, sizeof(big), 11), -E2BIG);
    copy = script_store_get(&len, &gen); /* a refused text leaves the old one intact */
    ck_assert_str_eq(copy, text);
    ck_assert_uint_eq(gen, 10);
    free(copy);
}
END_TEST

START_TEST(nothing_before_create)
{
    script_store_destroy();
    size_t len;
    uint32_t gen;
    ck_assert_int_eq(script_store_put("x", 1, 1), -ENODEV);
    ck_assert_ptr_null(script_store_get(&len, &gen));
}
END_TEST

/* A reload: the master stores a new text after the fork, and the worker
 * it forked before reads that one. */
START_TEST(a_worker_reads_what_the_master_stored_after_the_fork)
{
    ck_assert_int_eq(script_store_put("old", 3, 1), 0);
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1) _exit(3);
        size_t len;
        uint32_t gen;
        char *text = script_store_get(&len, &gen);
        _exit(text && len == 3 && !strcmp(text, "new") && gen == 2 ? 0 : 1);
    }
    ck_assert_int_eq(script_store_put("new", 3, 2), 0);
    ck_assert_int_eq(write(go[1], "g", 1), 1);
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 0);
}
END_TEST

/* The text of generation g: its length and its letter follow from g, so a
 * reader can tell a torn copy (the length or bytes of another). Large
 * enough that malloc maps the reader's copy afresh: copying into new pages
 * is slower than the writer's copy into pages it already touched, so the
 * writer overtakes a reader that would not wait for it. */
static size_t text_len(uint32_t g)
{
    return 200000 + (g * 7919) % 600000;
}

static void text_fill(char *buf, uint32_t g)
{
    memset(buf, 'a' + (int)(g % 26), text_len(g));
}

static bool text_whole(const char *t, size_t len, uint32_t g)
{
    if (len != text_len(g)) return false;
    for (size_t i = 0; i < len; i++)
        if (t[i] != 'a' + (int)(g % 26)) return false;
    return t[len] == '\0';
}

/* A worker reading while the master rewrites: every copy is one whole
 * text, and the last one stored is read in the end. */
START_TEST(readers_never_see_half_a_text)
{
    enum { LAST = 1000 };
    static char buf[800000];
    text_fill(buf, 1);
    ck_assert_int_eq(script_store_put(buf, text_len(1), 1), 0);
    int started[2];
    ck_assert_int_eq(pipe(started), 0);
    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        if (write(started[1], "r", 1) != 1) _exit(3);
        /* Bounded: the writer is done long before this many copies. */
        for (int i = 0; i < 10000000; i++) {
            size_t len;
            uint32_t gen;
            char *t = script_store_get(&len, &gen);
            if (!t || !text_whole(t, len, gen)) _exit(1);
            free(t);
            if (gen == LAST) _exit(0);
        }
        _exit(2);
    }
    char c;
    ck_assert_int_eq(read(started[0], &c, 1), 1); /* the reader is reading */
    for (uint32_t g = 2; g <= LAST; g++) {
        text_fill(buf, g);
        ck_assert_int_eq(script_store_put(buf, text_len(g), g), 0);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st));
    ck_assert_msg(WEXITSTATUS(st) != 1, "a reader copied a torn text");
    ck_assert_int_eq(WEXITSTATUS(st), 0);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        round_trip_and_limit,
        nothing_before_create,
        a_worker_reads_what_the_master_stored_after_the_fork,
        readers_never_see_half_a_text,
    };
    return check_run_tests("script_store", setup, teardown, 0, tests, CHECK_COUNT(tests));
}
