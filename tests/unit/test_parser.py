"""RequestParser behaviour beyond the Gunicorn corpus: limits, framing,
keep-alive, trust-dependent headers, PROXY protocol, buffer handling and the
sans-IO contract (None / environ / bytes / b"" / dead after an error)."""

from __future__ import annotations

import pytest

from fastwsgi import errors
from fastwsgi._parser import RequestParser
from fastwsgi.config import ParserSettings

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def parse(data: bytes, **kwargs: object) -> tuple[RequestParser, dict[str, str]]:
    p = RequestParser(**kwargs)
    p.feed(data)
    env = p.next_head()
    assert env is not None
    return p, env


def body_of(p: RequestParser) -> bytes:
    out = b""
    for _ in range(10_000):
        chunk = p.read_body()
        assert chunk is not None, "body incomplete"
        if chunk == b"":
            return out
        out += chunk
    raise AssertionError("body never ended")


def drive(p: RequestParser, pieces: list[bytes]) -> None:
    """Feed pieces, then EOF, parsing heads and reading bodies as far as each allows."""
    in_body = False
    for piece in [*pieces, None]:
        if piece is None:
            p.feed_eof()
        else:
            p.feed(piece)
        for _ in range(10_000):
            if not in_body:
                if p.next_head() is None:
                    break
                in_body = True
            chunk = p.read_body()
            if chunk is None:
                break
            if chunk == b"":
                p.finish()
                in_body = False


def fails(data: bytes, exc: type[errors.ParseError], **kwargs: object) -> errors.ParseError:
    """The error class must not depend on how the input is split."""
    raised = []
    for step in (len(data) or 1, 1, 3):
        p = RequestParser(**kwargs)
        with pytest.raises(exc) as info:
            drive(p, [data[i : i + step] for i in range(0, len(data), step)])
        assert p.dead
        raised.append(info.value)
    return raised[0]


# --- the environ ---------------------------------------------------------


def test_environ_keys_exactly() -> None:
    p, env = parse(
        b"POST /a%20b/%E9?x=1&y=%20#frag HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Content-Type: text/plain\r\n"
        b"Content-Length: 2\r\n"
        b"X-Custom-Thing: one\r\n"
        b"x-custom-thing:  two \r\n"
        b"Accept: a\r\n"
        b"\r\nhi"
    )
    assert env == {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/a b/\xe9",
        "QUERY_STRING": "x=1&y=%20",
        "RAW_URI": "/a%20b/%E9?x=1&y=%20#frag",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com:8080",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "2",
        "HTTP_X_CUSTOM_THING": "one,two",
        "HTTP_ACCEPT": "a",
    }
    assert p.headers == [
        ("HOST", "example.com:8080"),
        ("CONTENT-TYPE", "text/plain"),
        ("CONTENT-LENGTH", "2"),
        ("X-CUSTOM-THING", "one"),
        ("X-CUSTOM-THING", "two"),
        ("ACCEPT", "a"),
    ]
    assert p.method == "POST" and p.version == (1, 1) and p.content_length == 2
    assert body_of(p) == b"hi"


def test_common_header_names_case_insensitive() -> None:
    _, env = parse(b"GET / HTTP/1.1\r\nhOsT: h\r\nuser-AGENT: ua\r\nCOOKIE: c=1\r\n\r\n")
    assert (
        env["HTTP_HOST"] == "h" and env["HTTP_USER_AGENT"] == "ua" and env["HTTP_COOKIE"] == "c=1"
    )


def test_obs_text_value_is_latin1() -> None:
    _, env = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Name: caf\xe9\r\n\r\n")
    assert env["HTTP_X_NAME"] == "caf\xe9"


def test_percent_decoding_keeps_invalid_escapes() -> None:
    _, env = parse(b"GET /%zz%4/%41%2f HTTP/1.1\r\nHost: h\r\n\r\n")
    assert env["PATH_INFO"] == "/%zz%4/A/"


