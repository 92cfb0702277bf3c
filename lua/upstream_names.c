/* upstream_names: an upstream's servers as the script gives them ("host:port"
 * addresses, "name:port" names, "unix:/path" sockets), kept up to date while
 * the worker runs:
 *
 * - names are resolved at load, synchronously (a short-lived c-ares channel
 *   polled here, /etc/hosts first, at most RESOLVE_LOAD_MS), so that a name
 *   that does not resolve is a load error naming it, as --check says too;
 *   then again on the worker's loop (ldns.h's channel) when the answer's TTL
 *   runs out, at most every --resolve-interval; every address is a server;
 * - up:set_servers(list) replaces the list in this worker at once and, by a
 *   version and the list in shared memory, in every other worker at its next
 *   tick (TICK_MS); up:servers() lists what balancing sees.
 *
 * Each change of the addresses goes through upstream_replace()
 * (core/upstream_set.h), which keeps what stays (pooled connections,
 * passive health) and lets the rest drain. */
#include "upstream_names.h"

#include <ares.h>
#include <errno.h>
#include <lauxlib.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ldns.h"
#include "log.h"
#include "shm.h"
#include "upstream_set.h"
#include "upstreams.h"

#define TICK_MS 250          /* how often a worker looks at names, shared memory, husks */
#define RESOLVE_LOAD_MS 5000 /* a load waits no longer for its names */
#define MIN_RESOLVE_MS 1000  /* a TTL of 0 does not make a busy loop */
#define MAX_ADDRS 64         /* addresses taken from one name */
#define QUERY_MS 3000        /* an answer later than this counts as none */
#define SHM_DICT "luaproxy.servers"

/* One server as given: an address, or a name and its last addresses. */
struct uentry {
    char text[128];
    int weight;
    bool named;
    struct server_spec spec;   /* !named */
    char host[128];            /* named: the name, */
    int port;                  /* its port, */
    struct server_spec *addrs; /* its last addresses (NULL: never resolved) */
    int naddrs;
    uint64_t ttl_ms; /* the last answer's, capped */
    uint64_t due_ms; /* when to resolve it again */
    bool querying;   /* a query is out */
    bool failing;    /* the last resolution failed (warned once) */
};

struct dyn_query;

struct upstream_dyn {
    struct upstream *u;
    struct uentry *e;
    int n;
    int generation;            /* of the script that declared it */
    double applied;            /* the version of set_servers in force (0: the script's) */
    struct dyn_query *queries; /* out on the channel */
};

struct dyn_query {
    struct upstream_dyn *d; /* NULL once the upstream is gone */
    struct dyn_query *next;
    uint64_t deadline; /* QUERY_MS after it left */
    bool abandoned;    /* past it: its answer is ignored */
    char text[128];    /* the entry it is for */
};

static struct timer tick; /* armed while an upstream lives (ndyn) */
static int ndyn;
static void tick_start(void);
static double seen_version; /* of the shared "v" counter, last looked at */

static uint64_t now_ms(void)
{
    return lstate_g.loop ? lstate_g.loop->now_ms : 0;
}

static uint64_t interval_ms(void)
{
    uint64_t v = lstate_g.cfg ? lstate_g.cfg->resolve_interval_ms : 30000;
    return v < MIN_RESOLVE_MS ? MIN_RESOLVE_MS : v;
}

static uint64_t ttl_cap(int ttl_s)
{
    uint64_t ms = ttl_s > 0 ? (uint64_t)ttl_s * 1000 : 0;
    if (ms < MIN_RESOLVE_MS) ms = MIN_RESOLVE_MS;
    return ms < interval_ms() ? ms : interval_ms();
}

/* ---- entries --------------------------------------------------------- */

static void entry_clear(struct uentry *e)
{
    free(e->addrs);
    e->addrs = NULL;
    e->naddrs = 0;
}

static void entries_free(struct uentry *e, int n)
{
    for (int i = 0; i < n; i++)
        entry_clear(&e[i]);
    free(e);
}

