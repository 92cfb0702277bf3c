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

struct transport_ops {
    /* recv()/send() semantics: the count of bytes moved; 0 when the peer
     * closed (read); -1 with errno (EAGAIN: wait for the next event). */
    ssize_t (*read)(struct transport *t, void *buf, size_t n);
    ssize_t (*write)(struct transport *t, const void *buf, size_t n);
    /* Nothing more will be written: the peer reads an end of stream. */
    void (*shutdown)(struct transport *t);
    /* The bytes on io.fd are the payload itself: splice() can move them. */
    bool splice;
};

/* Embedded where a plain struct io would be: the loop reports the
 * descriptor's events to io.cb, whose owner finds itself by container_of. */
struct transport {
    struct io io;
    const struct transport_ops *ops;
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

static inline bool transport_can_splice(const struct transport *from, const struct transport *to)
{
    return from->ops->splice && to->ops->splice;
}

/* splice_pump() and splice_stream() from one transport to another; both
 * must be able to splice (PUMP_ERROR with EOPNOTSUPP otherwise: a body
 * between transports that cannot is relayed through a buffer by the
 * caller, with transport_read and transport_write). */
enum pump_result transport_pump(struct transport *from, struct transport *to, struct pipe_pair *p,
                                uint64_t *left, uint64_t *moved);
enum pump_result transport_stream(struct transport *from, struct transport *to, struct pipe_pair *p,
                                  uint64_t *moved);