def test_absolute_form_path() -> None:
    _, env = parse(b"GET http://user@h.example:81/p/q?z#f HTTP/1.1\r\nHost: h.example\r\n\r\n")
    assert env["PATH_INFO"] == "/p/q" and env["QUERY_STRING"] == "z"
    assert env["RAW_URI"] == "http://user@h.example:81/p/q?z#f"
    _, env = parse(b"GET http://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n")
    assert env["PATH_INFO"] == ""


def test_fresh_dict_each_request() -> None:
    p = RequestParser()
    p.feed(GET + GET)
    a = p.next_head()
    p.finish()
    b = p.next_head()
    assert a == b and a is not b


def test_casefold_and_unconventional_methods() -> None:
    _, env = parse(b"get / HTTP/1.1\r\nHost: h\r\n\r\n", permit_unconventional_http_method=True)
    assert env["REQUEST_METHOD"] == "get"
    _, env = parse(
        b"get / HTTP/1.1\r\nHost: h\r\n\r\n",
        permit_unconventional_http_method=True,
        casefold_http_method=True,
    )
    assert env["REQUEST_METHOD"] == "GET"
    fails(b"get / HTTP/1.1\r\nHost: h\r\n\r\n", errors.InvalidRequestMethod)
    fails(b"AB / HTTP/1.1\r\nHost: h\r\n\r\n", errors.InvalidRequestMethod)
    fails(b"A" * 21 + b" / HTTP/1.1\r\nHost: h\r\n\r\n", errors.InvalidRequestMethod)


def test_parser_settings_kwargs_are_accepted() -> None:
    p = RequestParser(**ParserSettings().as_kwargs())
    p.feed(GET)
    assert p.next_head() is not None


# --- header_map ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["drop", "refuse", "dangerous"])
def test_header_map(mode: str) -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: a\r\nX_Forwarded_For: b\r\n\r\n"
    if mode == "refuse":
        fails(data, errors.InvalidHeaderName, header_map=mode)
        return
    p, env = parse(data, header_map=mode)
    if mode == "drop":
        assert env["HTTP_X_FORWARDED_FOR"] == "a"
        assert ("X_FORWARDED_FOR", "b") not in p.headers
    else:
        assert env["HTTP_X_FORWARDED_FOR"] == "a,b"
        assert p.headers[-1] == ("X_FORWARDED_FOR", "b")


@pytest.mark.parametrize("mode", ["drop", "refuse", "dangerous"])
def test_forwarder_headers_pass_underscores_from_trusted_peers_only(mode: str) -> None:
    # Gunicorn 22+ forwarder_headers: a trusted front-end may send the listed
    # names with '_' whatever header_map says (nginx: proxy_set_header
    # SCRIPT_NAME /mnt); the same names from anyone else, and other
    # underscore names from the front-end, follow header_map.
    data = b"GET / HTTP/1.1\r\nHost: h\r\nscript_name: /mnt\r\nPath_Info: /p\r\n\r\n"
    p = RequestParser(header_map=mode)
    p.set_trusted(True)
    p.feed(data)
    env = p.next_head()
    assert env is not None
    assert (env["HTTP_SCRIPT_NAME"], env["HTTP_PATH_INFO"]) == ("/mnt", "/p")
    if mode == "refuse":
        fails(data, errors.InvalidHeaderName, header_map=mode)  # untrusted
    else:
        _, env = parse(data, header_map=mode)  # untrusted
        assert ("HTTP_SCRIPT_NAME" in env) == (mode == "dangerous")
    other = b"GET / HTTP/1.1\r\nHost: h\r\nX_User: a\r\nSCRIPT_NAME: /m\r\n\r\n"
    p = RequestParser(header_map=mode, forwarder_headers=("SCRIPT_NAME",))
    p.set_trusted(True)
    p.feed(other)
    if mode == "refuse":
        with pytest.raises(errors.InvalidHeaderName):
            p.next_head()
        return
    env = p.next_head()
    assert env is not None and env["HTTP_SCRIPT_NAME"] == "/m"
    assert ("HTTP_X_USER" in env) == (mode == "dangerous")


