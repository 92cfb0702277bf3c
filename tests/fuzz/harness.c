/* harness: see harness.h. Everything here is test scaffolding around the
 * real worker code; the only seam it needs in the core is loop_once(). */
#include "harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "conn.h"
#include "exchange.h"
#include "log.h"
#include "lstate.h"
#include "shm.h"
#include "splice.h"
#include "worker_state.h"

#ifndef FUZZ_DIR
#define FUZZ_DIR "tests/fuzz" /* the unit-test replay runs from the tree's root */
#endif

/* The worker would resume accepting here; the harness has no listener. */
static void on_conn_closed(void)
{
}

#define SETTLE_MAX 20000          /* loop turns without quiet: a livelock */
#define ORIGIN_MAX 16             /* backend connections open at once */
#define SKIP_MS (24 * 3600 * 1000ULL) /* "a day passes": longer than any timeout */
#define CLIENT_KEEP (4 << 20)     /* client output kept for the target's checks */

struct origin {
    int fd;
    llhttp_t p;
    bool upgraded;  /* after its 101: bytes are echoed back */
    bool close_after; /* the answer ends with a close (an unframed body) */
    bool wr_shut;
    bool between;   /* the next byte starts a request */
    char url[32];
    size_t url_len;
    struct buf out;
};

static struct config cfg;
static struct shm *shm;
static bool strict;
static int listen_fd = -1;
static int dead_fd = -1;
static struct origin origins[ORIGIN_MAX];
static int norigins;
static int newest = -1; /* index of the newest origin connection */
static uint64_t origin_requests;

static int client_fd = -1;
static bool client_slow; /* the client does not read until the end */
static struct buf client_out;

static int base_fds; /* open descriptors when the input began */
static int base_top; /* the Lua stack's height between requests */

const char *fz_input_name;

void fz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz harness%s%s: ", fz_input_name ? ", input " : "", fz_input_name ? fz_input_name : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

