#!/usr/bin/env bash
# Install what luaproxy needs to build, test and benchmark, from Debian's
# packages. Only what is missing is installed; `apt-get update` runs at most
# once. Never installs the `luajit` command-line package: it pulls
# libluajit-5.1-2, which conflicts with libluajit2-5.1-dev and removes it.
#
#   scripts/deps.sh            build + test dependencies
#   scripts/deps.sh bench      also the benchmark peers (nginx, haproxy, ...)
#   scripts/deps.sh callgrind  also valgrind and an nginx origin (make bench-callgrind)
#   scripts/deps.sh profile    also perf, strace, wrk and an nginx origin (make bench-profile)
set -eu

pkgs="build-essential pkg-config libluajit2-5.1-dev node-llhttp check libsubunit-dev curl python3 wrk groff-base"
[ "${1:-}" = bench ] && pkgs="$pkgs nginx haproxy libnginx-mod-http-lua"
[ "${1:-}" = callgrind ] && pkgs="$pkgs nginx valgrind"
[ "${1:-}" = profile ] && pkgs="$pkgs nginx linux-perf strace"

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: missing packages:$missing" >&2
    echo "deps.sh: run as root: apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
echo "deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null
# nginx and haproxy start system services on install in some images; the
# benchmarks run their own instances, so the packaged ones are not needed.