def test_forwarder_headers_star_and_none() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX_User: a\r\nSCRIPT_NAME: /m\r\n\r\n"
    p = RequestParser(forwarder_headers=("*",))
    p.set_trusted(True)
    p.feed(data)
    env = p.next_head()
    assert env is not None and (env["HTTP_X_USER"], env["HTTP_SCRIPT_NAME"]) == ("a", "/m")
    for names in [(), (b"SCRIPT_NAME", None, "É_X")]:  # none, or none that can match
        p = RequestParser(forwarder_headers=names)
        p.set_trusted(True)
        p.feed(data)
        env = p.next_head()
        assert env is not None and "HTTP_X_USER" not in env and "HTTP_SCRIPT_NAME" not in env


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        RequestParser(header_map="yes")
    with pytest.raises(ValueError):
        RequestParser(proxy_protocol="v3")


# --- strictness ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "exc"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", errors.MissingHost),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX : b\r\n\r\n", errors.InvalidHeaderName),
        (b"GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n y\r\n\r\n", errors.ObsoleteFolding),
        (b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\nHost: a\r\n\r\n", errors.InvalidRequestLine),
        (b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidHTTPVersion),
        (b"GET / HTTP/1.10\r\nHost: a\r\n\r\n", errors.InvalidHTTPVersion),
        (b"GET / HTTP/1.a\r\nHost: a\r\n\r\n", errors.InvalidHTTPVersion),
        (b"GET / HTTP/2.1\r\nHost: a\r\n\r\n", errors.InvalidHTTPVersion),
        (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.1\r\nHost: \t\r\n\r\n", errors.InvalidHeader),
        (b"GET / HTTP/1.0\r\nHost:\r\n\r\n", errors.InvalidHeader),
        (b"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n", errors.InvalidHeader),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\nContent-Length: 3\r\n\r\nabc",
            errors.InvalidHeader,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: ,\r\n\r\nabc",
            errors.InvalidHeader,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", errors.InvalidHeader),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, , chunked\r\n\r\n",
            errors.InvalidHeader,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , br, chunked\r\n\r\n",
            errors.UnsupportedTransferCoding,
        ),
        (b"GET / http/1.1\r\nHost: a\r\n\r\n", errors.InvalidHTTPVersion),
        (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", errors.InvalidRequestLine),
        (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),  # OPTIONS only
        (b"GET a:443 HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),  # CONNECT only
        (b"GET /\xc3 HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", errors.InvalidHeader),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", errors.InvalidHeader),
        (b"GET ftp:/x HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),
        (b"GET 1http://x/ HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),
        (b"GET http://[::1/ HTTP/1.1\r\nHost: a\r\n\r\n", errors.InvalidRequestLine),
        (b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", errors.ExpectationFailed),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: br, chunked\r\n\r\n",
            errors.UnsupportedTransferCoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n",
            errors.UnsupportedTransferCoding,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            errors.InvalidHeader,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            errors.InvalidHeader,
        ),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: identity\r\n\r\n", errors.InvalidHeader),
        (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", errors.InvalidHeader),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            errors.InvalidHeader,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
         errors.ObsoleteFolding),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", errors.InvalidHeader),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: Chunked\r\n\r\n",
            errors.InvalidHeader,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            errors.InvalidHeader,
        ),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", errors.InvalidHeader),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", errors.InvalidHeader),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789\r\n\r\n",
            errors.InvalidHeader,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            errors.InvalidHeader,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n",
            errors.InvalidHeader,
        ),
    ],
)
def test_rejected(data: bytes, exc: type[errors.ParseError]) -> None:
    err = fails(data, exc)
    assert err.status == exc.status


def test_statuses() -> None:
    assert errors.UnsupportedTransferCoding.status == 501
    assert errors.ExpectationFailed.status == 417
    assert errors.RequestBodyTooLarge.status == 413
    assert errors.LimitRequestLine.status == 414
    assert errors.LimitRequestHeaders.status == 431
    assert errors.MissingHost.status == 400
    assert errors.NoMoreData.status is None


