/* Unit tests for core/stats.c (shared counters, status seqlock) and
 * core/accesslog.c (the access-log line). */
#include "accesslog.h"
#include "stats.h"
#include "check_run.h"

#include <arpa/inet.h>
#include <check.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void setup(void)
{
    ck_assert_int_eq(stats_create(3), 0);
}

static void teardown(void)
{
    stats_destroy();
}

START_TEST(histogram_buckets_by_upper_bound)
{
    stats_attach(1);
    stats_request(200, 0);       /* <= 100 us */
    stats_request(200, 100);     /* the bound itself belongs to its bucket */
    stats_request(200, 101);     /* next bucket */
    stats_request(404, 20000000); /* past 10 s: +Inf */
    ck_assert_uint_eq(ST->w[1].hist[0], 2);
    ck_assert_uint_eq(ST->w[1].hist[1], 1);
    ck_assert_uint_eq(ST->w[1].hist[STATS_BUCKETS - 1], 1);
    ck_assert_uint_eq(ST->w[1].requests[200], 3);
    ck_assert_uint_eq(ST->w[1].requests[404], 1);
    ck_assert_uint_eq(ST->w[1].hist_sum_us, 20000201);
    ck_assert_uint_eq(ST->w[0].requests[200], 0); /* other slots untouched */
}
END_TEST

START_TEST(out_of_range_status_counts_as_zero)
{
    stats_attach(0);
    stats_request(-1, 1);
    stats_request(STATS_CODES, 1);
    ck_assert_uint_eq(ST->w[0].requests[0], 2);
}
END_TEST

START_TEST(upstream_series_are_found_again)
{
    stats_attach(2);
    for (int i = 0; i < 5; i++) stats_upstream("api", "127.0.0.1:9001", 200);
    stats_upstream("api", "127.0.0.1:9001", 502);
    stats_upstream("api", "127.0.0.1:9002", 200);
    stats_upstream("web", "127.0.0.1:9001", 200);
    int used = 0;
    uint64_t api1_200 = 0;
    for (int i = 0; i < STATS_UPSTREAM_SLOTS; i++) {
        struct ustat *e = &ST->w[2].up[i];
        if (!e->used) continue;
        used++;
        if (!strcmp(e->upstream, "api") && !strcmp(e->server, "127.0.0.1:9001") && e->code == 200)
            api1_200 = e->count;
    }
    ck_assert_int_eq(used, 4);
    ck_assert_uint_eq(api1_200, 5);
}
END_TEST

START_TEST(a_full_series_table_drops_new_series_only)
{
    stats_attach(0);
    char name[32];
    for (int i = 0; i < STATS_UPSTREAM_SLOTS + 10; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        stats_upstream(name, "s", 200);
    }
    stats_upstream("u0", "s", 200); /* still found */
    int used = 0;
    for (int i = 0; i < STATS_UPSTREAM_SLOTS; i++) used += ST->w[0].up[i].used ? 1 : 0;
    ck_assert_int_eq(used, STATS_UPSTREAM_SLOTS);
}
END_TEST

START_TEST(counters_are_shared_with_children)
{
    pid_t pid = fork();
    if (pid == 0) {
        stats_attach(1);
        for (int i = 0; i < 1000; i++) stats_request(200, 5);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    ck_assert_uint_eq(ST->w[1].requests[200], 1000);
    ck_assert_int_eq(ST->w[1].pid, pid);
}
END_TEST

START_TEST(status_fragment_and_a_dead_writer)
{
    stats_attach(1);
    stats_status_publish("{\"id\":1}", 8);
    char out[64];
    ck_assert_uint_eq(stats_status_read(1, out, sizeof(out)), 8);
    ck_assert(!memcmp(out, "{\"id\":1}", 8));
    /* A writer killed mid-publish leaves the seqlock odd: readers give up
     * on it, and its successor repairs it when it attaches. */
    ST->w[1].status_seq++;
    ck_assert_uint_eq(stats_status_read(1, out, sizeof(out)), 0);
    stats_attach(1);
    stats_status_publish("{}", 2);
    ck_assert_uint_eq(stats_status_read(1, out, sizeof(out)), 2);
}
END_TEST

/* ---- access log ---- */

static struct http_request req;
static const char head[] = "GET /a?b=1 HTTP/1.1\r\nuser-agent: cu\"rl\\1\r\nreferer: \x01x\r\n\r\n";

static void fill_request(void)
{
    memset(&req, 0, sizeof(req));
    req.method = HTTP_GET;
    req.http_major = 1;
    req.http_minor = 1;
    req.url = (struct slice){4, 6};
    uint32_t ua = (uint32_t)(strstr(head, "user-agent") - head), ref = (uint32_t)(strstr(head, "referer") - head);
    req.headers[0] = (struct http_header){{ua, 10}, {ua + 12, 7}};
    req.headers[1] = (struct http_header){{ref, 7}, {ref + 9, 2}};
    req.nheaders = 2;
    req.head_done = true;
}

static char *format(const struct access_entry *e)
{
    static struct buf b;
    b.len = b.off = 0;
    access_format(&b, e);
    buf_append(&b, "", 1);
    return b.data;
}

START_TEST(access_line_combined_plus_times)
{
    fill_request();
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5)};
    inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
    setenv("TZ", "UTC", 1);
    struct access_entry e = {
        .peer = (struct sockaddr *)&sin, .req = &req, .base = head, .status = 200, .bytes = 612,
        .wall = 1795341600.5, .request_s = 0.0021, .upstream = "127.0.0.1:9001", .upstream_s = 0.0016,
    };
    ck_assert_str_eq(format(&e), "127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] \"GET /a?b=1 HTTP/1.1\" 200 612 "
                                 "\"\\x01x\" \"cu\\x22rl\\x5C1\" 0.002 127.0.0.1:9001 0.002\n");
    e.upstream = NULL;
    e.req = NULL; /* no complete request line */
    e.status = 400;
    ck_assert_str_eq(format(&e), "127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] \"-\" 400 612 \"-\" \"-\" 0.002 - -\n");
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        histogram_buckets_by_upper_bound,
        out_of_range_status_counts_as_zero,
        upstream_series_are_found_again,
        a_full_series_table_drops_new_series_only,
        counters_are_shared_with_children,
        status_fragment_and_a_dead_writer,
        access_line_combined_plus_times,
    };
    return check_run_tests("stats", setup, teardown, 0, tests, CHECK_COUNT(tests));
}