/* 0, or -EINVAL (bad address). */
static int entry_parse(const char *text, int weight, struct uentry *e)
{
    memset(e, 0, sizeof(*e));
    if (weight < 1 || strlen(text) >= sizeof(e->text)) return -EINVAL;
    snprintf(e->text, sizeof(e->text), "%s", text);
    e->weight = weight;
    int rc = server_spec_parse(text, &e->spec, e->host, sizeof(e->host), &e->port);
    if (rc == -EAGAIN) {
        e->named = true;
        return 0;
    }
    e->spec.weight = weight;
    return rc;
}

/* The addresses of an answer, as servers of e (IPv4 first, no repeats). */
static int entry_take(struct uentry *e, const struct ares_addrinfo *res)
{
    struct server_spec *a = calloc(MAX_ADDRS, sizeof(*a));
    if (!a) return -ENOMEM;
    int n = 0, ttl = -1;
    for (int pass = 0; pass < 2; pass++) {
        for (const struct ares_addrinfo_node *p = res ? res->nodes : NULL; p && n < MAX_ADDRS;
             p = p->ai_next) {
            if ((p->ai_family == AF_INET) != (pass == 0)) continue;
            if (p->ai_family != AF_INET && p->ai_family != AF_INET6) continue;
            server_spec_from_addr(&a[n], p->ai_addr, e->host, e->port, e->weight);
            a[n].tls = e->spec.tls; /* "https://name:port" */
            bool dup = false;
            for (int k = 0; k < n && !dup; k++)
                dup = !strcmp(a[k].name, a[n].name);
            if (dup) continue;
            if (ttl < 0 || p->ai_ttl < ttl) ttl = p->ai_ttl;
            n++;
        }
    }
    if (n == 0) {
        free(a);
        return -ENOENT;
    }
    bool same = n == e->naddrs;
    for (int i = 0; i < n && same; i++)
        same = !strcmp(a[i].name, e->addrs[i].name);
    entry_clear(e);
    e->addrs = a;
    e->naddrs = n;
    e->ttl_ms = ttl_cap(ttl);
    e->due_ms = now_ms() + e->ttl_ms;
    return same ? 0 : 1;
}

/* ---- the server list --------------------------------------------------- */

static int specs_of(const struct upstream_dyn *d, struct server_spec **out)
{
    int n = 0;
    for (int i = 0; i < d->n; i++)
        n += d->e[i].named ? d->e[i].naddrs : 1;
    struct server_spec *s = calloc(n > 0 ? (size_t)n : 1, sizeof(*s));
    if (!s) return -ENOMEM;
    int k = 0;
    for (int i = 0; i < d->n; i++) {
        const struct uentry *e = &d->e[i];
        if (!e->named) s[k++] = e->spec;
        for (int j = 0; e->named && j < e->naddrs; j++)
            s[k++] = e->addrs[j];
    }
    *out = s;
    return n;
}

/* The upstream's servers made what d's entries say, in this worker. */
static void rebuild(struct upstream_dyn *d)
{
    struct server_spec *specs;
    int n = specs_of(d, &specs);
    struct upstream *husk = n < 0 ? NULL : upstream_replace(d->u, specs, n);
    free(specs);
    if (!husk) return log_error("upstream %s: out of memory changing its servers", d->u->name);
    tick_start(); /* which frees the husk */
    /* Older scripts' servers hand their connections to these ones. */
    if (lstate_g.cur) upstream_repoint(lstate_g.cur->upstreams, husk);
    for (struct lstate *r = lstate_g.retired; r; r = r->next)
        upstream_repoint(r->upstreams, husk);
    char list[512];
    size_t off = 0;
    list[0] = '\0';
    for (int i = 0; i < d->u->nservers && off < sizeof(list); i++)
        off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? " " : "",
                                d->u->servers[i].name);
    log_info("upstream %s: servers now %s", d->u->name, d->u->nservers ? list : "(none)");
}

/* ---- resolving at load ------------------------------------------------- */

struct sync_answer {
    bool done;
    int status;
    struct ares_addrinfo *res;
};

static void on_sync_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct sync_answer *a = arg;
    a->done = true;
    a->status = status;
    a->res = res;
}

static const struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC,
                                                 .ai_socktype = SOCK_STREAM};

/* Resolves a name at load, blocking at most RESOLVE_LOAD_MS: on its own
 * channel, which the loop does not watch (the master has no loop). */
