"""What the Redis tests stand on: the OpenResty Lua libraries are where a
luaproxy script finds them, the test redis-server helper does what it says,
and scripts/deps.sh unpacks the libraries on a bare tree, once.

The Debian packages rename OpenResty's modules: lua-resty-redis is
`nginx.redis`, its connector `nginx.redis.connector`, lua-resty-dns
`nginx.dns.resolver`; lua-resty-lrucache keeps `resty.lrucache`."""

import os
import shutil
import signal
import socket
import subprocess
import time

import lp
import redis

# module -> where it must come from: the tree scripts/deps.sh unpacks, or
# the system path an installed package fills.
SYSTEM = "/usr/share/lua/5.1"
MODULES = {
    "nginx.redis": redis.LUA_LIBS + "/nginx/redis.lua",
    "nginx.redis.connector": redis.LUA_LIBS + "/nginx/redis/connector.lua",
    "nginx.redis.sentinel": redis.LUA_LIBS + "/nginx/redis/sentinel.lua",
    "nginx.dns.resolver": SYSTEM + "/nginx/dns/resolver.lua",
    "resty.lrucache": SYSTEM + "/resty/lrucache.lua",
}
INSTALLED = {"lua-nginx-dns": "nginx.dns.resolver", "lua-resty-lrucache": "resty.lrucache"}


