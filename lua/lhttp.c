/* lhttp: proxy.http.request (lhttp.h).
 *
 * The client is Lua over proxy.socket.tcp: every wait it makes is a
 * cosocket's, so the C here is only what Lua cannot see: choosing an
 * upstream's server with the upstream's own policy, counting it in flight
 * and telling passive health how the connection went, the worker's clock
 * for the call's deadline, and --max-body-size. */
#include "lhttp.h"

#include <arpa/inet.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "balance.h"
#include "lsock.h"
#include "lstate.h"
#include "upstream.h"
#include "upstreams.h"

/* A server chosen for one call: counted in s->active until released (by
 * the call, or by __gc when the call is dropped half way). Its environment
 * holds the upstream's userdata, so *ud stays readable; the upstream itself
 * is gone (NULL) when the state is being closed. */
struct pick {
    struct upstream **ud;
    int idx;
    uint32_t gen; /* the upstream's servers_gen: idx means nothing after a change */
    bool done;
};

static uint64_t now_ms(void)
{
    return lstate_g.loop ? lstate_g.loop->now_ms : 0;
}

/* health: 1 the call went well, -1 it could not connect, 0 say nothing. */
static void pick_release(struct pick *p, int health)
{
    if (p->done) return;
    p->done = true;
    struct upstream *u = *p->ud;
    if (!u || p->idx >= u->nservers || p->gen != u->servers_gen) return;
    struct server *s = &u->servers[p->idx];
    if (s->active > 0) s->active--;
    if (health > 0) upstream_ok(s);
    else if (health < 0) upstream_fail(s, now_ms());
}

/* Picks have an unnamed metatable (upvalue 1 of the functions below): they
 * are the client's own, never a script's. */
static int pick_gc(lua_State *L)
{
    pick_release(lua_touserdata(L, 1), 0);
    return 0;
}

/* c.pick(upstream, tried) -> host, port, name, index, pick | nil, err.
 * tried[i] (1-based) marks servers this call already failed to reach. */
static int h_pick(lua_State *L)
{
    struct upstream **ud = luaL_checkudata(L, 1, UPSTREAMS_MT);
    struct upstream *u = *ud;
    if (!u || u->nservers == 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "no server is available");
        return 2;
    }
    bool *tried = calloc((size_t)u->nservers, sizeof(*tried));
    if (!tried) return luaL_error(L, "out of memory");
    if (lua_istable(L, 2))
        for (int i = 0; i < u->nservers; i++) {
            lua_rawgeti(L, 2, i + 1);
            tried[i] = lua_toboolean(L, -1);
            lua_pop(L, 1);
        }
    struct server *s = NULL;
    uint64_t now = now_ms();
    /* Without a request of the script's (a call may come from a timer)
     * the script's balance function is not asked: it chooses nothing, and
     * the call takes the first server that is up. A "hash" upstream hashes
     * key 0, so every call goes to the same server. */
    int rc = balance_choose(NULL, u, tried, now, &s);
    if (rc == 0 && !s && u->balance == BALANCE_LUA)
        for (int i = 0; i < u->nservers && !s; i++)
            if (!tried[i] && upstream_server_up(&u->servers[i], now)) s = &u->servers[i];
    free(tried);
    if (!s) {
        lua_pushnil(L);
        lua_pushliteral(L, "no server is available");
        return 2;
    }
    char host[INET6_ADDRSTRLEN];
    int port = 0;
    if (s->addr.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&s->addr;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&s->addr;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    }
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    lua_pushstring(L, s->name);
    lua_pushinteger(L, (lua_Integer)(s - u->servers) + 1);
    struct pick *p = lua_newuserdata(L, sizeof(*p));
    p->ud = ud;
    p->idx = (int)(s - u->servers);
    p->gen = u->servers_gen;
    p->done = false;
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_setmetatable(L, -2);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    lua_setfenv(L, -2);
    s->active++;
    return 5;
}

