/* tls_io: a TLS connection as a transport (read, write, shutdown through
 * its SSL object), its handshake, the backends' client side, and what is
 * counted of it (see tls.h). */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "stats.h"

_Static_assert(TLS_FAIL_N == STATS_TLS_FAIL_REASONS, "stats.h counts every reason");

const char *const tls_fail_names[TLS_FAIL_N] = {"protocol", "cipher", "http_request", "not_tls",
                                                "closed",   "timeout", "other"};

static const struct transport_ops transport_ktls;

static enum tls_fail fail_reason(unsigned long e, int ssl_error)
{
    if (ssl_error == SSL_ERROR_SYSCALL || ssl_error == SSL_ERROR_ZERO_RETURN || !e) return TLS_FAIL_CLOSED;
    switch (ERR_GET_REASON(e)) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: return TLS_FAIL_PROTOCOL;
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_NO_SHARED_GROUPS: return TLS_FAIL_CIPHER;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST: return TLS_FAIL_HTTP;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_UNEXPECTED_MESSAGE:
    case SSL_R_LENGTH_MISMATCH: return TLS_FAIL_GARBAGE;
    default: return TLS_FAIL_OTHER;
    }
}

/* A fatal error: its text for the log (the verification result first, as
 * that is what an operator needs), counted when the handshake was not
 * over; the error queue is left empty for the next call. */
static void tls_note_error(struct transport *t, int ssl_error)
{
    unsigned long e = ERR_peek_error();
    bool handshaking = !SSL_is_init_finished(t->ssl);
    long verify = SSL_get_verify_result(t->ssl);
    if (!SSL_is_server(t->ssl) && verify != X509_V_OK) {
        snprintf(transport_tls_error, sizeof(transport_tls_error), "TLS certificate verify failed: %s",
                 X509_verify_cert_error_string(verify));
        STAT_ADD(WS->tls_up_verify_failed, 1);
    } else if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(transport_tls_error, sizeof(transport_tls_error), "TLS %s: %s", handshaking ? "handshake" : "error",
                 r ? r : "unknown error");
    } else {
        snprintf(transport_tls_error, sizeof(transport_tls_error), "TLS %s: connection closed by the peer",
                 handshaking ? "handshake" : "error");
    }
    if (handshaking && SSL_is_server(t->ssl)) {
        enum tls_fail why = fail_reason(e, ssl_error);
        STAT_ADD(WS->tls_failed[why], 1);
        if (why == TLS_FAIL_HTTP) { /* as nginx does: say so, in plain HTTP, once, then close */
            static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                                         "Content-Length: 50\r\nConnection: close\r\n\r\n"
                                         "The plain HTTP request was sent to an HTTPS port.\n";
            if (send(t->io.fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* best effort */
            }
        }
    }
    ERR_clear_error();
    t->handshake_failed = handshaking;
}

void tls_handshake_abandoned(struct transport *t, bool timed_out)
{
    if (!t->ssl || !SSL_is_server(t->ssl) || SSL_is_init_finished(t->ssl) || t->handshake_failed) return;
    t->handshake_failed = true;
    /* A connection that sent nothing at all is not a failed handshake. */
    if (!timed_out && SSL_get_state(t->ssl) == TLS_ST_BEFORE) return;
    STAT_ADD(WS->tls_failed[timed_out ? TLS_FAIL_TIMEOUT : TLS_FAIL_CLOSED], 1);
}

static void tls_handshake_done(struct transport *t)
{
    bool resumed = SSL_session_reused(t->ssl);
    if (SSL_is_server(t->ssl)) {
        STAT_ADD(WS->tls_handshakes, 1);
        if (resumed) STAT_ADD(WS->tls_resumed, 1);
    } else {
        STAT_ADD(WS->tls_up_handshakes, 1);
        if (resumed) STAT_ADD(WS->tls_up_resumed, 1);
    }
    /* The kernel took the records over both ways: the descriptor carries
     * plain payload again, and bodies go back to splice(). */
    if (BIO_get_ktls_send(SSL_get_wbio(t->ssl)) && BIO_get_ktls_recv(SSL_get_rbio(t->ssl))) t->ops = &transport_ktls;
}

/* -1 with errno: EAGAIN (wait; read_wants_write says for what), EPROTO
 * (failed: tls_last_error says why). */
static int handshake(struct transport *t)
{
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        tls_handshake_done(t);
        return 0;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->read_wants_write = e == SSL_ERROR_WANT_WRITE;
        errno = EAGAIN;
        return -1;
    }
    tls_note_error(t, e);
    errno = EPROTO;
    return -1;
}

/* Fills as much of buf as the records received allow: a short count means
 * the socket is drained (or closed), as with recv(), so edge-triggered
 * callers need no extra round. */
