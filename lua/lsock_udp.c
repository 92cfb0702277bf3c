/* lsock_udp: proxy.socket.udp(), a datagram socket on the machinery of
 * lsock.c: setpeername (an address, a name, or "unix:/path"), send (one
 * datagram), receive (one, waiting for it), settimeout, close. */
#include "lsock_udp.h"

#include <errno.h>
#include <lauxlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lsock.h"
#include "lsock_parts.h"
#include "lrun.h"
#include "lstate.h"

#define UDP_MAX 65536

/* c.setpeername(sock, host, port, nil [, addr]) -> 1 | nil, err | RESOLVE */
static int step_setpeername(lua_State *L)
{
    struct lsock *s = lsock_check(L);
    const char *host = luaL_checkstring(L, 2);
    bool unix_path = !strncmp(host, "unix:", 5);
    int port = unix_path ? 0 : (int)luaL_checkinteger(L, 3);
    if (!unix_path && (port < 1 || port > 65535)) return lsock_fail(L, "bad port");
    if (s->io.fd != -1) lsock_close(s);
    struct sockaddr_storage ss;
    socklen_t slen;
    int fd, nret = lsock_peer_open(L, host, port, lua_tostring(L, 5), SOCK_DGRAM, &ss, &slen, &fd);
    if (nret) return nret;
    s->io.fd = fd;
    s->io.cb = lsock_on_io;
    s->rbuf.len = s->rbuf.off = 0;
    int rc = loop_add(lstate_g.loop, &s->io, IO_READ | IO_WRITE);
    /* A datagram socket's connect only fixes the peer: it does not wait. */
    if (rc == 0 && connect(fd, (struct sockaddr *)&ss, slen) == -1) rc = -errno;
    if (rc) {
        lsock_close(s);
        return lsock_fail(L, strerror(-rc));
    }
    s->connected = true;
    lua_pushinteger(L, 1);
    return 1;
}

/* What a refused datagram (an ICMP port unreachable) or other error says. */
static int udp_fail(lua_State *L, int e)
{
    return lsock_fail(L, e == ECONNREFUSED ? "connection refused" : strerror(e));
}

/* c.usend(sock [, data]) -> 1 | nil, err | WAIT: the data is one datagram. */
static int step_usend(lua_State *L)
{
    struct lsock *s = lsock_send_prepare(L);
    if (!s) return lsock_fail(L, "closed");
    for (;;) {
        ssize_t n = send(s->io.fd, s->wbuf.data ? s->wbuf.data : "", s->wbuf.len, MSG_NOSIGNAL);
        if (n >= 0) break;
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            lua_pushlightuserdata(L, lsock_wait_token);
            return 1;
        }
        return udp_fail(L, errno);
    }
    s->wbuf.len = s->wbuf.off = 0;
    lua_pushinteger(L, 1);
    return 1;
}

/* c.ureceive(sock [, size]) -> datagram | nil, err | WAIT. A datagram
 * longer than size is cut, as recv does. */
static int step_ureceive(lua_State *L)
{
    lrun_current(L);
    struct lsock *s = lsock_check(L);
    lua_Integer size = luaL_optinteger(L, 2, UDP_MAX);
    if (size <= 0) return luaL_argerror(L, 2, "bad size");
    if (size > UDP_MAX) size = UDP_MAX;
    if (s->io.fd == -1 || !s->connected) return lsock_fail(L, "closed");
    s->rbuf.len = s->rbuf.off = 0;
    if (buf_reserve(&s->rbuf, (size_t)size)) return lsock_fail(L, "out of memory");
    for (;;) {
        ssize_t n = recv(s->io.fd, s->rbuf.data, (size_t)size, 0);
        if (n >= 0) {
            lua_pushlstring(L, s->rbuf.data, (size_t)n);
            return 1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
            lua_pushlightuserdata(L, lsock_wait_token);
            return 1;
        }
        return udp_fail(L, errno);
    }
}

static int udp_new(lua_State *L)
{
    return lsock_new(L, LSOCK_UDP_MT);
}

void lsock_udp_open(lua_State *L)
{
    static const luaL_Reg steps[] = {
        {"setpeername", step_setpeername}, {"usend", step_usend}, {"ureceive", step_ureceive}, {NULL, NULL},
    };
    static const luaL_Reg plain[] = {
        {"settimeout", lsock_m_settimeout}, {"close", lsock_m_close}, {NULL, NULL},
    };
    luaL_newmetatable(L, LSOCK_UDP_MT);
    if (luaL_loadbuffer(L, lsock_udp_lua, lsock_udp_lua_len, "=proxy.socket.udp")) lua_error(L);
    lsock_methods(L, steps);
    luaL_setfuncs(L, plain, 0);
    lua_setfield(L, -2, "__index");
    lsock_finish_metatable(L);
    lua_pop(L, 1);
    static const luaL_Reg socket_fns[] = {{"udp", udp_new}, {NULL, NULL}};
    lua_getglobal(L, "proxy");
    lua_getfield(L, -1, "socket");
    luaL_setfuncs(L, socket_fns, 0);
    lua_pop(L, 2);
}
