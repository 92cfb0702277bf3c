#include "health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "health_table.h"
#include "log.h"
#include "upstream.h"
#include "worker_state.h"

/* Looks at the slots are rounded up to this grid, so that the timers of a
 * thousand servers fire in a few loop turns a second rather than a
 * thousand: each wake-up of an idle worker costs a context switch. */
#define HEALTH_GRID_MS 50
/* A health page is small; a larger answer is cut (with a reset). */
#define HEALTH_DRAIN_MAX 65536

/* One server's probing in this worker. */
struct probe {
    struct io io;              /* its connection while a probe runs; fd -1 otherwise */
    struct timer timer;        /* the next look at the slot, or the running probe's timeout */
    struct health_run *run;
    struct server *srv;
    struct health_slot *slot;  /* NULL: the shared table was full */
    uint64_t wake;             /* the next look, kept while the timer is a timeout */
    bool primary;              /* the first server of its upstream with this slot */
    bool sent;                 /* the request is out; the status line is awaited */
    bool recorded;             /* the status line came: the rest is drained */
    uint16_t got;
    uint32_t drained;          /* bytes after the status line, up to HEALTH_DRAIN_MAX */
    char buf[128];             /* the response's first bytes */
};

/* The probes of one upstream of the current script. */
struct health_run {
    struct upstream *u;
    struct health_run *next;
    int n;
    struct probe probes[];
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

int health_parse_status(const char *buf, size_t len)
{
    static const char prefix[] = "HTTP/1.";
    for (size_t i = 0; i < len && i < 7; i++)
        if (buf[i] != prefix[i]) return -1;
    if (len < 12) return 0;
    if ((buf[7] != '0' && buf[7] != '1') || buf[8] != ' ') return -1;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return -1;
        st = st * 10 + (buf[i] - '0');
    }
    return st >= 100 && st <= 599 ? st : -1;
}

static void arm_look(struct probe *p)
{
    uint64_t at = (p->wake + HEALTH_GRID_MS - 1) / HEALTH_GRID_MS * HEALTH_GRID_MS;
    timer_set(&W.loop.timers, &p->timer, at);
}

/* The connection is over: the next look at the slot follows. */
static void probe_finish(struct probe *p)
{
    loop_close(&W.loop, &p->io);
    arm_look(p);
}

static void probe_record(struct probe *p, bool ok, const char *what)
{
    const struct health_check *c = p->run->u->check;
    const struct upstream *u = p->run->u;
    p->recorded = true;
    int change = health_record(p->slot, ok, c->rise, c->fall, W.id);
    if (change < 0)
        log_warn("upstream %s: server %s is down: %d health check(s) failed in a row (last: %s)", u->name,
                 p->srv->name, c->fall, what);
    else if (change > 0)
        log_info("upstream %s: server %s is up: %d health check(s) passed in a row", u->name, p->srv->name,
                 c->rise);
}

/* A failure before the status line counts against the server; one after
 * it (a reset while the rest is drained) only ends the connection. */
static void probe_failed(struct probe *p, const char *what, int err)
{
    if (!p->recorded) {
        char why[96];
        snprintf(why, sizeof(why), "%s%s%s", what, err ? ": " : "", err ? strerror(err) : "");
        probe_record(p, false, why);
    }
    probe_finish(p);
}

static bool send_request(struct probe *p)
{
    const struct health_check *c = p->run->u->check;
    const char *host = c->host[0] ? c->host : p->srv->name;
    if (!strncmp(host, "unix:", 5)) host = "localhost"; /* a socket path is no authority */
    char req[HEALTH_PATH_MAX + HEALTH_HOST_MAX + 128];
    int len = snprintf(req, sizeof(req),
                       "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: luaproxy-health-check\r\n"
                       "Connection: close\r\n\r\n",
                       c->path, host);
    ssize_t n = send(p->io.fd, req, (size_t)len, MSG_NOSIGNAL);
    if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false; /* still connecting */
    if (n == -1) {
        probe_failed(p, "connect", errno);
        return false;
    }
    /* A new connection's send buffer takes a request of this size whole. */
    if (n != len) {
        probe_failed(p, "short write", 0);
        return false;
    }
    p->sent = true;
    return true;
}

