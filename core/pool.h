/* pool: backend connections, and per server a LIFO list of idle keep-alive
 * ones. LIFO keeps the few most recently used connections warm and lets the
 * rest expire. An idle connection is watched for readability: a backend
 * that closes it (or sends stray bytes) gets it dropped at once. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "loop.h"
#include "timer.h"
#include "transport.h"

struct server;
struct exchange;

struct bconn {
    struct transport tp;
    struct server *srv;
    struct timer idle_timer;   /* expiry while pooled */
    struct defer free_later;   /* the struct outlives its batch of events */
    struct bconn *prev, *next; /* pool list while idle */
    struct exchange *ex;       /* owner while in use; NULL while idle */
    /* The owner's handler for events while in use, set when it takes the
     * connection: the pool knows no more of its user than this. */
    void (*on_event)(struct bconn *b, unsigned events);
    void *user;                /* a user other than an exchange (a mirror's copy), ex NULL */
    bool idle;                 /* in the pool */
    bool connected;            /* the connect completed */
    uint32_t requests;         /* requests carried, for logs and metrics */
};

struct pool {
    struct bconn *head; /* most recently returned first */
    int count;
    struct server *srv;
};

void pool_init(struct pool *p);
void pool_attach(struct pool *p, struct server *srv);
/* The most recently pooled connection still open and silent (checked with
 * a non-blocking peek), or NULL. */
struct bconn *pool_get(struct pool *p);
/* Returns b to its server's pool, or closes it when the pool is full. */
void pool_put(struct bconn *b);
void pool_close_all(struct pool *p);
/* Moves p's idle connections to another server's pool (as many as its
 * keepalive allows), closing the rest; to NULL closes them all. */
void pool_move(struct pool *p, struct server *to);

/* Starts a non-blocking connect. NULL with *err = -errno on failure. */
struct bconn *bconn_connect(struct server *s, int *err);
void bconn_close(struct bconn *b);

uint64_t pool_reuses(void);
