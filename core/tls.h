/* tls: TLS on both sides, on OpenSSL 3.
 *
 * Listeners (--tls-listen): the certificates of --tls-cert, each in a
 * server context of its own, chosen by SNI against the names of the
 * certificate (the first is the default); Mozilla's "intermediate" profile
 * by default; ALPN http/1.1; session tickets whose keys every worker
 * derives from one secret the master drew before forking, so a client
 * resumes on any worker (tls.c).
 *
 * A TLS connection is a struct transport whose ops go through its SSL
 * object (tls_io.c): the code above reads and writes as on a plain socket,
 * handshakes happen inside the first read (a server) or write (a backend),
 * and bodies are relayed through a bounded buffer (transport.c) unless the
 * kernel took the records over (kTLS), when splice() moves them again.
 *
 * Backends: a client context per TLS upstream (verification against the
 * system store or a CA file), SNI and host name checked, the last session
 * of each server offered to its next new connection. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "transport.h"

struct ssl_ctx_st;
struct ssl_session_st;

/* Once, in the master before forking: the secret the ticket keys derive
 * from. 0 or -1. */
int tls_init(void);

/* Loads and checks every --tls-cert (cert chain and key match, dates, the
 * options) into a new set of server contexts. With install, the set
 * replaces the one in service (connections already open keep theirs);
 * without, it is only checked and freed. 0, or -1 with one line in err
 * naming the file or the option. Nothing to do without --tls-cert. */
int tls_server_load(const struct config *cfg, bool install, char *err, size_t errlen);
void tls_server_free(void);

/* Whether a certificate's name (exact, or "*.a.b" for one label) covers
 * host; case does not matter. */
bool tls_name_matches(const char *pattern, const char *host);

/* An accepted socket of a TLS listener: t becomes a TLS transport whose
 * handshake runs within its first reads. 0, or -1 (out of memory). */
int tls_accept(struct transport *t);

/* A backend's client context: verify against ca (a PEM file) or, when
 * NULL, the system's store. NULL with err on failure. */
struct ssl_ctx_st *tls_client_new(bool verify, const char *ca, char *err, size_t errlen);
void tls_client_free(struct ssl_ctx_st *ctx);
/* One more reference to ctx (may be NULL), for a copy that frees its own. */
struct ssl_ctx_st *tls_client_ref(struct ssl_ctx_st *ctx);

/* A new backend connection on t becomes TLS: SNI and the verified name are
 * name (an IP address is checked against the certificate's addresses and
 * sends no SNI); offer, when set, is offered for resumption; keep(t, s),
 * when set, is given every new session the server issues (a reference to
 * free). */
int tls_connect(struct transport *t, struct ssl_ctx_st *ctx, const char *name, bool verify,
                struct ssl_session_st *offer, void (*keep)(struct transport *t, struct ssl_session_st *s));
void tls_session_free(struct ssl_session_st *session);

/* What the script and the access log see of a TLS connection. */
struct tls_info {
    const char *version; /* "TLSv1.3" */
    const char *cipher;  /* "TLS_AES_128_GCM_SHA256" */
    const char *sni;     /* the name the client asked for, or NULL */
};
bool tls_info(const struct transport *t, struct tls_info *out);

/* Handshake failures of client connections, by reason (/metrics). */
enum tls_fail {
    TLS_FAIL_PROTOCOL,    /* a version we do not speak (or refuse) */
    TLS_FAIL_CIPHER,      /* no cipher in common */
    TLS_FAIL_HTTP,        /* plain HTTP on the TLS port */
    TLS_FAIL_GARBAGE,     /* not TLS at all */
    TLS_FAIL_CLOSED,      /* the client went away */
    TLS_FAIL_TIMEOUT,     /* no handshake within --header-timeout */
    TLS_FAIL_OTHER,
    TLS_FAIL_N,
};
extern const char *const tls_fail_names[TLS_FAIL_N];
/* A client connection closed before its handshake finished: counted. */
void tls_handshake_abandoned(struct transport *t, bool timed_out);

/* tls.c's accepted connections take tls_io.c's transport. */
extern const struct transport_ops transport_tls;
