#!/usr/bin/env python3
"""Helpers shared by the benchmark scripts (Python stdlib only).

    benchlib.py free-ports N     prints N free ports on 127.0.0.1
"""
import random
import socket
import sys


def free_ports(n):
    """n free ports on 127.0.0.1, below the ephemeral range so that the many
    outgoing loopback connections of a run cannot take one meanwhile."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    candidates = list(range(15000, low if low > 16000 else 32768))
    random.shuffle(candidates)
    held = []
    for port in candidates:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.close()
            continue
        held.append(s)
        if len(held) == n:
            break
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    return ports


def read_response(s, buf=b""):
    """Reads one response framed by Content-Length (none: no body) from
    socket s, buf holding bytes already received. Returns (status, bytes
    received past the response)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("connection closed in the response body")
        rest += chunk
    return status, rest[length:]


def markdown_table(rows):
    """Cells padded to equal width: the same text reads as a table in a
    terminal and renders as one in markdown. rows[0] is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "free-ports":
        print(" ".join(str(p) for p in free_ports(int(sys.argv[2]))))
    else:
        sys.exit(__doc__)