/* The status line decides; the rest of the response is read and dropped
 * until the server closes (Connection: close), so that the server is not
 * reset in the middle of its answer, which it would log as an error. */
static void read_status(struct probe *p)
{
    for (;;) {
        if (p->recorded) p->got = 0;
        ssize_t n = recv(p->io.fd, p->buf + p->got, sizeof(p->buf) - p->got, 0);
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n == -1) return probe_failed(p, "read", errno);
        if (n == 0 && p->recorded) return probe_finish(p);
        if (n == 0) return probe_failed(p, "closed before a status line", 0);
        if (p->recorded) {
            p->drained += (uint32_t)n;
            if (p->drained > HEALTH_DRAIN_MAX) return probe_finish(p);
            continue;
        }
        p->got += (uint16_t)n;
        int st = health_parse_status(p->buf, p->got);
        if (st < 0) return probe_failed(p, "not an HTTP/1.x response", 0);
        if (st > 0) {
            char why[32];
            snprintf(why, sizeof(why), "status %d", st);
            probe_record(p, health_expected(p->run->u->check, st), why);
        }
    }
}

static void on_io(struct io *io, unsigned events)
{
    struct probe *p = container_of(io, struct probe, io);
    if (!p->sent && !send_request(p)) return;
    if (events & IO_READ) read_status(p);
}

/* A probe's connection, for the loop to report on. Closed with a reset
 * (SO_LINGER 0), after the server closed its side: a thousand probes a
 * second would otherwise leave a thousand sockets a second in TIME_WAIT
 * and run the ephemeral ports out. */
static void probe_begin(struct probe *p)
{
    const struct server *s = p->srv;
    p->sent = p->recorded = false;
    p->got = 0;
    p->drained = 0;
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) return probe_failed(p, "socket", errno);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    p->io.fd = fd;
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addrlen) == -1 && errno != EINPROGRESS)
        return probe_failed(p, "connect", errno);
    if (loop_add(&W.loop, &p->io, IO_READ | IO_WRITE)) return probe_failed(p, "epoll", errno);
    timer_set(&W.loop.timers, &p->timer, W.loop.now_ms + p->run->u->check->timeout_ms);
}

static void on_timer(struct timer *t)
{
    struct probe *p = container_of(t, struct probe, timer);
    if (p->io.fd != -1) return probe_failed(p, "timed out", 0); /* or the drain is cut short */
    const struct health_check *c = p->run->u->check;
    bool mine = health_preferred(p->slot, W.count) == W.id;
    if (health_claim(p->slot, W.loop.now_ms, mine, period_of(c), &p->wake)) probe_begin(p);
    else arm_look(p);
}

static void run_free(struct health_run *r)
{
    for (int i = 0; i < r->n; i++) {
        loop_close(&W.loop, &r->probes[i].io);
        timer_cancel(&W.loop.timers, &r->probes[i].timer);
    }
    for (struct health_run **pp = &runs; *pp; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    }
    r->u->check->run = NULL;
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
    struct health_run *r = calloc(1, sizeof(*r) + (size_t)u->nservers * sizeof(r->probes[0]));
    if (!r) return log_error("upstream %s: no memory for its health checks", u->name);
    r->u = u;
    r->n = u->nservers;
    static bool full_logged;
    for (int i = 0; i < r->n; i++) {
        struct probe *p = &r->probes[i];
        struct server *s = &u->servers[i];
        p->io.fd = -1;
        p->io.cb = on_io;
        p->timer.cb = on_timer;
        p->run = r;
        p->srv = s;
        p->slot = health_table_bind(health_table, u->name, s->name, (const struct sockaddr *)&s->addr,
                                    s->addrlen, period_of(u->check), W.loop.now_ms);
        s->health = p->slot;
        if (!p->slot && !full_logged) {
            log_warn("upstream %s: server %s is not health checked: the table of checked servers is full (%d)",
                     u->name, s->name, HEALTH_SLOTS);
            full_logged = true;
        }
    }
    mark_primary(r);
    for (int i = 0; i < r->n; i++) {
        struct probe *p = &r->probes[i];
        p->wake = W.loop.now_ms;
        if (p->primary) arm_look(p);
    }
    r->next = runs;
    runs = r;
    u->check->run = r;
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