/* Open descriptors; with `show`, each one and what it is, on stderr. */
static int count_fds(bool show)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) fz_fail("opendir /proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        n++;
        if (show) {
            char link[300], what[256];
            snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
            ssize_t len = readlink(link, what, sizeof(what) - 1);
            what[len > 0 ? len : 0] = '\0';
            fprintf(stderr, "  fd %s -> %s\n", e->d_name, what);
        }
    }
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void close_reset(int fd)
{
    /* A reset instead of a FIN: no TIME_WAIT on either side, so a long run
     * cannot use up the loopback's ephemeral ports. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

/* ---- the strict origin ------------------------------------------------- */

static struct origin *origin_of(llhttp_t *p)
{
    return p->data;
}

static int o_on_message_begin(llhttp_t *p)
{
    origin_of(p)->url_len = 0;
    return 0;
}

static int o_on_url(llhttp_t *p, const char *at, size_t len)
{
    struct origin *o = origin_of(p);
    size_t room = sizeof(o->url) - 1 - o->url_len;
    if (len > room) len = room;
    memcpy(o->url + o->url_len, at, len);
    o->url_len += len;
    o->url[o->url_len] = '\0';
    return 0;
}

/* The answer depends on the path: "/pc..." chunked, "/pe..." unframed (and
 * a close), "/pn..." 204, anything else a Content-Length body. */
static int o_on_message_complete(llhttp_t *p)
{
    struct origin *o = origin_of(p);
    struct buf *b = &o->out;
    bool head = p->method == HTTP_HEAD;
    origin_requests++;
    if (p->upgrade) {
        buf_puts(b, "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: fuzz\r\n\r\n");
        o->upgraded = true;
    } else if (strstr(o->url, "/pc")) {
        buf_puts(b, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
        if (!head) buf_puts(b, "5;x=y\r\nhello\r\n0\r\nx-trailer: t\r\n\r\n");
    } else if (strstr(o->url, "/pe")) {
        buf_puts(b, "HTTP/1.1 200 OK\r\n\r\n");
        if (!head) buf_puts(b, "hello, until the end");
        o->close_after = true;
    } else if (strstr(o->url, "/pn")) {
        buf_puts(b, "HTTP/1.1 204 No Content\r\nx-origin: 1\r\n\r\n");
    } else {
        buf_puts(b, "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-origin: 1\r\n\r\n");
        if (!head) buf_puts(b, "hello");
    }
    return HPE_PAUSED; /* so that origin_feed knows where the next request starts */
}

static const llhttp_settings_t origin_settings = {
    .on_message_begin = o_on_message_begin,
    .on_url = o_on_url,
    .on_message_complete = o_on_message_complete,
};

static void origin_feed(struct origin *o, const char *data, size_t n)
{
    if (o->upgraded) {
        buf_append(&o->out, data, n); /* the tunnel: an echo */
        return;
    }
    const char *p = data, *end = data + n;
    llhttp_errno_t err;
    for (;;) {
        const char *start = o->between ? p : NULL;
        err = llhttp_execute(&o->p, p, (size_t)(end - p));
        o->between = false;
        if (err == HPE_OK) return;
        const char *at = llhttp_get_error_pos(&o->p);
        if (err == HPE_PAUSED) {
            llhttp_resume(&o->p);
            o->between = true;
            p = at;
            if (o->upgraded) break;
            continue;
        }
        if (err == HPE_PAUSED_UPGRADE) {
            p = at;
            break;
        }
        /* A method token llhttp does not know is forwarded as sent (a
         * backend may know it): parsed here with a known one in its place. */
        const char *sp = start ? memchr(start, ' ', (size_t)(end - start)) : NULL;
        bool token = sp && sp > start;
        for (const char *t = start; token && t < sp; t++)
            token = *t > ' ' && *t < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", *t);
        if (err != HPE_INVALID_METHOD || !token) break;
        llhttp_init(&o->p, HTTP_REQUEST, &origin_settings);
        o->p.data = o;
        if (llhttp_execute(&o->p, "GET ", 4) != HPE_OK) break;
        p = sp + 1;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        buf_append(&o->out, p, (size_t)(end - p));
        return;
    }
    fprintf(stderr, "-- the origin's last read (%zu byte(s)):\n%.*s\n-- end\n", n, (int)n, data);
    fz_fail("the origin received a malformed request stream (%s: %s); the proxy forwarded bytes a "
            "backend cannot frame",
            llhttp_errno_name(err), llhttp_get_error_reason(&o->p) ? llhttp_get_error_reason(&o->p) : "");
}

static void origin_close(struct origin *o)
{
    if (o->fd == -1) return;
    close_reset(o->fd);
    o->fd = -1;
    buf_free(&o->out);
}

/* Accepts, reads, answers. Returns whether anything moved. */
static bool origin_step(void)
{
    bool moved = false;
    for (;;) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) break;
        moved = true;
        int slot = 0; /* a closed one is reused: an input may open many in turn */
        while (slot < norigins && origins[slot].fd != -1) slot++;
        if (slot == ORIGIN_MAX) fz_fail("the proxy holds more than %d backend connections at once", ORIGIN_MAX);
        if (slot == norigins) norigins++;
        struct origin *o = &origins[slot];
        memset(o, 0, sizeof(*o));
        o->fd = fd;
        o->between = true;
        llhttp_init(&o->p, HTTP_REQUEST, &origin_settings);
        o->p.data = o;
        newest = slot;
    }
    for (int i = 0; i < norigins; i++) {
        struct origin *o = &origins[i];
        char tmp[16384];
        while (o->fd != -1) {
            ssize_t n = recv(o->fd, tmp, sizeof(tmp), 0);
            if (n > 0) {
                moved = true;
                if (strict) origin_feed(o, tmp, (size_t)n);
                continue;
            }
            if (n == -1 && errno == EINTR) continue;
            if (n == -1 && errno == EAGAIN) break;
            origin_close(o); /* the proxy closed (or reset) it */
            moved = true;
        }
        while (o->fd != -1 && buf_pending(&o->out)) {
            ssize_t n = send(o->fd, o->out.data + o->out.off, buf_pending(&o->out), MSG_NOSIGNAL);
            if (n > 0) {
                buf_consume(&o->out, (size_t)n);
                moved = true;
                continue;
            }
            if (n == -1 && errno == EINTR) continue;
            if (n == -1 && errno != EAGAIN) origin_close(o);
            break;
        }
        if (o->fd != -1 && o->close_after && !o->wr_shut && !buf_pending(&o->out)) {
            shutdown(o->fd, SHUT_WR);
            o->wr_shut = true;
            moved = true;
        }
    }
    return moved;
}

int fz_origin_fd(void)
{
    return newest >= 0 ? origins[newest].fd : -1;
}

