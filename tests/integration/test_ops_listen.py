"""SPEC §1 and §10: --listen is repeatable (and LUAPROXY_LISTEN takes a
comma-separated list); every worker listens on every address."""

import os
import socket

import lp

GOOD = 'function on_get(req) return 200, "hi\\n" end\n'


def free_port6():
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        s.bind(("::1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def get6(port):
    c = socket.create_connection(("::1", port), timeout=5)
    try:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            data += d
    finally:
        c.close()
    r = lp.parse_responses(data)
    assert len(r) == 1, data
    return r[0]


def listening_ports(pid):
    """The local ports of the listening TCP sockets process pid holds."""
    ports = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    out = []
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in ports:
            out.append(ports[target[8:-1]])
    return sorted(out)


def test_two_listen_options_both_serve_in_every_worker():
    p6 = free_port6()
    with lp.Proxy(GOOD, workers=2, args=["--listen", "[::1]:%d" % p6]) as p:
        lp.expect(lp.get(p.port, "/"), 200, b"hi\n")
        lp.expect(get6(p6), 200, b"hi\n")
        for w in p.wait_workers(2):
            got = lp.wait_until(lambda: (lambda l: l if len(l) == 2 else None)(listening_ports(w)),
                                what="two listeners in worker %d" % w)
            assert got == sorted([p.port, p6]), "worker %d listens on %r" % (w, got)
        text = p.wait_stderr("luaproxy started")
        started = [l for l in text.split("\n") if "luaproxy started" in l][0]
        assert "127.0.0.1:%d, [::1]:%d" % (p.port, p6) in started, started
        assert p.stop() == 0


def test_listen_environment_takes_a_list():
    port, p6 = lp.free_port(), free_port6()
    env = {"LUAPROXY_LISTEN": "127.0.0.1:%d,[::1]:%d" % (port, p6)}
    with lp.Proxy(GOOD, listen=False, port=port, env=env) as p:
        lp.expect(lp.get(port, "/"), 200, b"hi\n")
        lp.expect(get6(p6), 200, b"hi\n")
        assert p.stop() == 0


def test_command_line_listen_replaces_the_environment_list():
    env_port = lp.free_port()
    with lp.Proxy(GOOD, env={"LUAPROXY_LISTEN": "127.0.0.1:%d,[::1]:%d" % (env_port, free_port6())}) as p:
        lp.expect(lp.get(p.port, "/"), 200)
        assert not lp.port_accepts(env_port), "the environment's address is listening too"


def test_same_address_twice_is_a_usage_error():
    port = lp.free_port()
    r = lp.run_cli(["-l", "127.0.0.1:%d" % port, "-l", "127.0.0.1:%d" % port, "-w", "1",
                    lp.write_script(GOOD)])
    assert r.returncode == 2, r
    assert "--listen" in r.stderr and "twice" in r.stderr, r


def test_overlapping_addresses_are_refused_before_start():
    # 0.0.0.0:P already covers 127.0.0.1:P: the probe says so (exit 1, as
    # for any address in use) instead of starting workers that fail.
    port = lp.free_port()
    r = lp.run_cli(["-l", "0.0.0.0:%d" % port, "-l", "127.0.0.1:%d" % port, "-w", "1",
                    lp.write_script(GOOD)])
    assert r.returncode == 1, r
    assert "cannot listen on 127.0.0.1:%d" % port in r.stderr, r
