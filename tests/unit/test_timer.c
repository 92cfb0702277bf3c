/* Unit tests for core/timer.c: the min-heap of deadlines with lazy extension. */
#include "timer.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Timers live in one array so a callback can tell which one fired by its
 * address; every firing is recorded in order, with the deadline it had. */
#define MAXT 10000

struct fired {
    size_t id;
    uint64_t deadline;
};

static struct timer timers[MAXT];
static struct fired log_[4 * MAXT];
static size_t nlog;
static struct timer_heap heap;

static void record(struct timer *t)
{
    ck_assert_msg(!timer_armed(t), "timer %zu still armed inside its callback",
                  (size_t)(t - timers));
    ck_assert_uint_lt(nlog, sizeof(log_) / sizeof(log_[0]));
    log_[nlog].id = (size_t)(t - timers);
    log_[nlog].deadline = t->deadline;
    nlog++;
}

static void setup(void)
{
    memset(timers, 0, sizeof(timers));
    for (size_t i = 0; i < MAXT; i++) timers[i].cb = record;
    nlog = 0;
    timer_heap_init(&heap);
}

static void teardown(void)
{
    timer_heap_free(&heap);
}

static void arm(size_t id, uint64_t deadline)
{
    ck_assert_int_eq(timer_set(&heap, &timers[id], deadline), 0);
    ck_assert(timer_armed(&timers[id]));
}

/* A small deterministic generator, so a failure can be replayed. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

START_TEST(empty_heap)
{
    ck_assert_int_eq(timer_next_in(&heap, 0), -1);
    ck_assert_int_eq(timer_next_in(&heap, 123456), -1);
    ck_assert_uint_eq(timer_run(&heap, UINT64_MAX), 0);
    ck_assert_uint_eq(nlog, 0);
    /* Cancelling a timer that was never armed is harmless. */
    timer_cancel(&heap, &timers[0]);
    ck_assert(!timer_armed(&timers[0]));
}
END_TEST

START_TEST(single_timer)
{
    arm(0, 100);
    ck_assert_int_eq(timer_next_in(&heap, 40), 60);
    ck_assert_uint_eq(timer_run(&heap, 99), 0);
    ck_assert(timer_armed(&timers[0]));
    ck_assert_uint_eq(timer_run(&heap, 100), 1);
    ck_assert_uint_eq(nlog, 1);
    ck_assert_uint_eq(log_[0].id, 0);
    ck_assert(!timer_armed(&timers[0]));
    ck_assert_int_eq(timer_next_in(&heap, 100), -1);
    ck_assert_uint_eq(timer_run(&heap, 1000), 0);
}
END_TEST

START_TEST(overdue_next_in_is_zero)
{
    arm(0, 50);
    ck_assert_int_eq(timer_next_in(&heap, 50), 0);
    ck_assert_int_eq(timer_next_in(&heap, 500), 0);
    ck_assert_int_eq(timer_next_in(&heap, 49), 1);
}
END_TEST

START_TEST(random_order)
{
    rng_state = 0x9e3779b97f4a7c15ULL;
    size_t n = 2000;
    for (size_t i = 0; i < n; i++) arm(i, 1 + rnd() % 5000);
    uint64_t min = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (timers[i].deadline < min) min = timers[i].deadline;
    ck_assert_int_eq(timer_next_in(&heap, 0), (int64_t)min);

    ck_assert_uint_eq(timer_run(&heap, 5000), n);
    ck_assert_uint_eq(nlog, n);
    char *seen = calloc(n, 1);
    ck_assert_ptr_nonnull(seen);
    for (size_t i = 0; i < n; i++) {
        if (i) ck_assert_uint_le(log_[i - 1].deadline, log_[i].deadline);
        ck_assert_uint_eq(log_[i].deadline, timers[log_[i].id].deadline);
        ck_assert_msg(!seen[log_[i].id], "timer %zu fired twice", log_[i].id);
        seen[log_[i].id] = 1;
    }
    free(seen);
    ck_assert_int_eq(timer_next_in(&heap, 5000), -1);
}
END_TEST

