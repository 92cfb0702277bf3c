#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health_http.h"
#include "health_table.h"
#include "log.h"
#include "tls.h"
#include "transport.h"
#include "upstream.h"
#include "upstream_tls.h"
#include "worker_state.h"

/* Probes are looked at on a grid of ticks, by one timer per upstream,
 * rather than woken by the loop for each of their events: their sockets
 * are never in the epoll set, and a thousand servers cost five wake-ups a
 * second, not thousands (100 ms ticks cost a third more CPU than 200 ms
 * with 1,000 servers). A response waits at most one tick to be read, and a
 * timeout is kept to within a tick: a fifth of the interval, 200 ms at most. */
#define HEALTH_TICK_MS 200 /* at most; a fifth of the interval when that is shorter */
/* A health page is small; the rest of a larger answer is cut (reset). */
#define HEALTH_DRAIN_MAX 65536

/* One server's probing in this worker. */
struct probe {
    struct transport tp;       /* the probe's connection (tp.io.fd -1 when none); may stay open between probes */
    bool busy;                 /* a probe runs */
    bool sent;                 /* ... its request is out */
    bool reused;               /* ... on the previous probe's connection */
    bool recorded;             /* ... its result is in the slot (the rest is read or cut) */
    bool primary;              /* the first server of its upstream with this slot */
    struct server *srv;
    struct health_slot *slot;  /* NULL: the shared table was full */
    char *req;                 /* the request, made once */
    int reqlen;
    uint64_t wake;             /* the next look at the slot */
    uint64_t deadline;         /* the running probe's timeout */
    uint32_t drained;          /* bytes read until the server closes, up to HEALTH_DRAIN_MAX */
    struct health_resp resp;
};

/* The probes of one upstream of the current script. */
struct health_run {
    struct upstream *u;
    struct health_run *next;
    struct timer tick;
    uint64_t tick_ms;
    int n;
    struct probe *probes;
    /* due[i]: when probes[i] wants the tick next (a look at its slot, or
     * its running probe); UINT64_MAX for a server listed twice. Apart from
     * the probes so that a tick reads 8 bytes per server, not a probe. */
    uint64_t due[];
};

static struct health_run *runs; /* this worker's */

struct health_check *health_check_new(void)
{
    struct health_check *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    strcpy(c->path, "/");
    c->interval_ms = 2000;
    c->timeout_ms = 1000;
    c->rise = 2;
    c->fall = 3;
    for (int st = 200; st < 400; st++) health_expect_set(c, st);
    return c;
}

static uint64_t period_of(const struct health_check *c)
{
    /* A probe never overlaps the next one of the same server. */
    return c->interval_ms > c->timeout_ms ? c->interval_ms : c->timeout_ms;
}

static void probe_close(struct probe *p)
{
    if (p->tp.io.fd != -1) {
        transport_release(&p->tp);
        close(p->tp.io.fd);
    }
    p->tp = (struct transport){.io.fd = -1, .ops = &transport_plain};
}

/* The probe is over; its connection stays only when the server keeps it. */
static void probe_end(struct probe *p, bool keep)
{
    p->busy = false;
    if (!keep) probe_close(p);
    else transport_idle(&p->tp);
}

static void probe_record(struct probe *p, const struct health_check *c, const struct upstream *u, bool ok,
                         const char *what)
{
    p->recorded = true;
    int change = health_record(p->slot, ok, c->rise, c->fall, W.id);
    if (change < 0)
        log_warn("upstream %s: server %s is down: %d health check(s) failed in a row (last: %s)", u->name,
                 p->srv->name, c->fall, what);
    else if (change > 0)
        log_info("upstream %s: server %s is up: %d health check(s) passed in a row", u->name, p->srv->name,
                 c->rise);
}

static void probe_begin(struct probe *p, const struct upstream *u);

/* A failure before the status line counts against the server, unless it
 * came on a kept connection that the server had closed meanwhile: then the
 * probe starts again on a fresh one. A failure after the status line only
 * ends the connection. */
