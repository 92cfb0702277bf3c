#include "pool.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"
#include "tls.h"
#include "upstream.h"
#include "upstream_tls.h"
#include "worker_state.h"

uint64_t pool_reuses(void)
{
    return STAT_GET(WS->pool_reuses);
}

void pool_init(struct pool *p)
{
    p->head = NULL;
    p->count = 0;
    p->srv = NULL;
}

void pool_attach(struct pool *p, struct server *srv)
{
    p->srv = srv;
}

static void unlink_idle(struct bconn *b)
{
    struct pool *p = &b->srv->pool;
    if (b->prev) b->prev->next = b->next;
    else p->head = b->next;
    if (b->next) b->next->prev = b->prev;
    b->prev = b->next = NULL;
    b->idle = false;
    p->count--;
    timer_cancel(&W.loop.timers, &b->idle_timer);
}

static void free_cb(struct defer *d)
{
    free(container_of(d, struct bconn, free_later));
}

void bconn_close(struct bconn *b)
{
    if (b->tp.io.fd == -1) return;
    if (b->idle) unlink_idle(b);
    timer_cancel(&W.loop.timers, &b->idle_timer);
    transport_release(&b->tp);
    loop_close(&W.loop, &b->tp.io);
    b->ex = NULL;
    b->user = NULL;
    loop_defer(&W.loop, &b->free_later);
}

static void on_io(struct io *io, unsigned events)
{
    struct bconn *b = container_of(io, struct bconn, tp.io);
    if (b->idle) {
        /* An idle connection has nothing to say: this is the backend
         * closing it, or bytes that would desynchronise the next request. */
        log_debug("pooled connection to %s closed by the backend", b->srv->name);
        bconn_close(b);
        return;
    }
    if ((b->ex || b->user) && b->on_event) b->on_event(b, events);
}

static void on_idle_timeout(struct timer *t)
{
    bconn_close(container_of(t, struct bconn, idle_timer));
}

/* A TLS server's newest session, for its next new connection. */
static void keep_session(struct transport *t, struct ssl_session_st *sess)
{
    struct server *s = container_of(t, struct bconn, tp)->srv;
    tls_session_free(s->tls_session);
    s->tls_session = sess;
}

struct bconn *bconn_connect(struct server *s, int *err)
{
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        *err = -errno;
        return NULL;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&s->addr, s->addrlen) == -1 && errno != EINPROGRESS) {
        *err = -errno;
        close(fd);
        return NULL;
    }
    struct bconn *b = calloc(1, sizeof(*b));
    if (!b) {
        close(fd);
        *err = -ENOMEM;
        return NULL;
    }
    b->tp.io.fd = fd;
    b->tp.io.cb = on_io;
    b->tp.ops = &transport_plain;
    b->srv = s;
    if ((*err = upstream_tls_start(&b->tp, s, keep_session))) {
        close(fd);
        free(b);
        return NULL;
    }
    b->idle_timer.cb = on_idle_timeout;
    b->free_later.cb = free_cb;
    /* Writable is how a non-blocking connect reports that it finished. */
    if (loop_add(&W.loop, &b->tp.io, IO_READ | IO_WRITE)) {
        *err = -errno;
        transport_release(&b->tp);
        close(fd);
        free(b);
        return NULL;
    }
    return b;
}

struct bconn *pool_get(struct pool *p)
{
    while (p->head) {
        struct bconn *b = p->head;
        unlink_idle(b);
        /* Bytes or a close may have come since the last epoll_wait, their
         * event not handled yet: the backend's keep-alive timeout, or
         * bytes after a complete response (a second response, garbage)
         * that the next request would read as its answer. That happens
         * however short the idle time was (a worker busy in Lua for a
         * while turns it into the rule), so every connection is peeked
         * at: one recv that fails with EAGAIN on a healthy one. A close
         * that comes after the peek still ends as a failure before any
         * response byte, which forward retries when that is safe. */
        char c;
        ssize_t n = recv(b->tp.io.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK) && !transport_buffered(&b->tp)) {
            STAT_ADD(WS->pool_reuses, 1);
            return b;
        }
        if (n > 0) log_debug("pooled connection to %s had stray bytes: closed", b->srv->name);
        bconn_close(b);
    }
    return NULL;
}

void pool_put(struct bconn *b)
{
    struct server *s = b->srv;
    b->ex = NULL;
    b->user = NULL;
    /* Since a reload: the same server in the new script takes it. */
    while (s->successor) s = b->srv = s->successor; /* or a replacement (upstream_set.h) */
    struct pool *p = &s->pool;
    if (p->count >= s->up->keepalive || W.draining || s->up->retired) {
        bconn_close(b);
        return;
    }
    loop_mod(&W.loop, &b->tp.io, IO_READ);
    transport_idle(&b->tp);
    b->idle = true;
    b->prev = NULL;
    b->next = p->head;
    if (p->head) p->head->prev = b;
    p->head = b;
    p->count++;
    loop_timer(&W.loop, &b->idle_timer, s->up->keepalive_timeout_ms);
}

void pool_close_all(struct pool *p)
{
    while (p->head) bconn_close(p->head);
}

void pool_move(struct pool *p, struct server *to)
{
    while (p->head) {
        struct bconn *b = p->head;
        if (!to || to->pool.count >= to->up->keepalive) {
            bconn_close(b);
            continue;
        }
        unlink_idle(b);
        b->srv = to;
        pool_put(b);
    }
}
