#!/usr/bin/env python3
"""Holds many idle keep-alive connections open on a proxy, for bench.sh.

    idle_conns.py PORT COUNT PATH HOLD_SECONDS [tls]

Opens COUNT connections to 127.0.0.1:PORT one after another; on each it
sends one keep-alive GET PATH and reads the whole answer (which must be a
200 with a Content-Length), then leaves the connection open and idle. When
all are open it prints "ready COUNT" and waits, without sending anything,
until SIGTERM or HOLD_SECONDS have passed, then closes them all and exits.
On a failure it prints "failed N: why" (N connections were ready) and exits
1. Every wait is bounded, so it always ends by itself. With "tls" each
connection is TLS (certificate not verified; the TLS bench chooses the
cipher through OPENSSL_CONF).
"""
import resource
import signal
import socket
import ssl
import sys
import time

from benchlib import read_response

CONNECT_TIMEOUT = 5.0


def main():
    port, count, path, hold = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    tls = None
    if sys.argv[5:] == ["tls"]:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    # One descriptor per connection: take what the hard limit allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    conns = []
    deadline = time.monotonic() + hold
    try:
        for _ in range(count):
            if stop or time.monotonic() > deadline:
                raise OSError("stopped before all connections were open")
            s = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
            if tls:
                s = tls.wrap_socket(s, server_hostname="localhost")
            conns.append(s)
            s.sendall(request)
            status, _ = read_response(s)
            if status != 200:
                raise OSError(f"answer {status}, not 200")
    except OSError as e:
        print(f"failed {len(conns)}: {e}", flush=True)
        for s in conns:
            s.close()
        return 1
    print(f"ready {len(conns)}", flush=True)
    while not stop and time.monotonic() < deadline:
        time.sleep(0.1)
    for s in conns:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
