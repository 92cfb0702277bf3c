#include "upstream_set.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "health.h"
#include "log.h"
#include "tls.h"

/* ---- addresses ---------------------------------------------------------- */

int server_spec_parse(const char *text, struct server_spec *out, char *host, size_t hostlen,
                      int *port)
{
    memset(out, 0, sizeof(*out));
    out->weight = 1;
    if (!strncmp(text, "https://", 8)) {
        out->tls = true;
        text += 8;
    } else if (!strncmp(text, "http://", 7)) {
        text += 7;
    }
    if (strlen(text) >= sizeof(out->name)) return -EINVAL;
    snprintf(out->name, sizeof(out->name), "%s", text);
    if (!strncmp(text, "unix:", 5)) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&out->addr;
        const char *path = text + 5;
        size_t len = strlen(path);
        if (path[0] != '/' || len >= sizeof(sun->sun_path)) return -EINVAL;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, len + 1);
        out->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
        /* The Host a unix backend is sent by default, as nginx does. */
        snprintf(out->host, sizeof(out->host), "localhost");
        return 0;
    }
    const char *colon, *h = text;
    size_t hlen;
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb[1] != ':') return -EINVAL;
        h = text + 1;
        hlen = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon) return -EINVAL;
        hlen = (size_t)(colon - text);
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (hlen == 0 || hlen >= hostlen || colon[1] < '0' || colon[1] > '9' || *end || errno ||
        p < 1 || p > 65535)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
    if (text[0] != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)p);
        out->addrlen = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)p);
        out->addrlen = sizeof(*sin6);
        return 0;
    }
    if (text[0] == '[' || strchr(host, ':')) return -EINVAL;
    return -EAGAIN;
}

void server_spec_from_addr(struct server_spec *out, const struct sockaddr *sa, const char *name,
                           int port, int weight)
{
    memset(out, 0, sizeof(*out));
    char a[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->addr;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = ((const struct sockaddr_in6 *)sa)->sin6_addr;
        sin6->sin6_port = htons((uint16_t)port);
        out->addrlen = sizeof(*sin6);
        inet_ntop(AF_INET6, &sin6->sin6_addr, a, sizeof(a));
        snprintf(out->name, sizeof(out->name), "[%s]:%d", a, port);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&out->addr;
        sin->sin_family = AF_INET;
        sin->sin_addr = ((const struct sockaddr_in *)sa)->sin_addr;
        sin->sin_port = htons((uint16_t)port);
        out->addrlen = sizeof(*sin);
        inet_ntop(AF_INET, &sin->sin_addr, a, sizeof(a));
        snprintf(out->name, sizeof(out->name), "%s:%d", a, port);
    }
    snprintf(out->host, sizeof(out->host), "%s:%d", name, port);
    out->weight = weight;
}

static void server_fill(struct server *s, const struct server_spec *sp)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->name, sp->name, sizeof(s->name));
    memcpy(s->host, sp->host, sizeof(s->host));
    s->tls = sp->tls;
    s->addr = sp->addr;
    s->addrlen = sp->addrlen;
    s->weight = sp->weight;
    pool_init(&s->pool);
}

int upstream_add_spec(struct upstream *u, const struct server_spec *sp)
{
    struct server *s = realloc(u->servers, (size_t)(u->nservers + 1) * sizeof(*s));
    if (!s) return -ENOMEM;
    u->servers = s;
    server_fill(&u->servers[u->nservers++], sp);
    return 0;
}

int upstream_add_server(struct upstream *u, const char *addr, int weight)
{
    struct server_spec sp;
    char host[64];
    int port;
    if (weight < 1 || server_spec_parse(addr, &sp, host, sizeof(host), &port)) return -EINVAL;
    sp.weight = weight;
    return upstream_add_spec(u, &sp);
}

/* ---- the grace period -------------------------------------------------- */

static unsigned live[2];             /* exchanges in flight, by the epoch they began in */
static uint8_t epoch;                /* new exchanges count here */
static uint32_t gp_started, gp_done; /* grace periods begun and over */
static bool gp_wanted;               /* a husk made during a grace period waits for the next */

uint8_t upstream_epoch_enter(void)
{
    live[epoch]++;
    return epoch;
}

void upstream_epoch_leave(uint8_t e)
{
    live[e]--;
}

