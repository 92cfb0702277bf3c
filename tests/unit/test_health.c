/* Unit tests for the pure parts of active health checks: the rise/fall
 * state machine, the claim that makes exactly one worker probe a server per
 * interval (and lets another take a dead worker's share over), binding
 * servers to shared slots, and the status line of a probe's response. */
#include "health.h"
#include "health_http.h"
#include "health_table.h"

#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check_run.h"

static struct sockaddr_in addr(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    return a;
}

static struct health_slot *bind_at(const char *up, const char *srv, int port, uint64_t period, uint64_t now)
{
    struct sockaddr_in a = addr(port);
    return health_table_bind(health_table, up, srv, (const struct sockaddr *)&a, sizeof(a), period, now);
}

static void setup(void)
{
    ck_assert_int_eq(health_table_create(64), 0);
}

static void teardown(void)
{
    health_table_destroy();
}

/* ---- rise and fall ------------------------------------------------------ */

static bool up(uint32_t st)
{
    return !(st & HEALTH_DOWN);
}

/* The state after results, one letter a probe: 's' a success, 'f' a failure. */
static uint32_t after(uint32_t st, const char *results, int rise, int fall)
{
    for (; *results; results++) st = health_next_state(st, *results == 's', rise, fall);
    return st;
}

START_TEST(starts_up_and_goes_down_after_fall_failures)
{
    ck_assert(up(0));
    ck_assert(up(after(0, "ff", 2, 3)));
    ck_assert(!up(after(0, "fff", 2, 3)));
}
END_TEST

START_TEST(a_success_breaks_a_run_of_failures)
{
    ck_assert(up(after(0, "ffsff", 2, 3)));
    ck_assert(!up(after(0, "ffsfff", 2, 3)));
}
END_TEST

START_TEST(comes_up_after_rise_successes_in_a_row)
{
    ck_assert(!up(after(0, "f", 3, 1)));
    ck_assert(!up(after(0, "fssf", 3, 1))); /* the run starts again */
    ck_assert(!up(after(0, "fssfss", 3, 1)));
    ck_assert(up(after(0, "fssfsss", 3, 1)));
}
END_TEST

START_TEST(long_runs_saturate_without_flipping)
{
    uint32_t st = 0;
    for (int i = 0; i < 100000; i++) st = health_next_state(st, true, 1, 1);
    ck_assert(up(st));
    ck_assert_uint_eq(st & HEALTH_RUN_MASK, HEALTH_RUN_MASK);
    for (int i = 0; i < 100000; i++) st = health_next_state(st, false, 1, 1);
    ck_assert(!up(st));
    st = health_next_state(st, true, 1, 1);
    ck_assert(up(st));
}
END_TEST

START_TEST(record_reports_each_change_once)
{
    struct health_slot *s = bind_at("api", "a", 1, 1000, 0);
    ck_assert_ptr_nonnull(s);
    ck_assert(health_slot_up(s));
    ck_assert_int_eq(health_record(s, false, 2, 2, 0), 0);
    ck_assert_int_eq(health_record(s, false, 2, 2, 1), -1);
    ck_assert(!health_slot_up(s));
    ck_assert_int_eq(health_record(s, false, 2, 2, 1), 0);
    ck_assert_int_eq(health_record(s, true, 2, 2, 0), 0);
    ck_assert_int_eq(health_record(s, true, 2, 2, 0), 1);
    ck_assert(health_slot_up(s));
    ck_assert_int_eq(health_record(s, true, 2, 2, 0), 0);
    ck_assert_uint_eq(s->checks, 6);
    ck_assert_int_eq(s->prober, 0);
}
END_TEST

/* ---- who probes --------------------------------------------------------- */

START_TEST(preferred_worker_claims_on_time_and_once)
{
    struct health_slot *s = bind_at("api", "a", 1, 1000, 0);
    uint64_t due = s->next_due, wake;
    ck_assert_uint_lt(due, 1000); /* the first probe within one period */
    ck_assert(!health_claim(s, due - 1, true, 1000, &wake));
    ck_assert_uint_eq(wake, due);
    ck_assert(health_claim(s, due, true, 1000, &wake));
    ck_assert_uint_eq(wake, due + 1000);
    /* The same round cannot be claimed twice, by anyone. */
    ck_assert(!health_claim(s, due, true, 1000, &wake));
    ck_assert(!health_claim(s, due + 600, false, 1000, &wake));
    ck_assert_uint_eq(wake, due + 1500);
}
END_TEST

