/* proxy_head: the heads as the proxy forwards them. The request head a
 * backend gets: the script's edits applied, hop-by-hop headers out, the
 * framing in one canonical form, X-Forwarded-For/-Proto added. The
 * response head the client gets: hop-by-hop headers out, the framing the
 * relay chose, the connection's fate. Pure (bytes in, bytes out), so the
 * exchange, --try and the unit tests build them the same way. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "buf.h"
#include "http.h"

struct script_edits;

struct proxy_request_head {
    const struct http_request *req; /* the client's request, slices into base */
    const char *base;
    uint32_t head_len;                /* [base, base + head_len) is its head */
    const struct script_edits *edits; /* req:set_* of the script, or NULL */
    const struct sockaddr *peer;      /* the client, for X-Forwarded-For */
    bool https;                       /* X-Forwarded-Proto: https */
    const char *default_host;         /* Host for a request without one */
    bool upgrade;                     /* pass Connection: upgrade and Upgrade on */
};

/* The request line's target after the script's set_path/set_query: the
 * path and query as they go to the backend (and as --try prints them). */
void proxy_head_target(struct buf *out, const struct http_request *r, const char *base,
                       const struct script_edits *e);
/* Appends the whole request head, final CRLF included. 0 or -ENOMEM. */
int proxy_head_request(struct buf *out, const struct proxy_request_head *h);

struct proxy_response_head {
    int status;                       /* 100..599 */
    const struct http_request *resp;  /* the backend's head; url is the reason */
    const char *base;
    uint32_t head_len;
    const struct script_edits *edits; /* res:set_header of on_response, or NULL */
    bool switching;  /* a 101 for an upgrade: Connection and Upgrade go through */
    bool drop_te;    /* the body does not go as it came: no Transfer-Encoding */
    bool chunk_out;  /* the relay chunks an unframed body */
    bool close;      /* the client's connection ends after this response */
    bool http10;     /* the client speaks HTTP/1.0 */
};

/* Appends the response head for the client, final CRLF included. */
void proxy_head_response(struct buf *out, const struct proxy_response_head *h);
