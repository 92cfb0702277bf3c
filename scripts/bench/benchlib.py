#!/usr/bin/env python3
"""Helpers shared by the benchmark scripts (Python stdlib only).

    benchlib.py free-ports N     prints N free ports on 127.0.0.1

Processes started through start() are remembered; stop_all() stops those
that are left, by their own pid only.
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH_DIR = os.path.join(ROOT, "scripts", "bench")
KV_KEY = "/k"  # the local-handler case: one key with a 100-byte value
KV_BODY = b"0123456789" * 10
KEEPALIVE = 256  # backend pool per worker and upstream, as bench.sh's default

_started = []  # Popen objects started here and not yet stopped


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


def need_tools(prog, tools, hint=""):
    """Exits with one line naming the first of tools that is missing."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"{prog}: {tool} is not installed{hint}")


def fresh_dir(path):
    """path, emptied: the raw output of the previous run goes."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write_markdown(path, lines):
    """Writes the report's lines to path and prints them."""
    text = "\n".join(lines) + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(text)


def render(template, out, values):
    """Fills the @NAME@ placeholders of scripts/bench/TEMPLATE into OUT."""
    with open(os.path.join(BENCH_DIR, template)) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    left = re.search(r"@[A-Z_]+@", text)
    if left:
        raise RuntimeError(f"{template}: placeholder {left.group(0)} not filled")
    with open(out, "w") as f:
        f.write(text)


def request(port, method, path, body=b"", headers="", timeout=5.0):
    """One request on a fresh connection to 127.0.0.1:port; its status."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return read_response(s)[0]


def drive(port, path, n):
    """n GETs, one after another on one keep-alive connection; each must
    answer 200."""
    req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        buf = b""
        for _ in range(n):
            s.sendall(req)
            status, buf = read_response(s, buf)
            if status != 200:
                raise OSError(f"GET {path} answered {status}")


def wait_http(port, path, ok, proc, timeout):
    """Until GET path answers a status in ok; raises when proc exits or
    timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with status {proc.returncode}")
        try:
            status = request(port, "GET", path, timeout=2)
            if status in ok:
                return
            last = f"status {status}"
        except OSError as e:
            last = str(e)
        time.sleep(0.3)
    raise RuntimeError(f"GET {path} not ready after {timeout}s: {last}")


def start(cmd, logfile):
    """Starts cmd with its output in logfile."""
    with open(logfile, "w") as f:
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _started.append(p)
    return p


def stop(p, grace=20):
    """SIGTERM to p (nginx and luaproxy stop their workers then), SIGKILL
    after grace seconds."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            print(f"pid {p.pid} did not stop on SIGTERM, killing it", file=sys.stderr)
            p.kill()
            p.wait()
    if p in _started:
        _started.remove(p)


def stop_all():
    for p in list(_started):
        stop(p)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def nginx_user_line():
    if os.getuid() == 0:  # nginx would switch to "nobody", who cannot read tmp
        import grp
        import pwd
        return f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
    return "# not root"


def start_nginx(template, odir, values, port, logfile):
    """nginx from one of the bench's config templates, in odir; waits
    until port answers."""
    os.makedirs(odir)
    values = dict(values, DIR=odir, PORT=port, USER_LINE=nginx_user_line())
    render(template, os.path.join(odir, "nginx.conf"), values)
    p = start(["nginx", "-p", odir + "/", "-c", os.path.join(odir, "nginx.conf"), "-e",
               os.path.join(odir, "error.log")], logfile)
    wait_http(port, "/", (200, 404), p, 10)
    return p


def start_origin(tmp, port, logfile):
    """The bench's small origin: nginx answering 100 bytes on port."""
    return start_nginx("origin-small.conf.in", os.path.join(tmp, "origin"), {}, port, logfile)


def start_nginx_proxy(tmp, port, origin_port, workers, logfile):
    """nginx proxy_pass with upstream keep-alive (the bench's reference)
    in front of origin_port, with the given number of workers."""
    return start_nginx("nginx-proxy.conf.in", os.path.join(tmp, "nginx"),
                       {"WORKERS": workers, "SMALL_PORT": origin_port, "BIG_PORT": origin_port,
                        "KEEPALIVE": KEEPALIVE}, port, logfile)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "free-ports":
        print(" ".join(str(p) for p in free_ports(int(sys.argv[2]))))
    else:
        sys.exit(__doc__)