static ssize_t tls_read(struct transport *t, void *buf, size_t n)
{
    t->read_wants_write = false;
    if (!SSL_is_init_finished(t->ssl) && handshake(t)) return -1;
    size_t total = 0;
    while (total < n) {
        size_t got = 0;
        int rc = SSL_read_ex(t->ssl, (char *)buf + total, n - total, &got);
        if (rc == 1) {
            total += got;
            continue;
        }
        int e = SSL_get_error(t->ssl, rc);
        if (total && e != SSL_ERROR_SSL && e != SSL_ERROR_SYSCALL) {
            ERR_clear_error();
            return (ssize_t)total;
        }
        switch (e) {
        case SSL_ERROR_WANT_WRITE: t->read_wants_write = true; /* fall through */
        case SSL_ERROR_WANT_READ: errno = EAGAIN; return -1;
        case SSL_ERROR_ZERO_RETURN: return 0;
        default:
            if (total) return (ssize_t)total; /* the error comes again on the next read */
            tls_note_error(t, e);
            errno = e == SSL_ERROR_SYSCALL && errno ? errno : EPROTO;
            return -1;
        }
    }
    return (ssize_t)total;
}

static ssize_t tls_write(struct transport *t, const void *buf, size_t n)
{
    if (!SSL_is_init_finished(t->ssl) && handshake(t)) return -1;
    size_t done = 0;
    int rc = SSL_write_ex(t->ssl, buf, n, &done);
    if (rc == 1) return (ssize_t)done;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        errno = EAGAIN; /* the same bytes come again: OpenSSL holds the record */
        return -1;
    }
    tls_note_error(t, e);
    errno = EPROTO;
    return -1;
}

static void tls_shutdown(struct transport *t)
{
    /* close_notify, without waiting for the peer's: a truncation is then
     * told apart from the end. Then the TCP half-close, as for plain. */
    if (SSL_is_init_finished(t->ssl) && SSL_shutdown(t->ssl) < 0) ERR_clear_error();
    shutdown(t->io.fd, SHUT_WR);
}

static void tls_release(struct transport *t)
{
    /* A connection we close ourselves ended well: its session stays
     * resumable (SSL_free alone would drop it from every cache). */
    if (!t->handshake_failed && SSL_is_init_finished(t->ssl))
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(t->ssl);
    t->ssl = NULL;
}

static bool tls_buffered(const struct transport *t)
{
    return SSL_has_pending(t->ssl);
}

/* OpenSSL's read and write buffers (some 34 KiB) stay while a connection
 * is busy, and go when it goes quiet (a no-op while bytes are pending),
 * rather than being freed and made again around every record, as
 * SSL_MODE_RELEASE_BUFFERS does. */
static void tls_idle(struct transport *t)
{
    SSL_free_buffers(t->ssl);
}

#define TLS_OPS(can_splice)                                                                          \
    {                                                                                                \
        .read = tls_read, .write = tls_write, .shutdown = tls_shutdown, .release = tls_release,      \
        .buffered = tls_buffered, .idle = tls_idle, .splice = (can_splice),                          \
    }

const struct transport_ops transport_tls = TLS_OPS(false);
/* After a kTLS handshake: OpenSSL still frames control messages, the
 * kernel the payload, which splice() can then move. */
static const struct transport_ops transport_ktls = TLS_OPS(true);

bool tls_info(const struct transport *t, struct tls_info *out)
{
    if (!t->ssl || !SSL_is_init_finished(t->ssl)) return false;
    out->version = SSL_get_version(t->ssl);
    out->cipher = SSL_CIPHER_get_name(SSL_get_current_cipher(t->ssl));
    out->sni = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    return true;
}

/* ---- backends -------------------------------------------------------------- */

static int transport_index = -1; /* ex_data slot: the connection's transport */

static int new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct transport *t = SSL_get_ex_data(ssl, transport_index);
    if (!t || !t->tls_keep) return 0;
    t->tls_keep(t, sess);
    return 1; /* the keeper has the reference */
}

struct ssl_ctx_st *tls_client_new(bool verify, const char *ca, char *err, size_t errlen)
{
    if (transport_index == -1) transport_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: cannot create a context (out of memory)");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_ENABLE_KTLS);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    /* One recv() takes what has come (several records, or a record whole)
     * instead of a header and then its body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        int ok = ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            char why[160];
            unsigned long e = ERR_get_error();
            snprintf(why, sizeof(why), "%s", e ? ERR_reason_error_string(e) : "unknown error");
            ERR_clear_error();
            snprintf(err, errlen, "ca = \"%s\": cannot load it (%s)", ca ? ca : "(system store)", why);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return ctx;
}

void tls_client_free(struct ssl_ctx_st *ctx)
{
    SSL_CTX_free(ctx);
}

struct ssl_ctx_st *tls_client_ref(struct ssl_ctx_st *ctx)
{
    if (ctx) SSL_CTX_up_ref(ctx);
    return ctx;
}

void tls_session_free(struct ssl_session_st *session)
{
    SSL_SESSION_free(session);
}

int tls_connect(struct transport *t, struct ssl_ctx_st *ctx, const char *name, bool verify,
                struct ssl_session_st *offer, void (*keep)(struct transport *t, struct ssl_session_st *s))
{
    t->tls_keep = keep;
    SSL *ssl = SSL_new(ctx);
    if (!ssl) return -1;
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    if (SSL_set_fd(ssl, t->io.fd) != 1 || (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1) ||
        (verify && (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) : SSL_set1_host(ssl, name)) != 1)) {
        ERR_clear_error();
        SSL_free(ssl);
        return -1;
    }
    SSL_set_ex_data(ssl, transport_index, t);
    if (offer) SSL_set_session(ssl, offer);
    SSL_set_connect_state(ssl);
    t->ssl = ssl;
    t->ops = &transport_tls;
    return 0;
}