START_TEST(run_stops_at_now)
{
    for (size_t i = 0; i < 100; i++) arm(i, 10 * (100 - i)); /* 1000, 990, ..., 10 */
    ck_assert_uint_eq(timer_run(&heap, 505), 50);             /* 10..500 */
    for (size_t i = 0; i < nlog; i++) ck_assert_uint_le(log_[i].deadline, 505);
    ck_assert_int_eq(timer_next_in(&heap, 505), 5);
    ck_assert_uint_eq(timer_run(&heap, 1000), 50);
    ck_assert_uint_eq(nlog, 100);
}
END_TEST

START_TEST(cancel_middle)
{
    size_t n = 500;
    for (size_t i = 0; i < n; i++) arm(i, 1000 + (i * 7919) % n); /* a permutation */
    /* Cancel every third timer, wherever it sits in the heap. */
    for (size_t i = 0; i < n; i += 3) {
        timer_cancel(&heap, &timers[i]);
        ck_assert(!timer_armed(&timers[i]));
        timer_cancel(&heap, &timers[i]); /* twice is a no-op */
    }
    ck_assert_uint_eq(timer_run(&heap, 10000), n - (n + 2) / 3);
    for (size_t i = 0; i < nlog; i++) {
        ck_assert_msg(log_[i].id % 3 != 0, "cancelled timer %zu fired", log_[i].id);
        if (i) ck_assert_uint_le(log_[i - 1].deadline, log_[i].deadline);
    }
}
END_TEST

START_TEST(rearm_earlier)
{
    arm(0, 300);
    arm(1, 200);
    arm(2, 250);
    arm(0, 100); /* now the earliest */
    ck_assert_int_eq(timer_next_in(&heap, 0), 100);
    ck_assert_uint_eq(timer_run(&heap, 150), 1);
    ck_assert_uint_eq(log_[0].id, 0);
    ck_assert_uint_eq(log_[0].deadline, 100);
    ck_assert_uint_eq(timer_run(&heap, 1000), 2);
    ck_assert_uint_eq(log_[1].id, 1);
    ck_assert_uint_eq(log_[2].id, 2);
}
END_TEST

START_TEST(rearm_later_is_lazy_but_exact)
{
    arm(0, 100);
    arm(1, 200);
    arm(0, 300); /* later: the heap keeps key 100 for now */
    ck_assert(timer_armed(&timers[0]));
    ck_assert_uint_eq(timers[0].deadline, 300);
    /* Not at the old deadline... */
    ck_assert_uint_eq(timer_run(&heap, 100), 0);
    ck_assert_uint_eq(timer_run(&heap, 150), 0);
    ck_assert_int_eq(timer_next_in(&heap, 150), 50);
    /* ...timer 1 comes first... */
    ck_assert_uint_eq(timer_run(&heap, 299), 1);
    ck_assert_uint_eq(log_[0].id, 1);
    ck_assert_int_eq(timer_next_in(&heap, 299), 1);
    /* ...and timer 0 at its new deadline exactly. */
    ck_assert_uint_eq(timer_run(&heap, 300), 1);
    ck_assert_uint_eq(log_[1].id, 0);
    ck_assert_uint_eq(log_[1].deadline, 300);
}
END_TEST

START_TEST(rearm_later_then_earlier)
{
    arm(0, 100);
    arm(0, 500); /* lazy: key stays 100 */
    arm(0, 400); /* still later than the key: lazy again, but must fire at 400 */
    ck_assert_uint_eq(timer_run(&heap, 399), 0);
    ck_assert_uint_eq(timer_run(&heap, 400), 1);

    arm(1, 100);
    arm(1, 500);
    arm(1, 50); /* earlier than the stale key: must move up */
    arm(2, 60);
    ck_assert_int_eq(timer_next_in(&heap, 0), 50);
    ck_assert_uint_eq(timer_run(&heap, 55), 1);
    ck_assert_uint_eq(log_[1].id, 1);
    ck_assert_uint_eq(timer_run(&heap, 60), 1);
    ck_assert_uint_eq(log_[2].id, 2);
}
END_TEST

