#!/usr/bin/env bash
# Install what luaproxy needs to build, test and benchmark, from Debian's
# packages. Only what is missing is installed; `apt-get update` runs at most
# once. Never installs the `luajit` command-line package: it pulls
# libluajit-5.1-2, which conflicts with libluajit2-5.1-dev and removes it.
#
#   scripts/deps.sh            build + test dependencies
#   scripts/deps.sh bench      also the benchmark peers (nginx, haproxy, ...)
#   scripts/deps.sh tls        also testssl.sh (make check-tls)
#   scripts/deps.sh callgrind  also valgrind and an nginx origin (make bench-callgrind)
#   scripts/deps.sh profile    also perf, strace, wrk and an nginx origin (make bench-profile)
#
# The OpenResty Lua libraries the tests run unchanged (nginx.redis and its
# connector) are not installed but unpacked into build/lua-libs (see below):
# Debian's lua-nginx-redis depends on nginx-extras, which would bring some
# 25 nginx modules, perl upgrades and an nginx service, and pins nginx to
# its own version.
set -eu

pkgs="build-essential pkg-config libluajit2-5.1-dev node-llhttp check libsubunit-dev curl python3 wrk groff-base"
pkgs="$pkgs libpcre2-dev libc-ares-dev redis-server lua-resty-lrucache lua-nginx-dns libssl-dev openssl"
[ "${1:-}" = bench ] && pkgs="$pkgs nginx haproxy libnginx-mod-http-lua"
[ "${1:-}" = tls ] && pkgs="$pkgs testssl.sh"
[ "${1:-}" = callgrind ] && pkgs="$pkgs nginx valgrind"
[ "${1:-}" = profile ] && pkgs="$pkgs nginx linux-perf strace"

# Pure-Lua packages fetched with `apt-get download` (checked against the
# signed package lists like any install) and unpacked with `dpkg -x`: the
# tests point LUA_PATH at $lua_libs/usr/share/lua/5.1. The marker names the
# packages, so adding one here unpacks again.
unpack="lua-nginx-redis lua-nginx-redis-connector"
root=$(cd "$(dirname "$0")/.." && pwd)
lua_libs=$root/build/lua-libs
marker=$lua_libs/.unpacked

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
unpacked() { [ -f "$marker" ] && [ "$(cat "$marker")" = "$unpack" ]; }
[ -z "$missing" ] && unpacked && exit 0

updated=""
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "deps.sh: missing packages:$missing" >&2
        echo "deps.sh: run as root: apt-get update && apt-get install -y$missing" >&2
        exit 1
    fi
    echo "deps.sh: installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    updated=1
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing >/dev/null
    # nginx, haproxy and redis-server start system services on install in
    # some images; the benchmarks and tests run their own instances on ports
    # of their own, so the packaged ones are neither needed nor stopped.
fi
unpacked && exit 0

# download: the .deb files of $unpack into the current directory; false
# (with apt's words in ./apt.log) if the package lists do not have them.
download() {
    # As root apt drops to the _apt user, which cannot write a private
    # temporary directory: it warns and downloads as root all the same.
    # shellcheck disable=SC2086
    apt-get download -q $unpack >apt.log 2>&1
}
echo "deps.sh: unpacking into $lua_libs:" "$unpack" >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! download; then
    if [ "$(id -u)" = 0 ] && [ -z "$updated" ]; then
        apt-get update -q >/dev/null
        download || { cat apt.log >&2; exit 1; }
    else
        cat apt.log >&2
        echo "deps.sh: cannot download$unpack: run as root: apt-get update" >&2
        exit 1
    fi
fi
# Unpacked beside the final place and moved in at the end, so that an
# interrupted run never leaves a tree that looks complete.
rm -rf "$lua_libs.new"
mkdir -p "$lua_libs.new"
for deb in ./*.deb; do
    dpkg -x "$deb" "$lua_libs.new"
done
echo "$unpack" >"$lua_libs.new/.unpacked"
rm -rf "$lua_libs"
mv "$lua_libs.new" "$lua_libs"
