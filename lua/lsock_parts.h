/* lsock_parts: what lsock.c builds on and that does not depend on it: the
 * address of a peer (numeric, /etc/hosts), the bytes a send takes from
 * its (nested) argument, and the Lua side of the socket methods. */
#pragma once
#include <lua.h>
#include <stddef.h>
#include <sys/socket.h>

#include "buf.h"

/* host (an address, or a name of /etc/hosts) and port into ss: 0, or -1
 * when the name needs DNS. */
int lsock_resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len);
/* A string or number, or an array of them (nested, depth at most 64),
 * appended to b: NULL, or why not. */
const char *lsock_flatten(lua_State *L, int idx, struct buf *b, int depth);
/* The methods that may wait, as Lua loops over lsock.c's C steps: chunks
 * called with (c, WAIT, RESOLVE, QUEUED), returning the methods table. */
extern const char lsock_tcp_lua[], lsock_udp_lua[];
extern const size_t lsock_tcp_lua_len, lsock_udp_lua_len;