static int resolve_now(struct uentry *e, const char **why)
{
    ares_channel ch;
    struct ares_options o = {.timeout = 1000, .tries = 2};
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc == ARES_SUCCESS) rc = ares_init_options(&ch, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        *why = ares_strerror(rc);
        return -1;
    }
    const char *servers = lstate_g.cfg ? lstate_g.cfg->resolver : NULL;
    if (servers && ares_set_servers_ports_csv(ch, servers) != ARES_SUCCESS) {
        ares_destroy(ch);
        ares_library_cleanup();
        *why = "bad --resolver";
        return -1;
    }
    struct sync_answer a = {0};
    ares_getaddrinfo(ch, e->host, NULL, &hints, on_sync_answer, &a);
    for (int waited = 0; !a.done && waited < RESOLVE_LOAD_MS;) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        struct pollfd pf[ARES_GETSOCK_MAXNUM];
        /* Unsigned: c-ares's own ARES_GETSOCK_WRITABLE shifts 1 into the sign bit. */
        unsigned bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
        int np = 0;
        for (unsigned i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = (short)((bits & (1u << i) ? POLLIN : 0) |
                               (bits & (1u << (i + ARES_GETSOCK_MAXNUM)) ? POLLOUT : 0));
            if (ev) pf[np++] = (struct pollfd){.fd = socks[i], .events = ev};
        }
        struct timeval tv, *t = ares_timeout(ch, NULL, &tv);
        int ms = t ? (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000) : 100;
        if (ms > RESOLVE_LOAD_MS - waited) ms = RESOLVE_LOAD_MS - waited;
        if (ms < 1) ms = 1;
        int r = poll(pf, (nfds_t)np, ms);
        if (r == -1 && errno != EINTR) break;
        waited += ms; /* at most: a reply may come sooner */
        for (int i = 0; i < np; i++)
            ares_process_fd(
                ch, pf[i].revents & (POLLIN | POLLERR | POLLHUP) ? pf[i].fd : ARES_SOCKET_BAD,
                pf[i].revents & (POLLOUT | POLLERR) ? pf[i].fd : ARES_SOCKET_BAD);
        if (np == 0 || r == 0) ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    }
    int ok = -1;
    if (!a.done)
        *why = "timeout";
    else if (a.status != ARES_SUCCESS)
        *why = ares_strerror(a.status);
    else if (entry_take(e, a.res) < 0)
        *why = "no address";
    else
        ok = 0;
    ares_destroy(ch); /* a query still out gets its answer now, as a failure */
    if (a.res) ares_freeaddrinfo(a.res);
    ares_library_cleanup();
    return ok;
}

/* ---- resolving again, on the loop ------------------------------------- */

static struct uentry *entry_by_text(struct upstream_dyn *d, const char *text)
{
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->e[i].text, text)) return &d->e[i];
    return NULL;
}

/* A name that no longer resolves keeps what it was: better old addresses
 * than none. Warned once per streak of failures. */
static void entry_failed(struct upstream_dyn *d, struct uentry *e, const char *why)
{
    e->querying = false;
    if (!e->failing)
        log_warn("upstream %s: %s could not be resolved again (%s); keeping its %d address(es)",
                 d->u->name, e->text, why, e->naddrs);
    e->failing = true;
    e->due_ms = now_ms() + (e->ttl_ms ? e->ttl_ms : ttl_cap(0));
}

static void query_unlink(struct upstream_dyn *d, struct dyn_query *q)
{
    for (struct dyn_query **pp = &d->queries; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            return;
        }
}

static void on_answer(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct dyn_query *q = arg;
    struct upstream_dyn *d = q->abandoned ? NULL : q->d;
    struct uentry *e = d ? entry_by_text(d, q->text) : NULL;
    if (q->d) query_unlink(q->d, q);
    free(q);
    int rc = e && status == ARES_SUCCESS ? entry_take(e, res) : -1;
    if (res) ares_freeaddrinfo(res);
    if (!e) return;
    if (rc < 0)
        return entry_failed(d, e, status == ARES_SUCCESS ? "no address" : ares_strerror(status));
    e->querying = false;
    if (e->failing) {
        e->failing = false;
        log_info("upstream %s: %s resolves again", d->u->name, e->text);
    }
    if (rc > 0) rebuild(d);
}

