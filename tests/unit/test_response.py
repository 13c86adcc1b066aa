"""The sans-IO response writer: validation, framing, one-buffer heads.

Every test parses what ``Response`` produces with h11 (an independent HTTP/1.1
implementation) where the bytes are meant to be a valid response, so the
framing is checked by a second opinion, not by re-reading our own code.
"""

from __future__ import annotations

import random
import re
import time
from email.utils import formatdate, parsedate_to_datetime

import h11
import pytest

from fastwsgi._response import SMALL_BODY, Response, error_response, http_date_header
from fastwsgi.errors import ResponseError


def wire(resp: Response, items: list[bytes], last_hint: bool = False) -> bytes:
    out = []
    for i, item in enumerate(items):
        framed = resp.frame(item, last_hint and i == len(items) - 1)
        out.append(framed if isinstance(framed, bytes) else b"".join(framed))
    out.append(resp.finish())
    return b"".join(out)


def h11_read(data: bytes, method: bytes = b"GET") -> tuple[h11.Response, bytes, bool]:
    """Parse a response with h11: (head, body, ended-by-framing)."""
    client = h11.Connection(h11.CLIENT)
    headers = [("Host", "x")]
    client.send(h11.Request(method=method, target="/", headers=headers))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    head = None
    body = b""
    complete = False
    for _ in range(10_000):
        ev = client.next_event()
        if isinstance(ev, h11.Response):
            head = ev
        elif isinstance(ev, h11.Data):
            body += ev.data
        elif isinstance(ev, h11.EndOfMessage):
            complete = True
            break
        elif ev is h11.NEED_DATA:
            client.receive_data(b"")  # close: lets a close-delimited body end
            continue
        elif ev is h11.PAUSED or isinstance(ev, h11.ConnectionClosed):
            break
    assert head is not None
    return head, body, complete


def hdrs(head: h11.Response) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in head.headers}


# --- framing -------------------------------------------------------------------------


def test_known_length_single_item_is_one_buffer_with_content_length() -> None:
    r = Response(keep_alive=True, server=b"fastwsgi/test")
    r.start("200 OK", [("Content-Type", "text/plain")])
    out = r.frame(b"hello", True)
    assert isinstance(out, bytes)
    assert out.endswith(b"\r\n\r\nhello")
    assert r.finish() == b""
    head, body, complete = h11_read(out)
    assert head.status_code == 200
    assert hdrs(head)[b"content-length"] == b"5"
    assert hdrs(head)[b"server"] == b"fastwsgi/test"
    assert hdrs(head)[b"connection"] == b"keep-alive"
    assert body == b"hello" and complete
    assert r.keep_alive and r.complete


@pytest.mark.parametrize("n", [0, 1, 9, 10, 99, 100, 12345, 10**17, 10**18 - 1])
def test_content_length_digits_round_trip(n: int) -> None:
    # Parsed and written by hand (no int(), no snprintf): every digit count.
    r = Response(keep_alive=True)
    r.start("200 OK", [("Content-Length", f"  {n}\t")])
    out = r.frame(b"", False)
    assert f"\r\nContent-Length: {n}\r\n".encode() in out
    assert out.count(b"Content-Length") == 1


@pytest.mark.parametrize("size", [1, 9, 10, 15, 16, 255, 256, 4095, 4096, 16384, 16385, 70000])
def test_chunk_sizes_are_lower_case_hex(size: int) -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    data = wire(r, [b"x", b"y" * size])
    assert b"\r\n%x\r\n" % size in data
    head, body, complete = h11_read(data)
    assert body == b"x" + b"y" * size and complete


def test_streamed_http11_keepalive_is_chunked() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    data = wire(r, [b"a" * 10, b"", b"b" * 3])
    head, body, complete = h11_read(data)
    assert hdrs(head)[b"transfer-encoding"] == b"chunked"
    assert body == b"a" * 10 + b"b" * 3 and complete
    assert r.keep_alive


def test_streamed_http11_without_keepalive_is_still_chunked() -> None:
    # The sync worker closes after every response: chunked all the same, so
    # the terminator tells a complete body from one cut short (issue 18).
    r = Response(keep_alive=False)
    r.start("200 OK", [])
    data = wire(r, [b"abc", b"def"])
    assert b"Transfer-Encoding: chunked\r\n" in data
    assert b"content-length" not in data.lower()
    assert b"Connection: close\r\n" in data
    assert data.endswith(b"\r\n0\r\n\r\n")
    head, body, complete = h11_read(data)
    assert body == b"abcdef" and complete
    assert not r.keep_alive