static void probe_failed(struct probe *p, const struct upstream *u, const char *what, int err)
{
    if (p->reused && p->resp.state == HR_STATUS && p->resp.len == 0) {
        probe_close(p);
        p->deadline = W.loop.now_ms + u->check->timeout_ms; /* the close may be seen only at the next tick */
        return probe_begin(p, u);
    }
    if (!p->recorded) {
        char why[96];
        snprintf(why, sizeof(why), "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
        probe_record(p, u->check, u, false, why);
    }
    probe_end(p, false);
}

/* The request, in one send: a new connection's send buffer takes it
 * whole. False while the connection is still being made, or when the
 * probe failed. */
static bool send_request(struct probe *p, const struct upstream *u)
{
    ssize_t n = transport_write(&p->tp, p->req, (size_t)p->reqlen);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN)) return false;
    if (n == -1 && errno == EPROTO) { /* the TLS handshake: the reason is in the text */
        probe_failed(p, u, transport_strerror(&p->tp, EPROTO), 0);
        return false;
    }
    if (n == -1) {
        probe_failed(p, u, "connect", errno);
        return false;
    }
    if (n != p->reqlen) {
        probe_failed(p, u, "short write", 0);
        return false;
    }
    p->sent = true;
    return true;
}

static char *make_request(const struct health_check *c, const struct server *s, int *len)
{
    const char *host = c->host[0] ? c->host : s->name;
    if (!strncmp(host, "unix:", 5)) host = "localhost"; /* a socket path is no authority */
    char *req = NULL;
    *len = asprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: luaproxy-health-check\r\n\r\n", c->path,
                    host);
    return *len < 0 ? NULL : req;
}

/* Reads what came: the status decides, and the response is followed to
 * its end (then the connection may be kept) or until the server closes
 * (then it is cut with a reset, no TIME_WAIT left behind). */
static void read_response(struct probe *p, const struct upstream *u)
{
    char buf[4096];
    for (;;) {
        ssize_t n = transport_read(&p->tp, buf, sizeof(buf));
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n == -1) return probe_failed(p, u, "read", errno);
        if (n == 0) {
            if (p->recorded) return probe_end(p, false);
            return probe_failed(p, u, "closed before a status line", 0);
        }
        enum health_resp_state st = health_resp_feed(&p->resp, buf, (size_t)n);
        if (!p->recorded && p->resp.status) {
            char why[32];
            snprintf(why, sizeof(why), "status %d", p->resp.status);
            probe_record(p, u->check, u, health_expected(u->check, p->resp.status), why);
        }
        if (st == HR_BAD && !p->recorded) return probe_failed(p, u, "not an HTTP/1.x response", 0);
        if (st == HR_BAD) return probe_end(p, false);
        if (st == HR_DONE) return probe_end(p, p->resp.keep);
        if (st == HR_UNTIL_CLOSE && (p->drained += (uint32_t)n) > HEALTH_DRAIN_MAX) return probe_end(p, false);
    }
}

/* A probe's connection: SO_LINGER 0, so that closing it resets it rather
 * than leaving a socket in TIME_WAIT per probe, which at a thousand probes
 * a second would run the ephemeral ports out. On loopback the connect is
 * often complete when connect() returns: the request goes out at once. */
static void probe_begin(struct probe *p, const struct upstream *u)
{
    const struct server *s = p->srv;
    p->busy = true;
    p->sent = p->recorded = false;
    p->drained = 0;
    health_resp_init(&p->resp);
    p->reused = p->tp.io.fd != -1;
    if (!p->reused) {
        p->tp.io.fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p->tp.io.fd == -1) return probe_failed(p, u, "socket", errno);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(p->tp.io.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        if (connect(p->tp.io.fd, (const struct sockaddr *)&s->addr, s->addrlen) == -1 && errno != EINPROGRESS)
            return probe_failed(p, u, "connect", errno);
        /* A TLS server is probed over TLS, verified as the pool does (the
         * handshake runs within the request's write, tick by tick). */
        if (upstream_tls_start(&p->tp, p->srv, NULL)) return probe_failed(p, u, "no TLS context", 0);
    }
    send_request(p, u);
}

static void probe_poll(struct probe *p, const struct upstream *u)
{
    if (p->sent || send_request(p, u)) read_response(p, u);
    if (p->busy && W.loop.now_ms >= p->deadline) probe_failed(p, u, "timed out", 0); /* or the rest is cut */
}

/* Is it this worker's turn? A connection kept from a probe of this worker
 * is closed once another worker probes the server. */
static void look(struct probe *p, const struct upstream *u)
{
    const struct health_check *c = u->check;
    bool mine = health_preferred(p->slot, W.count) == W.id;
    if (health_claim(p->slot, W.loop.now_ms, mine, period_of(c), &p->wake)) {
        p->deadline = W.loop.now_ms + c->timeout_ms;
        probe_begin(p, u);
    } else if (p->tp.io.fd != -1 && __atomic_load_n(&p->slot->prober, __ATOMIC_RELAXED) != W.id) {
        probe_close(p);
    }
}

