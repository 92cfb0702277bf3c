/* Unit tests for core/proxy_head.c: the request head a backend gets and the
 * response head a client gets, built from heads parsed by the project's own
 * parser and compared byte for byte. */
#include "proxy_head.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "check_run.h"
#include "head_parse.h"
#include "script_types.h"

#define XFF_V4 "x-forwarded-for: 127.0.0.7\r\n"
#define PROTO "x-forwarded-proto: http\r\n"

static struct buf out;
static struct head_parse hp;
static struct sockaddr_in peer4;

static void setup(void)
{
    memset(&out, 0, sizeof(out));
    peer4 = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(40000)};
    ck_assert_int_eq(inet_pton(AF_INET, "127.0.0.7", &peer4.sin_addr), 1);
}

static void teardown(void)
{
    buf_free(&out);
}

static void expect_out(const char *want)
{
    size_t n = strlen(want);
    ck_assert_msg(out.len == n && !memcmp(out.data, want, n), "got\n[%.*s]\nwant\n[%s]",
                  (int)out.len, out.data ? out.data : "", want);
}

/* The forwarded head of `text` from peer4, optionally edited, into out. */
static void forward(const char *text, const struct script_edits *e, bool upgrade)
{
    head_parse_request(&hp, text);
    struct proxy_request_head h = {
        .req = &hp.msg,
        .base = hp.data,
        .head_len = hp.head_len,
        .edits = e,
        .peer = (const struct sockaddr *)&peer4,
        .default_host = "backend.local:8080",
        .upgrade = upgrade,
    };
    out.len = 0;
    ck_assert_int_eq(proxy_head_request(&out, &h), 0);
}

/* forward() without edits nor upgrade must give `want`. */
static void forwards_as(const char *text, const char *want)
{
    forward(text, NULL, false);
    expect_out(want);
}

/* ---- the request head ---------------------------------------------------- */

START_TEST(request_kept_as_sent)
{
    /* Names keep the client's case; the version is ours. */
    forwards_as("GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case: Some Value\r\n"
                "Accept: */*\r\n\r\n",
                "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case: Some Value\r\n"
                "Accept: */*\r\n" XFF_V4 PROTO "\r\n");
}
END_TEST

START_TEST(request_hop_by_hop_dropped)
{
    forwards_as(
        "GET /p HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret,close\r\n"
        "Keep-Alive: timeout=5\r\nX-Before: 1\r\nTE: trailers\r\nTrailer: X-T\r\n"
        "Upgrade: websocket\r\nProxy-Connection: keep-alive\r\nx-secret: s\r\nX-Keep: k\r\n\r\n",
        "GET /p HTTP/1.1\r\nHost: h\r\nX-Before: 1\r\nX-Keep: k\r\n" XFF_V4 PROTO "\r\n");
}
END_TEST

START_TEST(request_connection_never_names_framing_or_host)
{
    /* Without its framing the backend would read the body as the next
     * request; without Host, it would get none or the wrong one. */
    forwards_as("POST /p HTTP/1.1\r\nHost: h\r\nConnection: Content-Length, host, X-Gone\r\n"
                "Content-Length: 3\r\nX-Gone: 1\r\n\r\n",
                "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n" XFF_V4 PROTO "\r\n");
    forwards_as("POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                "Connection: transfer-encoding\r\n\r\n",
                "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n" XFF_V4 PROTO
                "\r\n");
}
END_TEST

START_TEST(request_framing_canonical)
{
    forwards_as("POST /p HTTP/1.1\r\nHost: h\r\ncontent-length: 010\r\nX-A: 1\r\n\r\n",
                "POST /p HTTP/1.1\r\nHost: h\r\ncontent-length: 10\r\nX-A: 1\r\n" XFF_V4 PROTO
                "\r\n");
    forwards_as(
        "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: cHuNkEd \r\nX-A: 1\r\n\r\n",
        "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n" XFF_V4 PROTO
        "\r\n");
}
END_TEST

START_TEST(request_underscore_names_dropped)
{
    forwards_as("GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 127.6.6.6\r\nX-Ok: 1\r\n"
                "Transfer_Encoding: chunked\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: h\r\nX-Ok: 1\r\n" XFF_V4 PROTO "\r\n");
}
END_TEST