def test_streamed_http11_cut_before_finish_reads_as_incomplete() -> None:
    # An app that fails mid-stream: the worker sends no terminator.
    r = Response(keep_alive=False)
    r.start("200 OK", [])
    data = wire(r, [b"abc", b"def"])[: -len(b"0\r\n\r\n")]
    with pytest.raises(h11.RemoteProtocolError, match="incomplete chunked read"):
        h11_read(data)


def test_http10_streamed_is_close_delimited_even_if_keepalive_wanted() -> None:
    r = Response(keep_alive=True, http11=False)
    r.start("200 OK", [])
    data = wire(r, [b"abc", b"def"])
    assert b"Transfer-Encoding" not in data
    assert b"Connection: close\r\n" in data
    head, body, _ = h11_read(data)
    assert body == b"abcdef"
    assert not r.keep_alive


def test_http10_keepalive_with_length_says_keep_alive() -> None:
    r = Response(keep_alive=True, http11=False)
    r.start("200 OK", [("Content-Length", "3")])
    data = wire(r, [b"abc"])
    assert b"Connection: keep-alive\r\n" in data
    assert r.keep_alive


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified", "101 Switching"])
def test_no_body_statuses_send_no_body(status: str) -> None:
    r = Response(keep_alive=True)
    r.start(status, [("Content-Length", "5")] if status.startswith("304") else [])
    data = wire(r, [b"ignored body"])
    assert data.endswith(b"\r\n\r\n")
    assert b"ignored" not in data
    assert b"Transfer-Encoding" not in data
    if status.startswith("304"):
        # 304 keeps the app's Content-Length (it describes the GET).
        assert b"Content-Length: 5\r\n" in data
    else:
        assert b"Content-Length" not in data
    assert r.sent == 0


def test_head_request_keeps_content_length_but_sends_no_body() -> None:
    r = Response(is_head=True, keep_alive=True)
    r.start("200 OK", [("Content-Length", "11")])
    data = wire(r, [b"hello world"])
    assert data.endswith(b"\r\n\r\n")
    assert b"Content-Length: 11\r\n" in data
    head, body, complete = h11_read(data, method=b"HEAD")
    assert body == b"" and complete
    assert r.keep_alive


def test_empty_response_gets_content_length_zero() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    data = r.finish()
    assert b"Content-Length: 0\r\n" in data
    head, body, complete = h11_read(data)
    assert body == b"" and complete and r.keep_alive


# --- Content-Length enforcement ----------------------------------------------------


def test_more_than_content_length_is_truncated_and_not_kept_alive() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [("Content-Length", "4")])
    data = wire(r, [b"ab", b"cdef", b"ghi"])
    assert data.endswith(b"\r\n\r\nabcd")
    assert r.overflow
    assert not r.keep_alive


def test_fewer_than_content_length_is_incomplete() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [("Content-Length", "10")])
    wire(r, [b"abc"])
    assert not r.complete
    assert not r.keep_alive


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "", "+3", "0x10", "1 2"])
def test_invalid_content_length_is_refused(value: str) -> None:
    r = Response()
    with pytest.raises(ResponseError):
        r.start("200 OK", [("Content-Length", value)])


def test_conflicting_content_lengths_are_refused_equal_ones_accepted() -> None:
    with pytest.raises(ResponseError):
        Response().start("200 OK", [("Content-Length", "3"), ("content-length", "4")])
    r = Response()
    r.start("200 OK", [("Content-Length", "3"), ("content-length", "3")])
    out = r.frame(b"abc")
    assert out.count(b"Content-Length") == 1


# --- validation: response splitting is impossible -------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("X-A", "a\r\nSet-Cookie: evil=1")],
        [("X-A", "a\nb")],
        [("X-A", "a\rb")],
        [("X-A", "a\x00b")],
        [("X-A", "a\x7fb")],
        [("X-A\r\nEvil", "1")],
        [("X A", "1")],
        [("X:A", "1")],
        [("", "1")],
        [("X-A", "\u20ac")],
        [(b"X-A", "1")],
        [("X-A", b"1")],
        [("X-A", 1)],
        [("X-A",)],
        ["X-A: 1"],
    ],
)
def test_bad_headers_raise_response_error(headers: list) -> None:
    r = Response()
    with pytest.raises(ResponseError):
        r.start("200 OK", headers)
    assert r.status is None


