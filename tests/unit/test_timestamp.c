/* Unit tests for core/timestamp.c: the Date header's text and the access
 * log's, for fixed times, against strftime (the way both were written
 * before), in UTC and in zones east and west of it. */
#include "timestamp.h"
#include "check_run.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void zone(const char *tz)
{
    setenv("TZ", tz, 1);
    tzset();
}

/* A fresh cache each time: the text for `wall` alone. */
static const char *text(enum timestamp_style style, double wall)
{
    static struct timestamp t;
    t = (struct timestamp){.style = style};
    return timestamp_text(&t, wall);
}

START_TEST(http_dates)
{
    ck_assert_str_eq(text(TIMESTAMP_HTTP, 0.0), "Thu, 01 Jan 1970 00:00:00 GMT");
    ck_assert_str_eq(text(TIMESTAMP_HTTP, 784111777.0), "Sun, 06 Nov 1994 08:49:37 GMT");
    ck_assert_str_eq(text(TIMESTAMP_HTTP, 951782400.0), "Tue, 29 Feb 2000 00:00:00 GMT");
    ck_assert_str_eq(text(TIMESTAMP_HTTP, 1795341600.5), "Sun, 22 Nov 2026 10:00:00 GMT");
    ck_assert_str_eq(text(TIMESTAMP_HTTP, 4102444799.0), "Thu, 31 Dec 2099 23:59:59 GMT");
    zone("<+0530>-5:30"); /* the Date header is UTC whatever the zone */
    ck_assert_str_eq(text(TIMESTAMP_HTTP, 784111777.0), "Sun, 06 Nov 1994 08:49:37 GMT");
}
END_TEST

START_TEST(clf_times_in_three_zones)
{
    zone("UTC");
    ck_assert_str_eq(text(TIMESTAMP_CLF, 1795341600.5), "[22/Nov/2026:10:00:00 +0000]");
    ck_assert_str_eq(text(TIMESTAMP_CLF, 0.0), "[01/Jan/1970:00:00:00 +0000]");
    zone("<+0530>-5:30");
    ck_assert_str_eq(text(TIMESTAMP_CLF, 1795341600.0), "[22/Nov/2026:15:30:00 +0530]");
    zone("EST5EDT,M3.2.0,M11.1.0");
    ck_assert_str_eq(text(TIMESTAMP_CLF, 1795341600.0), "[22/Nov/2026:05:00:00 -0500]");
    ck_assert_str_eq(text(TIMESTAMP_CLF, 1783000000.0), "[02/Jul/2026:09:46:40 -0400]");
    zone("<-0030>0:30");
    ck_assert_str_eq(text(TIMESTAMP_CLF, 0.0), "[31/Dec/1969:23:30:00 -0030]");
}
END_TEST

/* The formats strftime wrote before the texts were built by hand. */
START_TEST(same_bytes_as_strftime)
{
    static const char *const zones[] = {"UTC", "<+0530>-5:30", "EST5EDT,M3.2.0,M11.1.0",
                                        "<-0030>0:30"};
    for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
        zone(zones[z]);
        /* Every 7 h 13 min 11 s over about 80 years: all days, months and
         * hours, both sides of each DST switch. */
        for (time_t sec = 0; sec < 2600000000; sec += 7 * 3600 + 13 * 60 + 11) {
            char want[64];
            struct tm tm;
            gmtime_r(&sec, &tm);
            strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
            ck_assert_str_eq(text(TIMESTAMP_HTTP, (double)sec), want);
            localtime_r(&sec, &tm);
            strftime(want, sizeof(want), "[%d/%b/%Y:%H:%M:%S %z]", &tm);
            ck_assert_str_eq(text(TIMESTAMP_CLF, (double)sec), want);
        }
    }
}
END_TEST

/* Remade when the second changes, not within it; one cache per style. */
START_TEST(cached_per_second)
{
    zone("UTC");
    struct timestamp date = {.style = TIMESTAMP_HTTP}, clf = {.style = TIMESTAMP_CLF};
    const char *a = timestamp_text(&date, 784111777.0);
    ck_assert_str_eq(timestamp_text(&clf, 784111777.0), "[06/Nov/1994:08:49:37 +0000]");
    ck_assert_ptr_eq(timestamp_text(&date, 784111777.9), a);
    ck_assert_str_eq(a, "Sun, 06 Nov 1994 08:49:37 GMT");
    ck_assert_str_eq(timestamp_text(&date, 784111778.1), "Sun, 06 Nov 1994 08:49:38 GMT");
    ck_assert_str_eq(timestamp_text(&date, 784111777.0), "Sun, 06 Nov 1994 08:49:37 GMT");
    /* Second 0 is a second like another, not "nothing cached yet". */
    struct timestamp epoch = {.style = TIMESTAMP_HTTP};
    ck_assert_str_eq(timestamp_text(&epoch, 0.0), "Thu, 01 Jan 1970 00:00:00 GMT");
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        http_dates,
        clf_times_in_three_zones,
        same_bytes_as_strftime,
        cached_per_second,
    };
    return check_run_tests("timestamp", NULL, NULL, 30, tests, CHECK_COUNT(tests));
}