START_TEST(cancel_after_lazy_extension)
{
    for (size_t i = 0; i < 50; i++) arm(i, 100 + i);
    for (size_t i = 0; i < 50; i += 2) arm(i, 1000 + i); /* even ones pushed later */
    for (size_t i = 0; i < 50; i += 4) timer_cancel(&heap, &timers[i]);
    ck_assert_uint_eq(timer_run(&heap, 999), 25); /* the odd ones */
    for (size_t i = 0; i < nlog; i++) ck_assert_uint_eq(log_[i].id % 2, 1);
    ck_assert_uint_eq(timer_run(&heap, 2000), 12); /* 2, 6, ..., 46 */
    for (size_t i = 25; i < nlog; i++) {
        ck_assert_uint_eq(log_[i].id % 4, 2);
        ck_assert_uint_eq(log_[i].deadline, 1000 + log_[i].id);
    }
}
END_TEST

/* ---- callbacks that re-arm or cancel ------------------------------------ */

static int periodic_left;
static void periodic(struct timer *t)
{
    record(t);
    if (--periodic_left > 0) ck_assert_int_eq(timer_set(&heap, t, t->deadline + 10), 0);
}

START_TEST(callback_rearms_itself)
{
    periodic_left = 5;
    timers[0].cb = periodic;
    arm(0, 10);
    arm(1, 35);
    size_t total = 0;
    for (uint64_t now = 5; now <= 100; now += 5) total += timer_run(&heap, now);
    ck_assert_uint_eq(total, 6);
    ck_assert_uint_eq(nlog, 6);
    /* 10, 20, 30 (timer 0), 35 (timer 1), 40, 50 (timer 0) */
    static const uint64_t want[] = {10, 20, 30, 35, 40, 50};
    for (size_t i = 0; i < 6; i++) ck_assert_uint_eq(log_[i].deadline, want[i]);
    ck_assert_uint_eq(log_[3].id, 1);
    ck_assert(!timer_armed(&timers[0]));
}
END_TEST

START_TEST(callback_catches_up)
{
    /* A periodic timer that missed periods fires once per run (it was the
     * one timer armed on entry) and catches up over the following runs,
     * so a callback that re-arms for "now" cannot make one run endless. */
    periodic_left = 4;
    timers[0].cb = periodic;
    arm(0, 10);
    ck_assert_uint_eq(timer_run(&heap, 100), 1);
    ck_assert_uint_eq(timer_run(&heap, 100), 1);
    ck_assert_uint_eq(timer_run(&heap, 100), 1);
    ck_assert_uint_eq(timer_run(&heap, 100), 1);
    ck_assert_uint_eq(log_[3].deadline, 40);
    ck_assert_uint_eq(timer_run(&heap, 100), 0);
}
END_TEST

static void cancel_next(struct timer *t)
{
    record(t);
    timer_cancel(&heap, t + 1);
}

START_TEST(callback_cancels_due_timer)
{
    timers[0].cb = cancel_next;
    arm(0, 100);
    arm(1, 100);
    arm(0, 90);
    arm(2, 95);
    ck_assert_uint_eq(timer_run(&heap, 100), 2);
    ck_assert_uint_eq(log_[0].id, 0);
    ck_assert_uint_eq(log_[1].id, 2);
    ck_assert(!timer_armed(&timers[1]));
}
END_TEST

START_TEST(heap_free_disarms)
{
    for (size_t i = 0; i < 200; i++) arm(i, 1 + i);
    timer_heap_free(&heap);
    for (size_t i = 0; i < 200; i++) ck_assert(!timer_armed(&timers[i]));
    ck_assert_int_eq(timer_next_in(&heap, 0), -1);
    ck_assert_uint_eq(timer_run(&heap, 1000), 0);
    arm(7, 3); /* usable again */
    ck_assert_uint_eq(timer_run(&heap, 3), 1);
}
END_TEST

START_TEST(far_deadline)
{
    /* A deadline so far away that the distance does not fit in int64_t is
     * still "armed", never -1 (which would read as "no timer at all"). */
    arm(0, UINT64_MAX);
    ck_assert_int_gt(timer_next_in(&heap, 0), 0);
    ck_assert_int_gt(timer_next_in(&heap, 1000), 0);
    ck_assert_uint_eq(timer_run(&heap, UINT64_MAX - 1), 0);
    ck_assert_uint_eq(timer_run(&heap, UINT64_MAX), 1);
}
END_TEST

