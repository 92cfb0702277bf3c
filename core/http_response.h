/* http_response: writing a local response into a client's output buffer. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

const char *http_reason(int status);
/* The body of an error we answer ourselves ("bad gateway\n"), the same
 * for a request we reject and an exchange that fails. */
const char *http_error_body(int status);
/* "Sun, 06 Nov 1994 08:49:37 GMT", cached per second. */
const char *http_date(double wall_now);

/* Local response writer. begin writes the status line and the fixed
 * headers, header adds one, end adds Content-Length (unless the status has
 * no body), Connection if needed, the blank line and the body (omitted
 * when head_only). */
struct http_response {
    int status;
    bool keep_alive;   /* false: "Connection: close" */
    bool http10;       /* the client spoke 1.0: "Connection: keep-alive" when kept */
    bool head_only;    /* HEAD: Content-Length of the body, no body */
    bool has_server;   /* the handler gave its own Server header */
    bool has_date;     /* ... or Date */
};
int http_response_begin(struct buf *out, const struct http_response *r);
/* Returns 1 when the header was skipped (framing headers are ours). */
int http_response_header(struct buf *out, struct http_response *r, const char *name, size_t nlen,
                         const char *value, size_t vlen);
int http_response_end(struct buf *out, const struct http_response *r, double wall_now,
                      const char *body, size_t blen);
/* A whole short response: status, text body, Connection: close unless
 * keep_alive. head_only: the answer to a HEAD, whose body is not sent. */
int http_simple_response(struct buf *out, int status, bool keep_alive, bool head_only, double wall_now,
                         const char *body);