bool fz_origin_send(const uint8_t *p, size_t n)
{
    if (fz_origin_fd() == -1) return false;
    struct origin *o = &origins[newest];
    buf_append(&o->out, p, n);
    fz_settle();
    return true;
}

void fz_origin_shutdown(void)
{
    if (fz_origin_fd() == -1) return;
    origins[newest].close_after = true;
    fz_settle();
}

void fz_origin_reset(void)
{
    if (fz_origin_fd() == -1) return;
    origin_close(&origins[newest]);
    fz_settle();
}

uint64_t fz_origin_requests(void)
{
    return origin_requests;
}

/* ---- the client --------------------------------------------------------- */

static bool client_read(void)
{
    bool moved = false;
    char tmp[16384];
    while (client_fd != -1) {
        ssize_t n = recv(client_fd, tmp, sizeof(tmp), 0);
        if (n > 0) {
            moved = true;
            if (client_out.len + (size_t)n <= CLIENT_KEEP) buf_append(&client_out, tmp, (size_t)n);
            continue;
        }
        if (n == -1 && errno == EINTR) continue;
        break; /* EAGAIN, or the proxy closed: the end stays readable as EOF */
    }
    return moved;
}

void fz_settle(void)
{
    for (int turn = 0;; turn++) {
        if (turn == SETTLE_MAX) fz_fail("the worker is still busy after %d loop turns", SETTLE_MAX);
        int n = loop_once(&W.loop, false);
        if (n < 0) fz_fail("epoll_wait: %s", strerror(-n));
        bool moved = n > 0;
        if (origin_step()) moved = true;
        if (!client_slow && client_read()) moved = true;
        if (!moved && !W.loop.deferred) return;
    }
}

void fz_client_send(const uint8_t *p, size_t n)
{
    int stuck = 0;
    while (n && client_fd != -1 && stuck < 2) {
        ssize_t w = send(client_fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            stuck = 0;
        } else if (w == -1 && errno == EINTR) {
            continue;
        } else if (w == -1 && errno == EAGAIN) {
            stuck++; /* the proxy stopped reading: the rest cannot go */
        } else {
            break; /* the proxy closed the connection */
        }
        fz_settle();
    }
    fz_settle();
}

void fz_client_shutdown(void)
{
    if (client_fd == -1) return;
    shutdown(client_fd, SHUT_WR);
    fz_settle();
}

void fz_client_reset(void)
{
    if (client_fd == -1) return;
    /* Closing a Unix socket with unread bytes in it is its reset: the
     * proxy's next read fails with ECONNRESET; without any, it sees EOF. */
    close(client_fd);
    client_fd = -1;
    fz_settle();
}

const uint8_t *fz_client_output(size_t *len)
{
    *len = client_out.len;
    return (const uint8_t *)client_out.data;
}

void fz_fire_timers(void)
{
    W.loop.now_ms += SKIP_MS;
    W.loop.wall_now += SKIP_MS / 1000.0;
    timer_run(&W.loop.timers, W.loop.now_ms);
    loop_run_deferred(&W.loop);
    fz_settle();
}

/* ---- the script -------------------------------------------------------- */

double fz_script_number(const char *name)
{
    lua_getglobal(lstate_g.L, name);
    double v = lua_tonumber(lstate_g.L, -1);
    lua_pop(lstate_g.L, 1);
    return v;
}

void fz_script_set_number(const char *name, double v)
{
    lua_pushnumber(lstate_g.L, v);
    lua_setglobal(lstate_g.L, name);
}

/* ---- setup and per-input life ------------------------------------------ */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

int fz_pieces(const uint8_t *cuts, int ncuts, size_t len, size_t *starts)
{
    size_t at[FZ_MAX_CUTS];
    int k = 0;
    for (int i = 0; i < ncuts && i < FZ_MAX_CUTS; i++) {
        size_t a = (size_t)cuts[i] * len / 256;
        if (a > 0 && a < len) at[k++] = a;
    }
    qsort(at, (size_t)k, sizeof(at[0]), cmp_size);
    int n = 0;
    starts[n++] = 0;
    for (int i = 0; i < k; i++)
        if (at[i] != starts[n - 1]) starts[n++] = at[i];
    starts[n] = len;
    return n;
}

