#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/).

Each seed is the target's control bytes followed by the stream:
  client:  flags, cut, cut, cut, then the client's bytes
  backend: flags, kind, cut, cut, cut, then the origin's bytes
(see the comments at the top of fuzz_client.c and fuzz_backend.c). A cut
byte b splits the stream at b * len / 256; 0 means no split.

Run it again after changing a seed here; the files are committed."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
H = "Host: h\r\n"


def crlf(s):
    return s.replace("\n", "\r\n").encode()


def req(method, path, headers="", body="", version="1.1"):
    return f"{method} {path} HTTP/{version}\r\n{headers}\r\n{body}".encode()


CLIENT = {
    # local handlers
    "get-local": (0, [0, 0, 0], req("GET", "/x?q=1", H + "Accept: */*\r\n")),
    "head-local": (0, [0, 0, 0], req("HEAD", "/x", H)),
    "post-local-cl": (0, [128, 0, 0], req("POST", "/k", H + "Content-Length: 5\r\nContent-Type: text/plain\r\n", "hello")),
    "post-local-chunked": (0, [60, 120, 200], req("POST", "/k", H + "Transfer-Encoding: chunked\r\n",
                                                  "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\n\r\n")),
    "put-expect": (0, [100, 0, 0], req("PUT", "/k", H + "Expect: 100-continue\r\nContent-Length: 3\r\n", "abc")),
    "delete-local": (1, [0, 0, 0], req("DELETE", "/k", H)),
    "options-405": (0, [0, 0, 0], req("OPTIONS", "/k", H)),
    "get-big-slow": (8, [0, 0, 0], req("GET", "/big", H) + req("GET", "/big", H) + req("GET", "/x", H)),
    "get-hdr-bad": (0, [0, 0, 0], req("GET", "/hdr", H) + req("GET", "/bad", H)),
    "http10": (1, [0, 0, 0], req("GET", "/x", "", "", "1.0") + req("GET", "/p", "Connection: keep-alive\r\n", "", "1.0")),
    "pipelined-mixed": (0, [40, 90, 170], req("GET", "/x", H) + req("GET", "/p/a", H) + req("POST", "/k", H + "Content-Length: 2\r\n", "hi")
                        + req("GET", "/pc", H) + req("GET", "/r", H + "Connection: close\r\n")),
    # route
    "route-answers": (0, [0, 0, 0], req("GET", "/r?a=b", H)),
    "route-error": (0, [0, 0, 0], req("GET", "/e", H) + req("GET", "/n", H)),
    "route-answers-body": (0, [0, 0, 0], req("POST", "/r", H + "Content-Length: 4\r\n", "abcd") + req("GET", "/x", H)),
    "route-answers-expect": (1, [0, 0, 0], req("POST", "/r", H + "Expect: 100-continue\r\nContent-Length: 4\r\n")),
    # proxied
    "proxy-get": (0, [0, 0, 0], req("GET", "/p/x?y=1", H + "X-Forwarded-For: 127.0.0.1\r\nX-Set: v\r\n")),
    "proxy-chunked-answer": (0, [0, 0, 0], req("GET", "/pc", H) + req("HEAD", "/pc", H)),
    "proxy-eof-answer": (0, [0, 0, 0], req("GET", "/pe", H) + req("GET", "/p", H)),
    "proxy-204": (0, [0, 0, 0], req("GET", "/pn", H)),
    "proxy-post-cl": (0, [150, 0, 0], req("POST", "/p", H + "Content-Length: 11\r\n", "hello world")),
    "proxy-post-chunked": (0, [50, 100, 150], req("POST", "/p", H + "Transfer-Encoding: chunked\r\n",
                                                  "3\r\nabc\r\n3;x\r\ndef\r\n0\r\n\r\n") + req("GET", "/p", H)),
    "proxy-expect": (0, [0, 0, 0], req("POST", "/p", H + "Expect: 100-continue\r\nContent-Length: 3\r\n", "abc")),
    "proxy-upgrade": (1, [200, 0, 0], req("GET", "/p/ws", H + "Connection: Upgrade\r\nUpgrade: websocket\r\n") + b"tunnel bytes"),
    "proxy-hash": (0, [0, 0, 0], req("GET", "/h", H + "X-Key: k1\r\n") + req("GET", "/h", H)),
    "proxy-dead-server": (0, [0, 0, 0], req("GET", "/f", H) + req("GET", "/f", H) + req("POST", "/f", H + "Content-Length: 2\r\n", "hi")),
    "proxy-balancer": (0, [0, 0, 0], req("GET", "/b?a", H) + req("GET", "/b?ab", H) + req("GET", "/b", H)),
    "proxy-edits": (0, [0, 0, 0], req("GET", "/p?strip", H + "X-Drop: x-a\r\nX-A: 1\r\n") + req("GET", "/p?move", H)),
    "proxy-on-response-fails": (0, [0, 0, 0], req("GET", "/p", H + "X-Fail: 1\r\n")),
    "proxy-hop-by-hop": (0, [0, 0, 0], req("GET", "/p", H + "Connection: x-hop, keep-alive\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n")),
    "proxy-client-leaves": (16, [100, 0, 0], req("POST", "/p", H + "Content-Length: 100\r\n", "partial")),
    # rejections and timeouts
    "reject-cl-te": (0, [0, 0, 0], req("POST", "/p", H + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")),
    "reject-double-cl": (0, [0, 0, 0], req("POST", "/p", H + "Content-Length: 5\r\nContent-Length: 6\r\n", "hello")),
    "reject-te-list": (0, [0, 0, 0], req("POST", "/p", H + "Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n")),
    "reject-bad-chunk": (0, [0, 0, 0], req("POST", "/k", H + "Transfer-Encoding: chunked\r\n", "zz\r\n")),
    "reject-no-host": (0, [0, 0, 0], req("GET", "/x")),
    "reject-version": (0, [0, 0, 0], b"GET /x HTTP/2.0\r\n\r\n"),
    "reject-head-too-large": (0, [0, 0, 0], req("GET", "/x", H + "X-Long: " + "a" * 2100 + "\r\n")),
    "reject-body-too-large": (0, [0, 0, 0], req("POST", "/k", H + "Content-Length: 5000\r\n", "b" * 5000)),
    # heads llhttp refuses and the proxy rewrites (unknown methods, equal
    # lengths, HTAB after a framing value), trailers it refuses
    "unknown-method-local": (0, [3, 30, 0], req("FOO", "/k", H + "Content-Length: 2\r\n", "ab") + req("GET", "/x", H)),
    "unknown-method-proxy": (0, [5, 0, 0], req("PROPFINDX", "/p", H + "Content-Length: 2\r\n", "ab") + req("GET", "/p", H)),
    "dup-cl-proxy": (0, [70, 0, 0], req("POST", "/p", H + "Content-Length: 5\r\ncontent-length: 5, 5\r\n", "hello")),
    "cl-tab-local": (0, [0, 0, 0], req("POST", "/k", H + "Content-Length: 5\t\r\n", "hello") + req("GET", "/x", H)),
    "te-tab-proxy": (0, [0, 0, 0], req("POST", "/p", H + "Transfer-Encoding: chunked\t\r\n", "5\r\nhello\r\n0\r\n\r\n")),
    "trailer-forbidden": (0, [200, 0, 0], req("POST", "/p", H + "Transfer-Encoding: chunked\r\n",
                                             "5\r\nhello\r\n0\r\nX-T: 1\r\nContent-Length: 5\r\n\r\n")),
    "absolute-host-differs": (0, [0, 0, 0], req("GET", "http://a.example:81/p?x", "Host: b\r\nX_Under: 1\r\n")),
    "timeout-head": (2, [0, 0, 0], b"GET /x HTTP/1.1\r\nHo"),
    "timeout-body": (4, [128, 0, 0], req("POST", "/k", H + "Content-Length: 10\r\n", "12345")),
    "timeout-proxy-body": (2, [0, 0, 0], req("POST", "/p", H + "Content-Length: 10\r\n", "12345")),
}

# Backend kinds (fuzz_backend.c kinds[]): 0 GET, 1 HEAD, 2 POST CL, 3 POST
# chunked, 4 GET 1.0, 5 upgrade, 6 expect, 7 two GETs, 8 HEAD + GET,
# 9 100 kB upload, 10 GET 1.0 keep-alive.
OK = "HTTP/1.1 200 OK\r\n"
BACKEND = {
    "cl": (0, 0, [0, 0, 0], OK + "Content-Length: 5\r\nX-A: 1\r\n\r\nhello"),
    "cl-split": (0, 0, [20, 40, 60], OK + "Content-Length: 11\r\n\r\nhello world"),
    "cl-zero": (0, 0, [0, 0, 0], OK + "Content-Length: 0\r\n\r\n"),
    "cl-truncated": (1, 0, [0, 0, 0], OK + "Content-Length: 50\r\n\r\nshort"),
    "cl-extra-bytes": (0, 7, [0, 0, 0], OK + "Content-Length: 2\r\n\r\nokEXTRA" + OK + "Content-Length: 0\r\n\r\n"),
    "chunked": (0, 0, [80, 0, 0], OK + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n"),
    "chunked-trailers": (0, 0, [0, 0, 0], OK + "Transfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n"),
    "chunked-truncated": (1, 0, [0, 0, 0], OK + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel"),
    "chunked-bad": (0, 0, [0, 0, 0], OK + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"),
    "chunked-http10": (0, 4, [0, 0, 0], OK + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    "eof": (1, 0, [100, 0, 0], OK + "X-A: 1\r\n\r\nuntil the end of the connection"),
    "eof-http10": (1, 10, [0, 0, 0], OK + "\r\nuntil the end"),
    "eof-reset": (2, 0, [0, 0, 0], OK + "\r\nuntil a reset"),
    "head": (0, 1, [0, 0, 0], OK + "Content-Length: 1000\r\n\r\n"),
    "head-then-get": (0, 8, [0, 0, 0], OK + "Content-Length: 1000\r\n\r\n" + OK + "Content-Length: 2\r\n\r\nok"),
    "two-responses": (0, 7, [128, 0, 0], OK + "Content-Length: 2\r\n\r\nok" + OK + "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    "204": (0, 0, [0, 0, 0], "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"),
    "304": (0, 0, [0, 0, 0], "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"),
    "100-then-200": (0, 6, [30, 0, 0], "HTTP/1.1 100 Continue\r\n\r\n" + OK + "Content-Length: 2\r\n\r\nok"),
    "103-then-200": (0, 0, [0, 0, 0], "HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n" + OK + "Content-Length: 2\r\n\r\nok"),
    "101-upgrade": (1, 5, [0, 0, 0], "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: fuzz\r\n\r\ntunnel"),
    "101-unasked": (0, 0, [0, 0, 0], "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: fuzz\r\n\r\n"),
    "post-answer": (0, 2, [0, 0, 0], "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    "post-chunked-answer": (0, 3, [0, 0, 0], OK + "Content-Length: 2\r\n\r\nok"),
    "upload-early-answer": (0, 9, [0, 0, 0], "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
    "garbage-status": (0, 0, [0, 0, 0], "HTTTP/1.1 200 OK\r\n\r\n"),
    "garbage-header": (0, 0, [0, 0, 0], OK + "Bad Header\r\n\r\n"),
    "cl-and-te": (0, 0, [0, 0, 0], OK + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "hop-by-hop": (0, 0, [0, 0, 0], OK + "Connection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: 1\r\nContent-Length: 1\r\n\r\nx"),
    "on-response-edits": (0, 0, [0, 0, 0], OK + "X-Drop: x-a\r\nX-A: 1\r\nContent-Length: 1\r\n\r\nx"),
    "on-response-fails": (0, 0, [0, 0, 0], OK + "X-Fail: 1\r\nContent-Length: 1\r\n\r\nx"),
    "no-answer-timeout": (4, 0, [0, 0, 0], ""),
    "close-before-answer": (1, 0, [0, 0, 0], ""),
    "slow-client": (8, 0, [0, 0, 0], OK + "Content-Length: 20000\r\n\r\n" + "z" * 20000),
    "client-leaves": (16, 0, [10, 0, 0], OK + "Content-Length: 20\r\n\r\n" + "y" * 20),
    "timeout-mid-body": (32, 0, [90, 0, 0], OK + "Content-Length: 20\r\n\r\n" + "y" * 10),
}


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


for name, (flags, cuts, data) in CLIENT.items():
    write("client", name, bytes([flags] + cuts) + data)
for name, (flags, kind, cuts, text) in BACKEND.items():
    write("backend", name, bytes([flags, kind] + cuts) + text.encode())