/* Queries past their deadline: the resolver is not answering. */
static void queries_expire(struct upstream_dyn *d)
{
    for (struct dyn_query *q = d->queries; q; q = q->next) {
        if (q->abandoned || q->deadline > now_ms()) continue;
        q->abandoned = true;
        struct uentry *e = entry_by_text(d, q->text);
        if (e) entry_failed(d, e, "no answer");
    }
}

static void resolve_due(struct upstream_dyn *d)
{
    uint64_t now = now_ms();
    for (int i = 0; i < d->n; i++) {
        struct uentry *e = &d->e[i];
        if (!e->named || e->querying || e->due_ms > now) continue;
        const char *err = NULL;
        ares_channel ch = ldns_channel(&err);
        struct dyn_query *q = ch ? calloc(1, sizeof(*q)) : NULL;
        if (!q) {
            e->due_ms = now + ttl_cap(0);
            log_warn("upstream %s: cannot resolve %s (%s)", d->u->name, e->text,
                     err ? err : "out of memory");
            continue;
        }
        q->d = d;
        q->deadline = now + QUERY_MS;
        snprintf(q->text, sizeof(q->text), "%s", e->text);
        q->next = d->queries;
        d->queries = q;
        e->querying = true;
        ares_getaddrinfo(ch, e->host, NULL, &hints, on_answer, q); /* may answer at once */
        ldns_kick();
    }
}

/* ---- shared memory: set_servers reaching every worker ----------------- */

static struct shm_dict *dict(void)
{
    return lstate_g.shm ? shm_dict(lstate_g.shm, SHM_DICT) : NULL;
}

static int shm_key(char *k, size_t n, const struct upstream_dyn *d)
{
    return snprintf(k, n, "%d:%s", d->generation, d->u->name);
}

/* Entries from "version\nweight text\n...", or -EINVAL. */
static int entries_from_text(const char *s, size_t len, struct uentry **out, double *version)
{
    char *copy = strndup(s, len), *save = NULL;
    if (!copy) return -ENOMEM;
    int n = 0, cap = 8;
    struct uentry *e = calloc((size_t)cap, sizeof(*e));
    char *line = strtok_r(copy, "\n", &save);
    *version = line ? strtod(line, NULL) : 0;
    while (e && (line = strtok_r(NULL, "\n", &save))) {
        char *sp = strchr(line, ' ');
        if (!sp) continue;
        *sp = '\0';
        if (n == cap) {
            struct uentry *g = realloc(e, (size_t)(cap *= 2) * sizeof(*e));
            if (!g) break;
            e = g;
        }
        if (entry_parse(sp + 1, atoi(line), &e[n]) == 0) n++;
    }
    free(copy);
    if (!e) return -ENOMEM;
    *out = e;
    return n;
}

/* Takes a new list of entries: names already known keep their addresses
 * (and resolve on their schedule), new ones resolve at the next tick. */
static void adopt(struct upstream_dyn *d, struct uentry *e, int n)
{
    for (int i = 0; i < n; i++) {
        if (!e[i].named) continue;
        struct uentry *old = entry_by_text(d, e[i].text);
        if (old && old->naddrs) {
            e[i].addrs = malloc((size_t)old->naddrs * sizeof(*old->addrs));
            if (e[i].addrs) {
                memcpy(e[i].addrs, old->addrs, (size_t)old->naddrs * sizeof(*old->addrs));
                e[i].naddrs = old->naddrs;
                for (int k = 0; k < e[i].naddrs; k++)
                    e[i].addrs[k].weight = e[i].weight;
            }
            e[i].ttl_ms = old->ttl_ms;
            e[i].due_ms = old->due_ms;
            e[i].querying = old->querying;
        }
    }
    entries_free(d->e, d->n);
    d->e = e;
    d->n = n;
    rebuild(d);
    resolve_due(d);
}

static struct shm_buf buf;

/* The count of set_servers calls in shared memory (0: none yet). */
static double shared_version(void)
{
    struct shm_dict *dt = dict();
    struct shm_value v;
    if (!dt || shm_get(dt, "v", 1, shm_now_ms(), &v, &buf) || v.type != SHM_NUMBER) return 0;
    return v.num;
}