START_TEST(another_worker_waits_half_a_period_then_takes_over)
{
    struct health_slot *s = bind_at("api", "a", 1, 1000, 0);
    uint64_t due = s->next_due, wake;
    ck_assert(!health_claim(s, due, false, 1000, &wake));
    ck_assert_uint_eq(wake, due + 500);
    ck_assert(!health_claim(s, due + 499, false, 1000, &wake));
    /* The preferred worker is dead or stuck: the round is taken over, and
     * the next rounds stay on the grid of the period. */
    ck_assert(health_claim(s, due + 500, false, 1000, &wake));
    ck_assert_uint_eq(s->next_due, due + 1000);
    ck_assert_uint_eq(wake, due + 1500);
    ck_assert(health_claim(s, due + 1500, false, 1000, &wake));
    ck_assert_uint_eq(s->next_due, due + 2000);
    /* The preferred one is back: it claims on time again. */
    ck_assert(health_claim(s, due + 2000, true, 1000, &wake));
    ck_assert(!health_claim(s, due + 2500, false, 1000, &wake));
}
END_TEST

START_TEST(missed_rounds_are_not_made_up)
{
    struct health_slot *s = bind_at("api", "a", 1, 1000, 0);
    uint64_t due = s->next_due, wake;
    ck_assert(health_claim(s, due + 5300, true, 1000, &wake));
    ck_assert_uint_eq(s->next_due, due + 6300);
    ck_assert(!health_claim(s, due + 5400, true, 1000, &wake));
}
END_TEST

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

START_TEST(one_probe_per_round_among_racing_processes)
{
    /* Four processes spin on the same slot (period 20 ms) for 400 ms, one
     * of them preferred: together they claim at most one probe a round. */
    uint64_t *claims = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(claims, MAP_FAILED);
    uint64_t start = now_ms();
    struct health_slot *s = bind_at("api", "a", 1, 20, start);
    pid_t kids[4];
    for (int k = 0; k < 4; k++) {
        if ((kids[k] = fork()) == 0) {
            uint64_t wake, now;
            while ((now = now_ms()) < start + 400)
                if (health_claim(s, now, k == 0, 20, &wake)) __atomic_add_fetch(claims, 1, __ATOMIC_RELAXED);
            _exit(0);
        }
    }
    for (int k = 0; k < 4; k++) waitpid(kids[k], NULL, 0);
    ck_assert_uint_ge(*claims, 5);
    ck_assert_uint_le(*claims, 400 / 20 + 1);
    munmap(claims, 4096);
}
END_TEST

START_TEST(preference_spreads_servers_over_workers)
{
    int mine[2] = {0, 0};
    char name[16];
    for (int i = 0; i < 40; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        struct health_slot *s = bind_at("api", name, 1000 + i, 1000, 0);
        mine[health_preferred(s, 2)]++;
    }
    ck_assert_int_gt(mine[0], 5);
    ck_assert_int_gt(mine[1], 5);
}
END_TEST

/* ---- slots -------------------------------------------------------------- */

