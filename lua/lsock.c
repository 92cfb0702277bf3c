/* lsock: cosockets (lsock.h).
 *
 * Each method is a small Lua loop around two C primitives: a step that
 * does what it can without blocking and says WAIT when the socket is not
 * ready, and `wait`, which yields the coroutine until the socket's next edge
 * or the timeout. The loop makes continuing after a wait plain Lua, where C
 * code could not resume. The epoll registration is edge-triggered and made
 * once; every step reads or writes until EAGAIN before it waits, so the next
 * edge always comes. */
#include "lsock.h"

#include "lsock_parts.h"

#include <arpa/inet.h>
#include <errno.h>
#include <lauxlib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "loop.h"
#include "ldns.h"
#include "lrun.h"
#include "lstate.h"

#define SOCK_MT "luaproxy.socket.tcp"
#define DEFAULT_TIMEOUT_MS 60000
#define DEFAULT_POOL_SIZE 30
#define READ_CHUNK 16384


/* A pool that limits its connections (connect's backlog option, as in
 * OpenResty): at most `size` open, in use or idle; connects past that wait
 * in a queue of at most `backlog`, each woken when a connection of the pool
 * closes or comes back idle, or failing at its connect timeout. */
struct pool_limit {
    char key[160];
    int size, backlog;
    int open;
    struct lsock *queue, **queue_tail;
    int queued;
    struct pool_limit *next;
};
static struct pool_limit *limits;

/* The userdata: a pointer, so that a pooled connection outlives it. */
struct sock_ud {
    struct lsock *s;
};

static struct lsock *pool;
static char wait_token; /* WAIT: a light userdata the Lua loops compare with */
void *const lsock_wait_token = &wait_token;
static char resolve_token; /* RESOLVE: the name needs DNS (c.resolve, then again) */
static char queued_token;  /* QUEUED: the connect waits in its pool's backlog */

static void queue_remove(struct lsock *s)
{
    struct pool_limit *l = s->limit;
    if (!s->queued || !l) return;
    for (struct lsock **pp = &l->queue; *pp; pp = &(*pp)->qnext)
        if (*pp == s) {
            *pp = s->qnext;
            if (!*pp) l->queue_tail = pp;
            break;
        }
    s->queued = false;
    s->qnext = NULL;
    s->limit = NULL;
    l->queued--;
}

static void on_queue_ready(struct timer *t);

/* Room in l (a connection closed, or one came back idle): the first queued
 * connect tries again, on the next turn of the loop (never from inside the
 * call that made room). */
static void limit_wake(struct pool_limit *l)
{
    struct lsock *s = l->queue;
    if (!s) return;
    queue_remove(s);
    if (s->waiter && lstate_g.loop) {
        s->waiter->wake.cb = on_queue_ready;
        loop_timer(lstate_g.loop, &s->waiter->wake, 0);
    }
}

static struct pool_limit *limit_get(const char *key, int size, int backlog)
{
    for (struct pool_limit *l = limits; l; l = l->next)
        if (!strcmp(l->key, key)) {
            l->size = size;
            l->backlog = backlog;
            return l;
        }
    struct pool_limit *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    snprintf(l->key, sizeof(l->key), "%s", key);
    l->size = size;
    l->backlog = backlog;
    l->queue_tail = &l->queue;
    l->next = limits;
    limits = l;
    return l;
}

void lsock_close(struct lsock *s)
{
    queue_remove(s);
    if (s->io.fd != -1) {
        if (lstate_g.loop) loop_close(lstate_g.loop, &s->io);
        else close(s->io.fd);
        s->io.fd = -1;
        if (s->limit) { /* room in its pool */
            struct pool_limit *l = s->limit;
            s->limit = NULL;
            l->open--;
            limit_wake(l);
        }
    }
    s->connected = false;
}

static void sock_free(struct lsock *s)
{
    lsock_close(s);
    if (lstate_g.loop) timer_cancel(&lstate_g.loop->timers, &s->idle);
    buf_free(&s->rbuf);
    buf_free(&s->wbuf);
    free(s);
}