START_TEST(request_forwarded_for_appended)
{
    /* Every X-Forwarded-For of the client, in order, then its address; its
     * X-Forwarded-Proto is replaced by ours. */
    forwards_as("GET / HTTP/1.1\r\nX-Forwarded-For: 127.0.0.11\r\nHost: h\r\n"
                "X-Forwarded-Proto: https\r\nx-forwarded-for: 127.0.0.12, 127.0.0.13\r\n\r\n",
                "GET / HTTP/1.1\r\nHost: h\r\n"
                "x-forwarded-for: 127.0.0.11, 127.0.0.12, 127.0.0.13, 127.0.0.7\r\n" PROTO "\r\n");

    /* Each octet width (the IPv4 address is formatted by hand). */
    static const char *const addrs[] = {"127.9.10.99", "127.199.200.255", "127.255.255.255",
                                        "127.0.0.0"};
    for (size_t i = 0; i < CHECK_COUNT(addrs); i++) {
        ck_assert_int_eq(inet_pton(AF_INET, addrs[i], &peer4.sin_addr), 1);
        forward("GET / HTTP/1.1\r\nHost: h\r\n\r\n", NULL, false);
        char want[256];
        snprintf(want, sizeof(want),
                 "GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: %s\r\n" PROTO "\r\n", addrs[i]);
        expect_out(want);
    }
}
END_TEST

START_TEST(request_forwarded_for_ipv6)
{
    struct sockaddr_in6 p6 = {.sin6_family = AF_INET6, .sin6_port = htons(40000)};
    ck_assert_int_eq(inet_pton(AF_INET6, "::1", &p6.sin6_addr), 1);
    head_parse_request(&hp, "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.11\r\n\r\n");
    struct proxy_request_head h = {
        .req = &hp.msg,
        .base = hp.data,
        .head_len = hp.head_len,
        .peer = (const struct sockaddr *)&p6,
        .default_host = "unused",
    };
    ck_assert_int_eq(proxy_head_request(&out, &h), 0);
    expect_out("GET / HTTP/1.1\r\nHost: h\r\nx-forwarded-for: 127.0.0.11, ::1\r\n" PROTO
               "\r\n");
}
END_TEST

START_TEST(request_host)
{
    /* absolute-form: origin-form target, the authority replaces Host in
     * its place and with its name as sent. */
    forwards_as("GET http://a.example:81/p?q HTTP/1.1\r\nX-A: 1\r\nHOST: b\r\nX-B: 2\r\n\r\n",
                "GET /p?q HTTP/1.1\r\nX-A: 1\r\nHOST: a.example:81\r\nX-B: 2\r\n" XFF_V4 PROTO
                "\r\n");
    /* ... and is added when there was none (HTTP/1.0). */
    forwards_as("GET http://a.example/p HTTP/1.0\r\nX-A: 1\r\n\r\n",
                "GET /p HTTP/1.1\r\nX-A: 1\r\nHost: a.example\r\n" XFF_V4 PROTO "\r\n");
    /* No Host at all: the server's. */
    forwards_as("GET /x HTTP/1.0\r\nX-A: 1\r\nConnection: keep-alive\r\n\r\n",
                "GET /x HTTP/1.1\r\nX-A: 1\r\nhost: backend.local:8080\r\n" XFF_V4 PROTO "\r\n");
}
END_TEST

START_TEST(request_upgrade)
{
    const char *ws = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                     "Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    forward(ws, NULL, true);
    ck_assert(hp.msg.upgrade);
    expect_out("GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n" XFF_V4 PROTO
               "connection: upgrade\r\nupgrade: websocket\r\n\r\n");
    /* Not upgrading (no tunnel to offer): both stay behind. */
    forward(ws, NULL, false);
    expect_out("GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k\r\n" XFF_V4 PROTO "\r\n");
}
END_TEST

static struct script_header hdr(const char *name, const char *value)
{
    return (struct script_header){name, value, strlen(name), value ? strlen(value) : 0};
}

START_TEST(request_script_edits)
{
    struct script_header hs[] = {
        hdr("X-Add", "v"),
        hdr("X-Drop", NULL),
        hdr("x-replace", "new"),
        /* The framing and the hop-by-hop headers are the proxy's. */
        hdr("Content-Length", "99"),
        hdr("Transfer-Encoding", "chunked"),
        hdr("Connection", "close"),
        hdr("TE", "trailers"),
        hdr("Upgrade", "h2c"),
        hdr("Keep-Alive", "1"),
        hdr("Proxy-Connection", "x"),
        hdr("Trailer", "X-T"),
    };
    struct script_edits e = {.path_set = true,
                             .path = "/new",
                             .path_len = 4,
                             .headers = hs,
                             .nheaders = CHECK_COUNT(hs)};
    forward("PUT /old?k=v HTTP/1.1\r\nHost: h\r\nX-Drop: d\r\nContent-Length: 3\r\n"
            "X-Replace: old\r\nX-Other: o\r\n\r\n",
            &e, false);
    expect_out("PUT /new?k=v HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nX-Other: o\r\n"
               "X-Add: v\r\nx-replace: new\r\n" XFF_V4 PROTO "\r\n");
}
END_TEST