static void shm_check(void)
{
    struct shm_dict *dt = dict();
    if (!dt || !lstate_g.cur) return;
    struct shm_value v;
    uint64_t now = shm_now_ms();
    double version = shared_version();
    if (version == seen_version) return;
    seen_version = version;
    for (struct upstream *u = lstate_g.cur->upstreams; u; u = u->next) {
        struct upstream_dyn *d = u->dyn;
        char k[128];
        int kl = d ? shm_key(k, sizeof(k), d) : 0;
        if (!d || shm_get(dt, k, (size_t)kl, now, &v, &buf) || v.type != SHM_STRING) continue;
        struct uentry *e;
        int n = entries_from_text(v.str, v.len, &e, &version);
        if (n < 0) continue;
        if (version <= d->applied) {
            entries_free(e, n);
            continue;
        }
        d->applied = version;
        adopt(d, e, n);
    }
}

static void shm_publish(struct upstream_dyn *d)
{
    struct shm_dict *dt = dict();
    if (!dt) return;
    uint64_t now = shm_now_ms();
    double version = 0;
    if (shm_incr(dt, "n", 1, 1, true, 0, 0, now, &version)) goto full;
    size_t cap = 32 + (size_t)d->n * (sizeof(d->e->text) + 16), off;
    char *s = malloc(cap);
    if (!s) goto full;
    off = (size_t)snprintf(s, cap, "%.0f\n", version);
    for (int i = 0; i < d->n; i++)
        off += (size_t)snprintf(s + off, cap - off, "%d %s\n", d->e[i].weight, d->e[i].text);
    char k[128];
    int kl = shm_key(k, sizeof(k), d);
    struct shm_value v = {.type = SHM_STRING, .str = s, .len = off};
    int rc = shm_set(dt, k, (size_t)kl, &v, 0, now);
    free(s);
    /* The list is in before the counter moves: a worker that sees the new
     * count finds the new list. */
    if (rc || shm_incr(dt, "v", 1, 1, true, 0, 0, now, &version)) goto full;
    d->applied = version;
    return;
full:
    log_error("upstream %s: set_servers: no room in shared memory (--shm-size): other workers keep "
              "their servers",
              d->u->name);
}

/* ---- the tick ---------------------------------------------------------- */

static void on_tick(struct timer *t)
{
    upstream_epoch_poll();
    if (lstate_g.cur)
        for (struct upstream *u = lstate_g.cur->upstreams; u; u = u->next) {
            if (u->dyn) queries_expire(u->dyn);
            if (u->dyn) resolve_due(u->dyn);
            upstream_reap(u);
        }
    for (struct lstate *r = lstate_g.retired; r; r = r->next)
        for (struct upstream *u = r->upstreams; u; u = u->next)
            upstream_reap(u);
    shm_check();
    loop_timer(lstate_g.loop, t, TICK_MS);
}

static void tick_start(void)
{
    if (!lstate_g.loop || tick.index) return;
    tick.cb = on_tick;
    loop_timer(lstate_g.loop, &tick, TICK_MS);
}

/* ---- the script's side ------------------------------------------------- */

/* The list at index idx as entries; raises "<who>: server N: ..." errors. */
static int entries_from_lua(lua_State *L, int idx, const char *who, struct uentry **out)
{
    int n = (int)lua_objlen(L, idx);
    if (n == 0) return luaL_error(L, "%s: no servers", who);
    if (n > 65535) return luaL_error(L, "%s: too many servers", who);
    /* A userdata owns the array while Lua may raise: its __gc is not needed
     * as entries hold no memory until they are resolved, below. */
    struct uentry *e = lua_newuserdata(L, (size_t)n * sizeof(*e));
    int anchor = lua_gettop(L);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        const char *addr = NULL;
        lua_Number w = 1;
        if (lua_type(L, -1) == LUA_TSTRING) {
            addr = lua_tostring(L, -1);
        } else if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "weight");
            if (!lua_isnil(L, -1) &&
                (!lua_isnumber(L, -1) || lua_tonumber(L, -1) != (int)lua_tonumber(L, -1) ||
                 lua_tonumber(L, -1) < 1))
                return luaL_error(L, "%s: server %d: weight must be a whole number >= 1", who, i);
            if (!lua_isnil(L, -1)) w = lua_tonumber(L, -1);
            lua_getfield(L, -2, "addr");
            addr = lua_tostring(L, -1);
            lua_pop(L, 2); /* addr stays anchored by the server table */
        }
        if (!addr)
            return luaL_error(L,
                              "%s: server %d must be \"host:port\", \"unix:/path\" or { addr = "
                              "..., weight = ... }",
                              who, i);
        if (entry_parse(addr, (int)w, &e[i - 1]))
            return luaL_error(L,
                              "%s: server %d: bad address '%s' (expected host:port or unix:/path)",
                              who, i, addr);
        lua_pop(L, 1);
    }
    struct uentry *copy = malloc((size_t)n * sizeof(*e));
    if (!copy) return luaL_error(L, "%s: out of memory", who);
    memcpy(copy, e, (size_t)n * sizeof(*e));
    lua_settop(L, anchor - 1);
    *out = copy;
    return n;
}

