/* fuzz_backend: the backend side. A fixed client request (one of a few
 * kinds) is proxied to the origin, whose answer is the fuzzer's input:
 * status line, headers, chunked, Content-Length or unframed bodies,
 * truncated, pipelined, 1xx, 101, garbage. It travels through the real
 * response relay in core/forward.c (splice included) to the client.
 *
 * Input: flags, kind, three cut bytes (where the answer is split into
 * writes), then the origin's bytes.
 *   flags & 1   the origin shuts down its side after its last byte
 *   flags & 2   the origin resets the connection after its last byte
 *   flags & 4   every armed timer fires at the end (a day passes)
 *   flags & 8   the client reads nothing until the end
 *   flags & 16  the client closes its socket after the first piece
 *   flags & 32  every armed timer fires after the first piece
 *   kind % NKINDS picks the request (see kinds[]).
 * Besides the sanitizers and the teardown checks: what the client receives
 * must parse as HTTP responses, no more of them than it sent requests, an
 * HTTP/1.0 client never gets a chunked body, a body without framing comes
 * with Connection: close; and when the origin's
 * bytes begin with a complete final response, the client gets a final
 * response head (the origin's, or the proxy's own error), not silence. */
#include <stdio.h>
#include <string.h>

#include <llhttp.h>

#include "harness.h"

#define UPLOAD 100000 /* a body large enough to be spliced in several rounds */

struct kind {
    const char *head;
    bool upload; /* UPLOAD body bytes follow the head */
    int nreq;
    bool is_head[2];
    bool http10;
};

static const struct kind kinds[] = {
    {"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", false, 1, {false}, false},
    {"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n", false, 1, {true}, false},
    {"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", false, 1, {false}, false},
    {"POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false, 1,
     {false}, false},
    {"GET /a HTTP/1.0\r\n\r\n", false, 1, {false}, true},
    {"GET /a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: fuzz\r\n\r\n", false, 1, {false}, false},
    {"POST /a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", false, 1,
     {false}, false},
    {"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n", false, 2, {false, false}, false},
    {"HEAD /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n", false, 2, {true, false}, false},
    {"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n", true, 1, {false}, false},
    {"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false, 1, {false}, true},
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

static char upload[UPLOAD];

void fuzz_backend_init(void)
{
    memset(upload, 'u', sizeof(upload));
    fz_init("backend.lua", false);
}

/* ---- what the client received ------------------------------------------ */

struct client_check {
    const struct kind *k;
    int finals; /* final (non-1xx) responses parsed */
    int heads;  /* final response heads parsed */
};

/* Skips the body where RFC 9112 §6.3 says there is none, for HEAD and 304,
 * but trusts the framing headers of 1xx and 204, which the proxy must not
 * pass on (llhttp, like some clients, would read such a body). */
static int c_on_headers_complete(llhttp_t *p)
{
    struct client_check *cc = p->data;
    if (p->status_code < 200) return 0;
    if (cc->finals >= cc->k->nreq)
        fz_fail("the client received more responses than the %d request(s) it sent", cc->k->nreq);
    if (cc->k->http10 && (p->flags & F_CHUNKED)) fz_fail("an HTTP/1.0 client received a chunked body");
    int st = p->status_code;
    bool bodiless = cc->k->is_head[cc->finals] || st == 101 || st == 204 || st == 304;
    if (!bodiless && !(p->flags & (F_CONTENT_LENGTH | F_CHUNKED | F_CONNECTION_CLOSE)))
        fz_fail("a response without framing went out on a connection that stays open");
    cc->heads++;
    return cc->k->is_head[cc->finals] || p->status_code == 304 ? 1 : 0;
}

static int c_on_message_complete(llhttp_t *p)
{
    struct client_check *cc = p->data;
    if (p->status_code >= 200) cc->finals++;
    return 0;
}

static const llhttp_settings_t client_settings = {
    .on_headers_complete = c_on_headers_complete,
    .on_message_complete = c_on_message_complete,
};

/* Returns the number of final response heads the client received. */
static int check_client_stream(const struct kind *k)
{
    size_t len;
    const uint8_t *out = fz_client_output(&len);
    if (!len) return 0;
    struct client_check cc = {.k = k};
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &client_settings);
    p.data = &cc;
    llhttp_errno_t err = llhttp_execute(&p, (const char *)out, len);
    if (err != HPE_OK && err != HPE_PAUSED_UPGRADE)
        fz_fail("the client received a malformed response stream (%s: %s) after %d response(s)",
                llhttp_errno_name(err), llhttp_get_error_reason(&p) ? llhttp_get_error_reason(&p) : "",
                cc.finals);
    return cc.heads;
}

/* ---- what the origin sent ---------------------------------------------- */

/* The proxy's view: no body for HEAD, 1xx, 204 and 304. */
static int view_on_headers_complete(llhttp_t *p)
{
    const struct kind *k = p->data;
    int st = p->status_code;
    return k->is_head[0] || st < 200 || st == 204 || st == 304 ? 1 : 0;
}

static int view_on_message_complete(llhttp_t *p)
{
    return p->status_code >= 200 ? HPE_PAUSED : 0;
}

static const llhttp_settings_t origin_view = {
    .on_headers_complete = view_on_headers_complete,
    .on_message_complete = view_on_message_complete,
};

/* Whether the origin's bytes begin with a complete final response (after
 * any interim ones) that is not a 101. */
static bool begins_with_final(const struct kind *k, const uint8_t *data, size_t len)
{
    llhttp_t p;
    llhttp_init(&p, HTTP_RESPONSE, &origin_view);
    p.data = (void *)k;
    llhttp_errno_t err = llhttp_execute(&p, (const char *)data, len);
    return err == HPE_PAUSED && p.status_code != 101;
}

/* ---- one input --------------------------------------------------------- */

int fuzz_backend_one(const uint8_t *data, size_t size)
{
    if (size < 5) return 0;
    uint8_t flags = data[0];
    const struct kind *k = &kinds[data[1] % NKINDS];
    const uint8_t *p = data + 5;
    size_t n = size - 5;
    size_t starts[FZ_MAX_CUTS + 2];
    int pieces = fz_pieces(data + 2, 3, n, starts);

    fz_begin(flags & 8);
    fz_client_send((const uint8_t *)k->head, strlen(k->head));
    if (k->upload) fz_client_send((const uint8_t *)upload, sizeof(upload));
    bool sent_all = true;
    for (int i = 0; i < pieces; i++) {
        if (!fz_origin_send(p + starts[i], starts[i + 1] - starts[i])) {
            sent_all = false;
            break;
        }
        if (i == 0 && (flags & 16)) fz_client_reset();
        if (i == 0 && (flags & 32)) fz_fire_timers();
    }
    if (flags & 1) fz_origin_shutdown();
    if (flags & 2) fz_origin_reset();
    if (flags & 4) fz_fire_timers();
    fz_end();
    int heads = check_client_stream(k);
    if (heads == 0 && sent_all && !(flags & 16) && begins_with_final(k, p, n))
        fz_fail("the origin sent a complete response but the client got no final response");
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_backend_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_backend_one(data, size);
}
#endif
