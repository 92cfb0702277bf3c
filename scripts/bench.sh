#!/usr/bin/env bash
# Benchmarks luaproxy against nginx, nginx + lua-nginx-module and HAProxy.
#
#   LUAPROXY=build/luaproxy bash scripts/bench.sh      (what `make bench` runs)
#
# Two nginx origins (a 100-byte answer; 1 MiB and 64 MiB files) run on
# loopback. Each proxy in turn is started in front of them with the same
# worker count, loaded with wrk, and measured: requests/s, p99 latency and
# the CPU time its own processes spent per request (or per GB moved). Then
# luaproxy, nginx and HAProxy are started afresh one by one and hold 10,000
# idle keep-alive client connections, each of which made one request: the
# growth of their summed RSS per connection is the memory figure. The end is
# a table of every performance target with its ratio and PASS or MISS.
#
# Proxies (each with BENCH_WORKERS workers, HAProxy with as many threads):
#   luaproxy        route() reads req.path and a header, returns an upstream
#   nginx           proxy_pass with a keep-alive upstream
#   nginx-lua       the same with the same decision in access_by_lua_block
#   haproxy         http-reuse always; haproxy-splice adds option splice-auto,
#                   haproxy-splice-response option splice-response
#   luaproxy-kv     examples/kvstore.lua answering GET /k itself
#   nginx-lua-kv    content_by_lua_block reading a lua_shared_dict
#   luaproxy-w1     luaproxy with one worker, for the scaling figure
#   luaproxy-redis  Redis on the path: route() does INCR + EXPIRE through
#                   nginx.redis on a pooled connection, then the small origin
#   nginx-lua-redis the same library and calls in access_by_lua_block
#   luaproxy-waiting, nginx-lua-waiting  GET /sleep waits in proxy.sleep /
#                   ngx.sleep until released (the waiting-requests case)
#   luaproxy-mirror, nginx-mirror  a POST of 1 MiB to an upload origin, and a
#                   copy of it to the same origin as a mirror (luaproxy's
#                   `mirror` option; nginx's mirror directive)
# Cases are BODY-cCONNECTIONS: small (100 B), 1m, 64m (files), kv (GET /k of
# a 100-byte value, only for the -kv proxies), redis (the small origin
# behind an INCR + EXPIRE, only for the -redis proxies), waiting (not a wrk
# run: N requests that all wait in Lua at once, the growth of the proxy's
# summed RSS per request; only for the -waiting proxies). Each proxy runs the
# cases that apply to it: nginx-lua the small ones, the splice variants the
# files, luaproxy-w1 only BENCH_SCALING_CASE. A redis-server of the run's own
# (no persistence, a free port) serves the redis case; the Lua library is
# the lua-nginx-redis that scripts/deps.sh unpacks into build/lua-libs.
# mirror-cN (only for the -mirror proxies) posts 1 MiB bodies (wrk -s
# post-1m.lua) to a third origin that reads each body whole (nginx with
# lua-nginx-module); its CPU figure is per GB of request bodies.
#
# Environment (all optional):
#   BENCH_WORKERS=2     worker processes (nginx, luaproxy), threads (HAProxy)
#   BENCH_DURATION=10   seconds per measured wrk run
#   BENCH_WARMUP=2      seconds of unmeasured load before each run, so that
#                       Lua code is compiled (nginx-lua) and pools are full
#   BENCH_PROXIES="luaproxy nginx nginx-lua haproxy haproxy-splice
#                  haproxy-splice-response luaproxy-kv nginx-lua-kv luaproxy-w1
#                  luaproxy-redis nginx-lua-redis luaproxy-waiting
#                  nginx-lua-waiting"
#   BENCH_CASES="small-c50 small-c200 1m-c10 64m-c2 kv-c50 redis-c50
#                waiting-c10000"
#   BENCH_SCALING_CASE=small-c50   the case luaproxy-w1 runs
#   BENCH_MEM_PROXIES="luaproxy nginx haproxy"   the idle-connection case
#                       ("" skips it)
#   BENCH_IDLE_CONNS=10000   connections held in the idle-connection case
#   BENCH_KEEPALIVE=256  idle backend connections luaproxy and nginx keep per
#                       worker and upstream (HAProxy's idle pool has no cap):
#                       below the concurrency per worker (c200 over two
#                       workers), both open and close backend connections
#                       all the time, and that, not proxying, is then measured
#   BENCH_START_TIMEOUT=10  seconds a proxy gets to answer its first request
#   BENCH_ONLY=         "tls": only the TLS cases; "plain": all but them
#   BENCH_TLS_PROXIES, BENCH_TLS_CASES, BENCH_TLS_HANDSHAKES,
#   BENCH_TLS_IDLE_CONNS, BENCH_TLS_CLIENTS, BENCH_TLS_ROUNDS (3),
#   BENCH_TLS_DURATION (5), BENCH_TLS_WARMUP (1): the TLS cases (bench/tls.py):
#                       luaproxy, nginx and HAProxy terminating TLS in front
#                       of the same origins: handshakes per CPU-second (full
#                       and resumed), CPU per request and per GB over
#                       https://, RSS per idle TLS connection
#
# The default run takes about five minutes, and the TLS cases five more. Output: the tables on stdout and
# in build/bench/results.md; wrk outputs and proxy logs in build/bench/logs/.
# A proxy that does not start gets a "failed to start" row and the run goes
# on. Only processes started here are ever signalled, and only on 127.0.0.1.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/scripts/bench
LUAPROXY=${LUAPROXY:-$ROOT/build/luaproxy}
# A relative path means relative to where we were called from, as usual.
[[ $LUAPROXY == /* ]] || LUAPROXY=$PWD/$LUAPROXY

WORKERS=${BENCH_WORKERS:-2}
ONLY=${BENCH_ONLY:-}
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
START_TIMEOUT=${BENCH_START_TIMEOUT:-10}
PROXIES=${BENCH_PROXIES-luaproxy nginx nginx-lua haproxy haproxy-splice haproxy-splice-response luaproxy-kv nginx-lua-kv luaproxy-w1 luaproxy-redis nginx-lua-redis luaproxy-waiting nginx-lua-waiting luaproxy-mirror nginx-mirror}
CASES=${BENCH_CASES:-small-c50 small-c200 1m-c10 64m-c2 kv-c50 redis-c50 waiting-c10000 mirror-c10}
SCALING_CASE=${BENCH_SCALING_CASE:-small-c50}
# The most requests a waiting case holds: luaproxy-waiting takes that many
# connections per worker and more (its default --max-connections is 10,000).
WAITING_MAX=0
for c in $CASES; do
    [[ $c == waiting-c* && ${c#waiting-c} =~ ^[0-9]+$ ]] && ((${c#waiting-c} > WAITING_MAX)) && WAITING_MAX=${c#waiting-c}
done
MEM_PROXIES=${BENCH_MEM_PROXIES-luaproxy nginx haproxy}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
KEEPALIVE=${BENCH_KEEPALIVE:-256}
KNOWN_PROXIES="luaproxy nginx nginx-lua haproxy haproxy-splice haproxy-splice-response luaproxy-kv nginx-lua-kv luaproxy-w1 luaproxy-redis nginx-lua-redis luaproxy-waiting nginx-lua-waiting luaproxy-mirror nginx-mirror"
# The mirroring case's request body (post-1m.lua sends this many bytes).
UPLOAD_BYTES=1048576
UPLOAD_PORT=0
# The redis case's library: lua-nginx-redis as scripts/deps.sh unpacks it.
LUA_LIBS=$ROOT/build/lua-libs/usr/share/lua/5.1
# The local-handler case: one key, a 100-byte value, as the small origin's.
KV_KEY=/k
KV_BODY=0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789

OUT_DIR=$ROOT/build/bench
LOG_DIR=$OUT_DIR/logs
RESULTS_TSV=$OUT_DIR/results.tsv
MEM_TSV=$OUT_DIR/memory.tsv
WAIT_TSV=$OUT_DIR/waiting.tsv
CLK_TCK=$(getconf CLK_TCK)

STARTED_PIDS=() # roots of every process tree we started and have not reaped
ORIGIN_PIDS=() # the origins and redis-server: their CPU is not "other processes"
TMP=""
REDIS_PORT=0

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

check_settings() {
    local v tool
    for v in WORKERS DURATION WARMUP START_TIMEOUT IDLE_CONNS KEEPALIVE; do
        [[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number, not '${!v}'"
    done
    ((WORKERS > 0 && DURATION > 0)) || die "BENCH_WORKERS and BENCH_DURATION must be positive"
    [[ $ONLY =~ ^(|tls|plain)$ ]] || die "BENCH_ONLY must be tls or plain, not '$ONLY'"
    [[ $ONLY == tls ]] && { PROXIES=""; CASES=""; MEM_PROXIES=""; }
    local p
    for p in $PROXIES $MEM_PROXIES; do
        [[ " $KNOWN_PROXIES " == *" $p "* ]] || die "unknown proxy '$p' (known: $KNOWN_PROXIES)"
    done
    for tool in nginx haproxy wrk curl python3 timeout flock; do
        command -v "$tool" >/dev/null || die "$tool is not installed (try: bash scripts/deps.sh bench)"
    done
}

# --- processes --------------------------------------------------------------

# Prints "pid starttime cputicks userticks systemticks" for PID and all its
# descendants. userticks is utime+cutime, systemticks stime+cstime (stat
# fields 14-17), cputicks their sum: the children's fields keep the time of
# workers that exited and were reaped during a run. The comm field may
# contain spaces and parentheses, hence the split at the last ")".
scan_tree() {
    local root=$1 f line pid rest changed
    local -A parent=() start=() user=() system=() member=()
    local -a fld
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        pid=${line%% *}
        rest=${line##*) }
        read -r -a fld <<<"$rest"
        parent[$pid]=${fld[1]}
        start[$pid]=${fld[19]}
        user[$pid]=$((fld[11] + fld[13]))
        system[$pid]=$((fld[12] + fld[14]))
    done
    [[ -n ${parent[$root]:-} ]] || return 0
    member[$root]=1
    changed=1
    while ((changed)); do
        changed=0
        for pid in "${!parent[@]}"; do
            if [[ -z ${member[$pid]:-} && -n ${member[${parent[$pid]}]:-} ]]; then
                member[$pid]=1
                changed=1
            fi
        done
    done
    for pid in "${!member[@]}"; do
        echo "$pid ${start[$pid]} $((user[$pid] + system[$pid])) ${user[$pid]} ${system[$pid]}"
    done
}

# Prints "cputicks userticks systemticks" summed over PID's tree.
tree_ticks() {
    local pid start ticks user system sum=0 usum=0 ssum=0
    while read -r pid start ticks user system; do
        sum=$((sum + ticks))
        usum=$((usum + user))
        ssum=$((ssum + system))
    done < <(scan_tree "$1")
    echo "$sum $usum $ssum"
}

# True while PID is the same process we saw (same start time) and is not a
# zombie; guards against signalling a recycled PID.
same_process() {
    local line
    local -a fld
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    read -r -a fld <<<"${line##*) }"
    [[ ${fld[0]} != Z && ${fld[19]} == "$2" ]]
}

# The state letter of PID (R, S, Z, ...), empty when it is gone.
proc_state() {
    local line
    local -a fld
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
    read -r -a fld <<<"${line##*) }"
    echo "${fld[0]}"
}

# A started process that has not exited (it stays a zombie until reaped).
running() {
    local st
    st=$(proc_state "$1")
    [[ -n $st && $st != Z ]]
}

# Asks the tree's root to stop (nginx, HAProxy and luaproxy all take SIGTERM
# and stop their workers), then kills whatever of the tree is left after 5 s.
stop_tree() {
    local root=$1 pid start i alive entry
    local -a procs=()
    # Only a root we started and have not reaped yet is certainly still ours.
    [[ " ${STARTED_PIDS[*]} " == *" $root "* ]] || return 0
    mapfile -t procs < <(scan_tree "$root")
    kill -TERM "$root" 2>/dev/null
    for ((i = 0; i < 50; i++)); do
        alive=0
        for entry in "${procs[@]}"; do
            read -r pid start _ <<<"$entry"
            same_process "$pid" "$start" && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for entry in "${procs[@]}"; do
        read -r pid start _ <<<"$entry"
        if same_process "$pid" "$start"; then
            log "pid $pid did not stop on SIGTERM, killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    wait "$root" 2>/dev/null
    forget_pid "$root"
}

# A reaped PID may be reused by anyone; it must leave the cleanup list.
forget_pid() {
    local p keep=()
    for p in "${STARTED_PIDS[@]}"; do
        [[ $p == "$1" ]] || keep+=("$p")
    done
    STARTED_PIDS=("${keep[@]}")
}

# shellcheck disable=SC2317 # only reached through the EXIT trap
cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_tree "$pid"
    done
    if [[ -n $TMP && -d $TMP ]]; then
        rm -rf "$TMP"
    fi
    TMP=""
}

# Starts "$@" in the background with its output in LOGFILE; sets LAUNCHED.
launch() {
    local logfile=$1
    shift
    # 9>&-: the run's lock must not outlive the run in a stray child.
    "$@" >"$logfile" 2>&1 </dev/null 9>&- &
    LAUNCHED=$!
    STARTED_PIDS+=("$LAUNCHED")
}

# --- helpers ----------------------------------------------------------------

# N free ports on 127.0.0.1 (see benchlib.py).
free_ports() {
    python3 "$BENCH_DIR/benchlib.py" free-ports "$1"
}

# render TEMPLATE OUTPUT DIR PORT [SPLICE_LINE [GLOBAL_LINES]]
render() {
    local out=$2
    sed -e "s|@DIR@|$3|g" -e "s|@PORT@|$4|g" -e "s|@SPLICE_LINE@|${5:-}|g" \
        -e "s|@GLOBAL_LINES@|${6:-}|g" \
        -e "s|@WORKERS@|$WORKERS|g" -e "s|@SMALL_PORT@|$SMALL_PORT|g" \
        -e "s|@BIG_PORT@|$BIG_PORT|g" -e "s|@USER_LINE@|$USER_LINE|g" \
        -e "s|@KV_KEY@|$KV_KEY|g" -e "s|@KV_BODY@|$KV_BODY|g" -e "s|@KEEPALIVE@|$KEEPALIVE|g" \
        -e "s|@MODULE_DIR@|$MODULE_DIR|g" -e "s|@REDIS_PORT@|$REDIS_PORT|g" \
        -e "s|@LUA_LIBS@|$LUA_LIBS|g" -e "s|@UPLOAD_PORT@|$UPLOAD_PORT|g" "$BENCH_DIR/$1" >"$out" || return 1
    if grep -q '@[A-Z_]*@' "$out"; then
        die "$1 has a placeholder that bench.sh does not fill: $(grep -o '@[A-Z_]*@' "$out" | head -1)"
    fi
}

# The last error lines of a log (else its last lines), on one line, fit for
# a table cell: startup banners would otherwise hide the reason.
log_tail() {
    local lines
    [[ -s $1 ]] || return 0
    lines=$(grep -iE 'alert|emerg|crit|error|fatal|fail' "$1" | tail -n 2)
    [[ -n $lines ]] || lines=$(tail -n 2 "$1")
    printf '%s\n' "$lines" | tr '\n\t|' '  /' | sed -e 's/  */ /g' -e 's/^ //' -e 's/ $//' | cut -c1-240
}

# wait_ready URL PID [CODES]: until GET URL answers with a status matching
# the regex CODES (200), the process is gone, or START_TIMEOUT passes. Sets
# READY_ERR when it fails.
wait_ready() {
    local url=$1 pid=$2 want=${3:-200} code=000 status deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! running "$pid"; then
            wait "$pid"
            status=$?
            forget_pid "$pid"
            READY_ERR="exited with status $status"
            return 1
        fi
        # --noproxy: an http_proxy in the environment must not reroute this.
        code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 "$url") || true
        [[ $code =~ ^($want)$ ]] && return 0
        sleep 0.2
    done
    READY_ERR="GET $url still answered '$code' (not $want) after ${START_TIMEOUT}s"
    return 1
}