/* The grace period a husk made now must wait for. */
static uint32_t grace_for_new_husk(void)
{
    if (gp_started == gp_done) {
        epoch ^= 1;
        return ++gp_started;
    }
    gp_wanted = true;
    return gp_started + 1;
}

void upstream_epoch_poll(void)
{
    if (gp_started == gp_done || live[epoch ^ 1]) return;
    gp_done++;
    if (gp_wanted) {
        gp_wanted = false;
        epoch ^= 1;
        gp_started++;
    }
}

/* ---- replacing --------------------------------------------------------- */

static bool same_addr(const struct server *a, const struct server *b)
{
    return a->addrlen == b->addrlen && !memcmp(&a->addr, &b->addr, a->addrlen);
}

static bool in_husk(const struct server *s, const struct upstream *h)
{
    return s >= h->servers && s < h->servers + h->nservers;
}

struct upstream *upstream_replace(struct upstream *u, const struct server_spec *specs, int n)
{
    struct upstream *husk = malloc(sizeof(*husk));
    struct server *fresh = calloc(n > 0 ? (size_t)n : 1, sizeof(*fresh));
    if (!husk || !fresh) goto fail;
    *husk = *u;
    husk->retired = true; /* what its servers give back is closed, unless it has a successor */
    husk->policy_state = NULL;
    husk->husks = NULL;
    husk->dyn = NULL;
    husk->tls_ctx = tls_client_ref(u->tls_ctx); /* its TLS servers' connections may still retry */
    husk->tls_ca = u->tls_ca ? strdup(u->tls_ca) : NULL;
    husk->check = NULL; /* the upstream's own; its probes move to the new list below */
    for (int i = 0; i < n; i++) {
        server_fill(&fresh[i], &specs[i]);
        fresh[i].up = u;
        pool_attach(&fresh[i].pool, &fresh[i]);
    }
    void *old_state = u->policy_state;
    u->policy_state = NULL;
    u->servers = fresh;
    u->nservers = n;
    if (u->policy->init && u->policy->init(u)) {
        u->servers = husk->servers;
        u->nservers = husk->nservers;
        u->policy_state = old_state;
        goto fail;
    }
    /* The old policy state (a hash ring) needs only the husk's count. */
    if (u->policy->destroy) {
        void *new_state = u->policy_state;
        u->policy_state = old_state;
        u->policy->destroy(u);
        u->policy_state = new_state;
    }
    for (int i = 0; i < husk->nservers; i++) {
        struct server *s = &husk->servers[i], *t = NULL;
        for (int k = 0; k < n && !t; k++)
            if (same_addr(&fresh[k], s) && !fresh[k].successor) t = &fresh[k];
        s->up = husk;
        s->successor = t;
        if (t) {
            /* Marks it taken, undone below: two equal old addresses do not
             * both land on one new server. */
            t->successor = t;
            t->fails = s->fails;
            t->fail_since = s->fail_since;
            t->down_until = s->down_until;
            t->current = s->current;
            t->stat = s->stat;
            t->stat_code = s->stat_code;
            t->tls_session = s->tls_session; /* resumes as before */
            s->tls_session = NULL;
        }
    }
    for (int k = 0; k < n; k++)
        fresh[k].successor = NULL;
    for (int i = 0; i < husk->nservers; i++)
        pool_move(&husk->servers[i].pool, husk->servers[i].successor);
    /* Older husks of u point at servers that are in this husk now. */
    upstream_repoint(u->husks, husk);
    husk->grace = grace_for_new_husk();
    husk->next = u->husks;
    u->husks = husk;
    u->servers_gen++;
    health_restart(u);
    return husk;
fail:
    free(husk);
    free(fresh);
    return NULL;
}

void upstream_repoint(struct upstream *list, const struct upstream *husk)
{
    for (struct upstream *u = list; u; u = u->next) {
        if (u == husk) continue;
        for (int i = 0; i < u->nservers; i++) {
            struct server *s = &u->servers[i];
            if (s->successor && in_husk(s->successor, husk)) s->successor = s->successor->successor;
        }
        if (u->husks) upstream_repoint(u->husks, husk);
    }
}

void upstream_reap(struct upstream *u)
{
    struct upstream **pp = &u->husks;
    while (*pp) {
        struct upstream *h = *pp;
        if (h->grace > gp_done) {
            pp = &h->next;
            continue;
        }
        *pp = h->next;
        for (int i = 0; i < h->nservers; i++)
            pool_close_all(&h->servers[i].pool);
        free(h->servers);
        free(h);
    }
}
