/* Unit tests for splice_pump_tee (core/splice.c): a transfer between two
 * sockets whose every chunk is also duplicated into a second pipe with
 * tee(); the copy reaches its own socket byte for byte, and a copy that
 * cannot keep up fails without slowing or changing the transfer. */
#include "splice.h"
#include "check_run.h"

#include <check.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BODY (192 * 1024)

static unsigned char body[BODY];

/* A non-blocking connected pair: [0] is written by the test, [1] read. */
static void pair(int sv[2])
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

static size_t write_all(int fd, const unsigned char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    return done;
}

/* Reads what fd has (non-blocking) into out, from offset *got on. */
static void read_some(int fd, unsigned char *out, size_t *got, size_t cap)
{
    for (;;) {
        ssize_t n = read(fd, out + *got, cap - *got);
        if (n <= 0) return;
        *got += (size_t)n;
    }
}

static void fill_body(void)
{
    for (size_t i = 0; i < BODY; i++) body[i] = (unsigned char)(i * 7 + i / 251);
}

START_TEST(the_copy_gets_every_byte)
{
    fill_body();
    int src[2], dst[2], cdst[2];
    pair(src), pair(dst), pair(cdst);
    struct pipe_pair p = {.rd = -1, .wr = -1}, cp = {.rd = -1, .wr = -1};
    ck_assert_int_eq(pipe_take(&p), 0);
    ck_assert_int_eq(pipe_take(&cp), 0);
    struct splice_copy c = {.pipe = &cp, .dst = cdst[0]};
    unsigned char *out = malloc(BODY), *cout = malloc(BODY);
    size_t got = 0, cgot = 0, sent = 0;
    uint64_t left = BODY, moved = 0;
    /* Piece by piece, reading both ends as it goes. */
    while (left || p.len) {
        if (sent < BODY) sent += write_all(src[0], body + sent, BODY - sent < 40000 ? BODY - sent : 40000);
        enum pump_result r = splice_pump_tee(src[1], dst[0], &p, &c, &left, &moved);
        ck_assert(r == PUMP_DONE || r == PUMP_WANT_READ || r == PUMP_WANT_WRITE);
        read_some(dst[1], out, &got, BODY);
        read_some(cdst[1], cout, &cgot, BODY);
        /* What the copy's socket did not take waits in its pipe. */
        if (cp.len) {
            uint64_t none = 0, m = 0;
            splice_pump(-1, cdst[0], &cp, &none, &m);
        }
    }
    read_some(dst[1], out, &got, BODY);
    read_some(cdst[1], cout, &cgot, BODY);
    ck_assert(!c.failed);
    ck_assert_uint_eq(moved, BODY);
    ck_assert_uint_eq(c.teed, BODY);
    ck_assert_uint_eq(got, BODY);
    ck_assert_uint_eq(cgot, BODY);
    ck_assert(memcmp(out, body, BODY) == 0);
    ck_assert(memcmp(cout, body, BODY) == 0);
    free(out);
    free(cout);
}
END_TEST

START_TEST(a_full_copy_fails_and_the_transfer_goes_on)
{
    fill_body();
    int src[2], dst[2];
    pair(src), pair(dst);
    struct pipe_pair p = {.rd = -1, .wr = -1}, cp = {.rd = -1, .wr = -1};
    ck_assert_int_eq(pipe_take(&p), 0);
    /* The copy's pipe: one page, and nobody to drain it (not connected). */
    int fds[2];
    ck_assert_int_eq(pipe2(fds, O_NONBLOCK), 0);
    ck_assert_int_gt(fcntl(fds[1], F_SETPIPE_SZ, 4096), 0);
    cp.rd = fds[0];
    cp.wr = fds[1];
    struct splice_copy c = {.pipe = &cp, .dst = -1};
    unsigned char *out = malloc(BODY);
    size_t got = 0, sent = 0;
    uint64_t left = BODY, moved = 0;
    while (left || p.len) {
        if (sent < BODY) sent += write_all(src[0], body + sent, BODY - sent);
        enum pump_result r = splice_pump_tee(src[1], dst[0], &p, &c, &left, &moved);
        ck_assert(r == PUMP_DONE || r == PUMP_WANT_READ || r == PUMP_WANT_WRITE);
        read_some(dst[1], out, &got, BODY);
    }
    read_some(dst[1], out, &got, BODY);
    ck_assert(c.failed);
    ck_assert_uint_lt(c.teed, BODY);
    ck_assert_uint_eq(got, BODY);
    ck_assert(memcmp(out, body, BODY) == 0);
    free(out);
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        the_copy_gets_every_byte,
        a_full_copy_fails_and_the_transfer_goes_on,
    };
    return check_run_tests("splice_tee", NULL, NULL, 30, tests, CHECK_COUNT(tests));
}
