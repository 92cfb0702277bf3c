/* mirror: a copy of every request of an upstream goes to another one (its
 * `mirror` option), and the copy's answers are read and thrown away.
 *
 * The copy is best effort and must never cost the real request anything:
 * it has its own backend connection, its own timer and its own buffers,
 * and it is fed, never waited for. The head (and the body bytes that came
 * with it) is copied once, from the head the exchange built. A spliced
 * body is duplicated inside the kernel: each chunk the exchange splices
 * from the client into its pipe is tee()d into the mirror's pipe before it
 * goes on to the backend (splice_pump_tee), and spliced from there to the
 * mirror's socket; no byte of it passes through user space. A body that
 * is not spliced (chunked, or relayed through a buffer) is copied from the
 * bytes the exchange already holds.
 *
 * When the mirror cannot take a chunk at once (its pipe is full: the
 * mirror reads slowly, or its connection is not ready yet), the copy is
 * dropped: the mirror request is abandoned, its connection closed, and the
 * drop counted in luaproxy_mirror_dropped_total{upstream}. So is a copy
 * that finds no server, or whose connection fails before all of it went.
 *
 * A copy may outlive its exchange (the mirror answers later than the real
 * backend): it then runs alone until its answer is read, holding its
 * upstream (upstream_hold) so that a reload cannot free it underneath. An
 * exchange that ends before its request body was read (the client went
 * away, the backend answered early) abandons its copy, which is then
 * incomplete; that is not counted as a drop. */
#include "proxy.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "balance.h"
#include "stats.h"
#include "upstream_set.h"
#include "worker_state.h"

/* Bytes of a copied (non-spliced) body the mirror may have unwritten
 * before it counts as too slow. */
#define MIRROR_OUT_MAX (256 * 1024)

struct mirror {
    struct upstream *up;   /* the mirror upstream, held while the copy lives */
    struct server *srv;
    struct bconn *b;
    struct mirror **slot;  /* the exchange's pointer to it, while it feeds the copy */
    struct buf out;        /* the head and copied body bytes, not yet written */
    struct pipe_pair pipe; /* tee()d body bytes, not yet spliced to the mirror */
    uint64_t body_left;    /* body bytes (Content-Length) still to come */
    bool body_open;        /* a chunked body still coming, up to its last chunk */
    bool connected;        /* the connect finished */
    bool writing;          /* IO_WRITE is in the connection's interest */
    bool sent;             /* all of the copy went out: its answer is awaited */
    bool head_method;      /* a HEAD: the answer has no body whatever it says */
    llhttp_t rp;           /* the answer, parsed only to find its end */
    struct timer timer;    /* connect_timeout, then read_timeout from the last progress */
    uint8_t epoch;         /* the grace period it counts in: srv stays while it lives (upstream_set.h) */
    struct mirror *prev, *next; /* the worker's live copies */
};

static struct mirror *live;
static struct mirror *free_list;

/* ---- the answer ------------------------------------------------------ */

static int m_on_headers_complete(llhttp_t *p)
{
    struct mirror *m = p->data;
    return m->head_method ? 1 : 0; /* a HEAD answer has no body */
}

static int m_on_message_complete(llhttp_t *p)
{
    /* An interim answer (100 Continue) is followed by the final one. */
    return p->status_code >= 200 ? HPE_PAUSED : 0;
}

static const llhttp_settings_t answer_settings = {
    .on_headers_complete = m_on_headers_complete,
    .on_message_complete = m_on_message_complete,
};

/* ---- the end --------------------------------------------------------- */

static void mirror_end(struct mirror *m, bool reusable)
{
    timer_cancel(&W.loop.timers, &m->timer);
    if (m->slot) *m->slot = NULL;
    if (m->b) {
        struct bconn *b = m->b;
        m->srv->active--;
        /* An upstream its script freed (a reload) pools nothing more. */
        if (reusable && !m->up->orphaned) {
            b->requests++;
            pool_put(b);
        } else {
            bconn_close(b);
        }
    }
    pipe_give(&m->pipe);
    if (m->prev) m->prev->next = m->next;
    else live = m->next;
    if (m->next) m->next->prev = m->prev;
    upstream_epoch_leave(m->epoch);
    upstream_release(m->up);
    if (m->out.cap > 65536) buf_free(&m->out);
    m->next = free_list;
    free_list = m;
}

/* The copy could not be delivered: counted, and the connection closed. */
static void mirror_drop(struct mirror *m, const char *why)
{
    log_debug("mirror %s%s%s: request copy dropped: %s", m->up->name, m->srv ? " server " : "",
              m->srv ? m->srv->name : "", why);
    stats_mirror_dropped(m->up->name);
    mirror_end(m, false);
}

static void want_write(struct mirror *m, bool on)
{
    if (m->writing == on) return;
    m->writing = on;
    loop_mod(&W.loop, &m->b->tp.io, on ? IO_READ | IO_WRITE : IO_READ);
}

/* ---- sending --------------------------------------------------------- */

/* The mirror's socket may take the pipe's bytes: connected, and the head
 * (and any copied bytes before them) all written. */
