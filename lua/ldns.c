/* ldns: names resolved without blocking (ldns.h).
 *
 * One c-ares channel per worker, made on the first name that needs DNS.
 * Its sockets are struct io of the worker's loop (c-ares says which through
 * its socket-state callback), its retransmissions run on one loop timer. A
 * run waits on a query with its wake timer set to the connect timeout;
 * answers are handed to the runs from deferred work, not from inside
 * ares_process_fd, so that a resumed script may start a query of its own.
 * Answers are cached per worker for their TTL. */
#include "ldns.h"

#include <ares.h>
#include <arpa/inet.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"
#include "loop.h"
#include "lrun.h"
#include "lstate.h"

#define CACHE_MAX 64

struct dns_query {
    struct lrun *r; /* the run waiting for it; NULL once it stopped waiting */
    bool answered;  /* c-ares is done with it */
    bool waiting;   /* ldns_wait yielded (else it takes a synchronous answer) */
    int status;
    char addr[INET6_ADDRSTRLEN];
    struct dns_query *next_ready;
    char name[];
};

/* A socket of the channel; kept for reuse once c-ares closes it, because an
 * event fetched earlier in the same batch may still point at it. */
struct dns_io {
    struct io io;
    struct dns_io *next;
};

struct cache_entry {
    char *name;
    char addr[INET6_ADDRSTRLEN];
    uint64_t expires_ms;
};

static ares_channel channel;
static bool library_ready;
static struct dns_io *ios;
static struct timer retry_timer;
static struct dns_query *ready, **ready_tail = &ready;
static struct defer ready_defer;
static struct cache_entry cache[CACHE_MAX];
static int ncache;

/* ---- cache ------------------------------------------------------------- */

static void cache_drop(int i)
{
    free(cache[i].name);
    cache[i] = cache[--ncache];
}

static const char *cache_get(const char *name)
{
    for (int i = 0; i < ncache; i++) {
        if (strcasecmp(cache[i].name, name)) continue;
        if (cache[i].expires_ms > lstate_g.loop->now_ms) return cache[i].addr;
        cache_drop(i);
        return NULL;
    }
    return NULL;
}

static void cache_put(const char *name, const char *addr, int ttl)
{
    if (ttl <= 0) return;
    int slot = -1;
    for (int i = 0; i < ncache && slot == -1; i++)
        if (!strcasecmp(cache[i].name, name)) slot = i;
    if (slot == -1 && ncache < CACHE_MAX) {
        char *copy = strdup(name);
        if (!copy) return;
        slot = ncache++;
        cache[slot].name = copy;
    }
    if (slot == -1) { /* full: the entry that expires first makes room */
        slot = 0;
        for (int i = 1; i < ncache; i++)
            if (cache[i].expires_ms < cache[slot].expires_ms) slot = i;
        char *copy = strdup(name);
        if (!copy) return;
        free(cache[slot].name);
        cache[slot].name = copy;
    }
    snprintf(cache[slot].addr, sizeof(cache[slot].addr), "%s", addr);
    cache[slot].expires_ms = lstate_g.loop->now_ms + (uint64_t)ttl * 1000;
}

/* ---- the channel on the loop -------------------------------------------- */

static void rearm(void)
{
    struct timeval tv;
    if (channel && ares_timeout(channel, NULL, &tv))
        loop_timer(lstate_g.loop, &retry_timer, (uint64_t)tv.tv_sec * 1000 + ((uint64_t)tv.tv_usec + 999) / 1000);
    else
        timer_cancel(&lstate_g.loop->timers, &retry_timer);
}

static void on_retry_timer(struct timer *t)
{
    (void)t;
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm();
}

static void on_dns_io(struct io *io, unsigned events)
{
    int fd = io->fd; /* io may be reused while c-ares processes */
    ares_process_fd(channel, events & (IO_READ | IO_HUP | IO_ERROR) ? fd : ARES_SOCKET_BAD,
                    events & (IO_WRITE | IO_ERROR) ? fd : ARES_SOCKET_BAD);
    rearm();
}

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    (void)data;
    struct dns_io *d = ios, *spare = NULL;
    for (; d && d->io.fd != fd; d = d->next)
        if (d->io.fd == -1) spare = d;
    if (!readable && !writable) {
        /* c-ares closes it next, which takes it out of the epoll set. */
        if (d) d->io.fd = -1;
        return;
    }
    unsigned mask = IO_READ | (writable ? IO_WRITE : 0);
    if (d) {
        if (loop_mod(lstate_g.loop, &d->io, mask)) log_error("dns: epoll: cannot watch a resolver socket");
        return;
    }
    if (!spare) {
        spare = calloc(1, sizeof(*spare));
        if (!spare) {
            log_error("dns: out of memory");
            return;
        }
        spare->next = ios;
        ios = spare;
    }
    spare->io.fd = fd;
    spare->io.mask = 0;
    spare->io.cb = on_dns_io;
    if (loop_add(lstate_g.loop, &spare->io, mask)) {
        log_error("dns: epoll: cannot watch a resolver socket");
        spare->io.fd = -1;
    }
}

/* The channel, made on first use; NULL and *err when it cannot be. */
static ares_channel channel_get(const char **err)
{
    if (channel) return channel;
    int rc = ARES_SUCCESS;
    if (!library_ready && (rc = ares_library_init(ARES_LIB_INIT_ALL)) == ARES_SUCCESS) library_ready = true;
    struct ares_options o = {.sock_state_cb = on_sock_state};
    if (rc == ARES_SUCCESS) rc = ares_init_options(&channel, &o, ARES_OPT_SOCK_STATE_CB);
    if (rc != ARES_SUCCESS) {
        channel = NULL;
        *err = ares_strerror(rc);
        return NULL;
    }
    const char *servers = lstate_g.cfg ? lstate_g.cfg->resolver : NULL;
    if (servers && (rc = ares_set_servers_ports_csv(channel, servers)) != ARES_SUCCESS) {
        ares_destroy(channel);
        channel = NULL;
        *err = "bad --resolver";
        return NULL;
    }
    retry_timer.cb = on_retry_timer;
    return channel;
}

