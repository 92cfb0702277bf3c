#include "transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
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

char transport_tls_error[256];

const char *transport_strerror(const struct transport *t, int err)
{
    return t->ssl && err == EPROTO && transport_tls_error[0] ? transport_tls_error : strerror(err);
}

const struct transport_ops transport_plain = {
    .read = plain_read,
    .write = plain_write,
    .shutdown = plain_shutdown,
    .splice = true,
};

/* Through user space: read when the buffer is empty, write until it is.
 * left: NULL for a stream (no length known: to EOF). The buffer is given
 * back whenever it empties and the source has nothing more for now, so a
 * quiet transfer (a tunnel, a slow upload) holds no memory. */
static enum pump_result relay(struct transport *from, struct transport *to, struct pipe_pair *p, uint64_t *left,
                              uint64_t *moved)
{
    for (;;) {
        while (p->len) {
            ssize_t n = transport_write(to, p->relay + p->roff, p->len);
            if (n > 0) {
                p->roff += (size_t)n;
                p->len -= (size_t)n;
                *moved += (uint64_t)n;
                continue;
            }
            if (n == -1 && errno == EINTR) continue;
            if (n == -1 && errno == EAGAIN) return PUMP_WANT_WRITE;
            return PUMP_ERROR;
        }
        if (left && *left == 0) {
            free(p->relay);
            p->relay = NULL;
            return PUMP_DONE;
        }
        if (!p->relay && !(p->relay = malloc(RELAY_SIZE))) {
            errno = ENOMEM;
            return PUMP_ERROR;
        }
        size_t want = left && *left < RELAY_SIZE ? (size_t)*left : RELAY_SIZE;
        ssize_t n = transport_read(from, p->relay, want);
        if (n > 0) {
            p->roff = 0;
            p->len = (size_t)n;
            if (left) *left -= (uint64_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        free(p->relay);
        p->relay = NULL;
        if (n == 0) return PUMP_EOF;
        if (errno == EAGAIN) return PUMP_WANT_READ;
        return PUMP_ERROR;
    }
}

enum pump_result transport_pump(struct transport *from, struct transport *to, struct pipe_pair *p,
                                uint64_t *left, uint64_t *moved)
{
    if (!transport_can_splice(from, to)) return relay(from, to, p, left, moved);
    return splice_pump(from->io.fd, to->io.fd, p, left, moved);
}

enum pump_result transport_stream(struct transport *from, struct transport *to, struct pipe_pair *p,
                                  uint64_t *moved)
{
    if (!transport_can_splice(from, to)) return relay(from, to, p, NULL, moved);
    return splice_stream(from->io.fd, to->io.fd, p, moved);
}
