/* http: the llhttp glue (a request head kept as slices of the connection's
 * read buffer), head validation, and the writer of local responses. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"

#define HTTP_MAX_HEADERS 100       /* more header lines than this: 431 */
#define HTTP_MAX_REQUEST_LINE 8192 /* a longer request line (so a longer URI): 414 */
#define HTTP_MAX_CHUNK_EXT 4096    /* more chunk-extension bytes on one chunk: 400 */

/* A method token llhttp does not know (forwarded as sent; no local
 * handler can be named for it, so it is answered 405). */
#define HTTP_METHOD_OTHER 255

/* A byte range of the read buffer: offsets survive the buffer growing. */
struct slice {
    uint32_t off, len;
};

struct http_header {
    struct slice name; /* as received: compare with http_name_is */
    struct slice value;
};

/* What the parser learned about the request in progress. */
struct http_request {
    struct slice url;
    struct http_header headers[HTTP_MAX_HEADERS];
    uint16_t nheaders;
    uint8_t method; /* llhttp_method_t, or HTTP_METHOD_OTHER */
    struct slice method_tok; /* HTTP_METHOD_OTHER: the method as sent */
    uint8_t http_major, http_minor;
    bool in_value;        /* the last header callback was a value */
    bool too_many;        /* more than HTTP_MAX_HEADERS */
    bool line_too_long;   /* request line over HTTP_MAX_REQUEST_LINE */
    bool bad_chunk_ext;   /* a chunk extension without a name, or too long */
    bool head_done;       /* on_headers_complete seen */
    bool message_done;    /* on_message_complete seen */
    bool has_body;        /* Content-Length > 0 or chunked */
    bool chunked;         /* Transfer-Encoding: chunked */
    bool expect_continue; /* Expect: 100-continue */
    bool keep_alive;      /* the client allows another request after this one */
    bool upgrade;         /* Connection: upgrade with an Upgrade header */
    uint64_t content_length;
    struct slice target_host; /* absolute-form: the target's authority, the Host to send */
    uint32_t head_len;      /* bytes of the head, request line to blank line */
    uint32_t chunk_ext_len; /* extension bytes of the current chunk */
    uint32_t ext_name_len;  /* bytes of the current chunk extension's name */
    bool underscore;        /* a header name holds '_' (never forwarded; http_check_head) */
    bool chunk_line;        /* a chunk-size line comes next: whole, through http_execute */
    bool chunk_pause;       /* the pause is on_chunk_complete's, not the caller's */
    bool last_chunk;        /* the current chunk is the last (size 0) */
    bool bad_trailer;       /* a forbidden or folded field in the trailer section */
    bool trailer_bad;       /* the trailer name being read holds '_' */
    uint8_t trailer_value;  /* pieces of the current trailer value: 0 none, 1 closed, 2 split by a read */
    uint8_t trailer_len;    /* bytes of the trailer name gathered in `trailer` */
    char trailer[24];
    const char *base;  /* read buffer the slices refer to, during a parse */
};

/* The callbacks llhttp calls on a connection's behalf; parser->data points
 * to a struct http_parse_ctx. */
struct http_parse_ctx {
    struct http_request *req;
    const char *base; /* start of the read buffer */
    /* Body bytes for a Lua handler, or NULL to drop them. */
    struct buf *body;
    uint64_t max_body;
    bool body_too_large;
};

extern const llhttp_settings_t http_request_settings;
/* The span and header callbacks, shared with the response parser (whose
 * status text lands in `url`). parser->data is a struct http_parse_ctx. */
int http_on_url(llhttp_t *p, const char *at, size_t len);
int http_on_header_field(llhttp_t *p, const char *at, size_t len);
int http_on_header_value(llhttp_t *p, const char *at, size_t len);
int http_on_header_value_complete(llhttp_t *p);
void http_request_reset(struct http_request *r);
void http_parser_init(llhttp_t *p, struct http_parse_ctx *ctx);

/* A complete request head, byte by byte, against the RFC 9112 grammar, where
 * llhttp is lenient (bare LF, obs-fold, empty header names, several spaces
 * in the request line, '#' in the target). Returns 0, 400, 414 or 505.
 * http_check_head also sets req->underscore (a name holds '_'). */
int http_check_syntax(const char *head, size_t len);
int http_check_head(struct http_request *req, const char *head, size_t len);
/* The same for a backend's response head (status line, then fields):
 * llhttp would pass an obs-fold on, which ends the head early for the
 * client. false: malformed. */
bool http_response_head_ok(const char *head, size_t len);
/* No Transfer-Encoding, or exactly one "chunked": the only one relayed as
 * received. */
bool http_te_is_plain(const struct http_request *msg, const char *base);

