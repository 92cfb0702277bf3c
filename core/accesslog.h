/* accesslog: one line per request, nginx's "combined" format plus the
 * request time, the upstream server and its time:
 *
 *   127.0.0.1 - - [22/Nov/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 612 "-" "curl/8.0" 0.002 127.0.0.1:9001 0.001
 *
 * A request that came over TLS has two more fields, the protocol version
 * and the cipher (OpenSSL's names): "... 0.001 TLSv1.3 TLS_AES_128_GCM_SHA256".
 *
 * The byte count is what went to the client for this request, head
 * included (nginx's $bytes_sent). Without an upstream the last two fields
 * are "-". Bytes outside printable ASCII, '"' and '\' in the quoted fields
 * are written as \xHH. Lines are gathered per worker and written once per
 * loop turn (or when 32 KiB have gathered), whole lines per write(2). */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "http.h"

struct access_entry {
    const struct sockaddr *peer;
    const struct http_request *req; /* NULL: no complete request line */
    const char *base;
    int status;
    uint64_t bytes;
    double wall;       /* Unix time of the end of the request */
    double request_s;  /* first byte to last */
    const char *upstream; /* NULL: served locally */
    double upstream_s;
    const char *tls_version, *tls_cipher; /* NULL: not over TLS */
};

/* Appends the line for e to out. */
void access_format(struct buf *out, const struct access_entry *e);
/* Queues the line (written by access_flush). */
void access_log(const struct access_entry *e);
void access_flush(void);