@pytest.mark.parametrize(
    "status",
    [
        "200 OK\r\nX: y",
        "200\nOK",
        "20 OK",
        "abc OK",
        "2000 OK",
        "200OK",
        "099 Low",
        b"200 OK",
        "200 \x00",
    ],
)
def test_bad_status_raises_response_error(status: object) -> None:
    with pytest.raises(ResponseError):
        Response().start(status, [])


def test_tab_in_value_is_allowed_and_ows_stripped() -> None:
    r = Response()
    r.start("200 OK", [("X-A", " \ta\tb \t")])
    out = r.frame(b"", True)
    assert b"X-A: a\tb\r\n" in out


def test_bare_three_digit_status_gets_its_space() -> None:
    r = Response()
    r.start("200", [])
    assert r.frame(b"x", True).startswith(b"HTTP/1.1 200 \r\n")


def test_headers_are_validated_before_anything_is_sent_and_can_be_replaced() -> None:
    r = Response()
    r.start("200 OK", [("X-A", "1")])
    r.start("500 Oops", [("X-B", "2")])  # exc_info path: replace before sending
    out = r.frame(b"x", True)
    assert out.startswith(b"HTTP/1.1 500 Oops\r\n")
    assert b"X-B: 2" in out and b"X-A" not in out
    with pytest.raises(ResponseError):
        r.start("200 OK", [])


def test_body_must_be_bytes() -> None:
    r = Response()
    r.start("200 OK", [])
    with pytest.raises(ResponseError):
        r.frame("text")  # type: ignore[arg-type]
    r2 = Response()
    r2.start("200 OK", [])
    assert r2.frame(bytearray(b"ab"), True).endswith(b"ab")


def test_body_before_start_is_an_error() -> None:
    with pytest.raises(ResponseError):
        Response().frame(b"x")
    with pytest.raises(ResponseError):
        Response().finish()


# --- hop-by-hop headers ------------------------------------------------------------------


def test_hop_by_hop_headers_from_the_app_are_dropped() -> None:
    r = Response(keep_alive=True)
    r.start(
        "200 OK",
        [
            ("Transfer-Encoding", "chunked"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Sum"),
            ("Upgrade", "websocket"),
            ("Proxy-Authenticate", "Basic"),
            ("Connection", "keep-alive"),
            ("X-Kept", "yes"),
        ],
    )
    data = wire(r, [b"abc"], last_hint=True)
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    for name in (
        "Keep-Alive",
        "TE:",
        "Trailer",
        "Upgrade",
        "Proxy-Authenticate",
        "Transfer-Encoding",
    ):
        assert name not in head
    assert head.count("Connection:") == 1
    assert "X-Kept: yes" in head
    _, body, complete = h11_read(data)
    assert body == b"abc" and complete


def test_connection_close_from_app_is_honoured() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [("Connection", "foo, Close")])
    data = wire(r, [b"a", b"b"])
    assert b"Connection: close\r\n" in data
    # Still chunked: the terminator is what tells a complete body from a cut one.
    assert b"Transfer-Encoding: chunked\r\n" in data
    _, body, complete = h11_read(data)
    assert body == b"ab" and complete
    assert not r.keep_alive


