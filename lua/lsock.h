/* lsock: proxy.socket.tcp(), a client socket whose calls wait without
 * blocking the worker (OpenResty's cosockets): connect, send, receive,
 * receiveuntil, settimeout(s), setkeepalive with a per-worker pool of idle
 * connections, getreusedtimes, close. A call that would block yields the
 * hook's coroutine (lrun.h) until the socket is ready or its timeout runs
 * out. */
#pragma once
#include <lua.h>
#include <stddef.h>
#include <stdint.h>

#include <lauxlib.h>
#include <stdbool.h>

#include <sys/socket.h>

#include "buf.h"
#include "loop.h"
#include "timer.h"

struct lrun;
struct pool_limit;

#define LSOCK_UDP_MT "luaproxy.socket.udp" /* lsock_udp.c's sockets */

/* A socket (tcp or udp); the Lua userdata holds a pointer to it, so that a
 * pooled connection outlives the userdata. */
struct lsock {
    struct io io;          /* fd -1: closed */
    struct lrun *waiter;   /* the run waiting on it, if any */
    uint64_t connect_ms, send_ms, read_ms;
    uint64_t deadline;     /* loop ms no wait may pass (lsock_limits); 0: none */
    size_t max_line;       /* receive("*l") gives up past it (lsock_limits); 0: none */
    struct buf rbuf;       /* received, not yet returned: [off, len) */
    struct buf wbuf;       /* to send: [off, len) */
    char key[160];         /* its pool's name */
    int reused;
    bool connected;
    bool pooled;           /* idle in the pool */
    struct timer idle;     /* the pool's max_idle */
    int pool_size;
    struct lsock *next;    /* the pool */
    struct pool_limit *limit; /* the limited pool its connection counts in */
    bool queued;           /* its connect waits in limit's queue */
    struct lsock *qnext;
};

/* The socket of the userdata at 1 (tcp or udp), made on first use. */
struct lsock *lsock_check(lua_State *L);
/* Pushes nil, err: 2. */
int lsock_fail(lua_State *L, const char *err);
/* A new userdata of metatable mt. */
int lsock_new(lua_State *L, const char *mt);
/* Closes its descriptor (a limited pool gets room). */
void lsock_close(struct lsock *s);
/* The io callback of an open socket: wakes the call that waits on it. */
void lsock_on_io(struct io *io, unsigned events);
/* The address of host:port (or "unix:/path", or addr, what DNS found) and
 * a non-blocking socket of type for it in *fd: 0; else what a step
 * returns is pushed (RESOLVE, or nil, err) and its count returned. */
int lsock_peer_open(lua_State *L, const char *host, int port, const char *addr, int type,
                    struct sockaddr_storage *ss, socklen_t *slen, int *fd);
/* The socket of a send step, with its data (argument 2, on a first call)
 * in wbuf; NULL when it is closed. */
struct lsock *lsock_send_prepare(lua_State *L);
/* The light userdata a step returns when the call must wait. */
extern void *const lsock_wait_token;
/* Calls the methods chunk on the stack with a table of the common steps
 * (wait, timed_out, resolve) and steps, and the tokens; leaves the
 * methods table. */
void lsock_methods(lua_State *L, const luaL_Reg *steps);
/* __gc and __metatable of the metatable on top. */
void lsock_finish_metatable(lua_State *L);
int lsock_m_settimeout(lua_State *L);
int lsock_m_close(lua_State *L);

/* Adds proxy.socket to the proxy module. */
void lsock_open(lua_State *L);
/* Bounds every wait of the socket at idx to end by at_ms (the loop's
 * clock), so that a call made of many reads has one deadline, and its
 * receive("*l") to lines of max_line bytes (proxy.http); 0 removes either.
 * A connection taken from the pool starts without them. */
void lsock_limits(lua_State *L, int idx, uint64_t at_ms, size_t max_line);
/* Closes the pooled idle connections (at exit, for leak checkers). */
void lsock_pool_free(void);