/* c.release(pick, ok): ok true (connected), false (could not), nil. */
static int h_release(lua_State *L)
{
    struct pick *p = lua_touserdata(L, 1);
    bool is_pick = lua_getmetatable(L, 1) && lua_rawequal(L, -1, lua_upvalueindex(1));
    if (!is_pick) return luaL_argerror(L, 1, "a server chosen by pick expected");
    pick_release(p, lua_isnoneornil(L, 2) ? 0 : lua_toboolean(L, 2) ? 1 : -1);
    return 0;
}

/* c.keepalive(upstream) -> idle ms, pool size (0: do not pool) */
static int h_keepalive(lua_State *L)
{
    struct upstream *u = *(struct upstream **)luaL_checkudata(L, 1, UPSTREAMS_MT);
    lua_pushnumber(L, u ? (lua_Number)u->keepalive_timeout_ms : 60000);
    lua_pushinteger(L, u ? u->keepalive : 0);
    return 2;
}

static int h_is_upstream(lua_State *L)
{
    lua_pushboolean(L, luaL_testudata(L, 1, UPSTREAMS_MT) != NULL);
    return 1;
}

/* c.limits(sock, at, max_line): no wait of sock goes past at (loop ms);
 * no line it reads is longer than max_line. */
static int h_limits(lua_State *L)
{
    lsock_limits(L, 1, (uint64_t)luaL_checknumber(L, 2), (size_t)luaL_checknumber(L, 3));
    return 0;
}

static int h_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)now_ms());
    return 1;
}

static int h_max_body(lua_State *L)
{
    lua_pushnumber(L, lstate_g.cfg ? (lua_Number)lstate_g.cfg->max_body_size : 1024 * 1024);
    return 1;
}

/* The client. Every socket operation is given what is left of the call's
 * deadline, so `timeout` bounds the whole call, not each read. */
