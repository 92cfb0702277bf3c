/* transport: where a connection's bytes come from and go to. Today a plain
 * socket; a TLS session stands in the same place later, so that the code
 * above (client connections, backend connections, the exchange between
 * them) reads and writes through these calls and never calls recv() or
 * send() on a descriptor itself.
 *
 * A transport whose descriptor carries the payload as it is (a plain
 * socket, or kernel TLS) can also move bytes with splice(): the exchange
 * asks transport_can_splice() before it pumps a body from one to the other
 * without copying it through user space. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"
#include "splice.h"

struct transport;
struct ssl_st;

struct transport_ops {
    /* recv()/send() semantics: the count of bytes moved; 0 when the peer
     * closed (read); -1 with errno (EAGAIN: wait for the next event). */
    ssize_t (*read)(struct transport *t, void *buf, size_t n);
    ssize_t (*write)(struct transport *t, const void *buf, size_t n);
    /* Nothing more will be written: the peer reads an end of stream. */
    void (*shutdown)(struct transport *t);
    /* Releases what the transport holds beside the descriptor (a TLS
     * session); the owner closes io.fd after it. May be NULL. */
    void (*release)(struct transport *t);
    /* Bytes read from io.fd and held above it (decrypted, not yet taken):
     * an idle connection with some is not silent. May be NULL. */
    bool (*buffered)(const struct transport *t);
    /* The bytes on io.fd are the payload itself: splice() can move them. */
    bool splice;
};

/* Embedded where a plain struct io would be: the loop reports the
 * descriptor's events to io.cb, whose owner finds itself by container_of. */
struct transport {
    struct io io;
    const struct transport_ops *ops;
    struct ssl_st *ssl; /* TLS (core/tls.h); NULL for a plain socket */
    /* A read could not go on until the socket takes bytes (a TLS handshake
     * message): the owner waits for writability and then reads again. */
    bool read_wants_write;
    bool handshake_failed; /* TLS: counted as failed already */
};

/* A connected, non-blocking TCP or unix socket. */
extern const struct transport_ops transport_plain;

static inline ssize_t transport_read(struct transport *t, void *buf, size_t n)
{
    return t->ops->read(t, buf, n);
}

static inline ssize_t transport_write(struct transport *t, const void *buf, size_t n)
{
    return t->ops->write(t, buf, n);
}

static inline void transport_shutdown(struct transport *t)
{
    t->ops->shutdown(t);
}

static inline void transport_release(struct transport *t)
{
    if (t->ops->release) t->ops->release(t);
}

static inline bool transport_buffered(const struct transport *t)
{
    return t->ops->buffered && t->ops->buffered(t);
}

/* Why the last read or write on t failed (errno err), for a log line: a
 * TLS failure says what failed ("TLS certificate verify failed: ...").
 * TLS transports write their reason to transport_tls_error. */
extern char transport_tls_error[256];
const char *transport_strerror(const struct transport *t, int err);

static inline bool transport_can_splice(const struct transport *from, const struct transport *to)
{
    return from->ops->splice && to->ops->splice;
}

/* splice_pump() and splice_stream() from one transport to another. When
 * either cannot splice (TLS in user space), the bytes are relayed through
 * a buffer instead (transport_read, then transport_write): p->relay, at
 * most RELAY_SIZE bytes, taken when bytes come and given back as soon as
 * it is empty, so an idle transfer holds none. p->len counts the bytes
 * held either way, so callers see the same states. */
#define RELAY_SIZE 16384
enum pump_result transport_pump(struct transport *from, struct transport *to, struct pipe_pair *p,
                                uint64_t *left, uint64_t *moved);
enum pump_result transport_stream(struct transport *from, struct transport *to, struct pipe_pair *p,
                                  uint64_t *moved);
