/* upstream_tls: what a connection to a TLS server of an upstream needs,
 * asked by the pool (requests) and the health probes alike. Inline, in a
 * header of its own: both sit below upstream.c, which calls them. */
#pragma once
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "tls.h"
#include "upstream.h"

/* The name a TLS server is asked for (SNI) and checked against: the
 * upstream's sni, else the name the server was resolved from, else its
 * address's host. */
static inline void upstream_tls_name(const struct server *s, char *out, size_t n)
{
    if (s->up->sni[0]) {
        snprintf(out, n, "%s", s->up->sni);
        return;
    }
    const char *addr = s->host[0] && strncmp(s->name, "unix:", 5) ? s->host : s->name;
    const char *end = strrchr(addr, ':');
    size_t len = end ? (size_t)(end - addr) : strlen(addr);
    if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']') addr++, len -= 2;
    snprintf(out, n, "%.*s", (int)len, addr);
}

/* The upstream's TLS client context, made on first use when none was at
 * load (a list set at run time brought its first TLS server); NULL, logged,
 * when it cannot be made. */
static inline struct ssl_ctx_st *upstream_tls_ctx(struct upstream *u)
{
    char why[512];
    if (!u->tls_ctx && !(u->tls_ctx = tls_client_new(u->tls_verify, u->tls_ca, why, sizeof(why))))
        log_warn("upstream %s: %s", u->name, why);
    return u->tls_ctx;
}

/* A new connection t to s becomes TLS when s is a TLS server (tls_connect
 * with the upstream's context, the server's name and last session; keep,
 * when set, is given its new sessions). 0 (TLS or not), -EPROTO (no
 * context: logged) or -ENOMEM. */
static inline int upstream_tls_start(struct transport *t, struct server *s,
                                     void (*keep)(struct transport *t, struct ssl_session_st *sess))
{
    struct upstream *u = s->up;
    if (!s->tls && !u->tls_all) return 0;
    if (!upstream_tls_ctx(u)) return -EPROTO;
    char name[256];
    upstream_tls_name(s, name, sizeof(name));
    return tls_connect(t, u->tls_ctx, name, u->tls_verify, s->tls_session, keep) ? -ENOMEM : 0;
}
