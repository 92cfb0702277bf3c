/* ldns: names resolved for the scripts' sockets without blocking the
 * worker: /etc/hosts (lsock.c looks there first), then DNS through c-ares,
 * whose sockets and timer the worker's loop drives. --resolver names the
 * server; otherwise /etc/resolv.conf does. */
#pragma once
#include <lua.h>
#include <stdint.h>

/* For a C function of a run (lrun.h): resolves name, waiting at most
 * timeout_ms, and returns what the function returns: an address string,
 * or nil, "<name> could not be resolved (<reason>)". It may yield. */
int ldns_wait(lua_State *L, const char *name, uint64_t timeout_ms);
/* Drops the resolver and its cache (at exit, for leak checkers). */
void ldns_free(void);
/* The worker's c-ares channel (made on first use) for C code that resolves
 * without a run (upstream names); NULL with *err when it cannot be made.
 * Call ldns_kick after starting a query on it, so its timer is armed. */
#include <ares.h>
ares_channel ldns_channel(const char **err);
void ldns_kick(void);
