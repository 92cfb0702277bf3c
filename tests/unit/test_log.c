/* Unit tests for core/log.c's pure parts: the per-second line budget that
 * keeps client-caused messages (rejections) from filling the disk, and the
 * address formatting used in log lines. */
#include "log.h"
#include "check_run.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <string.h>

START_TEST(budget_allows_up_to_rate_then_refuses)
{
    struct log_budget b = {0};
    unsigned dropped = 99;
    for (int i = 0; i < 5; i++) {
        ck_assert(log_budget_take(&b, 10000 + (uint64_t)i, 5, &dropped));
        ck_assert_uint_eq(dropped, 0);
    }
    ck_assert(!log_budget_take(&b, 10100, 5, &dropped));
    ck_assert(!log_budget_take(&b, 10999, 5, &dropped));
    ck_assert_uint_eq(dropped, 0);
}
END_TEST

START_TEST(budget_new_window_reports_refused)
{
    struct log_budget b = {0};
    unsigned dropped;
    for (int i = 0; i < 8; i++) log_budget_take(&b, 5000, 3, &dropped);
    /* 3 taken, 5 refused; the next second starts afresh and says so once */
    ck_assert(log_budget_take(&b, 6000, 3, &dropped));
    ck_assert_uint_eq(dropped, 5);
    ck_assert(log_budget_take(&b, 6001, 3, &dropped));
    ck_assert_uint_eq(dropped, 0);
}
END_TEST

START_TEST(budget_flood_is_bounded)
{
    /* 100000 attempts over 10 seconds: at most rate per second get through */
    struct log_budget b = {0};
    unsigned dropped, taken = 0, reported = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        if (log_budget_take(&b, 1000 + i / 10, 10, &dropped)) taken++;
        reported += dropped;
    }
    ck_assert_uint_le(taken, 10 * 11);
    ck_assert_uint_ge(taken, 10 * 10);
    /* every refusal but those of the last window was reported */
    ck_assert_uint_eq(taken + reported + b.refused, 100000);
}
END_TEST

START_TEST(addr_v4_and_v6)
{
    char out[64];
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons(4321)};
    inet_pton(AF_INET, "127.0.0.9", &in.sin_addr);
    ck_assert_str_eq(log_addr((struct sockaddr *)&in, out, sizeof(out)), "127.0.0.9:4321");
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
    inet_pton(AF_INET6, "::1", &in6.sin6_addr);
    ck_assert_str_eq(log_addr((struct sockaddr *)&in6, out, sizeof(out)), "[::1]:80");
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        budget_allows_up_to_rate_then_refuses,
        budget_new_window_reports_refused,
        budget_flood_is_bounded,
        addr_v4_and_v6,
    };
    return check_run_tests("log", NULL, NULL, 0, tests, CHECK_COUNT(tests));
}