static void on_tick(struct timer *t)
{
    struct health_run *r = container_of(t, struct health_run, tick);
    uint64_t now = W.loop.now_ms, next = UINT64_MAX;
    for (int i = 0; i < r->n; i++) {
        if (r->due[i] <= now) {
            struct probe *p = &r->probes[i];
            if (p->busy) probe_poll(p, r->u);
            if (!p->busy && now >= p->wake) look(p, r->u);
            r->due[i] = p->busy ? now + 1 : p->wake;
        }
        if (r->due[i] < next) next = r->due[i];
    }
    if (next == UINT64_MAX) return;
    if (next <= now) next = now + 1;
    timer_set(&W.loop.timers, &r->tick, (next + r->tick_ms - 1) / r->tick_ms * r->tick_ms);
}

static void run_free(struct health_run *r)
{
    for (int i = 0; i < r->n; i++) {
        probe_close(&r->probes[i]);
        free(r->probes[i].req);
    }
    timer_cancel(&W.loop.timers, &r->tick);
    for (struct health_run **pp = &runs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    r->u->check->run = NULL;
    free(r->probes);
    free(r);
}

void health_check_free(struct health_check *c)
{
    if (!c) return;
    if (c->run) run_free(c->run);
    free(c);
}

void health_stop(void)
{
    while (runs) run_free(runs);
}

static int by_slot(const void *a, const void *b)
{
    const struct probe *x = *(const struct probe *const *)a, *y = *(const struct probe *const *)b;
    if (x->slot != y->slot) return (uintptr_t)x->slot < (uintptr_t)y->slot ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* A server listed twice has one slot: only its first listing probes and
 * is reported. */
static void mark_primary(struct health_run *r)
{
    struct probe **order = malloc((size_t)r->n * sizeof(*order));
    if (!order) return;
    for (int i = 0; i < r->n; i++) order[i] = &r->probes[i];
    qsort(order, (size_t)r->n, sizeof(*order), by_slot);
    for (int i = 0; i < r->n; i++) order[i]->primary = order[i]->slot && (i == 0 || order[i - 1]->slot != order[i]->slot);
    free(order);
}

static void run_start(struct upstream *u)
{
    struct health_run *r = calloc(1, sizeof(*r) + (size_t)u->nservers * sizeof(r->due[0]));
    if (r) r->probes = calloc((size_t)u->nservers, sizeof(r->probes[0]));
    if (!r || !r->probes) {
        free(r);
        return log_error("upstream %s: no memory for its health checks", u->name);
    }
    r->u = u;
    r->n = u->nservers;
    static bool full_logged;
    for (int i = 0; i < r->n; i++) {
        struct probe *p = &r->probes[i];
        struct server *s = &u->servers[i];
        p->tp = (struct transport){.io.fd = -1, .ops = &transport_plain};
        p->srv = s;
        p->slot = health_table_bind(health_table, u->name, s->name, (const struct sockaddr *)&s->addr,
                                    s->addrlen, period_of(u->check), W.loop.now_ms);
        p->req = make_request(u->check, s, &p->reqlen);
        if (!p->req) p->slot = NULL; /* no memory: not checked */
        s->health = p->slot;
        if (!p->slot && !full_logged) {
            log_warn("upstream %s: server %s is not health checked: the table of checked servers is full (%d)",
                     u->name, s->name, HEALTH_SLOTS);
            full_logged = true;
        }
    }
    mark_primary(r);
    for (int i = 0; i < r->n; i++) {
        r->probes[i].wake = W.loop.now_ms;
        r->due[i] = r->probes[i].primary ? W.loop.now_ms : UINT64_MAX;
    }
    r->tick.cb = on_tick;
    r->tick_ms = period_of(u->check) / 5;
    if (r->tick_ms > HEALTH_TICK_MS) r->tick_ms = HEALTH_TICK_MS;
    if (r->tick_ms < 10) r->tick_ms = 10;
    timer_set(&W.loop.timers, &r->tick, W.loop.now_ms);
    r->next = runs;
    runs = r;
    u->check->run = r;
}

void health_restart(struct upstream *u)
{
    if (!u->check || !health_table) return;
    if (u->check->run) run_free(u->check->run);
    run_start(u);
}

void health_start(struct upstream *list)
{
    health_stop();
    if (!health_table) return;
    for (struct upstream *u = list; u; u = u->next)
        if (u->check) run_start(u);
}

void health_each(const struct upstream *list, health_each_fn fn, void *arg)
{
    for (const struct upstream *u = list; u; u = u->next) {
        const struct health_run *r = u->check ? u->check->run : NULL;
        for (int i = 0; r && i < r->n; i++)
            if (r->probes[i].primary) fn(arg, u, r->probes[i].srv, r->probes[i].slot);
    }
}