START_TEST(request_script_forwarded_headers_and_host)
{
    /* The script's X-Forwarded-For/-Proto replace ours; a removed one is
     * not added back. A Host the script removes is replaced by the
     * server's, one it sets is the only one. */
    struct script_header set[] = {hdr("X-Forwarded-For", "127.1.2.3"),
                                  hdr("X-Forwarded-Proto", "https"), hdr("Host", "h2")};
    struct script_edits e = {.headers = set, .nheaders = CHECK_COUNT(set)};
    forward("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.11\r\n\r\n", &e, false);
    expect_out("GET / HTTP/1.1\r\nX-Forwarded-For: 127.1.2.3\r\nX-Forwarded-Proto: https\r\nHost: "
               "h2\r\n\r\n");

    struct script_header del[] = {hdr("x-forwarded-for", NULL), hdr("HOST", NULL)};
    struct script_edits d = {.headers = del, .nheaders = CHECK_COUNT(del)};
    forward("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.11\r\n\r\n", &d, false);
    expect_out("GET / HTTP/1.1\r\nhost: backend.local:8080\r\n" PROTO "\r\n");
}
END_TEST

/* ---- the target ------------------------------------------------------- */

static void expect_target(const char *url, const struct script_edits *e, const char *want)
{
    char text[256];
    snprintf(text, sizeof(text), "GET %s HTTP/1.1\r\nHost: h\r\n\r\n", url);
    head_parse_request(&hp, text);
    out.len = 0;
    proxy_head_target(&out, &hp.msg, hp.data, e);
    expect_out(want);
}

START_TEST(target_edits)
{
    struct script_edits none = {0};
    struct script_edits path = {.path_set = true, .path = "/n", .path_len = 2};
    struct script_edits query = {.query_set = true, .query = "y=2", .query_len = 3};
    struct script_edits noquery = {.query_set = true};
    struct script_edits both = {.path_set = true,
                                .path = "/n",
                                .path_len = 2,
                                .query_set = true,
                                .query = "y=2",
                                .query_len = 3};
    expect_target("/a/b?x=1", NULL, "/a/b?x=1");
    expect_target("/a/b?x=1", &none, "/a/b?x=1");
    expect_target("/a/b?x=1", &path, "/n?x=1");
    expect_target("/a/b", &path, "/n");
    expect_target("/a/b?x=1", &query, "/a/b?y=2");
    expect_target("/a/b", &query, "/a/b?y=2");
    expect_target("/a/b?x=1", &noquery, "/a/b");
    expect_target("/a/b?", &noquery, "/a/b");
    expect_target("/a/b?x=1", &both, "/n?y=2");
    /* The absolute-form's path and query, not its authority. */
    expect_target("http://a.example/a?x=1", &path, "/n?x=1");
    expect_target("http://a.example/a?x=1", NULL, "/a?x=1");
}
END_TEST

/* ---- the response head ------------------------------------------------- */

/* The head the client gets for the backend's `text`. */
static void answer(const char *text, struct proxy_response_head h)
{
    head_parse_response(&hp, text);
    h.status = hp.status;
    h.resp = &hp.msg;
    h.base = hp.data;
    h.head_len = hp.head_len;
    out.len = 0;
    proxy_head_response(&out, &h);
}