START_TEST(same_server_same_slot_across_processes)
{
    struct health_slot *a = bind_at("api", "127.0.0.1:1", 1, 1000, 0);
    ck_assert_ptr_eq(bind_at("api", "127.0.0.1:1", 1, 1000, 10), a);
    ck_assert_ptr_ne(bind_at("api", "127.0.0.1:1", 2, 1000, 10), a);   /* another address */
    ck_assert_ptr_ne(bind_at("other", "127.0.0.1:1", 1, 1000, 10), a); /* another upstream */
    health_record(a, false, 1, 1, 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* A restarted worker, or the next generation: same slot, same state. */
        struct health_slot *b = bind_at("api", "127.0.0.1:1", 1, 1000, 20);
        _exit(b == a && !health_slot_up(b) ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(state_carries_over_while_fresh_and_resets_when_stale)
{
    struct health_slot *a = bind_at("api", "x", 1, 1000, 0);
    health_record(a, false, 1, 1, 0);
    ck_assert_ptr_eq(bind_at("api", "x", 1, 1000, 30000), a);
    ck_assert(!health_slot_up(a));
    /* Nobody looked for over a minute: the server was removed; it comes
     * back as new (up). */
    ck_assert_ptr_eq(bind_at("api", "x", 1, 1000, 30000 + 60001), a);
    ck_assert(health_slot_up(a));
}
END_TEST

START_TEST(full_table_gives_null_and_stale_slots_are_reused)
{
    char name[16];
    for (int i = 0; i < 64; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        ck_assert_ptr_nonnull(bind_at("api", name, 1, 1000, 0));
    }
    ck_assert_ptr_null(bind_at("api", "one-more", 1, 1000, 100));
    /* Later, every slot but one is still in use: the stale one is taken,
     * and the one server it belonged to is the one that finds no room. */
    for (int i = 1; i < 64; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        ck_assert_ptr_nonnull(bind_at("api", name, 1, 1000, 70000));
    }
    struct health_slot *n = bind_at("api", "one-more", 1, 1000, 70000);
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n->server, "one-more");
    ck_assert(health_slot_up(n));
    ck_assert_ptr_null(bind_at("api", "s0", 1, 1000, 70001));
}
END_TEST


/* ---- the probe's response ----------------------------------------------- */

START_TEST(status_line_parsing)
{
    ck_assert_int_eq(health_parse_status("HTTP/1.1 200 OK\r\n", 17), 200);
    ck_assert_int_eq(health_parse_status("HTTP/1.0 503", 12), 503);
    ck_assert_int_eq(health_parse_status("HTTP/1.1 20", 11), 0);
    ck_assert_int_eq(health_parse_status("HTT", 3), 0);
    ck_assert_int_eq(health_parse_status("", 0), 0);
    ck_assert_int_eq(health_parse_status("HTTP/2 200 OK", 13), -1);
    ck_assert_int_eq(health_parse_status("SSH-2.0-Open", 12), -1);
    ck_assert_int_eq(health_parse_status("HTTP/1.1 2x0", 12), -1);
    ck_assert_int_eq(health_parse_status("HTTP/1.1 099", 12), -1);
    ck_assert_int_eq(health_parse_status("HTTP/1.1 600", 12), -1);
}
END_TEST

static enum health_resp_state feed_all(struct health_resp *r, const char *text, bool bytewise)
{
    health_resp_init(r);
    size_t n = strlen(text);
    enum health_resp_state st = HR_STATUS;
    if (!bytewise) return health_resp_feed(r, text, n);
    for (size_t i = 0; i < n; i++) st = health_resp_feed(r, text + i, 1);
    return st;
}

START_TEST(response_with_a_length_keeps_the_connection)
{
    struct health_resp r;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 3\r\n\r\nok\n";
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        ck_assert_int_eq(feed_all(&r, ok, bytewise), HR_DONE);
        ck_assert_int_eq(r.status, 200);
        ck_assert(r.keep);
    }
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 204 No Content\r\n\r\n", false), HR_DONE);
    ck_assert(r.keep);
    /* Not complete yet: the body is still to come. */
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 503 Busy\r\nContent-Length: 10\r\n\r\nabc", false), HR_BODY);
    ck_assert_int_eq(r.status, 503);
    ck_assert_int_eq(r.left, 7);
}
END_TEST

START_TEST(response_the_connection_cannot_carry_on_from)
{
    struct health_resp r;
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: Close\r\n\r\nok", true),
                     HR_DONE);
    ck_assert(!r.keep);
    ck_assert_int_eq(feed_all(&r, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false), HR_DONE);
    ck_assert(!r.keep);
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok", false),
                     HR_UNTIL_CLOSE);
    ck_assert(!r.keep);
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 200 OK\r\n\r\nunframed", false), HR_UNTIL_CLOSE);
    ck_assert_int_eq(r.status, 200);
    /* More than it said: the next probe would read the rest as its answer. */
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false), HR_BAD);
    ck_assert_int_eq(r.status, 200);
    ck_assert(!r.keep);
}
END_TEST

START_TEST(response_that_is_not_http)
{
    struct health_resp r;
    ck_assert_int_eq(feed_all(&r, "SSH-2.0-OpenSSH\r\n", true), HR_BAD);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 2", false), HR_STATUS);
    ck_assert_int_eq(feed_all(&r, "HTTP/1.1 20\r\n", false), HR_BAD);
    /* A header line longer than the parser keeps is skipped, not fatal. */
    char big[600];
    snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nX-Long: %0400d\r\nContent-Length: 0\r\n\r\n", 7);
    ck_assert_int_eq(feed_all(&r, big, false), HR_DONE);
    ck_assert(r.keep);
}
END_TEST

START_TEST(default_expect_is_2xx_and_3xx)
{
    struct health_check *c = health_check_new();
    ck_assert(health_expected(c, 200));
    ck_assert(health_expected(c, 204));
    ck_assert(health_expected(c, 302));
    ck_assert(!health_expected(c, 199));
    ck_assert(!health_expected(c, 404));
    ck_assert(!health_expected(c, 503));
    ck_assert_str_eq(c->path, "/");
    ck_assert_int_eq(c->rise, 2);
    ck_assert_int_eq(c->fall, 3);
    health_check_free(c);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        starts_up_and_goes_down_after_fall_failures,
        a_success_breaks_a_run_of_failures,
        comes_up_after_rise_successes_in_a_row,
        long_runs_saturate_without_flipping,
        record_reports_each_change_once,
        preferred_worker_claims_on_time_and_once,
        another_worker_waits_half_a_period_then_takes_over,
        missed_rounds_are_not_made_up,
        one_probe_per_round_among_racing_processes,
        preference_spreads_servers_over_workers,
        same_server_same_slot_across_processes,
        state_carries_over_while_fresh_and_resets_when_stale,
        full_table_gives_null_and_stale_slots_are_reused,
        status_line_parsing,
        response_with_a_length_keeps_the_connection,
        response_the_connection_cannot_carry_on_from,
        response_that_is_not_http,
        default_expect_is_2xx_and_3xx,
    };
    return check_run_tests("health", setup, teardown, 60, tests, CHECK_COUNT(tests));
}