def test_lua_libraries_are_in_place():
    for module, path in MODULES.items():
        assert os.path.isfile(path), "%s: no %s (bash scripts/deps.sh puts it there)" % (module, path)
    # The system ones come from their packages, not from a stray copy.
    for package, module in INSTALLED.items():
        r = subprocess.run(["dpkg-query", "-L", package], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
        assert r.returncode == 0, "%s is not installed: %s" % (package, r.stdout.decode())
        assert MODULES[module] in r.stdout.decode().split("\n"), \
            "%s does not ship %s" % (package, MODULES[module])
    with open(lp.repo_path("build", "lua-libs", ".unpacked")) as f:
        assert f.read().split() == ["lua-nginx-redis", "lua-nginx-redis-connector"]


SEARCH = r'''
local names = {%s}
function on_get(req)
  local out = {}
  for _, name in ipairs(names) do
    local path, err = package.searchpath(name, package.path)
    local compiled = path and (loadfile(path) and "compiles" or "broken") or err
    out[#out + 1] = name .. " " .. tostring(path) .. " " .. compiled
  end
  out[#out + 1] = "path " .. package.path
  return 200, table.concat(out, "\n")
end
'''


def test_luaproxy_finds_them_after_the_script_directory():
    # A script directory of its own, with a nginx/redis.lua that must win:
    # SPEC's order is the script's directory, then LUA_PATH's tree, then
    # the system paths.
    d = lp.make_tmpdir()
    os.makedirs(os.path.join(d, "nginx"))
    mine = os.path.join(d, "nginx", "redis.lua")
    with open(mine, "w") as f:
        f.write("return {}\n")
    names = ", ".join('"%s"' % m for m in MODULES)
    script = lp.write_script(SEARCH % names, directory=d)
    with lp.Proxy(script, env=redis.lua_env()) as p:
        body = lp.expect(lp.get(p.port, "/"), 200).body.decode()
    lines = dict(l.split(" ", 1) for l in body.split("\n"))
    want = dict(MODULES, **{"nginx.redis": os.path.realpath(mine)})
    for module, path in want.items():
        assert lines[module] == path + " compiles", "%s: %s (wanted %s)" % (module, lines[module], path)
    entries = lines["path"].split(";")
    first = [entries.index(e) for e in (os.path.realpath(d) + "/?.lua", redis.LUA_LIBS + "/?.lua",
                                        SYSTEM + "/?.lua")]
    assert first == sorted(first), "package.path out of order: %s" % lines["path"]


def test_redis_helper_starts_an_isolated_server():
    r = redis.start(unix=True)
    assert r.command("PING") == "PONG"
    assert r.command("SET", "k", "v") == "OK"
    assert r.command("GET", "k") == "v"
    assert r.command("GET", b"k", raw=True) == b"v"
    assert r.command("INCR", "n") == 1
    assert r.command("GET", "missing") is None
    assert r.command("MGET", "k", "missing") == ["v", None]
    try:
        r.command("INCR", "k")
        raise AssertionError("INCR on a string did not raise")
    except redis.RedisError as e:
        assert "not an integer" in str(e), e
    assert redis.command_at(r.unix_path, "GET", "k") == "v"
    # Its own process, port, directory; nothing persisted; loopback only.
    with open("/proc/%d/comm" % r.pid) as f:
        assert f.read().strip() == "redis-server"
    for key, want in (("port", str(r.port)), ("bind", "127.0.0.1"), ("save", ""),
                      ("appendonly", "no"), ("dir", os.path.realpath(r.dir))):
        got = r.command("CONFIG", "GET", key)
        assert got == [key, want], "CONFIG GET %s: %r, wanted %r" % (key, got, want)
    pid = r.pid
    rc = r.stop()
    assert rc == 0, "stop(): status %r" % rc
    assert not lp.pid_alive(pid), "redis-server %d still exists after stop()" % pid
    assert not lp.port_accepts(r.port), "port %d still accepts after stop()" % r.port


def test_redis_helper_pause_resume():
    r = redis.start()
    r.command("SET", "k", "before")
    r.pause()
    assert lp.proc_stat(r.pid)[0] == "T", "not stopped after pause(): %r" % (lp.proc_stat(r.pid),)
    t0 = time.monotonic()
    try:
        r.command("GET", "k", timeout=0.3)
        raise AssertionError("a paused redis-server answered")
    except TimeoutError:
        pass
    assert time.monotonic() - t0 < 2.0
    r.resume()
    assert r.command("GET", "k") == "before"
    # A paused server still stops on stop(): SIGTERM, not the SIGKILL fallback.
    r.pause()
    rc = r.stop()
    assert rc == 0, "a paused server did not exit on SIGTERM: status %r" % rc


def test_redis_helper_kill_restart():
    r = redis.start()
    port, pid = r.port, r.pid
    r.command("SET", "k", "v")
    rc = r.kill()
    assert rc == -signal.SIGKILL, "kill(): status %r" % rc
    try:
        r.command("PING", timeout=1.0)
        raise AssertionError("a killed redis-server answered")
    except ConnectionRefusedError:
        pass
    r.restart()
    assert r.port == port and r.pid != pid, "restart(): port %d pid %d" % (r.port, r.pid)
    assert r.command("PING") == "PONG"
    assert r.command("GET", "k") is None, "a restarted server kept data: it must persist nothing"
    # restart() of a running server stops it first.
    pid = r.pid
    r.restart()
    assert not lp.pid_alive(pid), "restart() left the old server %d" % pid
    assert r.command("PING") == "PONG"
    r.stop()


def test_redis_left_running_is_ended_after_the_test():
    r = redis.start()
    r.pause()   # the worst case: a stopped process
    lp.cleanup_all()
    assert not lp.pid_alive(r.pid), "cleanup_all left redis-server %d" % r.pid


# --------------------------------------------------------------------------
# scripts/deps.sh on a bare tree, with apt and dpkg-query stood in for (no
# network, no install): the libraries are unpacked when missing, a second
# run does nothing and says nothing, a failed download leaves no tree.

FAKE_APT = r'''#!/bin/sh
# apt-get: logs its call; `download P...` builds a tiny .deb per package.
echo "apt-get $*" >>"{log}"
[ "$1" = update ] && exit 0
[ "$1" = download ] || exit 3
[ -e "{fail}" ] && {{ echo "E: Unable to locate package" >&2; exit 100; }}
shift; shift   # download -q
for p in "$@"; do
    d=$(mktemp -d)
    mkdir -p "$d/DEBIAN" "$d/usr/share/lua/5.1/fake"
    printf 'Package: %s\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: t\n' "$p" >"$d/DEBIAN/control"
    echo "return '$p'" >"$d/usr/share/lua/5.1/fake/$p.lua"
    dpkg-deb -b "$d" "./$p.deb" >/dev/null || exit 4
    rm -rf "$d"
done
'''

FAKE_DPKG_QUERY = '''#!/bin/sh
printf 'install ok installed'
'''


def test_deps_sh_unpacks_once_on_a_bare_tree():
    tmp = lp.make_tmpdir()
    tree = os.path.join(tmp, "tree")
    os.makedirs(os.path.join(tree, "scripts"))
    shutil.copy(lp.repo_path("scripts", "deps.sh"), os.path.join(tree, "scripts"))
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir)
    log, fail = os.path.join(tmp, "apt.log"), os.path.join(tmp, "fail")
    for name, text in (("apt-get", FAKE_APT.format(log=log, fail=fail)),
                       ("dpkg-query", FAKE_DPKG_QUERY)):
        with open(os.path.join(bindir, name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(bindir, name), 0o755)
    env = dict(os.environ, PATH=bindir + ":" + os.environ["PATH"])
    libs = os.path.join(tree, "build", "lua-libs")
    want = [os.path.join(libs, "usr/share/lua/5.1/fake", p + ".lua")
            for p in ("lua-nginx-redis", "lua-nginx-redis-connector")]

    def deps():
        r = subprocess.run(["bash", os.path.join(tree, "scripts", "deps.sh")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        return r.returncode, r.stdout.decode()

    def apt_calls():
        try:
            with open(log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    rc, out = deps()
    assert rc == 0, out
    assert all(os.path.isfile(w) for w in want), "not unpacked:\n" + out
    assert apt_calls() == ["apt-get download -q lua-nginx-redis lua-nginx-redis-connector"], apt_calls()
    assert "unpacking" in out, out

    rc, out = deps()
    assert (rc, out) == (0, ""), "a second run was not silent: %d %r" % (rc, out)
    assert len(apt_calls()) == 1, "a second run called apt-get: %s" % apt_calls()

    shutil.rmtree(libs)
    rc, out = deps()
    assert rc == 0 and all(os.path.isfile(w) for w in want), "not unpacked again:\n" + out
    assert len(apt_calls()) == 2, apt_calls()

    # The download fails: an error, and no tree that looks complete.
    shutil.rmtree(libs)
    open(fail, "w").close()
    rc, out = deps()
    assert rc != 0, "a failed download succeeded:\n" + out
    assert "Unable to locate package" in out, out
    assert not os.path.exists(libs) and not os.path.exists(libs + ".new"), \
        "a failed run left a tree behind"
    # Root refreshes the package lists once and tries again; anyone else
    # is told to.
    updates = apt_calls().count("apt-get update -q")
    assert updates == (1 if os.getuid() == 0 else 0), apt_calls()
    if os.getuid() != 0:
        assert "run as root: apt-get update" in out, out