static void pool_remove(struct lsock *s)
{
    for (struct lsock **pp = &pool; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    s->pooled = false;
    s->next = NULL;
    if (lstate_g.loop) timer_cancel(&lstate_g.loop->timers, &s->idle);
}

void lsock_pool_free(void)
{
    while (pool) {
        struct lsock *s = pool;
        pool_remove(s);
        sock_free(s);
    }
    while (limits) {
        struct pool_limit *l = limits;
        limits = l->next;
        free(l);
    }
}

/* ---- waking ------------------------------------------------------------ */

void lsock_on_io(struct io *io, unsigned events)
{
    struct lsock *s = container_of(io, struct lsock, io);
    if (s->pooled) {
        /* An idle pooled connection has nothing to say: the peer closed it
         * or sent stray bytes. Either way it is not reused. */
        if (!(events & (IO_READ | IO_HUP | IO_ERROR))) return;
        pool_remove(s);
        sock_free(s);
        return;
    }
    struct lrun *r = s->waiter;
    if (!r) return; /* no call waits: the next step reads or writes anyway */
    s->waiter = NULL;
    lua_pushboolean(r->co, 1);
    lrun_continue(r, 1);
}

/* The run's wake timer: the wait is over, ready (true) or not (false). */
static void wake_run(struct timer *t, bool ready)
{
    struct lrun *r = container_of(t, struct lrun, wake);
    struct lsock *s = r->cancel_arg;
    if (s) s->waiter = NULL;
    lua_pushboolean(r->co, ready);
    lrun_continue(r, 1);
}

static void on_timeout(struct timer *t)
{
    wake_run(t, false);
}

static void on_queue_ready(struct timer *t)
{
    wake_run(t, true);
}

/* The run is dropped while its socket waits (its client went away): the
 * connection goes with it. */
static void on_cancel(struct lrun *r, void *arg)
{
    struct lsock *s = arg;
    s->waiter = NULL;
    lsock_close(s);
}

static void on_idle_timeout(struct timer *t)
{
    struct lsock *s = container_of(t, struct lsock, idle);
    pool_remove(s);
    sock_free(s);
}

/* ---- the C steps ------------------------------------------------------- */

/* The socket of argument 1, a tcp or a udp one. */
struct lsock *lsock_check(lua_State *L)
{
    struct sock_ud *ud = luaL_testudata(L, 1, SOCK_MT);
    if (!ud) ud = luaL_checkudata(L, 1, LSOCK_UDP_MT);
    if (!ud->s) {
        ud->s = calloc(1, sizeof(*ud->s));
        if (!ud->s) luaL_error(L, "out of memory");
        ud->s->io.fd = -1;
        ud->s->connect_ms = ud->s->send_ms = ud->s->read_ms = DEFAULT_TIMEOUT_MS;
        ud->s->idle.cb = on_idle_timeout;
    }
    return ud->s;
}

int lsock_fail(lua_State *L, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    return 2;
}

int lsock_new(lua_State *L, const char *mt)
{
    struct sock_ud *ud = lua_newuserdata(L, sizeof(*ud));
    ud->s = NULL;
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    return 1;
}

static int sock_new(lua_State *L)
{
    return lsock_new(L, SOCK_MT);
}

static int sock_gc(lua_State *L)
{
    struct sock_ud *ud = lua_touserdata(L, 1);
    if (ud->s && !ud->s->pooled) {
        if (ud->s->waiter) ud->s->waiter->on_cancel = NULL;
        sock_free(ud->s);
    }
    ud->s = NULL;
    return 0;
}

/* The address of host:port, or of "unix:/path", into ss: 0. Otherwise
 * what the step returns is pushed (RESOLVE when the name needs DNS, or nil,
 * err), and its count returned. addr: what c.resolve found for host. */
static int peer_address(lua_State *L, const char *host, int port, const char *addr, struct sockaddr_storage *ss,
                        socklen_t *slen)
{
    if (!strncmp(host, "unix:", 5)) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        memset(un, 0, sizeof(*un));
        un->sun_family = AF_UNIX;
        if (strlen(host + 5) >= sizeof(un->sun_path)) return lsock_fail(L, "unix socket path too long");
        strcpy(un->sun_path, host + 5);
        *slen = sizeof(*un);
        return 0;
    }
    if (lsock_resolve(addr ? addr : host, port, ss, slen) == 0) return 0;
    if (!addr) {
        lua_pushlightuserdata(L, &resolve_token);
        return 1;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "%s could not be resolved (bad address %s)", host, addr);
    return 2;
}

