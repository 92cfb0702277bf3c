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

/* Adds proxy.socket to the proxy module. */
void lsock_open(lua_State *L);
/* Bounds every wait of the socket at idx to end by at_ms (the loop's
 * clock), so that a call made of many reads has one deadline, and its
 * receive("*l") to lines of max_line bytes (proxy.http); 0 removes either.
 * A connection taken from the pool starts without them. */
void lsock_limits(lua_State *L, int idx, uint64_t at_ms, size_t max_line);
/* Closes the pooled idle connections (at exit, for leak checkers). */
void lsock_pool_free(void);
