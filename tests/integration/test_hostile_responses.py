"""Response safety and connection sync, end to end, on sync and gthread.

An application is a source of hostile bytes too: a status or header carrying
CR, LF or NUL would split the response, and a body longer or shorter than its
Content-Length would desynchronise the client (or a proxy reusing the
connection), so the next response is read from the wrong offset. These tests
check what reaches the wire:

* a bad status or header becomes a 500 with a log line, and none of the bad
  bytes are sent;
* a body longer than Content-Length is cut at the declared length and the
  connection closed; a shorter one closes the connection after the last byte;
* a request body the app does not read is never parsed as the next request
  (the classic "body holds a request" smuggle), whether Content-Length or
  chunked framed, and a pipelined request after it gets its own response.
"""

from __future__ import annotations

import time

import pytest
from hostile_support import (
    CLOSE_DEADLINE,
    IO_DEADLINE,
    Server,
    exchange,
    new_token,
    recv_until_close,
    run_server,
)
from httpraw import parse_responses, recv_response

H = "Host: example.test\r\n"


@pytest.fixture(scope="module", params=["sync", "gthread"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    kind = request.param
    extra = ["--threads", "4"] if kind == "gthread" else []
    with run_server(tmp_path_factory.mktemp(f"responses-{kind}"), kind, *extra) as srv:
        yield srv


@pytest.mark.parametrize(
    "which",
    ["bad-status-crlf", "bad-header-lf", "bad-header-cr", "bad-header-nul", "bad-header-name"],
)
def test_bad_status_or_header_from_app_is_500_never_on_the_wire(server: Server, which: str) -> None:
    token = new_token()
    log_start = len(server.log_text())
    got = exchange(
        server,
        f"GET /t/{token}/{which} HTTP/1.1\r\n{H}Connection: close\r\n\r\n".encode(),
        deadline=IO_DEADLINE,
    )
    resps, _ = parse_responses(got.data)
    assert got.closed
    assert [r.status for r in resps] == [500], got.data[:500]
    assert b"X-Injected" not in got.data
    assert b"never sent" not in got.data
    assert server.recorded_paths(token) == [f"/t/{token}/{which}"]
    server.proc.wait_for_log("ERROR", IO_DEADLINE, after=log_start)  # fails with the log
    server.assert_alive()


def test_body_longer_than_content_length_is_cut_and_closed(server: Server) -> None:
    token = new_token()
    payload = (
        f"GET /t/{token}/too-long HTTP/1.1\r\n{H}\r\n"
        f"GET /t/{token}/after HTTP/1.1\r\n{H}Connection: close\r\n\r\n"
    ).encode()
    got = exchange(server, payload, deadline=IO_DEADLINE)
    assert got.closed
    head, sep, body = got.data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200")
    assert b"Content-Length: 5" in head.split(b"\r\n") or b"content-length: 5" in head.lower()
    # Exactly the declared 5 bytes, then EOF: no tail, no second response.
    assert body == b"01234", got.data[:500]
    assert server.recorded_paths(token)[0] == f"/t/{token}/too-long"


def test_body_shorter_than_content_length_closes(server: Server) -> None:
    token = new_token()
    payload = (
        f"GET /t/{token}/too-short HTTP/1.1\r\n{H}\r\n"
        f"GET /t/{token}/after HTTP/1.1\r\n{H}Connection: close\r\n\r\n"
    ).encode()
    got = exchange(server, payload, deadline=IO_DEADLINE)
    assert got.closed, "a short body must end the connection, else the client waits forever"
    head, sep, body = got.data.partition(b"\r\n\r\n")
    assert sep and head.startswith(b"HTTP/1.1 200")
    # The next response must never be read as the missing 5 bytes.
    assert body == b"01234", got.data[:500]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_unread_body_holding_a_request_is_not_parsed(server: Server, framing: str) -> None:
    token = new_token()
    inner = f"GET /t/{token}/smuggled HTTP/1.1\r\n{H}\r\n"
    if framing == "chunked":
        framed = f"Transfer-Encoding: chunked\r\n\r\n{len(inner):x}\r\n{inner}\r\n0\r\n\r\n"
    else:
        framed = f"Content-Length: {len(inner)}\r\n\r\n{inner}"
    payload = (
        f"POST /t/{token}/noread HTTP/1.1\r\n{H}{framed}"
        f"GET /t/{token}/after HTTP/1.1\r\n{H}Connection: close\r\n\r\n"
    ).encode()
    got = exchange(server, payload, deadline=IO_DEADLINE)
    assert got.closed
    resps, rest = parse_responses(got.data)
    assert rest == b""
    paths = server.recorded_paths(token)
    assert f"/t/{token}/smuggled" not in paths, "the body of a request was parsed as a request"
    assert resps[0].status == 200 and f"/t/{token}/noread".encode() in resps[0].body
    if server.kind == "sync":
        # One response per connection, always.
        assert len(resps) == 1
        assert resps[0].header("connection") == "close"
        assert paths == [f"/t/{token}/noread"]
    else:
        # Keep-alive: the pipelined request gets its own, correct response.
        assert [r.status for r in resps] == [200, 200]
        assert f"/t/{token}/after".encode() in resps[1].body
        assert paths == [f"/t/{token}/noread", f"/t/{token}/after"]


def test_pipelined_requests_with_bodies_stay_in_sync(server: Server) -> None:
    """Three pipelined POSTs (CL, chunked, CL): each body goes to its own request."""
    token = new_token()
    payload = (
        f"POST /t/{token}/p1 HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nfirst"
        f"POST /t/{token}/p2 HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
        f"3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n"
        f"POST /t/{token}/p3 HTTP/1.1\r\n{H}Content-Length: 5\r\nConnection: close\r\n\r\nthird"
    ).encode()
    got = exchange(server, payload, deadline=IO_DEADLINE)
    assert got.closed
    resps, rest = parse_responses(got.data)
    assert rest == b""
    records = [(r["path"], r["body"]) for r in server.recorded() if token in r["path"]]
    if server.kind == "sync":
        assert [r.status for r in resps] == [200]
        assert records == [(f"/t/{token}/p1", "first")]
    else:
        assert [r.status for r in resps] == [200, 200, 200]
        assert records == [
            (f"/t/{token}/p1", "first"),
            (f"/t/{token}/p2", "second"),
            (f"/t/{token}/p3", "third"),
        ]


def test_keep_alive_only_on_gthread(server: Server) -> None:
    """sync closes after every response; gthread keeps the connection for the next request."""
    token = new_token()
    with server.connect() as s:
        s.sendall(f"GET /t/{token}/ka1 HTTP/1.1\r\n{H}\r\n".encode())
        first, extra = recv_response(s, time.monotonic() + IO_DEADLINE)
        assert first is not None and first.status == 200
        assert extra == b""
        conn = (first.header("connection") or "").lower()
        if server.kind == "sync":
            assert conn == "close"
            assert recv_until_close(s, time.monotonic() + CLOSE_DEADLINE).closed
            return
        assert conn != "close"
        s.sendall(f"GET /t/{token}/ka2 HTTP/1.1\r\n{H}Connection: close\r\n\r\n".encode())
        second, _ = recv_response(s, time.monotonic() + IO_DEADLINE)
        assert second is not None and second.status == 200
        assert f"/t/{token}/ka2".encode() in second.body
    assert server.recorded_paths(token) == [f"/t/{token}/ka1", f"/t/{token}/ka2"]


@pytest.mark.parametrize(
    "method,path", [("HEAD", "plain"), ("GET", "no-content"), ("GET", "not-modified")]
)
def test_bodyless_responses_leave_nothing_behind(server: Server, method: str, path: str) -> None:
    """HEAD, 204 and 304 carry no body even when the app yields one; the next
    pipelined response must start right after the head."""
    token = new_token()
    payload = (
        f"{method} /t/{token}/{path} HTTP/1.1\r\n{H}\r\n"
        f"GET /t/{token}/after HTTP/1.1\r\n{H}Connection: close\r\n\r\n"
    ).encode()
    got = exchange(server, payload, deadline=IO_DEADLINE)
    assert got.closed
    assert b"SHOULD-NOT-APPEAR" not in got.data
    head, sep, rest = got.data.partition(b"\r\n\r\n")
    assert sep and head.split(b" ")[1] in (b"200", b"204", b"304"), got.data[:300]
    if server.kind == "sync":
        assert rest == b""
        return
    # gthread: the next bytes are the next response, not a leftover body.
    assert rest.startswith(b"HTTP/1.1 200 "), got.data[:600]
    resps, tail = parse_responses(rest)
    assert len(resps) == 1 and tail == b""
    assert f"/t/{token}/after".encode() in resps[0].body


def test_app_swallowing_a_body_error_does_not_reopen_the_connection(server: Server) -> None:
    """The app catches the bad-chunk error from wsgi.input and answers 200 anyway:
    the bytes after the bad chunk must still never be parsed as a request."""
    token = new_token()
    payload = (
        f"POST /t/{token}/swallow HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
        f"zz\r\nGET /t/{token}/smuggled HTTP/1.1\r\n{H}\r\n"
    ).encode()
    got = exchange(server, payload, deadline=IO_DEADLINE)
    assert got.closed
    resps, rest = parse_responses(got.data)
    assert len(resps) == 1 and rest == b"", got.data[:600]
    records = [(r["path"], r["body"]) for r in server.recorded() if token in r["path"]]
    assert records == [(f"/t/{token}/swallow", "ERROR InvalidChunkSize")]


def test_response_after_a_body_error_announces_close(server: Server) -> None:
    """The connection will close (the parser is dead), so the response should say so."""
    token = new_token()
    payload = (
        f"POST /t/{token}/swallow HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\nzz\r\n"
    ).encode()
    got = exchange(server, payload, deadline=IO_DEADLINE)
    resps, _ = parse_responses(got.data)
    assert got.closed and len(resps) == 1
    assert (resps[0].header("connection") or "").lower() == "close"


def test_expect_continue_body_never_parsed_as_a_request(server: Server) -> None:
    """Expect: 100-continue, the app answers without reading the body, and the
    client sends the body anyway (RFC 9110 10.1.1 allows it): those bytes are
    the body, so a request inside them must never be served."""
    token = new_token()
    inner = f"GET /t/{token}/smuggled HTTP/1.1\r\n{H}\r\n".encode()
    with server.connect() as s:
        s.sendall(
            f"POST /t/{token}/noread HTTP/1.1\r\n{H}Expect: 100-continue\r\n"
            f"Content-Length: {len(inner)}\r\n\r\n".encode()
        )
        first, extra = recv_response(s, time.monotonic() + IO_DEADLINE)
        assert first is not None and first.status == 200
        assert not extra.startswith(b"HTTP/1.1 100"), "100 Continue sent for an unread body"
        try:
            s.sendall(
                inner + f"GET /t/{token}/after HTTP/1.1\r\n{H}Connection: close\r\n\r\n".encode()
            )
        except OSError:
            pass  # the server may already have closed: fine
        got = recv_until_close(s, time.monotonic() + IO_DEADLINE)
    assert got.closed
    paths = server.recorded_paths(token)
    assert f"/t/{token}/smuggled" not in paths
    # Either the body was discarded and the next request served, or the
    # connection was closed; in both cases nothing else.
    assert paths in ([f"/t/{token}/noread"], [f"/t/{token}/noread", f"/t/{token}/after"])