def test_permit_missing_host() -> None:
    _, env = parse(b"GET / HTTP/1.1\r\n\r\n", permit_missing_host=True)
    assert "HTTP_HOST" not in env
    # HTTP/1.0 never needs Host
    parse(b"GET / HTTP/1.0\r\n\r\n")


def test_valid_hosts() -> None:
    for host in (b"a", b"a.b:1", b"[::1]", b"[::1]:80", b"0.0.0.0=5000", b"xn--e1a.example"):
        parse(b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")


def test_empty_host_only_when_the_target_names_the_authority() -> None:
    # RFC 9110 4.2.1: an http URI with an empty host is invalid; an
    # absolute- or authority-form target carries its own (RFC 9112 3.2.2).
    err = fails(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", errors.InvalidHeader)
    assert err.status == 400 and "empty Host" in str(err)
    _, env = parse(b"GET http://a/b HTTP/1.1\r\nHost:\r\n\r\n")
    assert env["HTTP_HOST"] == "" and env["PATH_INFO"] == "/b"
    parse(b"CONNECT a:443 HTTP/1.1\r\nHost:\r\n\r\n")


@pytest.mark.parametrize("minor", b"23456789")
def test_higher_minor_version_is_served_as_http11(minor: int) -> None:
    # RFC 9110 2.5: a higher minor version is answered as the highest we speak.
    p, env = parse(b"POST / HTTP/1.%c\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"3\r\nabc\r\n0\r\n\r\n" % minor)
    assert p.version == (1, 1) and env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert p.keep_alive and body_of(p) == b"abc"


@pytest.mark.parametrize(
    "value",
    [b", chunked", b"chunked,", b" , chunked , ", b",,chunked", b"gzip, , chunked"],
)
def test_empty_te_elements_are_ignored(value: bytes) -> None:
    # RFC 9110 5.6.1: a recipient ignores empty list elements.
    data = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: " + value + b"\r\n\r\n"
    p, _ = parse(data + b"3\r\nabc\r\n0\r\n\r\n")
    assert p.chunked and body_of(p) == b"abc"
    p, _ = parse(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert p.chunked and body_of(p) == b""


def test_strip_header_spaces() -> None:
    _, env = parse(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", strip_header_spaces=True)
    assert env["HTTP_HOST"] == "h"


def test_obs_fold_permitted_joins_with_space() -> None:
    p, env = parse(
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\tc \r\n\r\n", permit_obsolete_folding=True
    )
    assert env["HTTP_X"] == "a b c"
    assert p.headers[-1] == ("X", "a b c")


# --- limits ----------------------------------------------------------------


def test_request_line_limit() -> None:
    line = b"GET /" + b"a" * 4080 + b" HTTP/1.1\r\n"  # 4094 bytes before CRLF
    assert len(line) - 2 == 4094
    parse(line + b"Host: h\r\n\r\n")
    fails(b"GET /a" + b"a" * 4080 + b" HTTP/1.1\r\nHost: h\r\n\r\n", errors.LimitRequestLine)
    # the limit is capped at 8190 like Gunicorn
    fails(
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n",
        errors.LimitRequestLine,
        limit_request_line=100000,
    )


def test_field_limits() -> None:
    ok = (
        b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 95 + b"\r\n\r\n"
    )  # field line 100 bytes with CRLF
    parse(ok, limit_request_field_size=100)
    fails(ok, errors.LimitRequestHeaders, limit_request_field_size=99)
    many = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: 1\r\n" * 4 + b"\r\n"
    parse(many, limit_request_fields=5)
    fails(many, errors.LimitRequestHeaders, limit_request_fields=4)


def test_header_block_total_limit() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: " + b"v" * 500 + b"\r\n" + b"\r\n"
    parse(data, limit_request_headers_total=600)
    fails(data, errors.LimitRequestHeaders, limit_request_headers_total=400)
    # an endless header stream is cut off without waiting for its end
    p = RequestParser(limit_request_headers_total=1000)
    p.feed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(errors.LimitRequestHeaders):
        for _ in range(1000):
            p.feed(b"X: y\r\n")
            assert p.next_head() is None


def test_limit_request_body_content_length() -> None:
    parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", limit_request_body=10)
    err = fails(
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n",
        errors.RequestBodyTooLarge,
        limit_request_body=10,
    )
    assert err.status == 413


def test_limit_request_body_chunked() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    p, _ = parse(head + b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", limit_request_body=10)
    assert body_of(p) == b"helloworld"
    p, _ = parse(head + b"5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", limit_request_body=10)
    with pytest.raises(errors.RequestBodyTooLarge):
        body_of(p)
    assert p.dead


# --- chunked ---------------------------------------------------------------

CHUNKED = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "exc"),
    [
        (b"fffffffffffffffff\r\n", errors.InvalidChunkSize),  # 17 digits
        (b"ffffffffffffffff\r\n", errors.InvalidChunkSize),  # 2**64-1 overflows int64
        (b"0x5\r\nhello\r\n0\r\n\r\n", errors.InvalidChunkSize),
        (b"5 ;\r\nhello\r\n0\r\n\r\n", errors.InvalidChunkExtension),
        (b"5;a=\r\nhello\r\n0\r\n\r\n", errors.InvalidChunkExtension),
        (b'5;a="x\r\nhello\r\n0\r\n\r\n', errors.InvalidChunkExtension),
        (b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", errors.InvalidChunkSize),
        (b"5\r\nhelloXX0\r\n\r\n", errors.ChunkMissingTerminator),
        (b"5\r\nhello\r\n0\r\nX: a\nY: b\r\n\r\n", errors.InvalidHeader),
        (b"5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n", errors.InvalidHeaderName),
        (b"5\r\nhello\r\n0\r\nAuthorization: x\r\n\r\n", errors.InvalidHeaderName),
        (b"5\r\nhello\r\n0\r\nHost: x\r\n\r\n", errors.InvalidHeaderName),
        (b"5\r\nhello\r\n0\r\nContent-Length: 1\r\n\r\n", errors.InvalidHeaderName),
        (b"5\r\nhello\r\n0\r\nTransfer-Encoding: x\r\n\r\n", errors.InvalidHeaderName),
        (b"5\r\nhello\r\n0\r\nTE: x\r\n\r\n", errors.InvalidHeaderName),
        (b"5\nhello\r\n0\r\n\r\n", errors.InvalidChunkSize),
        (b"5;a\rb\r\nhello\r\n0\r\n\r\n", errors.InvalidChunkExtension),
        (b"-1\r\n", errors.InvalidChunkSize),
    ],
    ids=[
        "17-digits",
        "u64-max",
        "0x-prefix",
        "ws-before-semicolon",
        "ext-without-value",
        "ext-unterminated-quote",
        "line-over-4096",
        "no-crlf-after-data",
        "trailer-bare-lf",
        "trailer-Trailer",
        "trailer-Authorization",
        "trailer-Host",
        "trailer-Content-Length",
        "trailer-Transfer-Encoding",
        "trailer-TE",
        "bare-lf-after-size",
        "bare-cr-in-extension",
        "negative-size",
    ],
)
def test_chunked_rejected(body: bytes, exc: type[errors.ParseError]) -> None:
    err = fails(CHUNKED + body, exc)
    assert err.status == 400


def test_chunk_extensions_and_trailers() -> None:
    p, _ = parse(
        CHUNKED
        + b'3 ; a = b ; c="q\\"d" ;e\r\nabc\r\n000\r\nX-Trail: 1\r\nX_Dropped: 2\r\nServer-Timing: t\r\n\r\n'
        + b"GET",
    )
    assert body_of(p) == b"abc"
    assert p.trailers == [("X-TRAIL", "1"), ("SERVER-TIMING", "t")]
    assert p.buffered == 3  # the next request's bytes stay buffered


def test_large_chunk_streams_without_holding_it_all() -> None:
    p = RequestParser()
    p.feed(CHUNKED + b"100000\r\n")
    assert p.next_head() is not None
    got = 0
    for _ in range(64):
        p.feed(b"x" * 16384)
        data = p.read_body()
        assert data is not None
        got += len(data)
        assert p.buffered < 20000
    p.feed(b"\r\n0\r\n\r\n")
    assert p.read_body() == b""
    assert got == 0x100000


# --- keep-alive, expect, scheme --------------------------------------------


@pytest.mark.parametrize(
    ("head", "keep"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\n", True),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n", False),
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nConnection: close\r\n", False),
        (b"GET / HTTP/1.0\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: foo,  keep-alive \r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n", False),
        (b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n", False),
        (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n", False),
    ],
)
def test_keep_alive(head: bytes, keep: bool) -> None:
    p, _ = parse(head + b"\r\n")
    assert p.keep_alive is keep


def test_expect_continue() -> None:
    p, _ = parse(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
    assert p.expect_continue
    p, _ = parse(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert not p.expect_continue  # RFC 9110 10.1.1: ignored in HTTP/1.0


def test_secure_scheme_headers_need_trust() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\n\r\n"
    p, env = parse(data)
    assert p.url_scheme == "http"  # untrusted by default
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    p = RequestParser()
    p.set_trusted(True)
    p.feed(data)
    p.next_head()
    assert p.url_scheme == "https"
    p = RequestParser(secure_scheme_headers={"X-Scheme": "https"})
    p.set_trusted(True)
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nx-scheme: https\r\n\r\n")
    p.next_head()
    assert p.url_scheme == "https"


def test_conflicting_scheme_headers() -> None:
    p = RequestParser()
    p.set_trusted(True)
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n")
    with pytest.raises(errors.InvalidSchemeHeaders):
        p.next_head()


# --- PROXY protocol --------------------------------------------------------

V2_IPV4 = (
    b"\r\n\r\n\x00\r\nQUIT\n"
    + b"\x21\x11\x00\x0c"
    + bytes([10, 0, 0, 1, 10, 0, 0, 2])
    + (1234).to_bytes(2, "big")
    + (80).to_bytes(2, "big")
)


@pytest.mark.parametrize("mode", ["v1", "auto"])
def test_proxy_v1(mode: str) -> None:
    p = RequestParser(proxy_protocol=mode)
    p.set_proxy_allowed(True)
    data = b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 443\r\n" + GET
    for i in range(len(data)):
        p.feed(data[i : i + 1])
        env = p.next_head()
    assert env is not None
    assert p.proxy_info == ("2001:db8::1", 5000, "2001:db8::2", 443)


@pytest.mark.parametrize("mode", ["v2", "auto"])
def test_proxy_v2(mode: str) -> None:
    p = RequestParser(proxy_protocol=mode)
    p.set_proxy_allowed(True)
    p.feed(V2_IPV4 + GET)
    assert p.next_head() is not None
    assert p.proxy_info == ("10.0.0.1", 1234, "10.0.0.2", 80)


def test_proxy_header_only_at_connection_start() -> None:
    p = RequestParser(proxy_protocol="auto")
    p.set_proxy_allowed(True)
    p.feed(GET + b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + GET)
    assert p.next_head() is not None
    p.finish()
    with pytest.raises(errors.InvalidRequestLine):  # "PROXY TCP4 ..." is a bad request line
        p.next_head()


def test_proxy_header_forbidden_when_not_allowed() -> None:
    p = RequestParser(proxy_protocol="auto")
    p.feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + GET)
    with pytest.raises(errors.ForbiddenProxyRequest) as info:
        p.next_head()
    assert info.value.status == 403


def test_proxy_optional_and_off() -> None:
    p = RequestParser(proxy_protocol="auto")
    p.set_proxy_allowed(True)
    p.feed(GET)
    assert p.next_head() is not None and p.proxy_info is None
    p = RequestParser()  # off: a PROXY line is just a bad request
    p.set_proxy_allowed(True)
    p.feed(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n" + GET)
    with pytest.raises(errors.ParseError):
        p.next_head()


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4\x00x 5.6.7.8 1 2\r\n",
        b"PROXY " + b"x" * 200,
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c" + bytes(12),  # version 3
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + bytes(12),  # UDP
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x0c" + bytes(12),  # IPv6 with 12 bytes
    ],
)
def test_proxy_invalid(data: bytes) -> None:
    p = RequestParser(proxy_protocol="auto")
    p.set_proxy_allowed(True)
    p.feed(data + GET)
    with pytest.raises(errors.InvalidProxyLine):
        p.next_head()


# --- sans-IO contract ------------------------------------------------------


def test_need_more_data_until_complete() -> None:
    p = RequestParser()
    for i in range(len(GET) - 1):
        p.feed(GET[i : i + 1])
        assert p.next_head() is None
    p.feed(GET[-1:])
    assert p.next_head() is not None


def test_trailing_bytes_stay_buffered() -> None:
    p, _ = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HT")
    assert p.read_body(2) == b"ab"
    assert p.read_body() == b"c"
    assert p.read_body() == b""
    assert p.buffered == len(b"GET / HT")
    p.finish()
    assert p.next_head() is None
    p.feed(b"TP/1.1\r\nHost: h\r\n\r\n")
    assert p.next_head()["PATH_INFO"] == "/"


def test_accepts_bytearray_and_memoryview() -> None:
    p = RequestParser()
    p.feed(bytearray(GET[:10]))
    p.feed(memoryview(GET)[10:])
    assert p.next_head() is not None


def test_buffer_grows_and_compacts() -> None:
    p = RequestParser()
    big = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 200000\r\n\r\n"
    p.feed(big + b"z" * 200000)
    assert p.next_head() is not None
    assert p.read_body() == b"z" * 200000
    assert p.read_body() == b""
    for _ in range(200):  # many small requests: the buffer must not creep
        p.feed(GET)
        assert p.next_head() is not None
        assert p.read_body() == b""
    assert p.buffered == 0


def test_dead_after_error() -> None:
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n")
    with pytest.raises(errors.InvalidHeaderName):
        p.next_head()
    assert p.dead
    for call in (lambda: p.feed(GET), p.next_head, p.read_body, p.finish, p.feed_eof):
        with pytest.raises(errors.InvalidHeaderName):
            call()


def test_feed_eof() -> None:
    p = RequestParser()
    p.feed_eof()  # clean close between requests: no error
    assert p.next_head() is None
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHo")
    with pytest.raises(errors.NoMoreData) as info:
        p.feed_eof()
    assert info.value.status is None
    p = RequestParser()
    p.feed(GET)
    p.feed_eof()  # a complete head is still served
    assert p.next_head() is not None
    # Content-Length body cut short: ends early, no keep-alive
    p, _ = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    p.feed_eof()
    assert p.read_body() == b"abc"
    assert p.read_body() == b""
    assert not p.keep_alive
    # chunked body cut short inside data
    p, _ = parse(CHUNKED + b"5\r\nhe")
    assert p.read_body() == b"he"
    p.feed_eof()
    with pytest.raises(errors.NoMoreData):
        p.read_body()
    # ... or missing only the final CRLF
    p, _ = parse(CHUNKED + b"0\r\n")
    p.feed_eof()
    with pytest.raises(errors.ChunkMissingTerminator):
        p.read_body()


def test_misuse_is_not_a_parse_error() -> None:
    p = RequestParser()
    with pytest.raises(RuntimeError):
        p.read_body()
    p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\na")
    p.next_head()
    with pytest.raises(RuntimeError):
        p.finish()
    with pytest.raises(RuntimeError):
        p.next_head()
    with pytest.raises(ValueError):
        p.read_body(0)
    assert not p.dead


def test_leading_empty_line() -> None:
    parse(b"\r\n" + GET)
    fails(b"\r\n\r\n" + GET, errors.InvalidRequestLine)


def test_pooled_buffers_start_clean() -> None:
    # a dead parser's buffers are reused by the next one: nothing may leak over
    for _ in range(40):
        p = RequestParser()
        p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\nleftover")
        assert p.next_head() is not None
        del p
        q = RequestParser()
        assert q.buffered == 0
        q.feed(GET)
        env = q.next_head()
        assert env is not None and env["HTTP_HOST"] == "example.com"
        assert q.read_body() == b""