/* peer_address, then a non-blocking socket of type for it in *fd. */
int lsock_peer_open(lua_State *L, const char *host, int port, const char *addr, int type,
                     struct sockaddr_storage *ss, socklen_t *slen, int *fd)
{
    int nret = peer_address(L, host, port, addr, ss, slen);
    if (nret) return nret;
    *fd = socket(ss->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    return *fd == -1 ? lsock_fail(L, strerror(errno)) : 0;
}

/* An idle connection of the pool named key, moved into ud (whose empty
 * socket goes): true; false when the pool has none. */
static bool pool_take(const char *key, struct sock_ud *ud)
{
    for (struct lsock *s = pool; s; s = s->next) {
        if (strcmp(s->key, key)) continue;
        pool_remove(s);
        struct lsock *old = ud->s;
        s->connect_ms = old->connect_ms;
        s->send_ms = old->send_ms;
        s->read_ms = old->read_ms;
        s->reused++;
        s->deadline = 0; /* its last user's */
        s->max_line = 0;
        ud->s = s;
        sock_free(old);
        return true;
    }
    return false;
}

/* c.connect(sock, host, port, opts) -> true | nil, err | WAIT */
static int step_connect(lua_State *L)
{
    lrun_current(L); /* only where waiting is allowed */
    struct lsock *s = lsock_check(L);
    struct sock_ud *ud = lua_touserdata(L, 1);
    const char *host = luaL_checkstring(L, 2);
    bool unix_path = !strncmp(host, "unix:", 5);
    int port = unix_path ? 0 : (int)luaL_checkinteger(L, 3);
    if (!unix_path && (port < 1 || port > 65535)) return lsock_fail(L, "bad port");
    char key[160];
    int opts = unix_path ? 3 : 4;
    int backlog = -1;
    const char *pool_name = NULL;
    if (lua_istable(L, opts)) {
        lua_getfield(L, opts, "pool");
        pool_name = lua_tostring(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, opts, "pool_size");
        if (lua_isnumber(L, -1)) s->pool_size = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_getfield(L, opts, "backlog");
        if (lua_isnumber(L, -1)) backlog = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        if (backlog < -1) return luaL_argerror(L, opts, "backlog must not be negative");
        if (s->pool_size < 0) return luaL_argerror(L, opts, "pool_size must be positive");
    }
    if (pool_name) snprintf(key, sizeof(key), "%s", pool_name);
    else if (unix_path) snprintf(key, sizeof(key), "%s", host);
    else snprintf(key, sizeof(key), "%s:%d", host, port);
    if (s->io.fd != -1) lsock_close(s);
    if (pool_take(key, ud)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    s = ud->s;
    snprintf(s->key, sizeof(s->key), "%s", key);
    struct pool_limit *limit = NULL;
    if (backlog >= 0) {
        limit = limit_get(key, s->pool_size > 0 ? s->pool_size : DEFAULT_POOL_SIZE, backlog);
        if (!limit) return lsock_fail(L, "out of memory");
        if (limit->open >= limit->size) {
            if (limit->queued >= limit->backlog) return lsock_fail(L, "too many waiting connect operations");
            s->limit = limit;
            s->queued = true;
            s->qnext = NULL;
            *limit->queue_tail = s;
            limit->queue_tail = &s->qnext;
            limit->queued++;
            lua_pushlightuserdata(L, &queued_token);
            return 1;
        }
    }
    struct sockaddr_storage ss;
    socklen_t slen;
    int fd, nret = lsock_peer_open(L, host, port, lua_tostring(L, 5), SOCK_STREAM, &ss, &slen, &fd);
    if (nret) return nret;
    if (!unix_path) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    s->io.fd = fd;
    s->io.cb = lsock_on_io;
    if (limit) { /* counts in its pool from now until it closes */
        s->limit = limit;
        limit->open++;
    }
    if (loop_add(lstate_g.loop, &s->io, IO_READ | IO_WRITE)) {
        int e = errno;
        close(fd);
        s->io.fd = -1;
        return lsock_fail(L, strerror(e));
    }
    s->rbuf.len = s->rbuf.off = 0;
    s->reused = 0;
    if (connect(fd, (struct sockaddr *)&ss, slen) == 0) {
        s->connected = true;
        lua_pushboolean(L, 1);
        return 1;
    }
    if (errno != EINPROGRESS) {
        int e = errno;
        lsock_close(s);
        return lsock_fail(L, e == ECONNREFUSED ? "connection refused" : strerror(e));
    }
    lua_pushlightuserdata(L, &wait_token);
    return 1;
}

/* c.connected(sock) -> true | nil, err (after the wait) */
static int step_connected(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    int err = 0;
    socklen_t len = sizeof(err);
    if (s->io.fd == -1) return lsock_fail(L, "closed");
    getsockopt(s->io.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        lsock_close(s);
        return lsock_fail(L, err == ECONNREFUSED ? "connection refused" : strerror(err));
    }
    s->connected = true;
    lua_pushboolean(L, 1);
    return 1;
}

/* The socket of a send step, with its data (argument 2, when given: a
 * first call, not a continuation) in wbuf; NULL when it is closed. */
struct lsock *lsock_send_prepare(lua_State *L)
{
    lrun_current(L);
    struct lsock *s = lsock_check(L);
    if (s->io.fd == -1 || !s->connected) return NULL;
    if (lua_gettop(L) >= 2) {
        s->wbuf.len = s->wbuf.off = 0;
        const char *err = lsock_flatten(L, 2, &s->wbuf, 0);
        if (err) luaL_argerror(L, 2, err);
    }
    return s;
}

/* c.send(sock, data) -> bytes | nil, err | WAIT; c.send(sock) continues. */
static int step_send(lua_State *L)
{
    struct lsock *s = lsock_send_prepare(L);
    if (!s) return lsock_fail(L, "closed");
    size_t total = s->wbuf.len;
    while (buf_pending(&s->wbuf)) {
        ssize_t n = send(s->io.fd, s->wbuf.data + s->wbuf.off, buf_pending(&s->wbuf), MSG_NOSIGNAL);
        if (n > 0) {
            s->wbuf.off += (size_t)n;
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && errno == EAGAIN) {
            lua_pushlightuserdata(L, &wait_token);
            return 1;
        }
        int e = errno;
        lsock_close(s);
        return lsock_fail(L, e == EPIPE || e == ECONNRESET ? "closed" : strerror(e));
    }
    s->wbuf.len = s->wbuf.off = 0;
    lua_pushinteger(L, (lua_Integer)total);
    return 1;
}

/* Reads what the socket has into rbuf: 1 got bytes, 0 EAGAIN, -1 EOF, -2 error. */
static int fill(struct lsock *s)
{
    if (s->rbuf.off && s->rbuf.off == s->rbuf.len) s->rbuf.off = s->rbuf.len = 0;
    if (buf_reserve(&s->rbuf, READ_CHUNK)) return -2;
    for (;;) {
        ssize_t n = recv(s->io.fd, s->rbuf.data + s->rbuf.len, READ_CHUNK, 0);
        if (n > 0) {
            s->rbuf.len += (size_t)n;
            return 1;
        }
        if (n == 0) return -1;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return 0;
        return -2;
    }
}

static int give(lua_State *L, struct lsock *s, size_t n, size_t skip)
{
    lua_pushlstring(L, s->rbuf.data + s->rbuf.off, n);
    s->rbuf.off += n + skip;
    return 1;
}

/* The end of the stream or an error: nil, err, partial (all buffered). */
static int give_up(lua_State *L, struct lsock *s, const char *err)
{
    lua_pushnil(L);
    lua_pushstring(L, err);
    lua_pushlstring(L, s->rbuf.data ? s->rbuf.data + s->rbuf.off : "", buf_pending(&s->rbuf));
    s->rbuf.off = s->rbuf.len;
    return 3;
}

/* c.receive(sock, pattern) -> data | nil, err, partial | WAIT */
static int step_receive(lua_State *L)
{
    lrun_current(L);
    struct lsock *s = lsock_check(L);
    if (s->io.fd == -1 || !s->connected) return give_up(L, s, "closed");
    bool all = false, line = true;
    lua_Integer want = 0;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        want = lua_tointeger(L, 2);
        if (want < 0) return luaL_argerror(L, 2, "bad pattern argument");
        line = false;
        if (want == 0) {
            lua_pushliteral(L, "");
            return 1;
        }
    } else if (!lua_isnoneornil(L, 2)) {
        const char *p = luaL_checkstring(L, 2);
        if (!strcmp(p, "*a") || !strcmp(p, "a")) all = true, line = false;
        else if (strcmp(p, "*l") && strcmp(p, "l")) return luaL_argerror(L, 2, "bad pattern argument");
    }
    for (;;) {
        size_t have = buf_pending(&s->rbuf);
        const char *p = s->rbuf.data + s->rbuf.off;
        if (line && have) {
            const char *nl = memchr(p, '\n', have);
            if (nl) {
                size_t n = (size_t)(nl - p);
                size_t cut = n && p[n - 1] == '\r' ? 1 : 0;
                return give(L, s, n - cut, 1 + cut);
            }
        }
        if (want && have >= (size_t)want) return give(L, s, (size_t)want, 0);
        if (line && s->max_line && have > s->max_line) { /* a line without end: not in memory */
            int n = give_up(L, s, "line too long");
            lsock_close(s);
            return n;
        }
        int r = fill(s);
        if (r == 1) continue;
        if (r == 0) {
            lua_pushlightuserdata(L, &wait_token);
            return 1;
        }
        if (r == -1) {
            if (all) {
                lua_pushlstring(L, s->rbuf.data ? s->rbuf.data + s->rbuf.off : "", buf_pending(&s->rbuf));
                s->rbuf.off = s->rbuf.len;
                lsock_close(s);
                return 1;
            }
            int n = give_up(L, s, "closed");
            lsock_close(s);
            return n;
        }
        int n = give_up(L, s, strerror(errno));
        lsock_close(s);
        return n;
    }
}

/* c.receive_until(sock, pattern, inclusive) -> data | nil, err, partial | WAIT */
static int step_receive_until(lua_State *L)
{
    lrun_current(L);
    struct lsock *s = lsock_check(L);
    size_t plen;
    const char *pat = luaL_checklstring(L, 2, &plen);
    bool inclusive = lua_toboolean(L, 3);
    /* With a size, the data before the pattern comes in chunks of that many
     * bytes (the last one shorter); at the pattern: false (consumed), or
     * with inclusive the pattern itself and true. */
    lua_Integer size = luaL_optinteger(L, 4, 0);
    if (size < 0) return luaL_argerror(L, 4, "size must not be negative");
    if (s->io.fd == -1 || !s->connected) return give_up(L, s, "closed");
    for (;;) {
        size_t have = buf_pending(&s->rbuf);
        const char *p = s->rbuf.data + s->rbuf.off;
        const char *at = have >= plen ? memmem(p, have, pat, plen) : NULL;
        if (at && !size) {
            size_t n = (size_t)(at - p);
            return inclusive ? give(L, s, n + plen, 0) : give(L, s, n, plen);
        }
        if (at) {
            size_t n = (size_t)(at - p);
            if (n) return give(L, s, n < (size_t)size ? n : (size_t)size, 0);
            if (!inclusive) {
                s->rbuf.off += plen;
                lua_pushboolean(L, 0);
                return 1;
            }
            give(L, s, plen, 0);
            lua_pushboolean(L, 1);
            return 2;
        }
        /* No pattern yet: bytes that cannot start it may go, size at a time. */
        size_t safe = have >= plen ? have - (plen - 1) : 0;
        if (size && safe >= (size_t)size) return give(L, s, (size_t)size, 0);
        int r = fill(s);
        if (r == 1) continue;
        if (r == 0) {
            lua_pushlightuserdata(L, &wait_token);
            return 1;
        }
        int n = give_up(L, s, r == -1 ? "closed" : strerror(errno));
        lsock_close(s);
        return n;
    }
}

/* c.wait(sock, "r" | "w" | "c") -> true (ready) | false (timeout); yields */
static int step_wait(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    const char *mode = luaL_checkstring(L, 2);
    struct lrun *r = lrun_current(L);
    uint64_t ms = mode[0] == 'c' ? s->connect_ms : mode[0] == 'w' ? s->send_ms : s->read_ms;
    if (s->deadline) { /* a bytewise trickle re-arms each wait: the deadline does not move */
        uint64_t now = lstate_g.loop->now_ms, left = s->deadline > now ? s->deadline - now : 0;
        if (left < ms) ms = left;
    }
    s->waiter = r;
    r->on_cancel = on_cancel;
    r->cancel_arg = s;
    r->wake.cb = on_timeout;
    loop_timer(lstate_g.loop, &r->wake, ms);
    return lua_yield(L, 0);
}

/* c.timed_out(sock, partial_on_timeout) -> nil, "timeout" [, partial] */
static int step_timed_out(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    if (lua_toboolean(L, 2)) {
        /* OpenResty keeps the socket usable after a read timeout; the bytes
         * read so far are handed back. */
        return give_up(L, s, "timeout");
    }
    lsock_close(s);
    return lsock_fail(L, "timeout");
}

/* c.resolve(sock, name) -> address | nil, err; waits for the answer as
 * long as the connect timeout. */
static int step_resolve(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    return ldns_wait(L, luaL_checkstring(L, 2), s->connect_ms);
}

static uint64_t ms_arg(lua_State *L, int idx, uint64_t def)
{
    if (lua_isnoneornil(L, idx)) return def;
    lua_Number v = luaL_checknumber(L, idx);
    if (v < 0) luaL_argerror(L, idx, "must not be negative");
    return v == 0 ? DEFAULT_TIMEOUT_MS : (uint64_t)v;
}

void lsock_limits(lua_State *L, int idx, uint64_t at_ms, size_t max_line)
{
    struct sock_ud *ud = luaL_checkudata(L, idx, SOCK_MT);
    if (ud->s) {
        ud->s->deadline = at_ms;
        ud->s->max_line = max_line;
    }
}

int lsock_m_settimeout(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    s->connect_ms = s->send_ms = s->read_ms = ms_arg(L, 2, DEFAULT_TIMEOUT_MS);
    return 0;
}

static int m_settimeouts(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    s->connect_ms = ms_arg(L, 2, s->connect_ms);
    s->send_ms = ms_arg(L, 3, s->send_ms);
    s->read_ms = ms_arg(L, 4, s->read_ms);
    return 0;
}

static int m_getreusedtimes(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    if (s->io.fd == -1) return lsock_fail(L, "closed");
    lua_pushinteger(L, s->reused);
    return 1;
}

int lsock_m_close(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    if (s->io.fd == -1) return lsock_fail(L, "closed");
    lsock_close(s);
    lua_pushinteger(L, 1);
    return 1;
}

static int m_setkeepalive(lua_State *L)
{
    struct sock_ud *ud = luaL_checkudata(L, 1, SOCK_MT);
    struct lsock *s = lsock_check(L);
    if (s->io.fd == -1 || !s->connected) return lsock_fail(L, "closed");
    if (buf_pending(&s->rbuf)) {
        lsock_close(s);
        return lsock_fail(L, "unread data in buffer");
    }
    uint64_t idle_ms = ms_arg(L, 2, DEFAULT_TIMEOUT_MS);
    int size = lua_isnumber(L, 3) ? (int)lua_tointeger(L, 3) : s->pool_size ? s->pool_size : DEFAULT_POOL_SIZE;
    int count = 0;
    for (struct lsock *p = pool; p; p = p->next)
        if (!strcmp(p->key, s->key)) count++;
    if (count >= size) { /* the pool is full: the connection goes */
        lsock_close(s);
        lua_pushinteger(L, 1);
        return 1;
    }
    /* A stray byte or a close that came meanwhile: not reusable. */
    char c;
    ssize_t n = recv(s->io.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n != -1 || errno != EAGAIN) {
        lsock_close(s);
        return lsock_fail(L, n > 0 ? "unread data in buffer" : "closed");
    }
    ud->s = NULL; /* the pool owns it now; the userdata is empty */
    s->pooled = true;
    s->waiter = NULL;
    s->next = pool;
    pool = s;
    loop_timer(lstate_g.loop, &s->idle, idle_ms);
    if (s->limit) limit_wake(s->limit); /* a queued connect may take it */
    lua_pushinteger(L, 1);
    return 1;
}

/* Pushes a methods chunk's arguments (c, WAIT, RESOLVE, QUEUED) and calls it. */
void lsock_methods(lua_State *L, const luaL_Reg *steps)
{
    static const luaL_Reg common[] = {
        {"wait", step_wait}, {"timed_out", step_timed_out}, {"resolve", step_resolve}, {NULL, NULL},
    };
    lua_newtable(L);
    luaL_setfuncs(L, common, 0);
    luaL_setfuncs(L, steps, 0);
    lua_pushlightuserdata(L, &wait_token);
    lua_pushlightuserdata(L, &resolve_token);
    lua_pushlightuserdata(L, &queued_token);
    lua_call(L, 4, 1);
}

/* __gc and __metatable of the metatable on top. */
void lsock_finish_metatable(lua_State *L)
{
    lua_pushcfunction(L, sock_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "socket");
    lua_setfield(L, -2, "__metatable");
}

void lsock_open(lua_State *L)
{
    static const luaL_Reg steps[] = {
        {"connect", step_connect}, {"connected", step_connected}, {"send", step_send},
        {"receive", step_receive}, {"receive_until", step_receive_until}, {NULL, NULL},
    };
    static const luaL_Reg plain[] = {
        {"settimeout", lsock_m_settimeout},       {"settimeouts", m_settimeouts}, {"getreusedtimes", m_getreusedtimes},
        {"setkeepalive", m_setkeepalive},   {"close", lsock_m_close},             {NULL, NULL},
    };
    luaL_newmetatable(L, SOCK_MT);
    if (luaL_loadbuffer(L, lsock_tcp_lua, lsock_tcp_lua_len, "=proxy.socket")) lua_error(L);
    lsock_methods(L, steps); /* the methods that wait, then the others */
    luaL_setfuncs(L, plain, 0);
    lua_setfield(L, -2, "__index");
    lsock_finish_metatable(L);
    lua_pop(L, 1);

    static const luaL_Reg socket_fns[] = {{"tcp", sock_new}, {NULL, NULL}};
    lua_getglobal(L, "proxy");
    lua_newtable(L);
    luaL_setfuncs(L, socket_fns, 0);
    lua_setfield(L, -2, "socket");
    lua_pop(L, 1);
}
