/* lsock_parts: the pieces of a socket that stand apart (lsock_parts.h). */
#include "lsock_parts.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int lsock_resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*in6);
        return 0;
    }
    FILE *f = fopen("/etc/hosts", "re");
    if (!f) return -1;
    char line[512];
    int rc = -1;
    while (rc && fgets(line, sizeof(line), f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        char *save, *addr = strtok_r(line, " \t\r\n", &save);
        if (!addr) continue;
        for (char *name; (name = strtok_r(NULL, " \t\r\n", &save));)
            if (!strcasecmp(name, host) && strcmp(addr, host) && lsock_resolve(addr, port, ss, len) == 0) {
                rc = 0;
                break;
            }
    }
    fclose(f);
    return rc;
}

const char *lsock_flatten(lua_State *L, int idx, struct buf *b, int depth)
{
    if (depth > 64) return "table nested too deep";
    int t = lua_type(L, idx);
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        size_t n;
        const char *p = lua_tolstring(L, idx, &n);
        return buf_append(b, p, n) ? "out of memory" : NULL;
    }
    if (t == LUA_TBOOLEAN || t == LUA_TNIL) {
        const char *p = t == LUA_TNIL ? "nil" : lua_toboolean(L, idx) ? "true" : "false";
        return buf_puts(b, p) ? "out of memory" : NULL;
    }
    if (t != LUA_TTABLE) return "bad data: a string or an array of strings expected";
    int n = (int)lua_objlen(L, idx);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        const char *err = lsock_flatten(L, lua_gettop(L), b, depth + 1);
        lua_pop(L, 1);
        if (err) return err;
    }
    return NULL;
}

/* The methods that may wait, as Lua loops over the C steps (c, WAIT). */
const char lsock_tcp_lua[] =
    "local c, WAIT, RESOLVE, QUEUED = ...\n"
    "local m = {}\n"
    "function m.connect(sock, host, port, opts)\n"
    "  while true do\n"
    "    local ok, err = c.connect(sock, host, port, opts)\n"
    "    if ok == RESOLVE then\n"
    "      local addr, rerr = c.resolve(sock, host)\n"
    "      if not addr then return nil, rerr end\n"
    "      ok, err = c.connect(sock, host, port, opts, addr)\n"
    "    end\n"
    "    if ok ~= QUEUED then\n"
    "      if ok ~= WAIT then return ok, err end\n"
    "      if not c.wait(sock, 'c') then return c.timed_out(sock) end\n"
    "      return c.connected(sock)\n"
    "    end\n"
    "    -- in the pool's backlog: try again when a connection is free\n"
    "    if not c.wait(sock, 'c') then return c.timed_out(sock) end\n"
    "  end\n"
    "end\n"
    "function m.send(sock, data)\n"
    "  local n, err = c.send(sock, data)\n"
    "  while n == WAIT do\n"
    "    if not c.wait(sock, 'w') then return c.timed_out(sock) end\n"
    "    n, err = c.send(sock)\n"
    "  end\n"
    "  return n, err\n"
    "end\n"
    "function m.receive(sock, pattern)\n"
    "  while true do\n"
    "    local data, err, partial = c.receive(sock, pattern)\n"
    "    if data ~= WAIT then return data, err, partial end\n"
    "    if not c.wait(sock, 'r') then return c.timed_out(sock, true) end\n"
    "  end\n"
    "end\n"
    "function m.receiveuntil(sock, pattern, opts)\n"
    "  if type(pattern) ~= 'string' or pattern == '' then error('bad pattern argument', 2) end\n"
    "  local inclusive = type(opts) == 'table' and opts.inclusive\n"
    "  local ended = false\n"
    "  return function(size)\n"
    "    if size and ended then ended = false; return nil end\n"
    "    while true do\n"
    "      local data, err, partial = c.receive_until(sock, pattern, inclusive, size)\n"
    "      if data == false then return nil end -- the pattern, consumed: this part is over\n"
    "      if data ~= WAIT then\n"
    "        if err == true then ended = true; return data end -- the pattern itself (inclusive)\n"
    "        return data, err, partial\n"
    "      end\n"
    "      if not c.wait(sock, 'r') then return c.timed_out(sock, true) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return m\n";

/* The udp methods, as methods_lua's. */
const char lsock_udp_lua[] =
    "local c, WAIT, RESOLVE = ...\n"
    "local m = {}\n"
    "function m.setpeername(sock, host, port)\n"
    "  local ok, err = c.setpeername(sock, host, port)\n"
    "  if ok ~= RESOLVE then return ok, err end\n"
    "  local addr, rerr = c.resolve(sock, host)\n"
    "  if not addr then return nil, rerr end\n"
    "  return c.setpeername(sock, host, port, nil, addr)\n"
    "end\n"
    "function m.send(sock, data)\n"
    "  local n, err = c.usend(sock, data)\n"
    "  while n == WAIT do\n"
    "    if not c.wait(sock, 'w') then return nil, 'timeout' end\n"
    "    n, err = c.usend(sock)\n"
    "  end\n"
    "  return n, err\n"
    "end\n"
    "function m.receive(sock, size)\n"
    "  while true do\n"
    "    local data, err = c.ureceive(sock, size)\n"
    "    if data ~= WAIT then return data, err end\n"
    "    if not c.wait(sock, 'r') then return nil, 'timeout' end\n"
    "  end\n"
    "end\n"
    "return m\n";
const size_t lsock_tcp_lua_len = sizeof(lsock_tcp_lua) - 1;
const size_t lsock_udp_lua_len = sizeof(lsock_udp_lua) - 1;