def test_app_server_and_date_headers_replace_ours() -> None:
    r = Response(server=b"fastwsgi")
    r.start("200 OK", [("Server", "mine"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT")])
    out = r.frame(b"", True)
    assert out.count(b"Server:") == 1 and b"Server: mine" in out
    assert out.count(b"Date:") == 1


# --- large bodies and files ------------------------------------------------------------


def test_large_body_is_returned_as_buffers_for_writev() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    big = b"x" * (SMALL_BODY + 1)
    out = r.frame(big, True)
    assert isinstance(out, tuple)
    assert out[1] is big  # not copied
    assert b"Content-Length: %d" % len(big) in out[0]


def test_large_chunk_after_head_is_framed_without_copy() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    r.frame(b"a")
    big = b"y" * (SMALL_BODY + 5)
    out = r.frame(big)
    assert isinstance(out, tuple) and out[1] is big
    assert out[0] == b"%x\r\n" % len(big) and out[2] == b"\r\n"


def test_small_body_up_to_limit_is_one_buffer() -> None:
    r = Response()
    r.start("200 OK", [])
    out = r.frame(b"z" * SMALL_BODY, True)
    assert isinstance(out, bytes)


def test_frame_file_sets_length_and_truncates_to_content_length() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    prefix, n = r.frame_file(1000)
    assert n == 1000 and b"Content-Length: 1000\r\n" in prefix
    r.file_sent(n)
    assert r.finish() == b""
    assert r.keep_alive

    r = Response(keep_alive=True)
    r.start("200 OK", [("Content-Length", "10")])
    prefix, n = r.frame_file(1000)
    assert n == 10
    r.file_sent(n)
    r.finish()
    assert r.complete and r.keep_alive


def test_frame_file_after_streamed_head_is_a_chunk() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    first = r.frame(b"abc")
    prefix, n = r.frame_file(5)
    assert prefix == b"5\r\n" and n == 5
    r.file_sent(5)
    tail = r.finish()
    data = first + prefix + b"hello" + tail
    _, body, complete = h11_read(data)
    assert body == b"abchello" and complete


# --- misc -------------------------------------------------------------------------------


def test_date_header_is_rfc9110_imf_fixdate() -> None:
    line = http_date_header()
    assert re.fullmatch(
        rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT\r\n",
        line,
    )


def test_date_header_matches_email_formatdate_across_years_and_leap_days() -> None:
    # The stdlib's formatter is the second opinion; ours must agree on every
    # field, including leap days, century years and the epoch.
    fixed = [
        0,
        784111777,  # RFC 9110's example, Sun, 06 Nov 1994 08:49:37 GMT
        951782400,  # 2000-02-29
        4107542399,  # 2100-02-28 23:59:59 (2100 is not a leap year)
        4107542400,
        253402300799,  # 9999-12-31 23:59:59
    ]
    rng = random.Random(9110)
    for t in fixed + [rng.randrange(0, 253402300800) for _ in range(2000)]:
        expected = "Date: " + formatdate(t, usegmt=True) + "\r\n"
        assert http_date_header(t) == expected.encode("ascii"), t


def test_date_header_for_now_is_this_second() -> None:
    # time(NULL), which the header uses, reads glibc's coarse clock (vDSO): it
    # may trail time.time() by a clock tick, so across a second boundary it
    # can still say the previous second.
    before = int(time.time()) - 1
    line = http_date_header()
    after = int(time.time())
    assert line in {http_date_header(t) for t in range(before, after + 1)}


def test_date_header_rejects_a_timestamp_beyond_time_t() -> None:
    with pytest.raises(OverflowError):
        http_date_header(2**70)


def test_error_response_is_complete_and_closes() -> None:
    data = error_response(408, "Request Timeout", b"fastwsgi")
    head, body, complete = h11_read(data)
    assert head.status_code == 408
    assert hdrs(head)[b"connection"] == b"close"
    assert body == b"408 Request Timeout\n" and complete


def test_expect_length_frames_a_known_multi_part_body_with_content_length() -> None:
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    big = b"a" * (SMALL_BODY + 10)
    r.expect_length(len(big) + 3)
    first = r.frame(big)
    second = r.frame(b"xyz")
    data = b"".join(first) + second + r.finish()
    assert b"Content-Length: %d\r\n" % (len(big) + 3) in data
    assert b"Transfer-Encoding" not in data
    _, body, complete = h11_read(data)
    assert body == big + b"xyz" and complete and r.keep_alive
    # The app's own Content-Length wins.
    r = Response(keep_alive=True)
    r.start("200 OK", [("Content-Length", "2")])
    r.expect_length(100)
    assert r.content_length == 2


def test_every_kind_of_response_carries_one_date_of_now() -> None:
    # RFC 9110 6.6.1: an origin server with a clock MUST send Date. Checked on
    # each path that builds a head: one buffer, writev tuple, file, HEAD, 204,
    # chunked, and the server's own error answers.
    heads: list[bytes] = []
    before = time.time()
    r = Response()
    r.start("200 OK", [])
    heads.append(r.frame(b"x", True))
    r = Response()
    r.start("200 OK", [])
    heads.append(r.frame(b"y" * (SMALL_BODY + 1), True)[0])
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    heads.append(r.frame_file(10)[0])
    r = Response(keep_alive=True)
    r.start("204 No Content", [])
    heads.append(r.frame(b"", True))
    r = Response(keep_alive=True)
    r.start("200 OK", [])
    heads.append(r.frame(b"streamed"))
    heads.append(error_response(400, "Bad Request"))
    after = time.time()
    for head in heads:
        dates = re.findall(rb"\r\nDate: ([^\r]*)\r\n", head)
        assert len(dates) == 1, head
        when = parsedate_to_datetime(dates[0].decode()).timestamp()
        assert before - 2 <= when <= after + 1, (dates, before, after)