/* ---- randomized, against a reference model ------------------------------ */

/* The model: armed[i] and want[i] (its deadline). Operations: arm anywhere
 * (new, earlier or later), cancel, and advance time firing what is due. */
START_TEST(randomized_against_model)
{
    static bool armed[MAXT];
    static uint64_t want[MAXT];
    memset(armed, 0, sizeof(armed));
    rng_state = 0x2545f4914f6cdd1dULL ^ (uint64_t)_i;
    uint64_t now = 0;
    size_t nfired = 0;

    for (size_t i = 0; i < MAXT; i++) {
        want[i] = now + 1 + rnd() % 100000;
        armed[i] = true;
        arm(i, want[i]);
    }
    for (int step = 0; step < 40000; step++) {
        uint64_t r = rnd() % 100;
        size_t id = rnd() % MAXT;
        if (r < 60) {
            want[id] = now + 1 + rnd() % 100000;
            armed[id] = true;
            arm(id, want[id]);
        } else if (r < 80) {
            armed[id] = false;
            timer_cancel(&heap, &timers[id]);
        } else {
            /* next_in must name the earliest armed deadline exactly. */
            uint64_t min = UINT64_MAX;
            size_t due = 0;
            for (size_t i = 0; i < MAXT; i++)
                if (armed[i] && want[i] < min) min = want[i];
            int64_t next = timer_next_in(&heap, now);
            if (min == UINT64_MAX) ck_assert_int_eq(next, -1);
            else ck_assert_int_eq(next, (int64_t)(min > now ? min - now : 0));

            now += rnd() % 2000;
            for (size_t i = 0; i < MAXT; i++)
                if (armed[i] && want[i] <= now) due++;
            size_t before = nlog;
            ck_assert_uint_eq(timer_run(&heap, now), due);
            for (size_t k = before; k < nlog; k++) {
                size_t f = log_[k].id;
                ck_assert_msg(armed[f], "timer %zu fired while cancelled", f);
                ck_assert_uint_eq(log_[k].deadline, want[f]);
                ck_assert_uint_le(want[f], now);
                if (k > before) ck_assert_uint_le(log_[k - 1].deadline, log_[k].deadline);
                armed[f] = false;
            }
            nfired += nlog - before;
            nlog = 0;
        }
        if (step % 4096 == 0)
            for (size_t i = 0; i < MAXT; i++) ck_assert_int_eq(timer_armed(&timers[i]), armed[i]);
    }
    ck_assert_uint_gt(nfired, 1000); /* the run did exercise firing */
    size_t left = 0;
    for (size_t i = 0; i < MAXT; i++) left += armed[i];
    ck_assert_uint_eq(timer_run(&heap, UINT64_MAX), left);
    ck_assert_int_eq(timer_next_in(&heap, 0), -1);
}
END_TEST

static Suite *timer_suite(void)
{
    Suite *s = suite_create("timer");
    TCase *tc = tcase_create("heap");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, empty_heap);
    tcase_add_test(tc, single_timer);
    tcase_add_test(tc, overdue_next_in_is_zero);
    tcase_add_test(tc, random_order);
    tcase_add_test(tc, run_stops_at_now);
    tcase_add_test(tc, cancel_middle);
    tcase_add_test(tc, rearm_earlier);
    tcase_add_test(tc, rearm_later_is_lazy_but_exact);
    tcase_add_test(tc, rearm_later_then_earlier);
    tcase_add_test(tc, cancel_after_lazy_extension);
    tcase_add_test(tc, callback_rearms_itself);
    tcase_add_test(tc, callback_catches_up);
    tcase_add_test(tc, callback_cancels_due_timer);
    tcase_add_test(tc, heap_free_disarms);
    tcase_add_test(tc, far_deadline);
    tcase_add_loop_test(tc, randomized_against_model, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(timer_suite());
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