static int ready_fd(const struct mirror *m)
{
    return m->connected && !buf_pending(&m->out) ? m->b->tp.io.fd : -1;
}

/* Writes what the copy holds, as far as the socket takes it. false when
 * the copy ended (dropped). */
static bool mirror_flush(struct mirror *m)
{
    if (!m->connected || m->sent) return true;
    while (buf_pending(&m->out)) {
        ssize_t n = transport_write(&m->b->tp, m->out.data + m->out.off, buf_pending(&m->out));
        if (n > 0) {
            buf_consume(&m->out, (size_t)n);
            loop_timer(&W.loop, &m->timer, m->up->read_timeout_ms);
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && errno == EAGAIN) return want_write(m, true), true;
        return mirror_drop(m, strerror(errno)), false;
    }
    if (m->pipe.len) {
        /* Nothing more to read in: splice_pump only drains the pipe. */
        uint64_t none = 0, moved = 0;
        enum pump_result r = splice_pump(-1, m->b->tp.io.fd, &m->pipe, &none, &moved);
        if (moved) loop_timer(&W.loop, &m->timer, m->up->read_timeout_ms);
        if (r == PUMP_WANT_WRITE) return want_write(m, true), true;
        if (r == PUMP_ERROR) return mirror_drop(m, strerror(errno)), false;
    }
    /* Nothing waits: writability would only wake the worker for nothing
     * (every ACK that frees send buffer is an edge) until bytes block. */
    want_write(m, false);
    if (m->body_left || m->body_open) return true; /* the exchange brings more */
    m->sent = true;
    loop_timer(&W.loop, &m->timer, m->up->read_timeout_ms);
    return true;
}

/* Reads and discards the answer; at its end the connection goes back to
 * the pool when it may carry another request. */
static void mirror_read(struct mirror *m)
{
    static char scratch[16384];
    for (;;) {
        ssize_t n = transport_read(&m->b->tp, scratch, sizeof(scratch));
        if (n > 0) {
            loop_timer(&W.loop, &m->timer, m->up->read_timeout_ms);
            llhttp_errno_t err = llhttp_execute(&m->rp, scratch, (size_t)n);
            if (err == HPE_OK) continue;
            /* An answer before the whole copy went (an early 413): the copy
             * ends there, the connection with it. */
            bool whole = err == HPE_PAUSED && llhttp_get_error_pos(&m->rp) == scratch + n;
            return mirror_end(m, m->sent && whole && llhttp_should_keep_alive(&m->rp));
        }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && errno == EAGAIN) return;
        /* Closed or failed: an answer framed by the close ends here too. */
        if (!m->sent) return mirror_drop(m, n == 0 ? "the mirror closed the connection" : strerror(errno));
        return mirror_end(m, false);
    }
}

static void on_event(struct bconn *b, unsigned events)
{
    struct mirror *m = b->user;
    if (!m->connected) {
        if (!(events & (IO_WRITE | IO_ERROR))) return;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(b->tp.io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) return mirror_drop(m, strerror(err));
        m->connected = true;
        b->connected = true;
        loop_timer(&W.loop, &m->timer, m->up->read_timeout_ms);
    }
    if ((events & (IO_WRITE | IO_ERROR)) && !mirror_flush(m)) return;
    if (events & (IO_READ | IO_HUP | IO_ERROR)) mirror_read(m);
}

static void on_timer(struct timer *t)
{
    struct mirror *m = container_of(t, struct mirror, timer);
    if (!m->sent) return mirror_drop(m, m->connected ? "no progress within read_timeout" : "connect timed out");
    log_debug("mirror %s server %s: no answer within read_timeout", m->up->name, m->srv->name);
    mirror_end(m, false);
}

/* ---- the exchange's hooks -------------------------------------------- */

void mirror_start(struct exchange *ex)
{
    struct upstream *mu = ex->up->mirror;
    /* A tunnel after a 101 has no request to copy. */
    if (!mu || ex->upgrade || ex->mirror) return;
    struct mirror *m = free_list;
    if (m) free_list = m->next;
    else if (!(m = calloc(1, sizeof(*m)))) return stats_mirror_dropped(mu->name);
    struct buf out = m->out;
    memset(m, 0, sizeof(*m));
    m->out = out;
    m->out.len = m->out.off = 0;
    m->pipe.rd = m->pipe.wr = -1;
    m->timer.cb = on_timer;
    m->up = mu;
    upstream_hold(mu);
    /* A copy outlives its exchange: a change of the mirror's servers
     * (set_servers, a name) keeps the old array until it is over too. */
    m->epoch = upstream_epoch_enter();
    m->next = live;
    if (live) live->prev = m;
    live = m;
    m->body_left = ex->req_left;
    m->body_open = ex->req_chunked;
    m->head_method = ex->rq.req->method == HTTP_HEAD;
    llhttp_init(&m->rp, HTTP_RESPONSE, &answer_settings);
    m->rp.data = m;
    if (buf_append(&m->out, ex->req_head.data, ex->req_head.len)) return mirror_drop(m, "out of memory");

    struct server *s = NULL;
    if (balance_choose(ex->rq.sreq, mu, NULL, W.loop.now_ms, &s) || !s) return mirror_drop(m, "no server");
    struct bconn *b = pool_get(&s->pool);
    int err = 0;
    if (b) m->connected = true;
    else if (!(b = bconn_connect(s, &err))) return mirror_drop(m, strerror(-err));
    m->srv = s;
    m->b = b;
    s->active++;
    b->user = m;
    b->on_event = on_event;
    m->writing = !m->connected; /* a connect waits for writability */
    ex->mirror = m;
    m->slot = &ex->mirror;
    loop_timer(&W.loop, &m->timer, m->connected ? mu->read_timeout_ms : mu->connect_timeout_ms);
    mirror_flush(m);
}

