#!/usr/bin/env python3
"""Holds many requests waiting inside a proxy's Lua, for bench.sh.

    waiting.py PORT COUNT HOLD_SECONDS

Against waiting.lua.in or nginx-lua-waiting.conf.in: opens COUNT
connections to 127.0.0.1:PORT, sends GET /sleep on each (Connection:
close) and reads nothing; then asks GET /waiting on connections of its own
until the proxy says all COUNT have come in, and prints "ready COUNT". On
SIGUSR1 (or when HOLD_SECONDS have passed) it asks GET /release, reads every
answer until the proxy closes, and prints "done OK of COUNT" (OK: answers
with status 200); it exits 0 when all were 200. On a failure it prints
"failed N: why" (N requests had been sent) and exits 1. Every wait is
bounded, so it always ends by itself.
"""
import resource
import selectors
import signal
import socket
import sys
import time

CONNECT_TIMEOUT = 5.0


def ask(port, path):
    """GET path on a connection of its own: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def main():
    port, count, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    release = []
    signal.signal(signal.SIGUSR1, lambda *_: release.append(1))
    signal.signal(signal.SIGTERM, lambda *_: release.append(1))
    request = b"GET /sleep HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    deadline = time.monotonic() + hold
    conns = []
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                raise OSError("out of time before all requests were sent")
            s = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
            conns.append(s)
            s.sendall(request)
        n = 0
        while n < count:
            if time.monotonic() > deadline:
                raise OSError(f"only {n} of {count} requests came in")
            n = int(ask(port, "/waiting")[1] or b"0")
            if n < count:
                time.sleep(0.1)
    except (OSError, ValueError, IndexError) as e:
        print(f"failed {len(conns)}: {e}", flush=True)
        for s in conns:
            s.close()
        return 1
    print(f"ready {count}", flush=True)
    while not release and time.monotonic() < deadline:
        time.sleep(0.05)
    sel = selectors.DefaultSelector()
    got = {}
    for s in conns:
        s.setblocking(False)
        got[s] = b""
        sel.register(s, selectors.EVENT_READ)
    try:
        waiting_release = ask(port, "/release")[0]
    except OSError as e:
        waiting_release = f"GET /release: {e}"
    end = time.monotonic() + 30 + count / 1000
    ok = 0
    while got and time.monotonic() < end:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                got[s] += chunk
                continue
            if got[s].startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
                ok += 1
            sel.unregister(s)
            s.close()
            del got[s]
    for s in got:
        s.close()
    print(f"done {ok} of {count}" + ("" if waiting_release == 200 else f" ({waiting_release})"), flush=True)
    return 0 if ok == count else 1


if __name__ == "__main__":
    sys.exit(main())