void fz_init(const char *script, bool strict_origin)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", FUZZ_DIR, script);
    /* Small limits, so that short inputs reach the 413 and 431 paths. */
    char *argv[] = {"luaproxy", "--max-header-size", "2k", "--max-body-size", "4k", "--lua-memory-limit",
                    "64m", path, NULL};
    char err[512];
    if (config_load(&cfg, 8, argv, NULL, err, sizeof(err))) fz_fail("config: %s", err);
    /* Quiet unless asked: the paths worth fuzzing are the ones that log. */
    const char *verbose = getenv("FUZZ_VERBOSE");
    log_init(verbose ? LOG_DEBUG : (enum log_level)(LOG_ERROR + 1), NULL);
    signal(SIGPIPE, SIG_IGN);
    strict = strict_origin;

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t slen = sizeof(sin);
    if (listen_fd == -1 || bind(listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
        listen(listen_fd, 64) == -1 || getsockname(listen_fd, (struct sockaddr *)&sin, &slen) == -1)
        fz_fail("origin listener: %s", strerror(errno));
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sin.sin_port));
    setenv("FUZZ_ORIGIN", addr, 1);
    /* A port that refuses connections ($FUZZ_DEAD): bound, never listening,
     * so nothing else can take it while the fuzzer runs. */
    struct sockaddr_in dead = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t dlen = sizeof(dead);
    dead_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (dead_fd == -1 || bind(dead_fd, (struct sockaddr *)&dead, sizeof(dead)) == -1 ||
        getsockname(dead_fd, (struct sockaddr *)&dead, &dlen) == -1)
        fz_fail("dead port: %s", strerror(errno));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(dead.sin_port));
    setenv("FUZZ_DEAD", addr, 1);

    if (shm_create(1 << 20, &shm)) fz_fail("shm_create failed");
    memset(&W, 0, sizeof(W));
    W.cfg = &cfg;
    W.shm = shm;
    W.count = 1;
    for (int i = 0; i < CONFIG_MAX_LISTEN; i++) W.listeners[i].fd = -1;
    W.admin.fd = W.signals.fd = -1;
    if (loop_init(&W.loop)) fz_fail("epoll: %s", strerror(errno));
    conn_init(on_conn_closed);
    script_setup(&cfg, shm, 0, 1, &W.loop);
    size_t len;
    char *text = script_read(cfg.script, &len, err, sizeof(err));
    if (!text || script_load(cfg.script, text, len, 0, err, sizeof(err))) fz_fail("script: %s", err);
    free(text);
    base_top = lua_gettop(lstate_g.L);
}

void fz_begin(bool slow_reader)
{
    /* Counted per input: libFuzzer itself opens descriptors now and then. */
    base_fds = count_fds(false);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == -1)
        fz_fail("socketpair: %s", strerror(errno));
    client_fd = sv[0];
    client_slow = slow_reader;
    client_out.len = client_out.off = 0;
    norigins = 0;
    newest = -1;
    origin_requests = 0;
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    conn_accept(sv[1], (struct sockaddr *)&peer, sizeof(peer), false, false);
}

void fz_end(void)
{
    /* The client reads what is left and goes; then the backends go. */
    client_slow = false;
    fz_settle();
    if (client_fd != -1) close(client_fd);
    client_fd = -1;
    fz_settle();
    for (int i = 0; i < norigins; i++) origin_close(&origins[i]);
    fz_settle();
    /* What remains (a connection lingering for its timer) is closed, as a
     * worker does at its end. */
    while (W.conns) conn_force_close(W.conns);
    loop_run_deferred(&W.loop);

    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "-- the client received %zu byte(s):\n%.*s\n-- end\n", client_out.len, (int)client_out.len,
                client_out.data ? client_out.data : "");
    if (W.nconns) fz_fail("%d client connection(s) counted after teardown", W.nconns);
    if (W.loop.timers.len) fz_fail("%zu timer(s) still armed after teardown", W.loop.timers.len);
    if (W.loop.deferred) fz_fail("deferred work queued after teardown");
    if (lua_gettop(lstate_g.L) != base_top)
        fz_fail("the Lua stack holds %d slot(s), %d expected", lua_gettop(lstate_g.L), base_top);
    req_ctx_pool_free();
    exchange_pool_free();
    pipe_pool_free();
    lua_gc(lstate_g.L, LUA_GCCOLLECT, 0);
    int fds = count_fds(false);
    if (fds != base_fds) {
        count_fds(true);
        fz_fail("%d descriptor(s) open after teardown, %d before", fds, base_fds);
    }
}
