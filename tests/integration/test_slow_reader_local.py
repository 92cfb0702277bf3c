"""--idle-timeout ends a client that takes nothing of its local answer for
that long; a client that keeps reading a large answer, however slowly, is
not idle and gets all of it."""

import socket
import time

import lp

SCRIPT = r'''
local big = string.rep("0123456789abcdef", 1024 * 1024)  -- 16 MiB
function on_get(req) return 200, big end
'''
SIZE = 16 * 1024 * 1024


def slow_client(port, rcvbuf=4096):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # keep the kernel from taking it all
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def test_a_slow_reader_of_a_local_answer_gets_all_of_it():
    # The kernel's buffers take several MiB at once; what is left is written
    # as the client makes room, each write after the timer was armed.
    with lp.Proxy(SCRIPT, args=["--idle-timeout", "1500ms"]) as p:
        s = slow_client(p.port, rcvbuf=65536)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = bytearray()
            t0 = time.monotonic()
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
                time.sleep(0.015)  # about 4 MB/s at most: the answer outlasts the timeout
            elapsed = time.monotonic() - t0
        finally:
            s.close()
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert elapsed > 2.0, "the answer took only %.2fs: the test did not read slowly" % elapsed
        assert len(body) == SIZE, "got %d of %d body bytes in %.2fs (cut by --idle-timeout?)" % (
            len(body), SIZE, elapsed)


def test_a_client_that_stops_reading_is_still_ended_by_idle_timeout():
    with lp.Proxy(SCRIPT, args=["--idle-timeout", "500ms"]) as p:
        s = slow_client(p.port)
        try:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1024)  # the answer began, then the client reads nothing
            time.sleep(1.5)
            s.settimeout(5)
            total = 0
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                total += len(chunk)
        except ConnectionResetError:
            total = -1
        finally:
            s.close()
        assert total < SIZE, "a client that stopped reading got the whole answer (%d bytes)" % total