/* After on_headers_complete: checks what llhttp leaves to us (framing
 * headers, Host, target form, version, a length over 2^63-1) and
 * normalises an absolute-form target to origin-form, its authority
 * replacing Host (target_host). Returns 0 or the status to reject with
 * (400, 501, 505). */
int http_validate_head(struct http_request *req, const char *base);

/* llhttp_execute over data[*pos, *end), for a request: each chunk-size line
 * of a chunked body is handed to llhttp only once it is whole, with the
 * BWS of its extensions removed (llhttp refuses what RFC 9112 7.1.1
 * allows; the buffer shrinks, *end with it). *pos: where the parse
 * stopped; HPE_OK with *pos < *end: the rest of a chunk-size line is
 * awaited, and the bytes from *pos must be kept. */
llhttp_errno_t http_execute(llhttp_t *p, char *data, uint32_t *pos, uint32_t *end);

/* llhttp refuses some heads that RFC 9112 allows: an unknown method token,
 * identical Content-Length values ("5, 5", or two lines), a trailing HTAB
 * after a Content-Length or Transfer-Encoding value. On those errors (and
 * only then: the common path pays nothing) the whole head is rewritten in
 * canonical form and parsed again from its start. */
bool http_head_fixable(llhttp_errno_t err);
/* Offset just past the blank line ending the head in p, or 0 if not there. */
uint32_t http_head_end(const char *p, size_t len);
/* Rewrites the head [0, head_end) of the len bytes at p in place (it only
 * shrinks; the bytes after it move with it): one "Content-Length: N" for
 * all the identical values, Transfer-Encoding values trimmed. With
 * method_unknown, *method gets the method token. Returns 1 when it is worth
 * parsing again, 0 when nothing was fixed, or 400 for Content-Length values
 * that differ or are malformed. */
int http_head_rewrite(char *p, uint32_t *len, uint32_t head_end, bool method_unknown,
                      struct slice *method);
/* Parses the request at data from its start with a fresh parser (the one
 * setup, http_parser_init); with method.len, llhttp is fed a known method
 * in its place, and req gets HTTP_METHOD_OTHER and the token. *stop: where
 * the parse stopped. */
llhttp_errno_t http_parse_again(llhttp_t *p, struct http_parse_ctx *ctx, const char *data, size_t len,
                                struct slice method, const char **stop);
/* The request's method as sent. */
const char *http_method_name(const struct http_request *req, const char *base, size_t *len);

/* Status for a parse error of llhttp (400, 414, 431, 501, 505). `data`,
 * `len`: the request bytes received so far (its request line tells a
 * malformed version, 400, from an unsupported one, 505). */
int http_error_status(llhttp_errno_t err, const struct http_request *req, const char *data,
                      size_t len);

static inline const char *http_slice(const char *base, struct slice s)
{
    return base + s.off;
}
/* Whether n bytes of a header name are those of `lower` (lower case), in
 * any case. */
bool http_name_eq(const char *name, const char *lower, size_t n);
/* Whether a header name is the lower-case literal `lit`, in any case: the
 * lengths are compared first, so most names cost one comparison. */
#define http_name_is(name, n, lit)                                                              \
    ((n) == sizeof(lit) - 1 && ((name)[0] | 0x20) == (lit)[0] &&                                 \
     http_name_eq((name), (lit), sizeof(lit) - 1))
/* Finds a header by name, given in lower case, matched in any case; NULL if
 * absent. */
const struct http_header *http_find_header(const struct http_request *req, const char *base,
                                           const char *name, size_t nlen);

/* A header name may be written only if it is a token; a value only if it
 * holds no CR, LF or NUL (response splitting). */
bool http_valid_name(const char *s, size_t n);
/* n bytes of src lower-cased (ASCII only, whatever the locale) into dst,
 * which may be src itself. */
void http_lower(char *dst, const char *src, size_t n);
bool http_valid_value(const char *s, size_t n);

/* The byte classes of the head checks and the ASCII lower-casing, as
 * constant tables (the rules are stated beside them in http.c). Exported
 * so that a unit test can check every byte against those rules. */
enum {
    HTTP_C_TCHAR = 1,
    HTTP_C_VALUE = 2,
    HTTP_C_TARGET = 4,
    HTTP_C_AUTHORITY = 8,
    HTTP_C_NAME = 16, /* tchar but '_' */
};
extern const uint8_t http_byte_class[256];
extern const uint8_t http_to_lower[256];

/* Optional whitespace (RFC 9110 5.6.3). */
static inline bool http_is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}
/* The CR LFs a request may start with (RFC 9112 2.2), skipped. */
size_t http_skip_empty_lines(const char *p, size_t len);
/* The length of the token at the start of p. */
size_t http_token_span(const char *p, size_t n);