# nginx needs its own prefix, temp dirs and pid file so that it never touches
# the system instance's; -e because the error log opens before the config.
start_nginx() { # DIR
    launch "$1/output.log" nginx -p "$1/" -c "$1/nginx.conf" -e "$1/error.log"
}

# --- setup ------------------------------------------------------------------

# Percentage of all CPUs busy over one second, from /proc/stat's "cpu" line
# (idle and iowait are fields 5 and 6).
cpu_busy_percent() {
    local a b
    read -r -a a </proc/stat
    sleep 1
    read -r -a b </proc/stat
    local total=0 idle i
    for ((i = 1; i < ${#a[@]}; i++)); do
        total=$((total + b[i] - a[i]))
    done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    ((total > 0)) && echo $((100 * (total - idle) / total)) || echo 0
}

setup() {
    local hard d
    # Hundreds of connections per proxy (clients, pooled backends, pipes) do
    # not fit in the 1024 descriptors many shells start with.
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=1048576
    ulimit -n "$hard" 2>/dev/null || log "could not raise the descriptor limit to $hard; it stays $(ulimit -n)"

    mkdir -p "$OUT_DIR" || die "cannot create $OUT_DIR"
    # Two runs at once would share the CPUs, skewing both, and the same output
    # files; the second one stops here instead.
    exec 9>"$OUT_DIR/.lock"
    flock -n 9 || die "another bench.sh is running (lock $OUT_DIR/.lock)"
    rm -rf "$LOG_DIR" "$RESULTS_TSV" "$MEM_TSV" "$WAIT_TSV"
    mkdir -p "$LOG_DIR"
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/luaproxy-bench.XXXXXX") || die "mktemp failed"

    # nginx started by root switches its workers to "nobody", who could not read
    # our private temp dir; as root, keep them as the current user instead.
    if [[ $(id -u) == 0 ]]; then
        USER_LINE="user $(id -un) $(id -gn);"
    else
        USER_LINE="# not root: nginx keeps the current user"
    fi

    # Debian installs the dynamic modules in /usr/lib/nginx/modules and links
    # /usr/share/nginx/modules to it; other builds name theirs in nginx -V.
    MODULE_DIR=""
    for d in "$(nginx -V 2>&1 | sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p')" \
        /usr/lib/nginx/modules /usr/share/nginx/modules; do
        if [[ -n $d && -f $d/ndk_http_module.so && -f $d/ngx_http_lua_module.so ]]; then
            MODULE_DIR=$d
            break
        fi
    done

    # Every process here shares the CPUs with wrk and the proxy: a busy
    # machine makes the figures meaningless, so say so in the results.
    BUSY=$(cpu_busy_percent)
    BUSY_NOTE=""
    if ((BUSY > 20)); then
        BUSY_NOTE="Warning: ${BUSY}% of the CPUs were already busy before the run; the figures are unreliable."
        log "$BUSY_NOTE"
    fi

    # Two origins, then one port per proxy, then one per memory run; the
    # last two are the upload origin's and redis-server's.
    local nports
    nports=$((4 + $(wc -w <<<"$PROXIES $MEM_PROXIES")))
    read -r -a PORTS <<<"$(free_ports "$nports")"
    ((${#PORTS[@]} == nports)) || die "could not find $nports free ports on 127.0.0.1"
    SMALL_PORT=${PORTS[0]}
    BIG_PORT=${PORTS[1]}
    REDIS_PORT=${PORTS[nports - 1]}
    UPLOAD_PORT=${PORTS[nports - 2]}
}

# --- origins ----------------------------------------------------------------

start_origin() { # NAME TEMPLATE PORT PROBE_PATH
    local dir=$TMP/$1
    mkdir -p "$dir/files"
    render "$2" "$dir/nginx.conf" "$dir" "$3"
    start_nginx "$dir"
    ORIGIN_PIDS+=("$LAUNCHED")
    if ! wait_ready "http://127.0.0.1:$3$4" "$LAUNCHED"; then
        die "origin $1 did not start: $READY_ERR: $(log_tail "$dir/output.log") $(log_tail "$dir/error.log")"
    fi
}

start_origins() {
    mkdir -p "$TMP/origin-big/files"
    # Real blocks, not a sparse file, so sendfile reads ordinary page cache.
    head -c 1048576 /dev/zero >"$TMP/origin-big/files/1m" || die "cannot write the 1 MiB file"
    head -c 67108864 /dev/zero >"$TMP/origin-big/files/64m" || die "cannot write the 64 MiB file"
    start_origin origin-small origin-small.conf.in "$SMALL_PORT" /
    start_origin origin-big origin-big.conf.in "$BIG_PORT" /1m
    log "origins: 100 B on :$SMALL_PORT, /1m and /64m on :$BIG_PORT"
    wants_redis && start_redis
    if [[ " $PROXIES " == *-mirror\ * && " $CASES " == *" mirror-c"* ]]; then
        if [[ -n $MODULE_DIR ]]; then
            start_origin origin-upload origin-upload.conf.in "$UPLOAD_PORT" /
            log "origin: uploads read whole on :$UPLOAD_PORT"
        else
            log "no lua-nginx-module: no upload origin, no mirror case"
        fi
    fi
}

# Whether a proxy that runs the redis case is in this run.
wants_redis() {
    local proxy case
    for proxy in $PROXIES; do
        for case in $CASES; do
            [[ $proxy == *-redis && ${case%-c*} == redis ]] && return 0
        done
    done
    return 1
}

# A redis-server of the run's own, on loopback, nothing persisted; ready
# when it answers PING. Without one the -redis proxies fail to start.
start_redis() {
    local dir=$TMP/redis i
    mkdir -p "$dir"
    if ! command -v redis-server >/dev/null; then
        log "redis-server is not installed (bash scripts/deps.sh): no redis case"
        return
    fi
    launch "$dir/output.log" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
        --appendonly no --dir "$dir" --daemonize no --logfile "" --databases 1
    ORIGIN_PIDS+=("$LAUNCHED")
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        [[ $(redis_ping) == +PONG* ]] && break
        sleep 0.1
    done
    [[ $(redis_ping) == +PONG* ]] || die "redis-server did not answer PING on :$REDIS_PORT: $(log_tail "$dir/output.log")"
    log "redis-server on :$REDIS_PORT"
}

redis_ping() {
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$1 && printf "PING\r\n" >&3 && head -c 5 <&3' _ "$REDIS_PORT" 2>/dev/null
}

# --- proxies ----------------------------------------------------------------

# start_proxy NAME PORT [LABEL]: sets PROXY_PID, or FAIL_REASON and returns
# 1. LABEL (default NAME) names its directory and logs; "mem-..." marks the
# idle-connection runs, which need HAProxy to take more clients.
start_proxy() {
    local name=$1 port=$2 label=${3:-$1}
    local dir=$TMP/$label ready_path=/ ready_codes=200
    mkdir -p "$dir"
    case $name in
    luaproxy | luaproxy-w1 | luaproxy-kv | luaproxy-redis | luaproxy-waiting | luaproxy-mirror)
        if [[ ! -x $LUAPROXY ]]; then
            FAIL_REASON="$LUAPROXY is not built"
            return 1
        fi
        local workers=$WORKERS script=$dir/proxy.lua
        local -a extra=()
        [[ $name == luaproxy-w1 ]] && workers=1
        if [[ $name == luaproxy-kv ]]; then
            script=$ROOT/examples/kvstore.lua
            # Empty at start: any answer means it is up; the key comes next.
            ready_path=$KV_KEY
            ready_codes='200|404'
        elif [[ $name == luaproxy-redis ]]; then
            if ! lua_libs_present; then return 1; fi
            render proxy-redis.lua.in "$script" "$dir" "$port"
        elif [[ $name == luaproxy-waiting ]]; then
            render waiting.lua.in "$script" "$dir" "$port"
            # Room for every waiting request and the holder's own questions.
            extra=(--max-connections $((WAITING_MAX + 100)))
        elif [[ $name == luaproxy-mirror ]]; then
            render proxy-mirror.lua.in "$script" "$dir" "$port"
        else
            render proxy.lua.in "$script" "$dir" "$port"
        fi
        launch "$dir/output.log" env LUA_PATH="$LUA_LIBS/?.lua;;" \
            "$LUAPROXY" -w "$workers" --listen "127.0.0.1:$port" "${extra[@]}" "$script"
        ;;
    nginx | nginx-mirror)
        if [[ $name == nginx-mirror ]]; then
            render nginx-mirror.conf.in "$dir/nginx.conf" "$dir" "$port"
        else
            render nginx-proxy.conf.in "$dir/nginx.conf" "$dir" "$port"
        fi
        start_nginx "$dir"
        ;;
    nginx-lua | nginx-lua-kv | nginx-lua-redis | nginx-lua-waiting)
        if [[ -z $MODULE_DIR ]]; then
            FAIL_REASON="ndk_http_module.so / ngx_http_lua_module.so not found (package libnginx-mod-http-lua)"
            return 1
        fi
        if [[ $name == nginx-lua-kv ]]; then
            render nginx-lua-kv.conf.in "$dir/nginx.conf" "$dir" "$port"
            ready_path=$KV_KEY
        elif [[ $name == nginx-lua-redis ]]; then
            if ! lua_libs_present; then return 1; fi
            render nginx-lua-redis.conf.in "$dir/nginx.conf" "$dir" "$port"
        elif [[ $name == nginx-lua-waiting ]]; then
            render nginx-lua-waiting.conf.in "$dir/nginx.conf" "$dir" "$port"
        else
            render nginx-lua.conf.in "$dir/nginx.conf" "$dir" "$port"
        fi
        start_nginx "$dir"
        ;;
    haproxy | haproxy-splice | haproxy-splice-response)
        # splice-auto leaves splicing to HAProxy's judgement, and 2.6 did
        # not splice at all in this test (strace showed recvfrom/sendto
        # only); splice-response forces it for response bodies.
        local splice="" global=""
        [[ $name == haproxy-splice ]] && splice="option splice-auto"
        [[ $name == haproxy-splice-response ]] && splice="option splice-response"
        # Idle clients need no server side: room for all of them, and a
        # start despite a descriptor limit below HAProxy's estimate.
        [[ $label == mem-* ]] && global="maxconn $((IDLE_CONNS + 100))\n    no strict-limits"
        render haproxy.cfg.in "$dir/haproxy.cfg" "$dir" "$port" "$splice" "$global"
        # -db: stay in the foreground, one process (threads), so $! is it.
        launch "$dir/output.log" haproxy -db -f "$dir/haproxy.cfg"
        ;;
    *)
        FAIL_REASON="unknown proxy (known: $KNOWN_PROXIES)"
        return 1
        ;;
    esac
    PROXY_PID=$LAUNCHED
    if ! wait_ready "http://127.0.0.1:$port$ready_path" "$PROXY_PID" "$ready_codes" ||
        { [[ $name == luaproxy-kv ]] && ! kv_store "$port" "$PROXY_PID"; }; then
        local why
        why=$(log_tail "$dir/output.log")
        [[ -f $dir/error.log ]] && why+=" $(log_tail "$dir/error.log")"
        FAIL_REASON=$READY_ERR
        [[ -n ${why// /} ]] && FAIL_REASON+="; log: ${why# }"
        stop_tree "$PROXY_PID"
        save_logs "$label"
        return 1
    fi
}

# The redis case needs nginx.redis (scripts/deps.sh unpacks it) and a
# redis-server (start_redis); sets FAIL_REASON when either is missing.
lua_libs_present() {
    if [[ ! -f $LUA_LIBS/nginx/redis.lua ]]; then
        FAIL_REASON="$LUA_LIBS/nginx/redis.lua is missing (run bash scripts/deps.sh)"
        return 1
    fi
    if [[ $(redis_ping) != +PONG* ]]; then
        FAIL_REASON="no redis-server answers on :$REDIS_PORT"
        return 1
    fi
}

# Stores the local-handler case's key in kvstore.lua, then waits until a GET
# finds it (every worker shares the dict).
kv_store() { # PORT PID
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 2 \
        -H 'content-type: text/plain' --data-binary "$KV_BODY" "http://127.0.0.1:$1$KV_KEY") || true
    if [[ $code != 201 && $code != 200 ]]; then
        READY_ERR="POST $KV_KEY answered '$code', not 201"
        return 1
    fi
    wait_ready "http://127.0.0.1:$1$KV_KEY" "$2"
}

save_logs() {
    local f
    for f in "$TMP/$1"/*.log; do
        [[ -f $f ]] && cp "$f" "$LOG_DIR/$1.$(basename "$f")"
    done
}

# Busy time of all CPUs so far, in clock ticks. irq and softirq count:
# loopback traffic is largely softirq work, which the kernel may charge to
# whichever process it interrupted.
system_busy_ticks() {
    local user nice system irq softirq
    read -r _ user nice system _ _ irq softirq _ </proc/stat
    echo $((user + nice + system + irq + softirq))
}

# Sets OWN_TICKS to the CPU time of this shell and its reaped children (wrk,
# via timeout, among them), in clock ticks. Call it directly: `times` in a
# $(...) subshell would report only that subshell; hence the file too.
own_ticks() {
    local f=$TMP/times t sec ms=0
    times >"$f"
    # Four figures like 0m1.234s: the shell's user, system, then children's.
    for t in $(<"$f"); do
        t=${t%s}
        sec=${t#*m}
        sec=${sec/,/.}
        ms=$((ms + 10#${t%%m*} * 60000 + 10#${sec%.*} * 1000 + 10#${sec#*.}))
    done
    OWN_TICKS=$((ms * CLK_TCK / 1000))
}

origin_ticks() {
    local pid ticks sum=0
    for pid in "${ORIGIN_PIDS[@]}"; do
        read -r ticks _ <<<"$(tree_ticks "$pid")"
        sum=$((sum + ticks))
    done
    echo "$sum"
}

# One row of results.tsv: proxy case status requests seconds bytes p99_ms
# cputicks notes split usersys (see report.py). report.py turns these into
# the tables.
record() {
    local IFS=$'\t'
    echo "$*" >>"$RESULTS_TSV"
}

# Pulls the numbers out of wrk's report, converting its units (latency
# us/ms/s/m, sizes B/KB/MB/GB/TB in powers of 1024) to ms and bytes.
# Prints: requests seconds bytes p99_ms non2xx socket_errors.
parse_wrk() {
    awk '
    function ms(s,   n) {
        n = s + 0
        if (s ~ /us$/) return n / 1000
        if (s ~ /ms$/) return n
        if (s ~ /s$/) return n * 1000
        if (s ~ /m$/) return n * 60000
        if (s ~ /h$/) return n * 3600000
        return n
    }
    function bytes(s,   n) {
        n = s + 0
        if (s ~ /KB$/) return n * 1024
        if (s ~ /MB$/) return n * 1048576
        if (s ~ /GB$/) return n * 1073741824
        if (s ~ /TB$/) return n * 1099511627776
        return n
    }
    $1 == "99%" { p99 = ms($2) }
    $2 == "requests" && $3 == "in" {
        req = $1; t = $4; sub(/,$/, "", t); secs = ms(t) / 1000
        b = $5; bts = bytes(b)
    }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ {
        gsub(/,/, "")
        errs = $4 + $6 + $8 + $10
    }
    END { printf "%d %.3f %.0f %.3f %d %d\n", req, secs, bts, p99, non2xx, errs }
    ' "$1"
}

run_wrk() { # CONNECTIONS SECONDS URL OUTPUT [WRK_SCRIPT]
    # timeout: a wedged proxy must not hold the whole benchmark hostage.
    launch "$4" timeout -k 5 $(($2 + 30)) \
        wrk -t1 -c"$1" -d"$2s" --timeout 5s --latency ${5:+-s "$5"} "$3"
    local pid=$LAUNCHED
    wait "$pid"
    forget_pid "$pid"
}

# Prints "pid ticks" for every process of PID's tree but its root: the
# workers of nginx and luaproxy (HAProxy's threads are one process).
child_ticks() {
    local pid start ticks
    while read -r pid start ticks _; do
        [[ $pid == "$1" ]] || echo "$pid $ticks"
    done < <(scan_tree "$1")
}

# The CPU ticks each child of the tree took between two child_ticks outputs,
# largest first, joined with "/" (empty for a single process).
split_ticks() { # BEFORE AFTER
    local -A before=()
    local pid ticks out=()
    while read -r pid ticks; do
        [[ -n $pid ]] && before[$pid]=$ticks
    done <<<"$1"
    while read -r pid ticks; do
        [[ -n $pid ]] && out+=($((ticks - ${before[$pid]:-0})))
    done <<<"$2"
    ((${#out[@]} > 1)) || return 0
    printf '%s\n' "${out[@]}" | sort -rn | paste -sd/
}

# The URL path of a case's body kind, empty for an unknown one.
case_path() {
    case $1 in
    small) echo / ;;
    1m) echo /1m ;;
    64m) echo /64m ;;
    kv) echo "$KV_KEY" ;;
    redis) echo / ;;
    waiting) echo /sleep ;;
    mirror) echo /upload ;;
    esac
}

# Whether PROXY runs CASE: the -kv proxies answer only kv, nginx-lua exists
# for the small (routing) cases, the splice variants only change how files
# move, and luaproxy-w1 runs the scaling case only.
applies() { # PROXY CASE
    local body=${2%-c*}
    case $1 in
    *-kv) [[ $body == kv ]] ;;
    *-redis) [[ $body == redis ]] ;;
    *-waiting) [[ $body == waiting ]] ;;
    *-mirror) [[ $body == mirror ]] ;;
    luaproxy-w1) [[ $2 == "$SCALING_CASE" ]] ;;
    nginx-lua) [[ $body == small ]] ;;
    haproxy-splice*) [[ $body == 1m || $body == 64m ]] ;;
    *) [[ $body != kv && $body != redis && $body != waiting && $body != mirror ]] ;;
    esac
}

# run_case PROXY PID PORT CASE
run_case() {
    local proxy=$1 pid=$2 port=$3 case=$4 body conns path out
    local t0 t1 u0 u1 y0 y1 req secs bytes p99 non2xx errs notes="" w0 w1
    body=${case%-c*}
    conns=${case##*-c}
    path=$(case_path "$body")
    if [[ -z $path || ! $conns =~ ^[0-9]+$ ]]; then
        record "$proxy" "$case" failed 0 0 0 0 0 \
            "unknown case (use small-cN, 1m-cN, 64m-cN, kv-cN, redis-cN or waiting-cN)"
        return
    fi
    if [[ $body == waiting ]]; then
        run_waiting "$proxy" "$pid" "$port" "$conns"
        return
    fi
    local url=http://127.0.0.1:$port$path wrk_script=""
    [[ $body == mirror ]] && wrk_script=$BENCH_DIR/post-1m.lua
    out=$LOG_DIR/$proxy.$case.wrk.txt
    log "$proxy: $case: wrk -c$conns ${DURATION}s $url"
    if ((WARMUP > 0)); then
        run_wrk "$conns" "$WARMUP" "$url" "$out" "$wrk_script"
    fi
    # The proxy's CPU is read right around the measured run only. The rest
    # of the machine's busy time, less the origins', wrk's and this
    # script's, is what other processes took: a sign of a disturbed run.
    local b0 o0 s0 b1 o1 s1 other
    b0=$(system_busy_ticks)
    o0=$(origin_ticks)
    w0=$(child_ticks "$pid")
    read -r t0 u0 y0 <<<"$(tree_ticks "$pid")"
    own_ticks
    s0=$OWN_TICKS
    run_wrk "$conns" "$DURATION" "$url" "$out" "$wrk_script"
    read -r t1 u1 y1 <<<"$(tree_ticks "$pid")"
    w1=$(child_ticks "$pid")
    o1=$(origin_ticks)
    own_ticks
    s1=$OWN_TICKS
    b1=$(system_busy_ticks)
    other=$(((b1 - b0) - (t1 - t0) - (o1 - o0) - (s1 - s0)))
    read -r req secs bytes p99 non2xx errs <<<"$(parse_wrk "$out")"
    # Uploads: the bytes that matter went up, not the 100-byte answers.
    [[ $body == mirror ]] && bytes=$((req * UPLOAD_BYTES))
    # Reported past a fifth of one CPU, as a percentage of one CPU.
    if ((other * 100 > CLK_TCK * DURATION * 20)); then
        notes+="other processes took $((other * 100 / (CLK_TCK * DURATION)))% of a CPU; "
    fi
    ((non2xx > 0)) && notes+="$non2xx non-2xx responses; "
    ((errs > 0)) && notes+="$errs socket errors; "
    if ! running "$pid"; then
        notes+="proxy exited during the run; "
    fi
    if ((req == 0)); then
        record "$proxy" "$case" failed 0 0 0 0 0 "no request completed: ${notes}$(log_tail "$out")"
        return
    fi
    # user/system: how much of the CPU time was the kernel's (the floor no
    # user-space change can go below).
    record "$proxy" "$case" ok "$req" "$secs" "$bytes" "$p99" $((t1 - t0)) "${notes%; }" \
        "$(split_ticks "$w0" "$w1")" "$((u1 - u0))/$((y1 - y0))"
}

# The next unused port of PORTS (the first two are the origins').
PORT_INDEX=2
next_port() {
    PORT=${PORTS[$PORT_INDEX]}
    PORT_INDEX=$((PORT_INDEX + 1))
}

run_all() {
    local proxy port case any
    for proxy in $PROXIES; do
        next_port
        port=$PORT
        any=0
        for case in $CASES; do
            applies "$proxy" "$case" && any=1
        done
        ((any)) || continue
        # One worker is what the -w 1 row is about; with one it would repeat.
        if [[ $proxy == luaproxy-w1 ]] && ((WORKERS == 1)); then
            continue
        fi
        log "starting $proxy on 127.0.0.1:$port"
        if ! start_proxy "$proxy" "$port"; then
            log "$proxy failed to start: $FAIL_REASON"
            record "$proxy" - failed 0 0 0 0 0 "failed to start: $FAIL_REASON"
            continue
        fi
        for case in $CASES; do
            applies "$proxy" "$case" || continue
            if ! running "$PROXY_PID"; then
                record "$proxy" "$case" failed 0 0 0 0 0 "proxy exited earlier"
                continue
            fi
            run_case "$proxy" "$PROXY_PID" "$port" "$case"
        done
        stop_tree "$PROXY_PID"
        save_logs "$proxy"
    done
}

# Summed VmRSS of PID's tree, in KiB.
tree_rss_kb() {
    local pid start kb sum=0
    while read -r pid start _; do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        sum=$((sum + ${kb:-0}))
    done < <(scan_tree "$1")
    echo "$sum"
}

# One row of memory.tsv: proxy status connections rss_before_kb
# rss_after_kb notes.
record_mem() {
    local IFS=$'\t'
    echo "$*" >>"$MEM_TSV"
}

# The idle-connection case for one proxy, started afresh: a short load so
# that its steady-state memory is in place, RSS; then IDLE_CONNS keep-alive
# connections that made one request each and stay idle, RSS again.
run_memory() { # PROXY PORT
    local proxy=$1 port=$2 label=mem-$1 pid holder before after line i notes=""
    log "$proxy: idle connections: starting afresh on 127.0.0.1:$port"
    if ! start_proxy "$proxy" "$port" "$label"; then
        log "$proxy failed to start: $FAIL_REASON"
        record_mem "$proxy" failed 0 0 0 "failed to start: $FAIL_REASON"
        return
    fi
    pid=$PROXY_PID
    run_wrk 50 1 "http://127.0.0.1:$port/" "$LOG_DIR/$label.warmup.wrk.txt"
    sleep 1
    before=$(tree_rss_kb "$pid")
    # The holder outlives this wait by a margin and then stops by itself.
    local hold=$((START_TIMEOUT + IDLE_CONNS / 200 + 60))
    launch "$LOG_DIR/$label.holder.txt" python3 "$BENCH_DIR/idle_conns.py" "$port" "$IDLE_CONNS" / "$hold"
    holder=$LAUNCHED
    log "$proxy: opening $IDLE_CONNS connections"
    line=""
    for ((i = 0; i < (hold - 30) * 10; i++)); do
        line=$(head -n 1 "$LOG_DIR/$label.holder.txt" 2>/dev/null)
        [[ -n $line ]] && break
        running "$holder" || break
        sleep 0.1
    done
    if [[ $line == "ready $IDLE_CONNS" ]]; then
        sleep 1 # whatever the last answers left to do
        after=$(tree_rss_kb "$pid")
        running "$pid" || notes="proxy exited during the run"
        record_mem "$proxy" ok "$IDLE_CONNS" "$before" "$after" "$notes"
    else
        record_mem "$proxy" failed 0 "$before" 0 "holder: ${line:-no answer}; $(log_tail "$TMP/$label/output.log")"
    fi
    stop_tree "$holder"
    stop_tree "$pid"
    save_logs "$label"
}

# One row of waiting.tsv: proxy status requests rss_before_kb rss_after_kb
# notes.
record_wait() {
    local IFS=$'\t'
    echo "$*" >>"$WAIT_TSV"
}

# The waiting case: RSS of the proxy's tree, then COUNT requests that all
# wait in Lua at once (waiting.py holds them), RSS again; then they are
# released and must all answer 200.
run_waiting() { # PROXY PID PORT COUNT
    local proxy=$1 pid=$2 port=$3 count=$4 holder before after line i notes="" out
    out=$LOG_DIR/$proxy.waiting-c$count.txt
    curl -s -o /dev/null --noproxy '*' --max-time 2 "http://127.0.0.1:$port/" # a first request
    sleep 1
    before=$(tree_rss_kb "$pid")
    local hold=$((START_TIMEOUT + count / 200 + 60))
    log "$proxy: $count requests waiting in Lua"
    launch "$out" python3 "$BENCH_DIR/waiting.py" "$port" "$count" "$hold"
    holder=$LAUNCHED
    line=""
    for ((i = 0; i < (hold - 30) * 10; i++)); do
        line=$(head -n 1 "$out" 2>/dev/null)
        [[ -n $line ]] && break
        running "$holder" || break
        sleep 0.1
    done
    if [[ $line != "ready $count" ]]; then
        record_wait "$proxy" failed 0 "$before" 0 "holder: ${line:-no answer}"
        stop_tree "$holder"
        return
    fi
    sleep 1 # whatever the last arrivals left to do
    after=$(tree_rss_kb "$pid")
    kill -USR1 "$holder" 2>/dev/null
    wait "$holder"
    forget_pid "$holder"
    line=$(sed -n 2p "$out")
    [[ $line == "done $count of $count" ]] || notes="after release: ${line:-no answer}"
    running "$pid" || notes+="${notes:+; }proxy exited during the run"
    record_wait "$proxy" ok "$count" "$before" "$after" "$notes"
}

# The TLS cases (scripts/bench/tls.py) in front of the same origins, whose
# CPU is not counted as other processes'.
run_tls() {
    rm -f "$OUT_DIR/tls.md"
    BENCH_WORKERS=$WORKERS BENCH_KEEPALIVE=$KEEPALIVE BENCH_START_TIMEOUT=$START_TIMEOUT python3 "$BENCH_DIR/tls.py" "$LUAPROXY" "$OUT_DIR" \
        "$SMALL_PORT" "$BIG_PORT" "${ORIGIN_PIDS[@]}" 9>&- || log "the TLS cases failed (see above)"
}

run_memory_all() {
    local proxy
    for proxy in $MEM_PROXIES; do
        next_port
        run_memory "$proxy" "$PORT"
    done
}

# --- report -----------------------------------------------------------------

report() {
    local luaproxy_version
    luaproxy_version=$(timeout 2 "$LUAPROXY" -V 2>/dev/null </dev/null | head -1)
    [[ $luaproxy_version == luaproxy* ]] || luaproxy_version="luaproxy (version unknown)"
    python3 "$BENCH_DIR/report.py" "$RESULTS_TSV" "$MEM_TSV" "$OUT_DIR/results.md" "$CLK_TCK" \
        "$WORKERS" "$SCALING_CASE" --waiting="$WAIT_TSV" \
        "Date: $(date -u '+%Y-%m-%d %H:%M UTC')" \
        "Machine: \`nproc\` = $(nproc), $(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r)" \
        "Versions: $luaproxy_version; $(nginx -v 2>&1 | sed 's/^nginx version: //'); lua-nginx-module $(dpkg-query -W -f='${Version}' libnginx-mod-http-lua 2>/dev/null || echo '?'); HAProxy $(haproxy -v 2>&1 | awk 'NR == 1 {print $3}'); wrk $(dpkg-query -W -f='${Version}' wrk 2>/dev/null || echo '?')" \
        "Setup: $WORKERS workers per proxy (HAProxy: $WORKERS threads; luaproxy-w1: 1), origins nginx with 1 worker each; \`wrk -t1 --latency\`, ${DURATION}s per run after ${WARMUP}s of warm-up; idle-connection case with $IDLE_CONNS connections; everything on 127.0.0.1, so wrk, origins and proxy share the same CPUs." \
        ${BUSY_NOTE:+"$BUSY_NOTE"} ||
        die "report.py failed; raw results are in $RESULTS_TSV"
    [[ -f $OUT_DIR/tls.md ]] && cat "$OUT_DIR/tls.md" >>"$OUT_DIR/results.md"
    log "table written to ${OUT_DIR#"$ROOT"/}/results.md"
}

main() {
    check_settings
    trap cleanup EXIT
    # exit runs the EXIT trap, so an interrupted run cleans up the same way.
    trap 'exit 130' INT
    trap 'exit 143' TERM
    setup
    start_origins
    run_all
    run_memory_all
    # Health checks of 1,000 servers: scripts/bench/health_checks.py (BENCH_HEALTH=0 skips it).
    [[ ${BENCH_HEALTH:-1} == 0 || $ONLY == tls ]] || python3 "$BENCH_DIR/health_checks.py" "$LUAPROXY" "$OUT_DIR" "1000" "$DURATION" "$WORKERS"
    [[ $ONLY == plain ]] || run_tls
    save_logs origin-small
    save_logs origin-big
    save_logs origin-upload
    report
}

# Everything runs from this one line: bash reads a script as it goes, so an
# edit to this file during a run could otherwise change the code mid-run.
main "$@"; exit