/* A connect in progress may be done already (on loopback it is, most of
 * the time, before its event comes): a second connect() says EISCONN
 * then, EALREADY while it is still under way. The body's first chunks can
 * then go straight on instead of waiting in the pipe. false when the copy
 * ended (the connect failed). */
static bool mirror_settle(struct mirror *m)
{
    if (!m->connected) {
        const struct server *s = m->srv;
        if (connect(m->b->tp.io.fd, (const struct sockaddr *)&s->addr, s->addrlen) == 0 || errno == EISCONN) {
            m->connected = m->b->connected = true;
        } else if (errno != EALREADY && errno != EINPROGRESS && errno != EINTR) {
            return mirror_drop(m, strerror(errno)), false;
        }
    }
    return mirror_flush(m);
}

static void relay_tap(void *arg, const char *p, size_t n)
{
    struct exchange *ex = arg;
    if (ex->mirror) mirror_copy(ex, p, n);
}

enum pump_result mirror_pump(struct exchange *ex, uint64_t *moved)
{
    struct mirror *m = ex->mirror;
    if (!mirror_settle(m)) return transport_pump(ex->rq.transport, &ex->b->tp, &ex->req_pipe, &ex->req_left, moved);
    struct transport *from = ex->rq.transport, *to = &ex->b->tp;
    /* tee() works between pipes only. A body relayed through user space
     * (a TLS side) is copied as it passes (mirror_copy, through the
     * relay's tap); a spliced one to a mirror that cannot take a splice
     * (a TLS mirror) is not copied at all. */
    if (!transport_can_splice(from, to)) {
        ex->req_pipe.tap = relay_tap;
        ex->req_pipe.tap_arg = ex;
        enum pump_result r = transport_pump(from, to, &ex->req_pipe, &ex->req_left, moved);
        ex->req_pipe.tap = NULL;
        return r;
    }
    if (!m->b->tp.ops->splice) {
        mirror_drop(m, "the body is spliced and the mirror cannot take a splice");
        return transport_pump(from, to, &ex->req_pipe, &ex->req_left, moved);
    }
    if (m->pipe.rd == -1 && pipe_take(&m->pipe)) {
        mirror_drop(m, "no pipe");
        return transport_pump(from, to, &ex->req_pipe, &ex->req_left, moved);
    }
    struct splice_copy c = {.pipe = &m->pipe, .dst = ready_fd(m)};
    enum pump_result r = splice_pump_tee(from->io.fd, to->io.fd, &ex->req_pipe, &c, &ex->req_left, moved);
    m->body_left -= c.teed < m->body_left ? c.teed : m->body_left;
    if (c.failed)
        mirror_drop(m, c.dst == -1 ? "its connection is not ready and its pipe is full" : "its pipe is full");
    else if (c.moved)
        loop_timer(&W.loop, &m->timer, m->up->read_timeout_ms);
    if (ex->mirror) mirror_flush(m);
    return r;
}

void mirror_copy(struct exchange *ex, const char *p, size_t n)
{
    struct mirror *m = ex->mirror;
    /* Copied bytes go after the head; never between tee()d ones. */
    if (m->pipe.len) return mirror_drop(m, "a copied body after a spliced one");
    if (buf_pending(&m->out) + n > MIRROR_OUT_MAX) return mirror_drop(m, "its buffer is full");
    if (buf_append(&m->out, p, n)) return mirror_drop(m, "out of memory");
    if (!m->body_open) m->body_left -= n < m->body_left ? n : m->body_left;
    mirror_flush(m);
}

void mirror_body_end(struct exchange *ex)
{
    struct mirror *m = ex->mirror;
    m->body_open = false;
    mirror_flush(m);
}

void mirror_detach(struct exchange *ex)
{
    struct mirror *m = ex->mirror;
    if (!m) return;
    ex->mirror = NULL;
    m->slot = NULL;
    if (m->body_left || m->body_open) {
        log_debug("mirror %s: the request ended before its body was read: copy abandoned", m->up->name);
        mirror_end(m, false);
    }
}

void mirror_close_all(void)
{
    if (live) {
        while (live) mirror_end(live, false);
        loop_run_deferred(&W.loop); /* the connections' memory */
    }
    while (free_list) {
        struct mirror *m = free_list;
        free_list = m->next;
        buf_free(&m->out);
        free(m);
    }
}
