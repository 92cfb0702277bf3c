#include "transport.h"

#include <errno.h>
#include <sys/socket.h>

static ssize_t plain_read(struct transport *t, void *buf, size_t n)
{
    return recv(t->io.fd, buf, n, 0);
}

static ssize_t plain_write(struct transport *t, const void *buf, size_t n)
{
    return send(t->io.fd, buf, n, MSG_NOSIGNAL);
}

static void plain_shutdown(struct transport *t)
{
    shutdown(t->io.fd, SHUT_WR);
}

const struct transport_ops transport_plain = {
    .read = plain_read,
    .write = plain_write,
    .shutdown = plain_shutdown,
    .splice = true,
};

enum pump_result transport_pump(struct transport *from, struct transport *to, struct pipe_pair *p,
                                uint64_t *left, uint64_t *moved)
{
    if (!transport_can_splice(from, to)) {
        errno = EOPNOTSUPP;
        return PUMP_ERROR;
    }
    return splice_pump(from->io.fd, to->io.fd, p, left, moved);
}

enum pump_result transport_stream(struct transport *from, struct transport *to, struct pipe_pair *p,
                                  uint64_t *moved)
{
    if (!transport_can_splice(from, to)) {
        errno = EOPNOTSUPP;
        return PUMP_ERROR;
    }
    return splice_stream(from->io.fd, to->io.fd, p, moved);
}