int upstream_names_load(lua_State *L, struct upstream *u, int idx)
{
    struct upstream_dyn *d = calloc(1, sizeof(*d));
    if (!d) return luaL_error(L, "proxy.upstream: out of memory");
    d->u = u;
    d->generation = lstate_g.loading ? lstate_g.loading->generation : 0;
    u->dyn = d; /* freed with the upstream from here on, whatever happens */
    ndyn++;
    d->n = entries_from_lua(L, idx, "proxy.upstream", &d->e);
    for (int i = 0; i < d->n; i++) {
        struct uentry *e = &d->e[i];
        const char *why = NULL;
        if (e->named && resolve_now(e, &why))
            return luaL_error(L, "proxy.upstream: '%s': server %d: %s does not resolve (%s)",
                              u->name, i + 1, e->text, why);
    }
    struct server_spec *specs;
    int n = specs_of(d, &specs);
    for (int i = 0; i < n; i++)
        if (upstream_add_spec(u, &specs[i])) n = -1;
    free(specs);
    if (n < 0) return luaL_error(L, "proxy.upstream: out of memory");
    /* One worker alone hears of set_servers from itself (or, restarted,
     * from its predecessor: then shared memory has a version); without
     * names it needs no tick until a change leaves a husk (rebuild). */
    bool named = false;
    for (int i = 0; i < d->n; i++)
        named = named || d->e[i].named;
    if (named || lstate_g.worker_count > 1 || shared_version() > 0) tick_start();
    return 0;
}

void upstream_names_free(struct upstream *u)
{
    struct upstream_dyn *d = u ? u->dyn : NULL;
    if (!d) return;
    for (struct dyn_query *q = d->queries; q; q = q->next)
        q->d = NULL; /* on_answer frees them */
    entries_free(d->e, d->n);
    free(d);
    u->dyn = NULL;
    if (--ndyn == 0 && lstate_g.loop) timer_cancel(&lstate_g.loop->timers, &tick);
}

static struct upstream *check_up(lua_State *L)
{
    struct upstream *u = *(struct upstream **)luaL_checkudata(L, 1, UPSTREAMS_MT);
    if (!u || !u->dyn) luaL_error(L, "this upstream is gone");
    return u;
}

int upstream_names_set_servers(lua_State *L)
{
    struct upstream *u = check_up(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lstate_g.loading)
        return luaL_error(L, "set_servers: not at the top level (declare the servers instead)");
    /* Those run inside a choice over the very array a change replaces. */
    const char *w = lstate_g.where ? lstate_g.where : "";
    if (!strcmp(w, "balance") || !strcmp(w, "hash_key"))
        return luaL_error(L, "set_servers: not in %s", w);
    struct uentry *e;
    int n = entries_from_lua(L, 2, "set_servers", &e);
    adopt(u->dyn, e, n);
    shm_publish(u->dyn);
    return 0;
}

void upstream_names_push_server(lua_State *L, const struct server *s, uint64_t now, int extra)
{
    lua_createtable(L, 0, 3 + extra);
    lua_pushstring(L, s->name);
    lua_setfield(L, -2, "addr");
    lua_pushinteger(L, s->weight);
    lua_setfield(L, -2, "weight");
    lua_pushboolean(L, upstream_server_up(s, now));
    lua_setfield(L, -2, "up");
}

int upstream_names_servers(lua_State *L)
{
    struct upstream *u = check_up(L);
    lua_createtable(L, u->nservers, 0);
    for (int i = 0; i < u->nservers; i++) {
        upstream_names_push_server(L, &u->servers[i], now_ms(), 0);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}
