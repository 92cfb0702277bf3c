/* lhttp: proxy.http.request(opts), an HTTP/1.1 client call written in Lua
 * over proxy.socket.tcp (lsock.h): to a url, or to an upstream's servers,
 * chosen by the upstream's balancing; keep-alive connections are pooled. */
#pragma once
#include <lua.h>

/* Adds proxy.http to the proxy module (after lsock_open). */
void lhttp_open(lua_State *L);
