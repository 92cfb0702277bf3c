/* Heads for the unit tests of the code that consumes them (proxy_head,
 * reply): real request and response bytes, parsed by the project's own
 * llhttp callbacks into a struct http_request, then checked the way a
 * connection checks them, so that a test sees what the exchange sees. */
#pragma once
#include <check.h>
#include <llhttp.h>
#include <stdint.h>
#include <string.h>

#include "http.h"

struct head_parse {
    char data[8192];   /* the bytes the slices refer to */
    uint32_t len;      /* of data in use */
    uint32_t head_len; /* request line (or status line) to the blank line */
    int status;        /* a response's status code */
    struct http_request msg;
    struct http_parse_ctx ctx;
    llhttp_t parser;
};

/* text copied into h, the parse context pointing at it. */
static inline void head_parse_begin(struct head_parse *h, const char *text)
{
    size_t n = strlen(text);
    ck_assert_uint_lt(n, sizeof(h->data));
    memset(h, 0, sizeof(*h));
    memcpy(h->data, text, n);
    h->len = (uint32_t)n;
    h->ctx.req = &h->msg;
    h->ctx.base = h->data;
}

/* A request head as conn.c takes it: parsed through http_execute up to its
 * end, then http_check_head and http_validate_head (which set underscore
 * and turn an absolute-form target to origin-form). Every given head must
 * pass them: the test is about what follows. */
static inline void head_parse_request(struct head_parse *h, const char *text)
{
    head_parse_begin(h, text);
    http_parser_init(&h->parser, &h->ctx);
    uint32_t pos = 0;
    llhttp_errno_t err = http_execute(&h->parser, h->data, &pos, &h->len);
    ck_assert_msg(err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE, "parse: %s for [%s]",
                  llhttp_errno_name(err), text);
    ck_assert(h->msg.head_done);
    h->head_len = http_head_end(h->data, h->len);
    ck_assert_uint_eq(pos, h->head_len); /* the test heads carry no body bytes */
    ck_assert_int_eq(http_check_head(&h->msg, h->data, h->head_len), 0);
    ck_assert_int_eq(http_validate_head(&h->msg, h->data), 0);
}

/* The response parser of core/response.c, reduced to the head: the status
 * text lands in msg.url, the fields in msg.headers. */
static inline int head_parse_headers_done(llhttp_t *p)
{
    ((struct http_parse_ctx *)p->data)->req->head_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t head_parse_response_settings = {
    .on_status = http_on_url,
    .on_header_field = http_on_header_field,
    .on_header_value = http_on_header_value,
    .on_header_value_complete = http_on_header_value_complete,
    .on_headers_complete = head_parse_headers_done,
};

/* A backend's response head; checked by http_response_head_ok as the
 * exchange checks it. */
static inline void head_parse_response(struct head_parse *h, const char *text)
{
    head_parse_begin(h, text);
    llhttp_init(&h->parser, HTTP_RESPONSE, &head_parse_response_settings);
    h->parser.data = &h->ctx;
    llhttp_errno_t err = llhttp_execute(&h->parser, h->data, h->len);
    ck_assert_msg(err == HPE_PAUSED, "parse: %s for [%s]", llhttp_errno_name(err), text);
    ck_assert(h->msg.head_done);
    h->head_len = (uint32_t)(llhttp_get_error_pos(&h->parser) - h->data);
    ck_assert_uint_eq(h->head_len, http_head_end(h->data, h->len));
    ck_assert(http_response_head_ok(h->data, h->head_len));
    h->status = h->parser.status_code;
}