/* ---- queries ----------------------------------------------------------- */

/* What the waiting call returns, pushed on L: the address, or nil, err. */
static int push_result(lua_State *L, const struct dns_query *q)
{
    if (q->status == ARES_SUCCESS) {
        lua_pushstring(L, q->addr);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "%s could not be resolved (%s)", q->name, ares_strerror(q->status));
    return 2;
}

/* Hands the answers to their runs (deferred work: outside c-ares). */
static void on_ready(struct defer *d)
{
    (void)d;
    while (ready) {
        struct dns_query *q = ready;
        ready = q->next_ready;
        if (!ready) ready_tail = &ready;
        struct lrun *r = q->r;
        if (r) {
            int n = push_result(r->co, q);
            free(q);
            lrun_continue(r, n);
        } else {
            free(q);
        }
    }
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct dns_query *q = arg;
    q->answered = true;
    q->status = status;
    if (res) {
        /* IPv4 first: a name with both kinds is most likely reachable so. */
        struct ares_addrinfo_node *pick = NULL;
        for (struct ares_addrinfo_node *n = res->nodes; n; n = n->ai_next)
            if (!pick || (n->ai_family == AF_INET && pick->ai_family != AF_INET)) pick = n;
        if (pick && pick->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)pick->ai_addr)->sin_addr, q->addr, sizeof(q->addr));
        else if (pick && pick->ai_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)pick->ai_addr)->sin6_addr, q->addr, sizeof(q->addr));
        if (status == ARES_SUCCESS && q->addr[0] && lstate_g.loop) cache_put(q->name, q->addr, pick->ai_ttl);
        ares_freeaddrinfo(res);
    }
    if (status == ARES_SUCCESS && !q->addr[0]) q->status = ARES_ENODATA;
    if (!q->waiting) return; /* answered at once: ldns_wait takes it */
    if (!q->r || status == ARES_EDESTRUCTION) {
        if (q->r) { /* the channel goes (at exit) before the run: it stops waiting on q */
            q->r->on_cancel = NULL;
            timer_cancel(&lstate_g.loop->timers, &q->r->wake);
        }
        free(q);
        return;
    }
    q->next_ready = NULL;
    *ready_tail = q;
    ready_tail = &q->next_ready;
    ready_defer.cb = on_ready;
    loop_defer(lstate_g.loop, &ready_defer);
}

/* The run stops waiting (its timeout, or it is dropped): whoever is last
 * of it and c-ares frees the query. */
static void let_go(struct dns_query *q)
{
    q->r = NULL; /* answered: on_ready frees it; not yet: on_answer does */
}

static void on_query_cancel(struct lrun *r, void *arg)
{
    (void)r;
    let_go(arg);
}

static void on_query_timeout(struct timer *t)
{
    struct lrun *r = container_of(t, struct lrun, wake);
    struct dns_query *q = r->cancel_arg;
    lua_pushnil(r->co);
    lua_pushfstring(r->co, "%s could not be resolved (timeout)", q->name);
    let_go(q);
    lrun_continue(r, 2);
}

static int unresolved(lua_State *L, const char *name, const char *why)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s could not be resolved (%s)", name, why);
    return 2;
}

int ldns_wait(lua_State *L, const char *name, uint64_t timeout_ms)
{
    struct lrun *r = lrun_current(L);
    if (!lstate_g.loop) return unresolved(L, name, "no event loop");
    const char *cached = cache_get(name);
    if (cached) {
        lua_pushstring(L, cached);
        return 1;
    }
    const char *err = NULL;
    ares_channel ch = channel_get(&err);
    if (!ch) return unresolved(L, name, err);
    size_t len = strlen(name);
    struct dns_query *q = calloc(1, sizeof(*q) + len + 1);
    if (!q) return unresolved(L, name, "out of memory");
    memcpy(q->name, name, len + 1);
    q->r = r;
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = ARES_AI_NOSORT};
    ares_getaddrinfo(ch, name, NULL, &hints, on_answer, q);
    if (q->answered) {
        int n = push_result(L, q);
        free(q);
        return n;
    }
    q->waiting = true;
    r->on_cancel = on_query_cancel;
    r->cancel_arg = q;
    r->wake.cb = on_query_timeout;
    loop_timer(lstate_g.loop, &r->wake, timeout_ms);
    rearm();
    return lua_yield(L, 0);
}

void ldns_free(void)
{
    if (channel) ares_destroy(channel); /* each query's on_answer, with ARES_EDESTRUCTION */
    channel = NULL;
    while (ready) {
        struct dns_query *q = ready;
        ready = q->next_ready;
        if (q->r) q->r->on_cancel = NULL;
        free(q);
    }
    ready_tail = &ready;
    if (lstate_g.loop) timer_cancel(&lstate_g.loop->timers, &retry_timer);
    while (ios) {
        struct dns_io *d = ios;
        ios = d->next;
        free(d);
    }
    while (ncache) cache_drop(ncache - 1);
    if (library_ready) ares_library_cleanup();
    library_ready = false;
}

ares_channel ldns_channel(const char **err)
{
    return channel_get(err);
}

void ldns_kick(void)
{
    rearm();
}
