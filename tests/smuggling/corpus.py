"""The request smuggling and malformed-input corpus.

Each vector is raw request bytes, as a client would put them on the wire,
and the outcome luaproxy owes them:

- `Reject(status)`: that status, with `Connection: close`, then the
  connection is closed, and not one byte reaches the backend;
- `Forward(Fwd(...), ...)`: the backend receives exactly these requests
  (well-formed, with the framing the client meant), the client gets one
  answer for each of them and nothing else, and the connection stays usable
  unless `close=True`.

tests/integration/test_smuggling.py runs every vector through a proxy in
front of tests/helpers/strict_origin.py, and again through a local Lua
handler. Where RFC 9112 leaves a choice, the choice is the strict one
(at least as strict as HAProxy): reject rather than guess.

Categories: cl-te, te, cl, colon, fold, eol, ctl, chunk, target, version,
limits, host, upgrade, hop, pipeline.
"""

H = b"Host: 127.0.0.1\r\n"
CHUNKED_HELLO = b"5\r\nhello\r\n0\r\n\r\n"


class Reject:
    def __init__(self, status):
        self.status = status

    def __repr__(self):
        return "Reject(%d)" % self.status


class Fwd:
    """One request the backend must receive. `headers`: name -> value that
    must be there; `absent`: names that must not; `chunked`: framing."""

    def __init__(self, method="GET", target="/", body=b"", chunked=None, headers=None, absent=(),
                 local=200):
        self.local = local  # the status a local handler answers (405: no handler for the method)
        self.method = method
        self.target = target
        self.body = body
        self.chunked = chunked
        self.headers = headers or {}
        self.absent = absent

    def __repr__(self):
        return "Fwd(%s %s body=%r)" % (self.method, self.target, self.body[:40])


class Forward:
    def __init__(self, *reqs, close=False):
        self.reqs = list(reqs)
        self.close = close

    def __repr__(self):
        return "Forward(%r, close=%r)" % (self.reqs, self.close)


class Vector:
    def __init__(self, name, category, raw, expect, note=""):
        self.name = name
        self.category = category
        self.raw = raw
        self.expect = expect
        self.note = note

    def __repr__(self):
        return "<%s/%s>" % (self.category, self.name)


def post(headers, body=b"", target=b"/", method=b"POST", version=b"HTTP/1.1", host=True):
    return (method + b" " + target + b" " + version + b"\r\n" + (H if host else b"")
            + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body)


def get(headers=(), target=b"/", version=b"HTTP/1.1", host=True):
    return post(headers, b"", target, b"GET", version, host)


