/* harness: runs the real worker code (conn, http, script, forward, pool,
 * splice and the epoll loop) inside a fuzzer process, one input at a time.
 *
 * A client is one end of a socketpair whose other end goes to conn_accept();
 * backends are TCP connections to a listener on 127.0.0.1 that the harness
 * owns (the "origin"). After each write the loop is turned without blocking
 * until nothing moves any more. At the end of an input everything is torn
 * down, and the harness checks that the worker is back where it started: no
 * connection, no armed timer, no descriptor and no Lua stack slot more than
 * before. Any check that fails aborts, which the fuzzer reports as a crash. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Once per process: configuration, loop, shared memory, the origin
 * listener (its address is in $FUZZ_ORIGIN for the script; $FUZZ_DEAD is
 * one that refuses connections), and the Lua
 * script FUZZ_DIR/<script>. strict_origin: the origin parses what it gets
 * as HTTP requests (any malformed byte is a finding) and answers each one;
 * otherwise the target writes the origin's bytes itself. */
void fz_init(const char *script, bool strict_origin);

/* An input's split points: up to FZ_MAX_CUTS offsets into (0, len) taken
 * from control bytes (offset = byte * len / 256), so one input can arrive
 * in several writes. starts[] (room for FZ_MAX_CUTS + 2) gets the sorted
 * piece starts, then len; returns the number of pieces. */
#define FZ_MAX_CUTS 3
int fz_pieces(const uint8_t *cuts, int ncuts, size_t len, size_t *starts);

/* Per input. */
void fz_begin(bool slow_reader);
/* Writes bytes from the client (as much as the proxy takes) and settles. */
void fz_client_send(const uint8_t *p, size_t n);
/* The client shuts down its writing side (the proxy sees EOF). */
void fz_client_shutdown(void);
/* The client closes its socket (a reset when output is left unread). */
void fz_client_reset(void);
/* Turns the loop and serves the origin until nothing moves. */
void fz_settle(void);
/* Every timer armed now fires, as if a day had passed. */
void fz_fire_timers(void);
/* Tears down and checks. */
void fz_end(void);

/* Raw origin (strict_origin false). The newest backend connection the
 * proxy opened, or -1. */
int fz_origin_fd(void);
/* Writes to the newest backend connection; false if there is none. */
bool fz_origin_send(const uint8_t *p, size_t n);
void fz_origin_shutdown(void);
void fz_origin_reset(void);

/* The bytes the client received so far in this input. */
const uint8_t *fz_client_output(size_t *len);
/* A global of the script, as a number (0 when absent). */
double fz_script_number(const char *name);
void fz_script_set_number(const char *name, double v);
/* Requests the strict origin parsed in this input. */
uint64_t fz_origin_requests(void);

/* Named in fz_fail's message when set (the replay test sets it). */
extern const char *fz_input_name;
__attribute__((noreturn, format(printf, 1, 2))) void fz_fail(const char *fmt, ...);