static const char client_lua[] =
    "local c, tcp = ...\n"
    "local type, tonumber, tostring, pairs = type, tonumber, tostring, pairs\n"
    "local concat, lower = table.concat, string.lower\n"
    "local MAX_HEAD = 65536\n"
    "local READ = 16384\n"
    "local TOKEN = \"^[%w!#$%%&'*+.^_`|~-]+$\"\n"
    "local HOP = { connection = true, ['keep-alive'] = true, te = true, trailer = true,\n"
    "  ['transfer-encoding'] = true, upgrade = true, ['proxy-connection'] = true,\n"
    "  ['content-length'] = true }\n"
    "local WITH_BODY = { POST = true, PUT = true, PATCH = true }\n"
    "\n"
    "local function parse_url(url)\n"
    "  local scheme, rest = url:match('^(%a[%w+.-]*)://(.*)$')\n"
    "  if not scheme then return nil, 'bad url: expected http://host[:port]/path' end\n"
    "  scheme = lower(scheme)\n"
    "  if scheme == 'https' then return nil, 'https is not supported yet' end\n"
    "  if scheme ~= 'http' then return nil, 'bad url: unsupported scheme \"' .. scheme .. '\"' end\n"
    "  local authority, path = rest:match('^([^/?#]*)(.*)$')\n"
    "  path = path:gsub('#.*$', '')\n"
    "  if path == '' then path = '/' elseif path:sub(1, 1) == '?' then path = '/' .. path end\n"
    "  if authority:find('@', 1, true) then return nil, 'bad url: user information is not supported' end\n"
    "  local host, port\n"
    "  if authority:sub(1, 1) == '[' then\n"
    "    host, port = authority:match('^%[([%x:.]+)%]:?(%d*)$')\n"
    "  else\n"
    "    host, port = authority:match('^([^:]+):?(%d*)$')\n"
    "  end\n"
    "  if not host then return nil, 'bad url: bad host \"' .. authority .. '\"' end\n"
    "  port = port == '' and 80 or tonumber(port)\n"
    "  if port < 1 or port > 65535 then return nil, 'bad url: bad port' end\n"
    "  return host, port, authority, path\n"
    "end\n"
    "\n"
    "-- The request, its Host line left out: parts[2] is filled per server.\n"
    "local function request_parts(opts, method, path, body)\n"
    "  local out = { method .. ' ' .. path .. ' HTTP/1.1\\r\\n', '' }\n"
    "  local seen = {}\n"
    "  local headers = opts.headers\n"
    "  if headers ~= nil and type(headers) ~= 'table' then return nil, 'headers must be a table' end\n"
    "  for name, value in pairs(headers or {}) do\n"
    "    if type(name) ~= 'string' or not name:find(TOKEN) then\n"
    "      return nil, 'bad header name \"' .. tostring(name) .. '\"'\n"
    "    end\n"
    "    local l = lower(name)\n"
    "    if not HOP[l] then -- the framing and the connection are the client's\n"
    "      seen[l] = true\n"
    "      local values = type(value) == 'table' and value or { value }\n"
    "      for i = 1, #values do\n"
    "        local v = values[i]\n"
    "        if type(v) ~= 'string' and type(v) ~= 'number' then\n"
    "          return nil, 'bad value for header \"' .. name .. '\": a string, a number or a list of them'\n"
    "        end\n"
    "        v = tostring(v)\n"
    "        if v:find('[%z\\r\\n]') then return nil, 'bad value for header \"' .. name .. '\"' end\n"
    "        out[#out + 1] = name .. ': ' .. v .. '\\r\\n'\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if not seen['user-agent'] then out[#out + 1] = 'User-Agent: luaproxy\\r\\n' end\n"
    "  out[#out + 1] = 'Connection: keep-alive\\r\\n'\n"
    "  if body or WITH_BODY[method] then\n"
    "    out[#out + 1] = 'Content-Length: ' .. (body and #body or 0) .. '\\r\\n'\n"
    "  end\n"
    "  out[#out + 1] = '\\r\\n'\n"
    "  if body then out[#out + 1] = body end\n"
    "  return out, seen.host\n"
    "end\n"
    "\n"
    "local function arm(sock, deadline)\n"
    "  local ms = deadline - c.now()\n"
    "  if ms < 1 then return false end\n"
    "  sock:settimeout(ms)\n"
    "  return true\n"
    "end\n"
    "\n"
    "local function line(sock, deadline)\n"
    "  if not arm(sock, deadline) then return nil, 'timeout' end\n"
    "  local l, err, partial = sock:receive('*l')\n"
    "  if err == 'line too long' then err = 'malformed response: line too long' end\n"
    "  return l, err, partial\n"
    "end\n"
    "\n"
    "local function bytes(sock, deadline, n)\n"
    "  if not arm(sock, deadline) then return nil, 'timeout' end\n"
    "  return sock:receive(n)\n"
    "end\n"
    "\n"
    "local function has_token(v, tok)\n"
    "  if v then\n"
    "    for t in v:gmatch('[^,%s]+') do if lower(t) == tok then return true end end\n"
    "  end\n"
    "  return false\n"
    "end\n"
    "\n"
    "-- status, headers, minor version | nil, err, nothing_received\n"
    "local function read_head(sock, deadline)\n"
    "  local l, err, partial = line(sock, deadline)\n"
    "  if not l then return nil, err, partial == '' end\n"
    "  local minor, status = l:match('^HTTP/1%.(%d) (%d%d%d)$')\n"
    "  if not status then minor, status = l:match('^HTTP/1%.(%d) (%d%d%d) ') end\n"
    "  if not status then return nil, 'malformed response: bad status line' end\n"
    "  local headers, size = {}, #l\n"
    "  while true do\n"
    "    l, err = line(sock, deadline)\n"
    "    if not l then return nil, err end\n"
    "    if l == '' then break end\n"
    "    size = size + #l + 2\n"
    "    if size > MAX_HEAD then return nil, 'malformed response: header too large' end\n"
    "    local name, value = l:match('^([^:%s]+):(.*)$')\n"
    "    if not name or not name:find(TOKEN) then return nil, 'malformed response: bad header line' end\n"
    "    value = value:match('^[ \\t]*(.-)[ \\t]*$')\n"
    "    name = lower(name)\n"
    "    local old = headers[name]\n"
    "    headers[name] = old and (old .. ', ' .. value) or value\n"
    "  end\n"
    "  return tonumber(status), headers, tonumber(minor)\n"
    "end\n"
    "\n"
    "local function read_chunked(sock, deadline, max)\n"
    "  local parts, total = {}, 0\n"
    "  while true do\n"
    "    local l, err = line(sock, deadline)\n"
    "    if not l then return nil, err end\n"
    "    local hex, rest = l:match('^(%x+)(.*)$')\n"
    "    if not hex or not (rest:find('^[ \\t]*$') or rest:find('^[ \\t]*;')) then\n"
    "      return nil, 'malformed response: bad chunk size'\n"
    "    end\n"
    "    hex = hex:gsub('^0+(%x)', '%1')\n"
    "    if #hex > 12 then return nil, 'response body too large' end\n"
    "    local size = tonumber(hex, 16)\n"
    "    if size == 0 then break end\n"
    "    total = total + size\n"
    "    if total > max then return nil, 'response body too large' end\n"
    "    local data\n"
    "    data, err = bytes(sock, deadline, size)\n"
    "    if not data then return nil, err end\n"
    "    parts[#parts + 1] = data\n"
    "    l, err = line(sock, deadline)\n"
    "    if not l then return nil, err end\n"
    "    if l ~= '' then return nil, 'malformed response: chunk longer than its size' end\n"
    "  end\n"
    "  local size = 0\n"
    "  while true do -- trailers: read and ignored\n"
    "    local l, err = line(sock, deadline)\n"
    "    if not l then return nil, err end\n"
    "    if l == '' then break end\n"
    "    size = size + #l + 2\n"
    "    if size > MAX_HEAD then return nil, 'malformed response: trailers too large' end\n"
    "  end\n"
    "  return concat(parts)\n"
    "end\n"
    "\n"
    "local function read_to_close(sock, deadline, max)\n"
    "  local parts, total = {}, 0\n"
    "  while true do\n"
    "    if not arm(sock, deadline) then return nil, 'timeout' end\n"
    "    local data, err, partial = sock:receive(READ)\n"
    "    local piece = data or partial\n"
    "    if piece and #piece > 0 then\n"
    "      total = total + #piece\n"
    "      if total > max then return nil, 'response body too large' end\n"
    "      parts[#parts + 1] = piece\n"
    "    end\n"
    "    if not data then\n"
    "      if err == 'closed' then return concat(parts) end\n"
    "      return nil, err\n"
    "    end\n"
    "  end\n"
    "end\n"
    "\n"
    "-- body, reusable (the framing ends the body: the connection may serve\n"
    "-- another request) | nil, err\n"
    "local function read_body(sock, deadline, method, status, headers, max)\n"
    "  if method == 'HEAD' or status < 200 or status == 204 or status == 304 then return '', true end\n"
    "  local te = headers['transfer-encoding']\n"
    "  if te then\n"
    "    if lower(te):match('([^,%s]+)%s*$') ~= 'chunked' then\n"
    "      local body, err = read_to_close(sock, deadline, max)\n"
    "      if not body then return nil, err end\n"
    "      return body, false\n"
    "    end\n"
    "    local body, err = read_chunked(sock, deadline, max)\n"
    "    if not body then return nil, err end\n"
    "    -- both framings: the body is the chunked one, the connection is suspect\n"
    "    return body, headers['content-length'] == nil\n"
    "  end\n"
    "  local cl = headers['content-length']\n"
    "  if cl then\n"
    "    local n\n"
    "    for v in cl:gmatch('[^,]+') do\n"
    "      v = v:match('^%s*(.-)%s*$')\n"
    "      if not v:find('^%d+$') or #v > 15 then return nil, 'malformed response: bad Content-Length' end\n"
    "      if n and n ~= tonumber(v) then return nil, 'malformed response: conflicting Content-Length' end\n"
    "      n = tonumber(v)\n"
    "    end\n"
    "    if not n then return nil, 'malformed response: bad Content-Length' end\n"
    "    if n > max then return nil, 'response body too large' end\n"
    "    if n == 0 then return '', true end\n"
    "    local body, err = bytes(sock, deadline, n)\n"
    "    if not body then return nil, err end\n"
    "    return body, true\n"
    "  end\n"
    "  local body, err = read_to_close(sock, deadline, max)\n"
    "  if not body then return nil, err end\n"
    "  return body, false\n"
    "end\n"
    "\n"
    "-- res, reusable | nil, err, retry (a pooled connection the server had\n"
    "-- closed before it read anything: worth one fresh connection)\n"
    "local function exchange(sock, req, deadline, method, max)\n"
    "  local reused = (sock:getreusedtimes() or 0) > 0\n"
    "  if not arm(sock, deadline) then return nil, 'timeout' end\n"
    "  local ok, err = sock:send(req)\n"
    "  if not ok then return nil, err, reused and err == 'closed' end\n"
    "  local status, headers, minor\n"
    "  local first = true\n"
    "  repeat -- 1xx interim responses are skipped\n"
    "    status, headers, minor = read_head(sock, deadline)\n"
    "    if not status then\n"
    "      local nothing = minor\n"
    "      return nil, headers, first and reused and nothing and headers == 'closed'\n"
    "    end\n"
    "    first = false\n"
    "  until status >= 200 or status == 101\n"
    "  local body, reusable = read_body(sock, deadline, method, status, headers, max)\n"
    "  if not body then return nil, reusable end\n"
    "  local conn = headers.connection\n"
    "  if status == 101 or has_token(conn, 'close') or (minor == 0 and not has_token(conn, 'keep-alive')) then\n"
    "    reusable = false\n"
    "  end\n"
    "  return { status = status, headers = headers, body = body }, reusable\n"
    "end\n"
    "\n"
    "-- sock, host header, pick | nil, err\n"
    "local function open(target, deadline)\n"
    "  if not target.upstream then\n"
    "    local sock = tcp()\n"
    "    if not arm(sock, deadline) then return nil, 'timeout' end\n"
    "    local ok, err = sock:connect(target.host, target.port)\n"
    "    if not ok then return nil, err end\n"
    "    return sock, target.authority\n"
    "  end\n"
    "  local tried, last = {}, nil\n"
    "  for _ = 1, 2 do -- a server that cannot be reached: the next one, once\n"
    "    local host, port, name, idx, pick = c.pick(target.upstream, tried)\n"
    "    if not host then return nil, last or port end\n"
    "    local sock = tcp()\n"
    "    local ok, err\n"
    "    if arm(sock, deadline) then ok, err = sock:connect(host, port) else err = 'timeout' end\n"
    "    if ok then return sock, name, pick end\n"
    "    c.release(pick, false)\n"
    "    tried[idx], last = true, err\n"
    "  end\n"
    "  return nil, last\n"
    "end\n"
    "\n"
    "local function request(opts)\n"
    "  if type(opts) ~= 'table' then return nil, 'proxy.http.request: opts must be a table' end\n"
    "  local method = opts.method or 'GET'\n"
    "  if type(method) ~= 'string' or not method:find(TOKEN) then return nil, 'bad method' end\n"
    "  local body = opts.body\n"
    "  if body ~= nil and type(body) ~= 'string' then return nil, 'body must be a string' end\n"
    "  local timeout = opts.timeout or 10\n"
    "  if type(timeout) ~= 'number' or timeout <= 0 then return nil, 'timeout must be a positive number of seconds' end\n"
    "  local max = opts.max_body or c.max_body()\n"
    "  if type(max) ~= 'number' or max < 0 then return nil, 'max_body must be a number of bytes' end\n"
    "  local target, path = {}\n"
    "  if opts.url ~= nil then\n"
    "    if opts.upstream ~= nil then return nil, 'give url or upstream, not both' end\n"
    "    if type(opts.url) ~= 'string' then return nil, 'url must be a string' end\n"
    "    local host, port, authority, p = parse_url(opts.url)\n"
    "    if not host then return nil, port end\n"
    "    target.host, target.port, target.authority, path = host, port, authority, p\n"
    "  elseif opts.upstream ~= nil then\n"
    "    if not c.is_upstream(opts.upstream) then return nil, 'upstream must be an upstream object' end\n"
    "    target.upstream = opts.upstream\n"
    "    path = opts.path or '/'\n"
    "    if type(path) ~= 'string' or path:sub(1, 1) ~= '/' then return nil, 'path must begin with \"/\"' end\n"
    "  else\n"
    "    return nil, 'url or upstream is required'\n"
    "  end\n"
    "  if path:find('[%s%c]') then return nil, 'bad path: spaces or control characters' end\n"
    "  local parts, own_host = request_parts(opts, method, path, body)\n"
    "  if not parts then return nil, own_host end\n"
    "  local deadline = c.now() + timeout * 1000\n"
    "  for _ = 1, 2 do -- twice when a pooled connection turns out closed\n"
    "    local sock, host, pick = open(target, deadline)\n"
    "    if not sock then return nil, host end\n"
    "    c.limits(sock, deadline, MAX_HEAD)\n"
    "    parts[2] = own_host and '' or 'Host: ' .. host .. '\\r\\n'\n"
    "    local res, reusable, retry = exchange(sock, concat(parts), deadline, method, max)\n"
    "    if res and reusable then\n"
    "      if target.upstream then\n"
    "        local idle, size = c.keepalive(target.upstream)\n"
    "        if size > 0 then sock:setkeepalive(idle, size) else sock:close() end\n"
    "      else\n"
    "        sock:setkeepalive()\n"
    "      end\n"
    "    else\n"
    "      sock:close()\n"
    "    end\n"
    "    if pick then -- like proxied traffic: a failed exchange counts against the server\n"
    "      c.release(pick, res ~= nil or reusable == 'response body too large')\n"
    "    end\n"
    "    if res then return res end\n"
    "    if not retry then return nil, reusable end\n"
    "  end\n"
    "  return nil, 'closed'\n"
    "end\n"
    "\n"
    "return request\n";

void lhttp_open(lua_State *L)
{
    static const luaL_Reg steps[] = {
        {"pick", h_pick},   {"release", h_release},         {"keepalive", h_keepalive}, {"now", h_now},
        {"max_body", h_max_body}, {"limits", h_limits}, {"is_upstream", h_is_upstream}, {NULL, NULL},
    };
    if (luaL_loadbuffer(L, client_lua, sizeof(client_lua) - 1, "=proxy.http")) lua_error(L);
    lua_newtable(L);
    lua_createtable(L, 0, 2); /* the picks' metatable */
    lua_pushcfunction(L, pick_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "proxy.http server");
    lua_setfield(L, -2, "__metatable");
    luaL_setfuncs(L, steps, 1);
    lua_getglobal(L, "proxy");
    lua_getfield(L, -1, "socket");
    lua_getfield(L, -1, "tcp");
    lua_replace(L, -3);
    lua_pop(L, 1);
    lua_call(L, 2, 1); /* the client's request function */
    lua_createtable(L, 0, 1);
    lua_insert(L, -2);
    lua_setfield(L, -2, "request");
    lua_getglobal(L, "proxy");
    lua_insert(L, -2);
    lua_setfield(L, -2, "http");
    lua_pop(L, 1);
}
