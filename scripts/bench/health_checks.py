#!/usr/bin/env python3
"""The cost of active health checks, for bench.sh (or alone).

    health_checks.py LUAPROXY OUT_DIR [SERVERS [SECONDS [WORKERS]]]

Starts SERVERS (1,000) listening sockets on 127.0.0.1..127.0.0.8 in a
process of its own (a selectors loop that answers every request with
"200 OK" and closes, counting them), then luaproxy with WORKERS (2)
workers and one upstream of all those servers under
check = { interval = "1s" }. Once a full round of probes has come in, it
measures over SECONDS (10) the CPU time the proxy's processes (master and
workers, from /proc/PID/schedstat, in nanoseconds) spent, and the probes
the servers received. The target: under 1 % of one core, with about one
probe per server per second (one prober, however many workers).

Prints one line and writes OUT_DIR/health.md; exits 0 when the target is
met, 1 when missed, 2 when the run failed. Only processes started here are
signalled; every wait is bounded.
"""
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

TARGET = 0.01  # of one core


def serve(n, ready_fd, count_path):
    """The backends: n listeners; each connection's request is read, answered
    and closed. The probe count is written to count_path every 100 ms."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    addrs = []
    for i in range(n):
        s = socket.socket()
        s.bind(("127.0.0.%d" % (1 + i % 8), 0))
        s.listen(64)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, None)
        addrs.append("%s:%d" % s.getsockname())
    os.write(ready_fd, ("\n".join(addrs) + "\n\n").encode())
    os.close(ready_fd)
    probes = 0
    last = 0.0
    close = os.environ.get("BENCH_HEALTH_CLOSE") == "1"
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n%s\r\nok\n" % (b"Connection: close\r\n" if close else b"")
    while True:
        for key, _ in sel.select(0.1):
            if key.data is None:
                try:
                    c, _ = key.fileobj.accept()
                except OSError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, b"")
                continue
            c = key.fileobj
            try:
                data = c.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(c)
                c.close()
                continue
            buf = key.data + data
            while b"\r\n\r\n" in buf:  # each request on the connection
                _, _, buf = buf.partition(b"\r\n\r\n")
                probes += 1
                try:
                    c.send(answer)
                except OSError:
                    pass
            sel.modify(c, selectors.EVENT_READ, buf)
        now = time.monotonic()
        if now - last >= 0.1:
            with open(count_path + ".tmp", "w") as f:
                f.write(str(probes))
            os.replace(count_path + ".tmp", count_path)
            last = now


def probes(count_path):
    try:
        with open(count_path) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0


def cpu_ns(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/schedstat" % pid) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def tree(pid):
    out = [pid]
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    data = f.read()
            except OSError:
                continue
            rest = data[data.rindex(")") + 2:].split()
            if int(rest[1]) == pid and rest[0] != "Z":
                out.append(int(name))
    return out


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.05)


def measure(luaproxy, tmp, out_dir, addrs, workers, seconds, count_path, checks):
    """(CPU share of one core, probes/s, seconds measured) of a luaproxy
    with an upstream of all addrs, with or without check."""
    script = os.path.join(tmp, "health.lua")
    with open(script, "w") as f:
        f.write('local up = proxy.upstream("many", {\n%s\n}, { %s })\n'
                'function route(req) return up end\n'
                % (",\n".join('  "%s"' % a for a in addrs), 'check = { interval = "1s" }' if checks else ""))
    listen = socket.socket()
    listen.bind(("127.0.0.1", 0))
    port = listen.getsockname()[1]
    listen.close()
    log = open(os.path.join(out_dir, "health-luaproxy.log"), "a")
    proxy = subprocess.Popen([luaproxy, "-w", str(workers), "-l", "127.0.0.1:%d" % port, "--log-level", "warn",
                              script], stdout=log, stderr=log, start_new_session=True)
    try:
        if checks:  # one full round (every server probed once on average) first
            start = probes(count_path)
            wait_for(lambda: probes(count_path) >= start + len(addrs), 20, "a first round of probes")
        else:
            wait_for(lambda: len(tree(proxy.pid)) == workers + 1, 10, "the workers")
            time.sleep(2)  # their start is not what is measured
        pids = tree(proxy.pid)
        p0, c0, t0 = probes(count_path), cpu_ns(pids), time.monotonic()
        time.sleep(seconds)
        p1, c1, t1 = probes(count_path), cpu_ns(pids), time.monotonic()
        if proxy.poll() is not None:
            raise RuntimeError("luaproxy exited during the run")
        return (c1 - c0) / 1e9 / (t1 - t0), (p1 - p0) / (t1 - t0), t1 - t0
    finally:
        if proxy.poll() is None:
            os.killpg(proxy.pid, signal.SIGKILL)
        proxy.wait(5)
        log.close()


def main():
    luaproxy, out_dir = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else int(os.environ.get("BENCH_WORKERS", "2"))
    os.makedirs(out_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="lp-bench-health-")
    count_path = os.path.join(tmp, "probes")
    r, w = os.pipe()
    backend = os.fork()
    if backend == 0:
        os.close(r)
        try:
            serve(n, w, count_path)
        finally:
            os._exit(0)
    os.close(w)
    try:
        text = b""
        deadline = time.monotonic() + 30
        while not text.endswith(b"\n\n") and time.monotonic() < deadline:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            text += chunk
        addrs = text.decode().split()
        if len(addrs) != n:
            raise RuntimeError("the backends opened %d of %d listeners" % (len(addrs), n))
        with_checks = measure(luaproxy, tmp, out_dir, addrs, workers, seconds, count_path, True)
        without = measure(luaproxy, tmp, out_dir, addrs, workers, seconds, count_path, False)
        share, rate, elapsed = with_checks
        base = without[0]
        cost = share - base
        verdict = "PASS" if cost < TARGET else "MISS"
        line = ("health checks: %d servers, interval 1 s, %d workers: %.0f probes/s (one per server per "
                "second: %d); proxy CPU %.1f ms/s with the checks, %.1f ms/s without: the checks cost "
                "%.2f %% of one core (target < 1 %%): %s"
                % (n, workers, rate, n, share * 1000, base * 1000, cost * 100, verdict))
        print(line)
        with open(os.path.join(out_dir, "health.md"), "w") as f:
            f.write("# Health-check cost\n\n%s\n\nMeasured over %.1f s (CPU of the master and its %d "
                    "workers from /proc/PID/schedstat), %s.\n" % (line, elapsed, workers,
                                                                    time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                  time.gmtime())))
        return 0 if cost < TARGET else 1
    except RuntimeError as e:
        print("health checks: failed: %s" % e)
        return 2
    finally:
        os.kill(backend, signal.SIGKILL)
        os.waitpid(backend, 0)
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
