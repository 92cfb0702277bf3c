/* Unit tests for core/reply.c: a script's answer written out as HTTP for
 * the request it answers, and whether the connection may stay open. */
#include "reply.h"

#include <check.h>
#include <string.h>

#include "check_run.h"
#include "head_parse.h"

#define NOW 784111777.0 /* Sun, 06 Nov 1994 08:49:37 GMT */
#define FIXED "Server: luaproxy\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"

static struct buf out;
static struct head_parse hp;

static void setup(void)
{
    memset(&out, 0, sizeof(out));
}

static void teardown(void)
{
    buf_free(&out);
}

/* rep, as the answer to the request `text`, must be written as `want`
 * and keep the connection open exactly when `kept`. */
static void replies(const char *text, const struct script_reply *rep, bool keep_alive,
                    const char *want, bool want_kept)
{
    head_parse_request(&hp, text);
    out.len = 0;
    bool kept = !want_kept;
    ck_assert_int_eq(reply_write(&out, &hp.msg, rep, keep_alive, NOW, &kept), 0);
    size_t n = strlen(want);
    ck_assert_msg(out.len == n && !memcmp(out.data, want, n), "got\n[%.*s]\nwant\n[%s]",
                  (int)out.len, out.data ? out.data : "", want);
    ck_assert_msg(kept == want_kept, "kept %d, want %d for [%s]", kept, want_kept, want);
}

#define GET11 "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
#define GET10 "GET / HTTP/1.0\r\n\r\n"

START_TEST(status_headers_and_body)
{
    struct script_header hs[] = {{"Content-Type", "text/plain", 12, 10}, {"X-A", "1", 3, 1}};
    struct script_reply rep = {
        .status = 201, .body = "hello", .body_len = 5, .headers = hs, .nheaders = 2};
    replies(GET11, &rep, true,
            "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-A: 1\r\n" FIXED
            "Content-Length: 5\r\n\r\nhello",
            true);
    /* Not to be kept: the answer says so. */
    replies(GET11, &rep, false,
            "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-A: 1\r\n" FIXED
            "Content-Length: 5\r\nConnection: close\r\n\r\nhello",
            false);
}
END_TEST

START_TEST(framing_is_ours)
{
    /* A script's Content-Length or Connection would contradict the body
     * that follows or the connection's fate. */
    struct script_header hs[] = {{"Content-Length", "99", 14, 2}, {"connection", "close", 10, 5}};
    struct script_reply rep = {
        .status = 404, .body = "no\n", .body_len = 3, .headers = hs, .nheaders = 2};
    replies(GET11, &rep, true, "HTTP/1.1 404 Not Found\r\n" FIXED "Content-Length: 3\r\n\r\nno\n",
            true);
}
END_TEST

START_TEST(head_has_no_body)
{
    struct script_reply rep = {.status = 200, .body = "hello", .body_len = 5};
    const char *want = "HTTP/1.1 200 OK\r\n" FIXED "Content-Length: 5\r\n\r\n";
    replies("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", &rep, true, want, true);
    /* A HEAD that on_get answered. */
    rep.head_only = true;
    replies(GET11, &rep, true, want, true);
}
END_TEST

START_TEST(informational_never_keeps)
{
    struct script_reply rep = {.status = 103, .body = "x", .body_len = 1};
    replies(GET11, &rep, true, "HTTP/1.1 103 Informational\r\n" FIXED "Connection: close\r\n\r\n",
            false);
    /* From 200 on, it does. */
    rep.status = 200;
    replies(GET11, &rep, true, "HTTP/1.1 200 OK\r\n" FIXED "Content-Length: 1\r\n\r\nx", true);
}
END_TEST

START_TEST(http10_keep_alive)
{
    /* An HTTP/1.0 client closes unless told the connection stays. */
    struct script_reply rep = {.status = 200, .body = "ok", .body_len = 2};
    replies(GET10, &rep, true,
            "HTTP/1.1 200 OK\r\n" FIXED "Content-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
            true);
    replies(GET10, &rep, false,
            "HTTP/1.1 200 OK\r\n" FIXED "Content-Length: 2\r\nConnection: close\r\n\r\nok", false);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        status_headers_and_body,   framing_is_ours,   head_has_no_body,
        informational_never_keeps, http10_keep_alive,
    };
    return check_run_tests("reply", setup, teardown, 0, tests, CHECK_COUNT(tests));
}
