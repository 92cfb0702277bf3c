/* upstream: a named group of servers, the interface of its balancing
 * policy (the policies themselves are in balance.c and lua/upstreams.c), passive health (max_fails within
 * fail_timeout takes a server out for fail_timeout) and the handover of
 * servers across a reload. State here is per worker: `active` counts this
 * worker's requests in flight. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "health_table.h"
#include "pool.h"

#define UPSTREAM_RETRY_ON_MAX 16 /* statuses in retry_on */

struct script_req;
struct upstream;
struct server;
struct ssl_ctx_st;
struct ssl_session_st;
struct ustat;

enum balance {
    BALANCE_ROUND_ROBIN, /* smooth weighted: 3:1 interleaves as a a b a, not a a a b */
    BALANCE_LEAST_CONN,  /* fewest in flight relative to weight */
    BALANCE_RANDOM,      /* two weighted random picks, keep the less loaded */
    BALANCE_HASH,        /* consistent hash ring on the script's hash_key */
    BALANCE_LUA,         /* the script's balance function */
};

/* What a balancing policy is asked: one request's choice. */
struct balance_req {
    struct upstream *u;
    const bool *tried;     /* tried[i]: servers[i] already attempted; may be NULL */
    uint64_t now;          /* ms, against the servers' down_until */
    struct script_req *sr; /* the request's script side, for hash_key and balance; NULL
                            * (a unit test) gives hash key 0 and no choice from "lua" */
};

struct balancer {
    const char *name; /* as the script spells it: proxy.upstream{balance = name} */
    /* 0 with the server in *s (NULL: none is available), or -1 when the
     * script's hook failed (logged). Never a server that is tried. */
    int (*choose)(const struct balance_req *r, struct server **s);
    /* Optional: per-upstream state built once its servers are in (the hash
     * ring), 0 or -ENOMEM; and its release. */
    int (*init)(struct upstream *u);
    void (*destroy)(struct upstream *u);
};


/* The script's hash_key(req) for a "hash" upstream, hashed into *key; -1
 * when the hook failed (logged). Set by whoever creates the upstream. */
typedef int (*upstream_key_fn)(struct script_req *sr, struct upstream *u, uint32_t *key);

struct server {
    char name[64]; /* "addr:port" as given (without https://) */
    char host[64]; /* default Host header when not name: the name it was resolved from */
    bool tls;      /* "https://" or the upstream's tls = true */
    struct ssl_session_st *tls_session; /* the last one issued: offered to new connections */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int weight;
    int active;         /* requests in flight from this worker */
    int fails;          /* failures in the current window */
    uint64_t fail_since; /* start of the failure window (ms) */
    uint64_t down_until; /* out of rotation until then (ms); 0 = up */
    int current;         /* smooth round-robin state */
    struct pool pool;    /* idle keep-alive connections to it */
    struct upstream *up;
    struct server *successor; /* after a reload: the same server in the new script */
    struct ustat *stat;       /* the metrics series of its last response, */
    int stat_code;            /* whose status this was */
    struct health_slot *health; /* shared up/down under an active check (health.h); NULL: none */
};

struct upstream {
    char name[64];
    struct server *servers;
    int nservers;
    enum balance balance;
    const struct balancer *policy; /* balance's functions, set by upstream_new() */
    void *policy_state;      /* the policy's own (the hash ring), from its init */
    upstream_key_fn hash_key;
    int keepalive;           /* idle pooled connections per server */
    uint64_t keepalive_timeout_ms;
    uint64_t connect_timeout_ms;
    uint64_t read_timeout_ms;
    uint64_t send_timeout_ms;
    int retries;             /* extra servers tried when connecting fails */
    uint16_t retry_on[UPSTREAM_RETRY_ON_MAX]; /* answers that send an idempotent request on */
    int nretry_on;
    struct upstream *mirror; /* gets a copy of every request (mirror.c); NULL: none */
    int max_fails;
    uint64_t fail_timeout_ms;
    uint64_t rand_state;     /* BALANCE_RANDOM's generator, BALANCE_LEAST_CONN's rotation */
    int script_ref;          /* the script's handle for hash_key/balance functions */
    struct ssl_ctx_st *tls_ctx; /* TLS servers: verification and sessions (core/tls.h) */
    bool tls_all;            /* tls = true: every server, whatever its list becomes */
    bool tls_verify;         /* verify = true (the default) */
    char *tls_ca;            /* ca = "path.pem", or NULL: the system store */
    char sni[256];           /* sni = "...": instead of each server's host */
    struct health_check *check; /* check = { ... } (health.h); NULL: no active checks */
    bool retired;            /* its script was replaced by a reload */
    int holds;               /* users past their request's life (mirror copies) */
    bool orphaned;           /* freed by its script while held: the last release frees it */
    struct upstream *next;   /* the other upstreams of the same script */
    /* Servers replaced at run time (upstream_set.h): */
    uint32_t servers_gen;    /* moves on with each replacement */
    uint32_t grace;          /* a husk's: the grace period it waits for */
    struct upstream *husks;  /* old server arrays still in use */
    struct upstream_dyn *dyn; /* the script's side: names, set_servers */
};

/* Creates an upstream (servers added by the caller: upstream_set.h). */
struct upstream *upstream_new(const char *name, enum balance b, const struct balancer *policy);

/* After the servers are in: sets their back pointers and lets the policy
 * build its state (the hash ring). 0 or -ENOMEM. */
int upstream_finish(struct upstream *u);
void upstream_free(struct upstream *u);
/* A user that may outlive the script's state (a mirror's copy still on its
 * way when its request ended) holds the upstream; upstream_free then waits
 * for the last release. */
void upstream_hold(struct upstream *u);
void upstream_release(struct upstream *u);
/* A reload: every server of the old list finds its successor in the new
 * one (same upstream name, same address) or none. Idle pooled connections
 * move to the successor or are closed; carry_health also copies the
 * passive-health state. */
void upstream_handover(struct upstream *old_list, struct upstream *new_list, bool carry_health);

/* Inline: every policy asks it of every candidate on each request. */
static inline bool upstream_server_up(const struct server *s, uint64_t now)
{
    return (s->down_until == 0 || s->down_until <= now) && (!s->health || health_slot_up(s->health));
}
/* Whether the upstream's retry_on lists this status. */
static inline bool upstream_retries_on(const struct upstream *u, int status)
{
    for (int i = 0; i < u->nretry_on; i++)
        if (u->retry_on[i] == status) return true;
    return false;
}
/* Passive health. */
void upstream_fail(struct server *s, uint64_t now);
void upstream_ok(struct server *s);
uint32_t upstream_hash(const char *s, size_t n);