START_TEST(response_status_line)
{
    answer("HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n",
           (struct proxy_response_head){0});
    expect_out("HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n");
    answer("HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", (struct proxy_response_head){0});
    expect_out("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    answer("HTTP/1.0 599 \r\nContent-Length: 0\r\n\r\n", (struct proxy_response_head){0});
    expect_out("HTTP/1.1 599 Server Error\r\nContent-Length: 0\r\n\r\n");
    /* A long reason is cut at 60 bytes. */
    answer("HTTP/1.1 200 0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
           "Content-Length: 0\r\n\r\n",
           (struct proxy_response_head){0});
    expect_out("HTTP/1.1 200 012345678901234567890123456789012345678901234567890123456789\r\n"
               "Content-Length: 0\r\n\r\n");
}
END_TEST

START_TEST(response_hop_by_hop_dropped)
{
    const char *r =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive, X-Hop, "
        "Content-Length\r\nKeep-Alive: timeout=5\r\nContent-Length: 5\r\nX-Hop: 1\r\n"
        "Trailer: X-T\r\nUpgrade: h2c\r\nProxy-Connection: x\r\nTE: x\r\nX-Keep: 2\r\n\r\n";
    answer(r, (struct proxy_response_head){0});
    expect_out(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nX-Keep: 2\r\n\r\n");
}
END_TEST

START_TEST(response_switching)
{
    const char *r =
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, X-Named\r\n"
        "Upgrade: websocket\r\nKeep-Alive: 1\r\nX-Named: n\r\nSec-WebSocket-Accept: a\r\n\r\n";
    /* Going through with the upgrade: Connection and Upgrade (and what
     * Connection names) reach the client; never a Connection of ours. */
    answer(r, (struct proxy_response_head){.switching = true, .close = true, .http10 = true});
    expect_out("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, X-Named\r\n"
               "Upgrade: websocket\r\nX-Named: n\r\nSec-WebSocket-Accept: a\r\n\r\n");
    /* A 101 the client did not ask for carries no hop-by-hop header. */
    answer(r, (struct proxy_response_head){.close = true});
    expect_out("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n\r\n");
}
END_TEST

START_TEST(response_bodyless_length)
{
    answer("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n",
           (struct proxy_response_head){0});
    expect_out("HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n");
    answer("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nContent-Length: 0\r\n\r\n",
           (struct proxy_response_head){.close = true});
    expect_out("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"); /* a 1xx never closes */
    /* A 304's and a 200's length stay (the HEAD-like length of the
     * resource, or the body's). */
    answer("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
           (struct proxy_response_head){0});
    expect_out("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
}
END_TEST

START_TEST(response_framing_and_connection)
{
    const char *chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
    answer(chunked, (struct proxy_response_head){0});
    expect_out("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n");
    /* De-chunked for an HTTP/1.0 client: no Transfer-Encoding, ended by
     * the close. */
    answer(chunked, (struct proxy_response_head){.drop_te = true, .close = true, .http10 = true});
    expect_out("HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: close\r\n\r\n");

    const char *unframed = "HTTP/1.1 200 OK\r\nConnection: close\r\nX-A: 1\r\n\r\n";
    answer(unframed, (struct proxy_response_head){.chunk_out = true});
    expect_out("HTTP/1.1 200 OK\r\nX-A: 1\r\ntransfer-encoding: chunked\r\n\r\n");
    answer(unframed, (struct proxy_response_head){.http10 = true});
    expect_out("HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: keep-alive\r\n\r\n");
    answer(unframed, (struct proxy_response_head){.close = true});
    expect_out("HTTP/1.1 200 OK\r\nX-A: 1\r\nconnection: close\r\n\r\n");
}
END_TEST

START_TEST(response_script_edits)
{
    struct script_header hs[] = {
        hdr("X-New", "n"),
        hdr("x-a", "A"),
        hdr("X-B", NULL),
        hdr("Content-Length", "99"),
        hdr("Transfer-Encoding", "chunked"),
        hdr("Connection", "close"),
        hdr("Upgrade", "x"),
    };
    struct script_edits e = {.headers = hs, .nheaders = CHECK_COUNT(hs)};
    answer("HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 2\r\nX-B: 2\r\nX-C: 3\r\n\r\n",
           (struct proxy_response_head){.edits = &e, .http10 = true});
    expect_out("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-C: 3\r\nX-New: n\r\nx-a: A\r\n"
               "connection: keep-alive\r\n\r\n");
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        request_kept_as_sent,
        request_hop_by_hop_dropped,
        request_connection_never_names_framing_or_host,
        request_framing_canonical,
        request_underscore_names_dropped,
        request_forwarded_for_appended,
        request_forwarded_for_ipv6,
        request_host,
        request_upgrade,
        request_script_edits,
        request_script_forwarded_headers_and_host,
        target_edits,
        response_status_line,
        response_hop_by_hop_dropped,
        response_switching,
        response_bodyless_length,
        response_framing_and_connection,
        response_script_edits,
    };
    return check_run_tests("proxy_head", setup, teardown, 0, tests, CHECK_COUNT(tests));
}
