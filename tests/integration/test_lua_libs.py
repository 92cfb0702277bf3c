"""SPEC §8: Debian's lua-nginx-dns (nginx.dns.resolver) and
lua-nginx-redis-connector (nginx.redis.connector) run unchanged on the ngx
subset, against a DNS server and a redis-server of the test."""

import lp
import redis
from dnsserver import DnsServer


def test_nginx_dns_resolver_queries_a_dns_server():
    with DnsServer({"app.test": "127.0.0.7"}) as dns:
        host, port = dns.addr.split(":")
        script = ('local resolver = require "nginx.dns.resolver"\n'
                  'function on_get(req)\n'
                  '  local r, err = resolver:new({nameservers = {{"%s", %s}}, retrans = 2, timeout = 1000})\n'
                  '  if not r then return 500, "new: " .. err end\n'
                  '  local answers, err = r:query(req.query, {qtype = r.TYPE_A})\n'
                  '  if not answers then return 502, "query: " .. err end\n'
                  '  if answers.errcode then return 200, "errcode " .. answers.errcode .. " " .. answers.errstr end\n'
                  '  return 200, answers[1].address .. " ttl=" .. answers[1].ttl\n'
                  'end\n') % (host, port)
        with lp.Proxy(script) as p:
            lp.expect(lp.get(p.port, "/?app.test"), 200, b"127.0.0.7 ttl=60")
            r = lp.expect(lp.get(p.port, "/?nope.test"), 200)
            assert r.body.startswith(b"errcode 3 "), r
            assert dns.a_questions("app.test") >= 1


def test_nginx_redis_connector_loads_and_fails_as_under_openresty():
    # Debian's lua-nginx-redis-connector 0.06 calls r:set_timeout(self,
    # read_timeout) after connecting (connector.lua:333): the connector
    # table reaches sock:settimeout, which OpenResty's cosocket refuses too
    # ("number expected, got table"). Running unchanged means the same
    # failure here, after a real connection to Redis; its URL parsing and
    # the connection itself work.
    with redis.start() as rd:
        script = ('local rc = require("nginx.redis.connector").new({connect_timeout = 500, read_timeout = 500})\n'
                  'function on_get(req)\n'
                  '  local red, err = rc:connect({url = "redis://127.0.0.1:%d/2"})\n'
                  '  return 200, tostring(red and "connected" or err)\n'
                  'end\n') % rd.port
        with lp.Proxy(script, env=redis.lua_env()) as p:
            lp.expect(lp.get(p.port, "/"), 500)
            text = p.wait_stderr("connector.lua:333")
            assert "number expected, got table" in text, text
