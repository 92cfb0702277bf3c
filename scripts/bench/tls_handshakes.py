#!/usr/bin/env python3
"""TLS handshakes against a server, one after another, for the TLS bench.

    tls_handshakes.py PORT MODE SECONDS MAX_COUNT PROCESSES

MODE is full (no session offered: a full handshake each time) or resumed
(each connection offers the session ticket the previous one received, as a
browser does; the first ticket comes from one full handshake that is not
counted). PROCESSES clients run at once, each until SECONDS pass or
it made its share of MAX_COUNT handshakes. A connection is: TCP connect,
the handshake, close_notify both ways (reading the server's tickets on the
way), close; no request is sent, so the server's work is the handshake's.
The client does not verify the certificate: its CPU is not the figure.

Prints one line: "done N reused R failed F version cipher", where N counts
the handshakes completed and R those the server resumed. Exits 1 when none
completed. The cipher and group come from OpenSSL's configuration
(OPENSSL_CONF), which the bench sets for every client.
"""
import multiprocessing
import socket
import ssl
import sys
import time

TIMEOUT = 5.0


def pump(sock, incoming, outgoing, step):
    """Runs step() (a handshake or shutdown step of an SSLObject) to its
    end, moving bytes between the socket and the memory BIOs."""
    while True:
        try:
            result = step()
            break
        except ssl.SSLWantReadError:
            if outgoing.pending:
                sock.sendall(outgoing.read())
            data = sock.recv(65536)
            if data:
                incoming.write(data)
            else:
                incoming.write_eof()
    if outgoing.pending:
        sock.sendall(outgoing.read())
    return result


def one(ctx, port, session):
    """One connection; returns (session, reused, version, cipher)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        # As browsers and wrk do: with Nagle, a close_notify sent right
        # after the Finished waits for the server's delayed ACK (40 ms)
        # when the server has nothing to send after a resumption.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost", session=session)
        pump(sock, incoming, outgoing, obj.do_handshake)
        version, cipher = obj.version(), obj.cipher()[0]
        # Reading the server's close_notify reads the tickets sent before
        # it. A server that closes without one is fine too.
        try:
            pump(sock, incoming, outgoing, obj.unwrap)
        except (ssl.SSLError, OSError):
            pass
        return obj.session, obj.session_reused, version, cipher


def client(port, mode, seconds, count, results):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    done = reused = failed = 0
    version = cipher = "?"
    session = None
    deadline = time.monotonic() + seconds
    if mode == "resumed":
        # The first ticket, from a full handshake that is not counted.
        try:
            session = one(ctx, port, None)[0]
        except (OSError, ssl.SSLError):
            pass
    while done < count and time.monotonic() < deadline:
        try:
            got, was_reused, version, cipher = one(ctx, port, session if mode == "resumed" else None)
        except (OSError, ssl.SSLError):
            failed += 1
            if failed > 100 and failed > done:
                break
            continue
        done += 1
        reused += bool(was_reused)
        if mode == "resumed" and got is not None and got.has_ticket:
            session = got
    results.put((done, reused, failed, version, cipher))


def main():
    if len(sys.argv) != 6 or sys.argv[2] not in ("full", "resumed"):
        sys.exit(__doc__)
    port, mode, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    count, procs = int(sys.argv[4]), int(sys.argv[5])
    results = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=client, args=(port, mode, seconds, -(-count // procs), results))
               for _ in range(procs)]
    for w in workers:
        w.start()
    totals = [0, 0, 0]
    version = cipher = "?"
    for _ in workers:
        done, reused, failed, v, c = results.get(timeout=seconds + 60)
        totals = [totals[0] + done, totals[1] + reused, totals[2] + failed]
        if done:
            version, cipher = v, c
    for w in workers:
        w.join(10)
    print(f"done {totals[0]} reused {totals[1]} failed {totals[2]} {version} {cipher}", flush=True)
    return 0 if totals[0] else 1


if __name__ == "__main__":
    sys.exit(main())
