/* lsock_udp: proxy.socket.udp() (lsock_udp.c). */
#pragma once
#include <lua.h>

/* Adds udp to proxy.socket (after lsock_open). */
void lsock_udp_open(lua_State *L);