V = Vector
VECTORS = [
    # ---- CL.TE and TE.CL: both framings in one request ------------------
    V("cl_te", "cl-te",
      post([b"Content-Length: 6", b"Transfer-Encoding: chunked"], b"0\r\n\r\nG"), Reject(400)),
    V("te_cl", "cl-te",
      post([b"Transfer-Encoding: chunked", b"Content-Length: 3"], b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
      Reject(400)),
    V("cl_te_xchunked", "cl-te",
      post([b"Content-Length: 4", b"Transfer-Encoding: xchunked"], b"5\r\nhello\r\n0\r\n\r\n"), Reject(400)),
    V("te_cl_zero", "cl-te",
      post([b"Transfer-Encoding: chunked", b"Content-Length: 0"], CHUNKED_HELLO), Reject(400)),
    V("cl_te_upper", "cl-te",
      post([b"CONTENT-LENGTH: 5", b"TRANSFER-ENCODING: CHUNKED"], CHUNKED_HELLO), Reject(400)),
    V("cl_te_http10", "cl-te",
      post([b"Content-Length: 5", b"Transfer-Encoding: chunked"], CHUNKED_HELLO, version=b"HTTP/1.0"),
      Reject(400)),
    V("te_identity_cl", "cl-te",
      post([b"Transfer-Encoding: identity", b"Content-Length: 5"], b"hello"), Reject(400)),

    # ---- Transfer-Encoding obfuscations --------------------------------
    V("te_xchunked", "te", post([b"Transfer-Encoding: xchunked"], CHUNKED_HELLO), Reject(501)),
    V("te_chunkedx", "te", post([b"Transfer-Encoding: chunkedx"], CHUNKED_HELLO), Reject(501)),
    V("te_quoted", "te", post([b'Transfer-Encoding: "chunked"'], CHUNKED_HELLO), Reject(501)),
    V("te_space_before_colon", "te", post([b"Transfer-Encoding : chunked"], CHUNKED_HELLO), Reject(400)),
    V("te_leading_space_line", "te", post([b" Transfer-Encoding: chunked"], CHUNKED_HELLO), Reject(400)),
    V("te_leading_tab_line", "te", post([b"\tTransfer-Encoding: chunked"], CHUNKED_HELLO), Reject(400)),
    V("te_vtab_before_value", "te", post([b"Transfer-Encoding:\x0bchunked"], CHUNKED_HELLO), Reject(400)),
    V("te_vtab_after_value", "te", post([b"Transfer-Encoding: chunked\x0b"], CHUNKED_HELLO), Reject(400)),
    V("te_formfeed", "te", post([b"Transfer-Encoding: \x0cchunked"], CHUNKED_HELLO), Reject(400)),
    V("te_chunked_identity", "te", post([b"Transfer-Encoding: chunked, identity"], CHUNKED_HELLO),
      Reject(501)),
    V("te_identity_chunked", "te", post([b"Transfer-Encoding: identity, chunked"], CHUNKED_HELLO),
      Reject(501)),
    V("te_chunked_chunked", "te", post([b"Transfer-Encoding: chunked, chunked"], CHUNKED_HELLO),
      Reject(501)),
    V("te_gzip_chunked", "te", post([b"Transfer-Encoding: gzip, chunked"], CHUNKED_HELLO), Reject(501)),
    V("te_comma_first", "te", post([b"Transfer-Encoding: ,chunked"], CHUNKED_HELLO), Reject(501)),
    V("te_duplicate", "te",
      post([b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"], CHUNKED_HELLO), Reject(400)),
    V("te_duplicate_identity_first", "te",
      post([b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked"], CHUNKED_HELLO), Reject(400)),
    V("te_empty", "te", post([b"Transfer-Encoding:"], CHUNKED_HELLO), Reject(400)),
    V("te_nul", "te", post([b"Transfer-Encoding: chunked\x00"], CHUNKED_HELLO), Reject(400)),
    V("te_http10", "te", post([b"Transfer-Encoding: chunked"], CHUNKED_HELLO, version=b"HTTP/1.0"),
      Reject(400), note="RFC 9112 6.1: a 1.0 message with Transfer-Encoding has faulty framing"),
    V("te_ows", "te", post([b"Transfer-Encoding:\tchunked  "], CHUNKED_HELLO),
      Forward(Fwd("POST", "/", b"hello", chunked=True))),
    V("te_trailing_tab", "te", post([b"Transfer-Encoding: chunked\t"], CHUNKED_HELLO),
      Forward(Fwd("POST", "/", b"hello", chunked=True, headers={"transfer-encoding": "chunked"})),
      note="HTAB is OWS (RFC 9110 5.6.3); llhttp refuses it, the head is rewritten and parsed again"),
    V("te_trailing_space", "te", post([b"Transfer-Encoding: chunked "], CHUNKED_HELLO),
      Forward(Fwd("POST", "/", b"hello", chunked=True, headers={"transfer-encoding": "chunked"}))),
    V("te_mixed_case", "te", post([b"transfer-encoding: ChUnKeD"], CHUNKED_HELLO),
      Forward(Fwd("POST", "/", b"hello", chunked=True, headers={"transfer-encoding": "chunked"}))),
    V("te_underscore", "te", post([b"Transfer_Encoding: chunked", b"Content-Length: 5"], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False, absent=("transfer_encoding",))),
      note="a backend may read '_' as '-': names with '_' are not sent on (nginx's default)"),

    # ---- Content-Length -------------------------------------------------
    V("cl_duplicate_same", "cl", post([b"Content-Length: 5", b"Content-Length: 5"], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False, headers={"content-length": "5"})),
      note="RFC 9112 6.3: identical values may be taken as one; one Content-Length goes on"),
    V("cl_duplicate_list", "cl", post([b"Content-Length: 5", b"Content-Length: 5,5"], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False, headers={"content-length": "5"}))),
    V("cl_list_conflict", "cl", post([b"Content-Length: 5, 6"], b"hello!"), Reject(400)),
    V("cl_duplicate_conflict_list", "cl", post([b"Content-Length: 5", b"Content-Length: 5, 6"], b"hello!"),
      Reject(400)),
    V("cl_over_int64", "cl", post([b"Content-Length: 9223372036854775808"], b"hello"), Reject(400),
      note="over 2^63-1: a backend with a signed length would read it as negative"),
    V("cl_underscore", "cl", get([b"Content_Length: 5"]),
      Forward(Fwd("GET", "/", absent=("content_length", "content-length")))),
    V("cl_duplicate_conflict", "cl", post([b"Content-Length: 5", b"Content-Length: 6"], b"hello!"),
      Reject(400)),
    V("cl_list", "cl", post([b"Content-Length: 5, 5"], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False, headers={"content-length": "5"}))),
    V("cl_plus", "cl", post([b"Content-Length: +5"], b"hello"), Reject(400)),
    V("cl_negative", "cl", post([b"Content-Length: -5"], b"hello"), Reject(400)),
    V("cl_overflow", "cl", post([b"Content-Length: 99999999999999999999999"], b"hello"), Reject(400)),
    V("cl_2_pow_64", "cl", post([b"Content-Length: 18446744073709551616"], b"hello"), Reject(400)),
    V("cl_hex", "cl", post([b"Content-Length: 0x5"], b"hello"), Reject(400)),
    V("cl_inner_space", "cl", post([b"Content-Length: 1 0"], b"helloworld"), Reject(400)),
    V("cl_empty", "cl", post([b"Content-Length:"], b"hello"), Reject(400)),
    V("cl_decimal", "cl", post([b"Content-Length: 5.0"], b"hello"), Reject(400)),
    V("cl_leading_zeros", "cl", post([b"Content-Length: 005"], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False, headers={"content-length": "5"})),
      note="framing goes on in one canonical form"),
    V("cl_ows", "cl", post([b"Content-Length:\t 5  "], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False))),
    V("cl_trailing_tab", "cl", post([b"Content-Length: 5\t"], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False, headers={"content-length": "5"})),
      note="HTAB is OWS (RFC 9110 5.6.3); llhttp refuses it, the head is rewritten and parsed again"),
    V("htab_ows_value", "cl", get([b"X-Tab:\tv\t"]), Forward(Fwd("GET", "/", headers={"x-tab": "v"}))),
    V("xff_underscore", "hop", get([b"X_Forwarded_For: 6.6.6.6"]),
      Forward(Fwd("GET", "/", headers={"x-forwarded-for": "127.0.0.1"}, absent=("x_forwarded_for",)))),
    V("cl_shorter_than_data", "cl",
      post([b"Content-Length: 5"], b"hello" + get([b"X-Second: 1"], target=b"/second")),
      Forward(Fwd("POST", "/", b"hello"), Fwd("GET", "/second", headers={"x-second": "1"}))),

    # ---- whitespace before the colon, bad names ------------------------
    V("space_before_colon_host", "colon",
      b"GET / HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n", Reject(400)),
    V("space_before_colon_cl", "colon", post([b"Content-Length : 5"], b"hello"), Reject(400)),
    V("tab_before_colon_cl", "colon", post([b"Content-Length\t: 5"], b"hello"), Reject(400)),
    V("empty_name", "colon", get([b": value"]), Reject(400)),
    V("space_in_name", "colon", get([b"X Foo: 1"]), Reject(400)),
    V("non_token_name", "colon", get([b"X(Foo): 1"]), Reject(400)),
    V("no_colon", "colon", get([b"X-Foo 1"]), Reject(400)),

    # ---- obs-fold ----------------------------------------------------------
    V("fold_space", "fold", get([b"X-Foo: a", b" b"]), Reject(400)),
    V("fold_tab", "fold", get([b"X-Foo: a", b"\tb"]), Reject(400)),
    V("fold_te", "fold", post([b"Transfer-Encoding:", b" chunked"], CHUNKED_HELLO), Reject(400)),
    V("fold_cl", "fold", post([b"Content-Length:", b" 5"], b"hello"), Reject(400)),
    V("space_line_after_request_line", "fold",
      b"GET / HTTP/1.1\r\n X-Foo: 1\r\nHost: 127.0.0.1\r\n\r\n", Reject(400)),

    # ---- bare LF, bare CR ----------------------------------------------------
    V("lf_request_line", "eol", b"GET / HTTP/1.1\nHost: 127.0.0.1\r\n\r\n", Reject(400)),
    V("lf_header_line", "eol", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\n\r\n", Reject(400)),
    V("lf_everywhere", "eol", b"GET / HTTP/1.1\nHost: 127.0.0.1\n\n", Reject(400)),
    V("lf_end_of_head", "eol", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\n", Reject(400)),
    V("cr_in_value", "eol", get([b"X-Foo: a\rb"]), Reject(400)),
    V("cr_as_eol", "eol", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\rX-Foo: 1\r\n\r\n", Reject(400)),
    V("lf_after_chunk_size", "eol", post([b"Transfer-Encoding: chunked"], b"5\nhello\r\n0\r\n\r\n"),
      Reject(400)),
    V("lf_after_chunk_data", "eol", post([b"Transfer-Encoding: chunked"], b"5\r\nhello\n0\r\n\r\n"),
      Reject(400)),
    V("lf_last_chunk", "eol", post([b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\n\n"), Reject(400)),

    # ---- NUL and control bytes -------------------------------------------
    V("nul_in_name", "ctl", get([b"X-Fo\x00o: 1"]), Reject(400)),
    V("ctl_in_name", "ctl", get([b"X-\x01Foo: 1"]), Reject(400)),
    V("obs_text_in_name", "ctl", get([b"X-F\xf6o: 1"]), Reject(400)),
    V("nul_in_value", "ctl", get([b"X-Foo: a\x00b"]), Reject(400)),
    V("soh_in_value", "ctl", get([b"X-Foo: a\x01b"]), Reject(400)),
    V("esc_in_value", "ctl", get([b"X-Foo: a\x1bb"]), Reject(400)),
    V("del_in_value", "ctl", get([b"X-Foo: a\x7fb"]), Reject(400)),
    V("obs_text_in_value", "ctl", get([b"X-Foo: caf\xe9"]),
      Forward(Fwd("GET", "/", headers={"x-foo": "caf\xe9"}))),

    # ---- chunk framing -----------------------------------------------------
    V("chunk_size_overflow", "chunk",
      post([b"Transfer-Encoding: chunked"], b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), Reject(400)),
    V("chunk_size_0x", "chunk", post([b"Transfer-Encoding: chunked"], b"0x5\r\nhello\r\n0\r\n\r\n"),
      Reject(400)),
    V("chunk_size_negative", "chunk", post([b"Transfer-Encoding: chunked"], b"-5\r\nhello\r\n0\r\n\r\n"),
      Reject(400)),
    V("chunk_size_leading_space", "chunk",
      post([b"Transfer-Encoding: chunked"], b" 5\r\nhello\r\n0\r\n\r\n"), Reject(400)),
    V("chunk_size_empty", "chunk", post([b"Transfer-Encoding: chunked"], b"\r\nhello\r\n0\r\n\r\n"),
      Reject(400)),
    V("chunk_missing_crlf", "chunk", post([b"Transfer-Encoding: chunked"], b"5\r\nhelloXX0\r\n\r\n"),
      Reject(400)),
    V("chunk_data_longer_than_size", "chunk",
      post([b"Transfer-Encoding: chunked"], b"3\r\nhello\r\n0\r\n\r\n"), Reject(400)),
    V("chunk_ext_bad_char", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5;a\x01b\r\nhello\r\n0\r\n\r\n"), Reject(400)),
    V("chunk_ext_lf_in_quoted", "chunk",
      post([b"Transfer-Encoding: chunked"], b'5;a="x\ny"\r\nhello\r\n0\r\n\r\n'), Reject(400)),
    V("chunk_ext_no_name", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5;=x\r\nhello\r\n0\r\n\r\n"), Reject(400)),
    V("chunk_ext_abusive_long", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
      Reject(400), note="one chunk extension over 4 KiB"),
    V("chunk_ext_abusive_quoted", "chunk",
      post([b"Transfer-Encoding: chunked"], b'5;q="' + b"a" * 5000 + b'"\r\nhello\r\n0\r\n\r\n'),
      Reject(400), note="one quoted chunk extension over 4 KiB"),
    V("chunk_ext_endless", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5;a=" + b"b" * 30000), Reject(400),
      note="an extension that never ends: stopped at 4 KiB, not at the idle timeout"),
    V("chunk_ext_two", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5;a=b;c=d\r\nhello\r\n0\r\n\r\n"), Reject(400),
      note="stricter than RFC 9112 7.1.1: this llhttp refuses a second extension"),
    V("chunk_ext_valid", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5;name=value\r\nhello\r\n0\r\n\r\n"),
      Forward(Fwd("POST", "/", b"hello", chunked=True))),
    V("chunk_ext_bws", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5 ; a = b\r\nhello\r\n1\t;c\r\n!\r\n0\r\n\r\n"),
      Forward(Fwd("POST", "/", b"hello!", chunked=True)),
      note="RFC 9112 7.1.1 allows BWS around ';' and '='; llhttp does not: it is removed"),
    V("chunk_size_inner_space", "chunk",
      post([b"Transfer-Encoding: chunked"], b"1 0\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n"), Reject(400),
      note="a blank inside the size is not BWS"),
    V("chunk_ext_quoted", "chunk",
      post([b"Transfer-Encoding: chunked"], b'5;q="a b"\r\nhello\r\n0\r\n\r\n'),
      Forward(Fwd("POST", "/", b"hello", chunked=True))),
    V("chunk_ext_on_every_chunk", "chunk",
      post([b"Transfer-Encoding: chunked"],
           b"".join(b"1;sig=" + b"%064x" % i + b"\r\nx\r\n" for i in range(100)) + b"0\r\n\r\n"),
      Forward(Fwd("POST", "/", b"x" * 100, chunked=True)),
      note="signed chunks (aws-chunked style): many small extensions are fine"),
    V("chunk_trailer", "chunk",
      post([b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n"),
      Forward(Fwd("POST", "/", b"hello", chunked=True))),
    # Framing, routing and credential fields may not be trailers (RFC 9110
    # 6.5.1), nor names with '_', nor obs-fold: 400, nothing forwarded.
    ] + [V("trailer_" + name, "chunk", post([b"Transfer-Encoding: chunked"], b"5\r\nhello\r\n0\r\n" + t + b"\r\n"),
           Reject(400)) for name, t in (
        ("content_length", b"Content-Length: 5\r\n"),
        ("transfer_encoding", b"transfer-encoding: chunked\r\n"),
        ("host", b"X-Ok: 1\r\nHost: evil\r\n"),
        ("authorization", b"Authorization: Basic YTpi\r\n"),
        ("underscore", b"Content_Length: 5\r\n"),
        ("fold", b"X-A: 1\r\n Host: evil\r\n"),
        ("bare_lf", b"X-A: 1\nX-B: 2\r\n"),
    )] + [
    V("chunk_upper_hex_leading_zeros", "chunk",
      post([b"Transfer-Encoding: chunked"], b"000A\r\n0123456789\r\n0\r\n\r\n"),
      Forward(Fwd("POST", "/", b"0123456789", chunked=True))),
    V("chunk_then_pipelined", "chunk",
      post([b"Transfer-Encoding: chunked"], CHUNKED_HELLO + get(target=b"/after")),
      Forward(Fwd("POST", "/", b"hello", chunked=True), Fwd("GET", "/after"))),

    # ---- request targets ------------------------------------------------------
    V("absolute_form", "target", get(target=b"http://127.0.0.1/abs?q=1"),
      Forward(Fwd("GET", "/abs?q=1", headers={"host": "127.0.0.1"}))),
    V("absolute_form_host_mismatch", "target",
      b"GET http://127.0.0.1:2/abs HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n",
      Forward(Fwd("GET", "/abs", headers={"host": "127.0.0.1:2"})),
      note="RFC 9112 3.2.2: the target's authority replaces Host"),
    V("absolute_form_no_host_http10", "target", get(target=b"http://127.0.0.1:3/abs", version=b"HTTP/1.0",
                                                    host=False),
      Forward(Fwd("GET", "/abs", headers={"host": "127.0.0.1:3"}), close=True)),
    V("absolute_form_with_port", "target",
      b"GET http://127.0.0.1:80/abs HTTP/1.1\r\nHost: 127.0.0.1:80\r\n\r\n",
      Forward(Fwd("GET", "/abs", headers={"host": "127.0.0.1:80"}))),
    V("absolute_form_upper_scheme", "target", get(target=b"HTTP://127.0.0.1/x"),
      Forward(Fwd("GET", "/x", headers={"host": "127.0.0.1"}))),
    V("absolute_form_https", "target", get(target=b"https://127.0.0.1/x"),
      Forward(Fwd("GET", "/x", headers={"host": "127.0.0.1"}))),
    V("absolute_form_other_scheme", "target", get(target=b"ftp://127.0.0.1/x"), Reject(400)),
    V("absolute_form_no_path", "target", get(target=b"http://127.0.0.1"), Reject(400)),
    V("absolute_form_userinfo", "target", get(target=b"http://u@127.0.0.1/x"), Reject(400)),
    V("absolute_form_empty_host", "target", get(target=b"http:///x"), Reject(400)),
    V("asterisk_options", "target", b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      Forward(Fwd("OPTIONS", "*"))),
    V("asterisk_get", "target", get(target=b"*"), Reject(400)),
    V("authority_form_get", "target", get(target=b"127.0.0.1:80"), Reject(400)),
    V("connect", "target", b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n", Reject(501)),
    V("relative_target", "target", get(target=b"foo"), Reject(400)),
    V("fragment", "target", get(target=b"/a#frag"), Reject(400)),
    V("ctl_in_target", "target", get(target=b"/a\x01b"), Reject(400)),
    V("tab_in_target", "target", get(target=b"/a\tb"), Reject(400)),
    V("del_in_target", "target", get(target=b"/a\x7fb"), Reject(400)),
    V("obs_text_in_target", "target", get(target=b"/caf\xe9"), Reject(400)),
    V("space_in_target", "target", get(target=b"/a b"), Reject(400)),

    # ---- versions and request-line syntax -----------------------------------
    V("http09", "version", b"GET /\r\n\r\n", Reject(400)),
    V("version_0_9", "version", get(version=b"HTTP/0.9"), Reject(505)),
    V("version_1_2", "version", get(version=b"HTTP/1.2"), Reject(505)),
    V("version_2_0", "version", get(version=b"HTTP/2.0"), Reject(505)),
    V("version_3_0", "version", get(version=b"HTTP/3.0"), Reject(505)),
    V("version_lower_case", "version", get(version=b"http/1.1"), Reject(400)),
    V("version_two_digits", "version", get(version=b"HTTP/1.10"), Reject(400)),
    V("version_no_minor", "version", get(version=b"HTTP/1"), Reject(400)),
    V("version_trailing_space", "version", get(version=b"HTTP/1.1 "), Reject(400)),
    V("h2_preface", "version", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Reject(505),
      note="HTTP/2 prior knowledge on an HTTP/1 port"),
    V("double_space", "version", b"GET  / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", Reject(400)),
    V("method_lower_case", "version", b"get / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      Forward(Fwd("get", "/", local=405)),
      note="methods are case-sensitive tokens: 'get' is an unknown method, forwarded as sent"),
    V("method_unknown", "version", b"FOO /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      Forward(Fwd("FOO", "/x", local=405))),
    V("method_unknown_prefix", "version", post([b"Content-Length: 5"], b"hello", method=b"PROPFINDX"),
      Forward(Fwd("PROPFINDX", "/", b"hello", local=405))),
    V("method_not_token", "version", b"F(O /x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", Reject(400)),
    V("method_unknown_dup_cl", "version",
      post([b"Content-Length: 5", b"Content-Length: 5"], b"hello", method=b"X-SYNC"),
      Forward(Fwd("X-SYNC", "/", b"hello", headers={"content-length": "5"}, local=405))),
    V("leading_crlf", "version", b"\r\n" + get(target=b"/lead"), Forward(Fwd("GET", "/lead"))),

    # ---- limits --------------------------------------------------------------
    V("request_line_9k", "limits", get(target=b"/" + b"a" * 9000), Reject(414)),
    V("request_line_just_under_8k", "limits", get(target=b"/" + b"b" * 8000),
      Forward(Fwd("GET", "/" + "b" * 8000))),
    V("headers_101", "limits", get([b"X-H%d: v" % i for i in range(100)]), Reject(431),
      note="Host + 100 more"),
    V("headers_100", "limits", get([b"X-H%d: v" % i for i in range(99)]),
      Forward(Fwd("GET", "/", headers={"x-h98": "v"}))),
    V("head_over_16k", "limits", get([b"X-Big: " + b"x" * 17000]), Reject(431)),

    # ---- Host ------------------------------------------------------------------
    V("host_duplicate", "host", get([b"Host: 127.0.0.1"]), Reject(400)),
    V("host_duplicate_other", "host", get([b"HOST: 127.0.0.1:81"]), Reject(400)),
    V("host_missing_1_1", "host", get(host=False), Reject(400)),
    V("host_missing_1_0", "host", get(version=b"HTTP/1.0", host=False),
      Forward(Fwd("GET", "/"), close=True)),
    V("host_with_path", "host", get(host=False, headers=[b"Host: 127.0.0.1/x"]), Reject(400)),
    V("host_with_space", "host", get(host=False, headers=[b"Host: 127.0.0.1 x"]), Reject(400)),
    V("host_with_userinfo", "host", get(host=False, headers=[b"Host: u@127.0.0.1"]), Reject(400)),

    # ---- Upgrade ---------------------------------------------------------------
    V("upgrade_h2c", "upgrade",
      get([b"Connection: Upgrade, HTTP2-Settings", b"Upgrade: h2c", b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"]),
      Forward(Fwd("GET", "/", absent=("upgrade", "http2-settings", "connection")))),
    V("upgrade_h2c_upper", "upgrade",
      get([b"Connection: upgrade", b"Upgrade: H2C"]),
      Forward(Fwd("GET", "/", absent=("upgrade", "connection")))),
    V("upgrade_h2c_in_list", "upgrade",
      get([b"Connection: upgrade", b"Upgrade: foo/1, h2c"]),
      Forward(Fwd("GET", "/", absent=("upgrade", "connection")))),
    V("upgrade_without_connection", "upgrade", get([b"Upgrade: h2c"]),
      Forward(Fwd("GET", "/", absent=("upgrade",)))),

    # ---- hop-by-hop abuse --------------------------------------------------
    V("connection_names_content_length", "hop",
      post([b"Connection: content-length", b"Content-Length: 5"], b"hello"),
      Forward(Fwd("POST", "/", b"hello", chunked=False, headers={"content-length": "5"}))),
    V("connection_names_transfer_encoding", "hop",
      post([b"Connection: transfer-encoding", b"Transfer-Encoding: chunked"], CHUNKED_HELLO),
      Forward(Fwd("POST", "/", b"hello", chunked=True))),
    V("connection_names_host", "hop", get([b"Connection: host"]),
      Forward(Fwd("GET", "/", headers={"host": "127.0.0.1"}))),
    V("hop_headers_stripped", "hop",
      get([b"Connection: keep-alive, x-secret", b"Keep-Alive: timeout=5", b"X-Secret: 1", b"TE: trailers",
           b"Trailer: x", b"Proxy-Connection: keep-alive"]),
      Forward(Fwd("GET", "/", absent=("x-secret", "keep-alive", "te", "trailer", "proxy-connection")))),

    # ---- pipelining ------------------------------------------------------------
    V("pipelined_close_first", "pipeline",
      get([b"Connection: close"], target=b"/one") + get(target=b"/two"),
      Forward(Fwd("GET", "/one"), close=True)),
    V("pipelined_three", "pipeline",
      get(target=b"/1") + post([b"Content-Length: 3"], b"abc", target=b"/2") + get(target=b"/3"),
      Forward(Fwd("GET", "/1"), Fwd("POST", "/2", b"abc"), Fwd("GET", "/3"))),
    V("get_with_body", "pipeline", post([b"Content-Length: 5"], b"hello", method=b"GET"),
      Forward(Fwd("GET", "/", b"hello"))),
]


def by_name(name):
    for v in VECTORS:
        if v.name == name:
            return v
    raise KeyError(name)


def counts():
    """(rejected, forwarded) vector counts."""
    rej = sum(1 for v in VECTORS if isinstance(v.expect, Reject))
    return rej, len(VECTORS) - rej


if __name__ == "__main__":
    names = [v.name for v in VECTORS]
    assert len(names) == len(set(names)), "duplicate vector names"
    r, f = counts()
    print("%d vectors: %d rejected, %d forwarded normalised" % (len(VECTORS), r, f))
