"""The compiled Connection over a real socketpair: one request cycle at a time.

A server-side thread runs ``handle_request`` in a loop (as a worker would);
the test writes raw bytes on the other end and reads what comes back until
the server closes. Responses are split with a small reader that follows the
framing (Content-Length, chunked or close), so a framing mistake shows up as a
wrong body or a wrong number of responses.
"""

from __future__ import annotations

import hashlib
import io
import os
import select
import socket
import sys
import threading
import time
import wsgiref.validate
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fastwsgi._conn import (
    CLIENT_LEFT_AFTER,
    Connection,
    WorkerContext,
    accept,
)
from fastwsgi._selector import epoll_arm, pipe_drain, pipe_wake
from fastwsgi.config import Hooks, ParserSettings, WorkerSettings
from fastwsgi.errors import ParseError
from fastwsgi.heartbeat import HeartbeatPool
from fastwsgi.wsgi import FileWrapper

App = Callable[..., Iterable[bytes]]
PEER = ("10.1.2.3", 40000)
TRUSTED = ("127.0.0.1", 40000)


class RecLog:
    """Stands in for glogging.Logger: records calls."""

    def __init__(self, access: bool = False) -> None:
        self.records: list[tuple[str, str]] = []
        self.access_enabled = access
        self.accessed: list[tuple[Any, ...]] = []

    def _rec(self, level: str, msg: str, *args: Any) -> None:
        self.records.append((level, msg % args if args else msg))

    def debug(self, msg: str, *args: Any) -> None:
        self._rec("debug", msg, *args)

    def info(self, msg: str, *args: Any) -> None:
        self._rec("info", msg, *args)

    def warning(self, msg: str, *args: Any) -> None:
        self._rec("warning", msg, *args)

    def error(self, msg: str, *args: Any) -> None:
        self._rec("error", msg, *args)

    def critical(self, msg: str, *args: Any) -> None:
        self._rec("critical", msg, *args)

    def exception(self, msg: str, *args: Any) -> None:
        import traceback

        self._rec("exception", (msg % args if args else msg) + "\n" + traceback.format_exc())

    def access(self, environ: Any, status: Any, headers: Any, length: Any, dur: float) -> None:
        self.accessed.append((environ["PATH_INFO"], status, length))


class Response:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def split_responses(data: bytes, head_only: bool = False) -> list[Response]:
    out = []
    pos = 0
    for _ in range(1000):
        if pos >= len(data):
            break
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].decode("latin-1").split("\r\n")
        pos = end + 4
        _, code, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = [tuple(x.split(": ", 1)) for x in lines[1:]]
        resp = Response(int(code), reason, headers, b"")  # type: ignore[arg-type]
        if int(code) < 200:
            out.append(resp)
            continue
        cl = resp.header("Content-Length")
        if head_only or int(code) in (204, 304):
            pass
        elif resp.header("Transfer-Encoding") == "chunked":
            body = b""
            while True:
                eol = data.index(b"\r\n", pos)
                size = int(data[pos:eol], 16)
                pos = eol + 2
                if size == 0:
                    assert data[pos : pos + 2] == b"\r\n"
                    pos += 2
                    break
                body += data[pos : pos + size]
                assert data[pos + size : pos + size + 2] == b"\r\n"
                pos += size + 2
            resp.body = body
        elif cl is not None:
            resp.body = data[pos : pos + int(cl)]
            pos += int(cl)
        else:
            resp.body = data[pos:]
            pos = len(data)
        out.append(resp)
    return out


class Served:
    def __init__(self, data: bytes, keeps: list[bool], log: RecLog, conn: Connection):
        self.data = data
        self.keeps = keeps
        self.log = log
        self.conn = conn

    @property
    def responses(self) -> list[Response]:
        return split_responses(self.data)


def settings(**kw: Any) -> WorkerSettings:
    base = WorkerSettings(header_timeout=5.0, body_timeout=5.0, timeout=5.0)
    parser = kw.pop("parser", None)
    if parser:
        kw["parser"] = replace(ParserSettings(), **parser)
    return replace(base, **kw)


def serve(
    raw: bytes | Callable[[socket.socket], None],
    app: App,
    ws: WorkerSettings | None = None,
    client: Any = PEER,
    keepalive: bool = True,
    log: RecLog | None = None,
    hooks: Hooks | None = None,
    half_close: bool = True,
    server: Any = ("127.0.0.1", 8000),
    ctx: WorkerContext | None = None,
) -> Served:
    log = log or RecLog()
    if ctx is None:
        ctx = WorkerContext(ws or settings(), log, hooks, None, keepalive=keepalive)
    a, b = socket.socketpair()
    conn = Connection(ctx, a, client, server)
    keeps: list[bool] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(100):
                k = conn.handle_request(app)
                keeps.append(k)
                if not k:
                    break
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)
        finally:
            conn.close()

    t = threading.Thread(target=run)
    t.start()
    b.settimeout(10)
    try:
        if callable(raw):
            raw(b)
        else:
            b.sendall(raw)
            if half_close:
                b.shutdown(socket.SHUT_WR)
        chunks = []
        for _ in range(100_000):
            try:
                d = b.recv(1 << 20)
            except ConnectionResetError:
                break
            if not d:
                break
            chunks.append(d)
    finally:
        t.join(15)
        b.close()
    assert not t.is_alive()
    if errors:
        raise errors[0]
    return Served(b"".join(chunks), keeps, log, conn)


def hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


GET = b"GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
GET_CLOSE = b"GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"


# --- basic cycle and environ ------------------------------------------------------


def test_get_answers_once_with_content_length() -> None:
    s = serve(GET, hello)
    [r] = s.responses
    assert r.status == 200 and r.body == b"hello"
    assert r.header("Content-Length") == "5"
    assert r.header("Connection") == "keep-alive"
    assert s.keeps == [True, False]  # second call sees the client's EOF


def test_environ_is_complete_pep3333() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [])
        return []

    serve(GET, app)
    assert seen["wsgi.version"] == (1, 0)
    assert seen["wsgi.url_scheme"] == "http"
    assert seen["wsgi.errors"] is sys.stderr
    assert seen["wsgi.multithread"] is False
    assert seen["wsgi.multiprocess"] is True
    assert seen["wsgi.run_once"] is False
    assert seen["wsgi.input_terminated"] is True
    assert seen["wsgi.file_wrapper"] is FileWrapper
    assert seen["REQUEST_METHOD"] == "GET"
    assert seen["PATH_INFO"] == "/p"
    assert seen["QUERY_STRING"] == "q=1"
    assert seen["SCRIPT_NAME"] == ""
    assert seen["SERVER_NAME"] == "127.0.0.1"
    assert seen["SERVER_PORT"] == "8000"
    assert seen["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert seen["REMOTE_ADDR"] == PEER[0]
    assert seen["REMOTE_PORT"] == str(PEER[1])
    assert seen["HTTP_HOST"] == "example.com"
    assert seen["SERVER_SOFTWARE"].startswith("fastwsgi/")


def test_unix_socket_peer_and_server_from_host() -> None:
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.update(environ)
        start_response("200 OK", [])
        return []

    serve(b"GET / HTTP/1.1\r\nHost: site.test:8443\r\n\r\n", app, client="", server="/tmp/x.sock")
    assert seen["REMOTE_ADDR"] == ""
    assert "REMOTE_PORT" not in seen
    assert seen["SERVER_NAME"] == "site.test"
    assert seen["SERVER_PORT"] == "8443"


def test_pipelined_requests_answered_in_order_and_bodies_do_not_leak() -> None:
    reads: list[tuple[bytes, bytes, bytes]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        inp = environ["wsgi.input"]
        body = inp.read()
        # Past the end of this request's body: always b"", never the next request.
        reads.append((body, inp.read(), inp.readline()))
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode() + b":" + body]

    raw = (
        b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    s = serve(raw, app)
    assert [r.body for r in s.responses] == [b"/1:hello", b"/2:", b"/3:abc"]
    assert reads == [(b"hello", b"", b""), (b"", b"", b""), (b"abc", b"", b"")]


def _read_all(inp: Any, how: str) -> bytes:
    """All of wsgi.input through one method: read, readN (N at a time: every
    read but the last must return exactly N), readline, readlineN (at most N),
    readlines, iter."""
    parts: list[bytes] = []
    for _ in range(200_000):
        if how == "read":
            d = inp.read()
        elif how == "readlines":
            d = b"".join(inp.readlines())
        elif how.startswith("readline"):
            limit = int(how[8:] or -1)
            d = inp.readline(limit)
            assert limit < 0 or len(d) <= limit
        elif how.startswith("read"):
            d = inp.read(int(how[4:]))
        else:
            d = b"".join(iter(inp))
        if not d:
            break
        parts.append(d)
    if how.startswith("read") and how[4:].isdigit():
        assert all(len(p) == int(how[4:]) for p in parts[:-1])
    return b"".join(parts)


@pytest.mark.parametrize("how", ["read", "read3", "readline", "readline2", "readlines", "iter"])
def test_input_methods_on_a_chunked_body(how: str) -> None:
    body = b"line one\nline two\n\nlast"
    got: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        got.append(_read_all(environ["wsgi.input"], how))
        start_response("200 OK", [])
        return [b"ok"]

    chunked = (
        b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:5], body[5:7], body[7:]))
        + b"0\r\n\r\n"
    )
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + GET
    s = serve(raw, app)
    assert got[0] == body
    assert len(s.responses) == 2


BIG = bytes(range(256)) * 1200  # 300 KiB: several direct receives (DIRECT_MAX 256 KiB)


@pytest.mark.parametrize("how", ["read", "read10000", "read7", "readline", "iter"])
@pytest.mark.parametrize("pieces", [1, 37])
def test_large_content_length_body_arrives_intact_and_the_next_request_too(
    how: str, pieces: int
) -> None:
    # Big Content-Length bodies are received straight into the app's bytes
    # (past the input buffer) once the buffered part is used up: every read
    # method must still see the exact bytes in order, never read into the
    # pipelined request behind, whether the body arrives at once or trickles.
    got: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        got.append(_read_all(environ["wsgi.input"], how))
        start_response("200 OK", [])
        return [b"ok"]

    raw = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(BIG)
           + BIG + b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nend")

    def send(b: socket.socket) -> None:
        step = -(-len(raw) // pieces)
        for i in range(0, len(raw), step):
            b.sendall(raw[i:i + step])
        b.shutdown(socket.SHUT_WR)

    s = serve(send, app)
    assert len(got) == 2
    assert hashlib.sha256(got[0]).digest() == hashlib.sha256(BIG).digest()
    assert got[1] == b"end"
    assert [r.status for r in s.responses] == [200, 200]


def test_large_body_cut_short_is_a_disconnect_not_a_short_body() -> None:
    seen: list[str] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except OSError as exc:  # ClientDisconnected is an OSError
            seen.append(type(exc).__name__)
            raise
        start_response("200 OK", [])
        return [b"ok"]

    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 30000
    log = RecLog(access=True)
    s = serve(raw, app, log=log)  # half-closed after 30000 of the 100000 bytes
    assert seen == ["ClientDisconnected"]
    assert s.keeps == [False]
    # Not a server error: logged as nginx logs a client that left (499), and
    # nothing is sent.
    assert log.accessed == [("/", "499 Client Closed Request", 0)]
    assert s.data == b""


def test_large_body_that_stalls_times_out() -> None:
    seen: list[int | None] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except ParseError as exc:
            seen.append(exc.status)
            raise
        start_response("200 OK", [])
        return [b"ok"]

    def send(b: socket.socket) -> None:
        b.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
                  + b"x" * 30000)  # then nothing, and the socket stays open

    s = serve(send, app, ws=settings(body_timeout=0.3))
    assert seen == [408]
    assert s.responses[0].status == 408


def test_readline_splits_lines_exactly() -> None:
    lines: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        inp = environ["wsgi.input"]
        for _ in range(10):
            line = inp.readline()
            if not line:
                break
            lines.append(line)
        start_response("200 OK", [])
        return []

    serve(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\na\nbb\nccc\n", app)
    assert lines == [b"a\n", b"bb\n", b"ccc\n"]


def test_head_gets_no_body() -> None:
    s = serve(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + GET, hello)
    assert s.data.count(b"hello") == 1  # only the GET's body
    rs = split_responses(s.data.split(b"HTTP/1.1 200", 2)[1].join([b"HTTP/1.1 200", b""]), True)
    assert rs[0].status == 200


def test_http10_request_gets_close_and_no_chunking() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"a"
        yield b"b"

    s = serve(b"GET / HTTP/1.0\r\n\r\n", app, half_close=False)
    assert b"Transfer-Encoding" not in s.data
    assert s.data.endswith(b"\r\n\r\nab")
    assert s.keeps == [False]


def test_http10_keepalive_request_is_kept_alive_with_length() -> None:
    req = b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    s = serve(req + req, hello)
    rs = s.responses
    assert [r.body for r in rs] == [b"hello", b"hello"]
    assert all(r.header("Connection") == "keep-alive" for r in rs)
    assert s.keeps[:2] == [True, True]


# --- Expect: 100-continue -----------------------------------------------------------------


def test_100_continue_sent_when_the_app_reads() -> None:
    def client(sock: socket.socket) -> None:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        got = sock.recv(100)
        assert got == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        sock.shutdown(socket.SHUT_WR)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [body]

    s = serve(client, app)
    [r] = s.responses
    assert r.body == b"data"


def test_100_continue_not_sent_when_the_app_does_not_read() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
    s = serve(raw, hello)
    assert b"100 Continue" not in s.data
    [r] = s.responses
    assert r.body == b"hello"
    assert s.keeps == [False]  # the body may still come: do not reuse
    assert r.header("Connection") == "close"  # and the head says so


def test_expect_continue_without_a_body_keeps_the_connection() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n" + GET
    s = serve(raw, hello)
    rs = s.responses
    assert len(rs) == 2 and all(r.header("Connection") == "keep-alive" for r in rs)
    assert s.keeps == [True, True, False]


def test_body_error_caught_by_the_app_announces_close() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        try:
            environ["wsgi.input"].read()
        except ParseError:
            pass
        start_response("200 OK", [])
        return [b"swallowed"]

    s = serve(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", app)
    [r] = s.responses
    assert r.body == b"swallowed" and r.header("Connection") == "close"
    assert s.keeps == [False]


def test_body_too_big_to_drain_announces_close() -> None:
    big = 200_000  # above DRAIN_LIMIT: the server will not read it to reuse the connection

    def client(sock: socket.socket) -> None:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % big)

    s = serve(client, hello)
    [r] = s.responses
    assert r.body == b"hello" and r.header("Connection") == "close"
    assert s.keeps == [False]


# --- errors ----------------------------------------------------------------------------------


def test_parse_error_is_answered_and_closes() -> None:
    calls: list[int] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        calls.append(1)
        return hello(environ, start_response)

    s = serve(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n" + GET, app)
    [r] = s.responses
    assert r.status == 400
    assert r.header("Connection") == "close"
    assert calls == []
    assert s.keeps == [False]
    assert s.conn.fin_sent  # the answer carried the FIN (MSG_MORE + shutdown)


def test_partial_head_then_eof_closes_without_answer() -> None:
    s = serve(b"GET / HTTP/1.1\r\nHost:", hello)
    assert s.data == b""


def test_slow_head_gets_408() -> None:
    def client(sock: socket.socket) -> None:
        sock.sendall(b"GET / HTTP/1.1\r\n")  # and nothing more

    s = serve(client, hello, settings(header_timeout=0.3))
    [r] = s.responses
    assert r.status == 408


def test_idle_connection_times_out_silently() -> None:
    s = serve(lambda sock: None, hello, settings(header_timeout=0.3))
    assert s.data == b""


def test_app_exception_before_start_is_500_without_traceback() -> None:
    closed: list[int] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("secret detail")
            yield b""

        def close(self) -> None:
            closed.append(1)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        return Body()

    s = serve(GET, app)
    [r] = s.responses
    assert r.status == 500
    assert b"secret" not in s.data and b"Traceback" not in s.data
    assert closed == [1]
    assert s.conn.fin_sent
    assert any("secret detail" in m for lvl, m in s.log.records if lvl == "exception")
    assert s.keeps == [False]


def test_app_exception_after_start_closes_connection() -> None:
    closed: list[int] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"first"
            raise RuntimeError("boom")

        def close(self) -> None:
            closed.append(1)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [])
        return Body()

    s = serve(GET + GET, app)
    assert s.data.count(b"HTTP/1.1") == 1
    assert b"first" in s.data and not s.data.endswith(b"0\r\n\r\n")
    assert closed == [1]
    assert s.keeps == [False]


def test_crlf_in_app_header_is_500_and_never_on_the_wire() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
        return [b"body"]

    s = serve(GET, app)
    [r] = s.responses
    assert r.status == 500
    assert b"pwned" not in s.data


def test_exc_info_replaces_headers_before_sending() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("X-A", "1")])
        try:
            raise ValueError("x")
        except ValueError:
            start_response("503 Unavailable", [("X-B", "2")], sys.exc_info())
        return [b"sorry"]

    [r] = serve(GET, app).responses
    assert r.status == 503 and r.header("X-B") == "2" and r.header("X-A") is None


def test_exc_info_after_headers_sent_reraises() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        try:
            raise ValueError("late")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())
        yield b"never"

    s = serve(GET, app)
    assert b"never" not in s.data and b"500 Oops" not in s.data
    assert any("late" in m for _, m in s.log.records)


def test_second_start_response_without_exc_info_is_an_error() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"x"]

    [r] = serve(GET, app).responses
    assert r.status == 500


def test_write_callable_streams_before_returning() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"one,")
        write(b"two,")
        return [b"three"]

    [r] = serve(GET, app).responses
    assert r.body == b"one,two,three"
    assert r.header("Transfer-Encoding") == "chunked"


def test_more_than_content_length_truncated_and_closed() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "4")])
        yield b"ab"
        yield b"cdefgh"

    s = serve(GET + GET, app)
    assert s.data.endswith(b"\r\n\r\nabcd")
    assert s.keeps == [False]
    assert s.conn.fin_sent  # the truncated last bytes carried the FIN


def test_fewer_than_content_length_closes() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        return [b"abc", b""]

    s = serve(GET + GET, app)
    assert s.data.endswith(b"\r\n\r\nabc")
    assert s.keeps == [False]


def test_list_body_of_known_size_gets_content_length() -> None:
    parts = [os.urandom(20000), os.urandom(30000), b"end"]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [])
        return parts

    [r] = serve(GET, app).responses
    assert r.header("Content-Length") == str(sum(map(len, parts)))
    assert r.body == b"".join(parts)


def test_close_called_on_success() -> None:
    closed: list[int] = []

    class Body(list):  # type: ignore[type-arg]
        def close(self) -> None:
            closed.append(1)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("200 OK", [])
        return Body([b"a", b"b"])

    [r] = serve(GET, app).responses
    assert r.body == b"ab" and closed == [1]


def test_client_gone_mid_response_calls_close() -> None:
    closed = threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [])

        class Body:
            def __iter__(self) -> Iterator[bytes]:
                for _ in range(10_000):
                    yield b"x" * 65536

            def close(self) -> None:
                closed.set()

        return Body()

    def client(sock: socket.socket) -> None:
        sock.sendall(GET)
        sock.recv(1000)
        sock.close()

    log = RecLog()
    ctx = WorkerContext(settings(), log, None, None)
    a, b = socket.socketpair()
    conn = Connection(ctx, a, PEER, ("127.0.0.1", 80))
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(conn.handle_request(app)))
    t.start()
    client(b)
    t.join(15)
    conn.close()
    assert closed.is_set()
    assert result == [False]


def test_write_to_a_gone_client_raises_client_disconnected_in_the_app() -> None:
    from fastwsgi.wsgi import ClientDisconnected

    seen: list[BaseException] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [])
        try:
            for _ in range(100_000):
                write(b"y" * 65536)
        except OSError as exc:
            seen.append(exc)
            raise
        return []

    ctx = WorkerContext(settings(), RecLog(), None, None)
    a, b = socket.socketpair()
    conn = Connection(ctx, a, PEER, ("127.0.0.1", 80))
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(conn.handle_request(app)))
    t.start()
    b.sendall(GET)
    b.recv(1000)
    b.close()
    t.join(15)
    conn.close()
    assert result == [False]
    assert len(seen) == 1 and isinstance(seen[0], ClientDisconnected)


# --- unread bodies ----------------------------------------------------------------------------


def test_small_unread_body_is_drained_for_keepalive() -> None:
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789" + GET
    s = serve(raw, hello)
    assert len(s.responses) == 2
    assert s.keeps[:2] == [True, True]


def test_large_unread_body_closes() -> None:
    n = 10 * 1024 * 1024

    def client(sock: socket.socket) -> None:
        # One write: the server may answer and close before a second one.
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n + b"z" * 1000)

    s = serve(client, hello)
    [r] = s.responses
    assert r.body == b"hello"
    assert s.keeps == [False]


# --- proxies: scheme and SCRIPT_NAME -------------------------------------------------------


def _scheme_app(seen: list[str]) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(environ["wsgi.url_scheme"])
        start_response("200 OK", [])
        return []

    return app


def test_forwarded_proto_honoured_only_from_trusted_peer() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"
    seen: list[str] = []
    serve(raw, _scheme_app(seen), client=TRUSTED)
    serve(raw, _scheme_app(seen), client=PEER)
    serve(raw, _scheme_app(seen), settings(forwarded_allow_ips=("*",)), client=PEER)
    assert seen == ["https", "http", "https"]


def test_forwarded_allow_ips_matches_cidr_networks() -> None:
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"
    seen: list[str] = []
    nets = settings(forwarded_allow_ips=("192.0.2.1", "10.0.0.0/8", "2001:db8::/32"))
    for client in (
        ("10.1.2.3", 1),  # inside 10.0.0.0/8
        ("11.1.2.3", 1),  # outside
        ("::ffff:10.9.9.9", 1),  # IPv4-mapped, inside
        ("2001:db8::7", 1),  # inside the IPv6 network
        ("2001:db9::7", 1),  # outside
        ("192.0.2.1", 1),  # a plain address still matches
        ("10.1.2.3", 2),  # again (cached answer)
        ("not-an-ip", 1),
    ):
        serve(raw, _scheme_app(seen), nets, client=client)
    assert seen == ["https", "http", "https", "https", "http", "https", "https", "http"]


def test_unix_socket_peer_is_trusted_like_gunicorn() -> None:
    # No address to check: the socket file's permissions are the access control.
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n\r\n"
    seen: list[str] = []
    only = settings(forwarded_allow_ips=("192.0.2.1",))
    serve(raw, _scheme_app(seen), only, client="", server="/tmp/x.sock")
    serve(raw, _scheme_app(seen), only, client=("10.1.2.3", 1))
    assert seen == ["https", "http"]


def test_script_name_from_settings_strips_path_info() -> None:
    seen: list[tuple[str, str]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        start_response("200 OK", [])
        return []

    raw = b"GET /app/x/y HTTP/1.1\r\nHost: x\r\n\r\nGET /app HTTP/1.1\r\nHost: x\r\n\r\nGET /application HTTP/1.1\r\nHost: x\r\n\r\n"
    serve(raw, app, settings(script_name="/app"))
    assert seen == [("/app", "/x/y"), ("/app", ""), ("", "/application")]


def test_script_name_header_only_from_trusted_peer() -> None:
    seen: list[tuple[str, str]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        start_response("200 OK", [])
        return []

    raw = b"GET /mnt/x HTTP/1.1\r\nHost: x\r\nScript-Name: /mnt\r\n\r\n"
    serve(raw, app, client=TRUSTED)
    serve(raw, app, client=PEER)
    assert seen == [("/mnt", "/x"), ("", "/mnt/x")]


def test_script_name_underscore_header_from_trusted_peer_as_gunicorn() -> None:
    # nginx's "proxy_set_header SCRIPT_NAME /mnt;" (Gunicorn's forwarder_headers
    # default lets it through from forwarded_allow_ips); from anyone else it
    # is dropped (header_map=drop), and it never becomes HTTP_SCRIPT_NAME.
    seen: list[tuple[str, str, bool]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append((environ["SCRIPT_NAME"], environ["PATH_INFO"], "HTTP_SCRIPT_NAME" in environ))
        start_response("200 OK", [])
        return []

    raw = b"GET /mnt/x HTTP/1.1\r\nHost: x\r\nSCRIPT_NAME: /mnt/\r\n\r\n"
    serve(raw, app, client=TRUSTED)
    serve(raw, app, client=PEER)
    serve(raw, app, settings(parser={"forwarder_headers": ()}), client=TRUSTED)
    assert seen == [("/mnt", "/x", False), ("", "/mnt/x", False), ("", "/mnt/x", False)]


def test_proxy_protocol_sets_remote_addr_from_allowed_proxy_only() -> None:
    seen: list[tuple[str, str, str | None]] = []

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append((environ["REMOTE_ADDR"], environ["REMOTE_PORT"], environ.get("PROXY_ADDR")))
        start_response("200 OK", [])
        return []

    raw = b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 443\r\n" + GET
    ws = settings(parser={"proxy_protocol": "v1"})
    serve(raw, app, ws, client=TRUSTED)
    assert seen == [("192.0.2.7", "51000", "198.51.100.1")]
    s = serve(raw, app, ws, client=PEER)  # not in proxy_allow_ips
    assert len(seen) == 1
    assert s.responses[0].status in (400, 403)


# --- files -----------------------------------------------------------------------------------


def _file_app(path: Path, seek: int = 0, length: int | None = None, wrap: Any = None) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        f = open(path, "rb") if wrap is None else wrap(path)
        f.seek(seek)
        headers = [] if length is None else [("Content-Length", str(length))]
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f)

    return app


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_file_wrapper_honours_position_and_length(tmp_path: Path, use_sendfile: bool) -> None:
    data = os.urandom(300_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    ws = settings(sendfile=use_sendfile)
    [r] = serve(GET, _file_app(path), ws).responses
    assert r.body == data and r.header("Content-Length") == str(len(data))
    [r] = serve(GET, _file_app(path, seek=1000), ws).responses
    assert r.body == data[1000:]
    s = serve(GET + GET, _file_app(path, seek=10, length=5000), ws)
    assert [x.body for x in s.responses] == [data[10:5010]] * 2


@pytest.mark.parametrize("size", [1, 65_000, 65_536, 65_537, 70_000, 1 << 20])
@pytest.mark.parametrize("seek", [0, 3])
def test_sendfile_around_the_first_block_boundary(tmp_path: Path, size: int, seek: int) -> None:
    # The head and the file's first bytes (up to 64 KiB together) go out in
    # one writev, the rest with sendfile: every split must give the exact
    # bytes, with keep-alive intact for the request behind.
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    s = serve(GET + GET, _file_app(path, seek=min(seek, size)), settings(sendfile=True))
    want = data[min(seek, size):]
    assert [r.status for r in s.responses] == [200, 200]
    for r in s.responses:
        assert r.header("Content-Length") == str(len(want))
        assert hashlib.sha256(r.body).digest() == hashlib.sha256(want).digest()
    assert s.keeps[:2] == [True, True]


def test_sendfile_of_a_file_not_in_the_page_cache(tmp_path: Path) -> None:
    # The first block is read with RWF_NOWAIT (GIL held) and, when the pages
    # must come from the disk, read again with the GIL released: dropping the
    # file's clean pages first takes the second path wherever the filesystem
    # allows it (not tmpfs); the bytes must be the same either way.
    data = os.urandom(300_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    [r] = serve(GET, _file_app(path), settings(sendfile=True)).responses
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(data).digest()


class _ReadCounting(io.FileIO):
    reads = 0

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        type(self).reads += 1
        return super().read(size)


@pytest.mark.parametrize("use_sendfile", [True, False])
def test_sendfile_path_never_reads_the_file_in_python(tmp_path: Path, use_sendfile: bool) -> None:
    data = os.urandom(200_000)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    _ReadCounting.reads = 0
    [r] = serve(GET, _file_app(path, wrap=_ReadCounting), settings(sendfile=use_sendfile)).responses
    assert r.body == data
    if use_sendfile:
        assert _ReadCounting.reads == 0  # the kernel moved the bytes
    else:
        assert _ReadCounting.reads > 0


def test_file_wrapper_without_fileno_is_read_and_sent() -> None:
    data = os.urandom(100_000)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(data), 4096)

    [r] = serve(GET, app).responses
    assert r.body == data


def test_sendfile_of_a_head_request_sends_no_body(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"q" * 5000)
    s = serve(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", _file_app(path))
    assert s.data.endswith(b"\r\n\r\n") and b"qqq" not in s.data
    assert b"Content-Length: 5000" in s.data


def test_large_streamed_body_over_writev_arrives_intact() -> None:
    blocks = [os.urandom(100_000) for _ in range(20)]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield from blocks

    [r] = serve(GET, app).responses
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(b"".join(blocks)).digest()


# --- WSGI validation, hooks, access log ------------------------------------------------------


def test_wsgiref_validate_is_silent() -> None:
    def inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"got " + body]

    app = wsgiref.validate.validator(inner)
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + GET
    # pytest turns any warning into an error (filterwarnings = error)
    s = serve(raw, app)
    assert [r.body for r in s.responses] == [b"got abc", b"got "]
    assert not [m for lvl, m in s.log.records if lvl == "exception"]


def test_hooks_and_access_log_called_when_configured() -> None:
    calls: list[tuple[str, str]] = []
    hooks = Hooks(
        pre_request=lambda worker, req: calls.append(("pre", req.path)),
        post_request=lambda worker, req, env, resp: calls.append(("post", resp.status)),
    )
    log = RecLog(access=True)
    # The client stays (no half-close): a client gone is logged 499, see below.
    serve(GET_CLOSE, hello, log=log, hooks=hooks, half_close=False)
    assert calls == [("pre", "/p"), ("post", "200 OK")]
    assert log.accessed == [("/p", "200 OK", 5)]


def test_access_log_not_called_when_off() -> None:
    log = RecLog(access=False)
    serve(GET, hello, log=log)
    assert log.accessed == []


def test_keepalive_disabled_sends_connection_close() -> None:
    s = serve(GET + GET, hello, keepalive=False)
    [r] = s.responses
    assert r.header("Connection") == "close"
    assert s.keeps == [False]


# --- accept() on the raw listener fd and the selector helpers ------------------------------


def _env_app(seen: list[dict[str, Any]]) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen.append(dict(environ))
        start_response("200 OK", [])
        return [b"ok"]

    return app


def test_accept_builds_a_connection_from_the_listener_fd() -> None:
    ctx = WorkerContext(settings(), RecLog(), None, None, keepalive=False)
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        lsock.setblocking(False)
        server = lsock.getsockname()
        assert accept(ctx, lsock.fileno(), server) is None  # nothing queued
        seen: list[dict[str, Any]] = []
        for _ in range(2):  # the second peer reuses the cached address string
            with socket.create_connection(server, timeout=10) as client:
                client.sendall(GET)
                conn = None
                for _ in range(1000):
                    conn = accept(ctx, lsock.fileno(), server)
                    if conn is not None:
                        break
                assert conn is not None and conn.sock is None
                try:
                    assert conn.handle_request(_env_app(seen)) is False
                finally:
                    conn.close()
                data = client.recv(65536)
                assert data.startswith(b"HTTP/1.1 200 OK\r\n")
                assert seen[-1]["REMOTE_PORT"] == str(client.getsockname()[1])
        assert [e["REMOTE_ADDR"] for e in seen] == ["127.0.0.1", "127.0.0.1"]
        assert seen[0]["SERVER_PORT"] == str(server[1])


def test_accept_on_a_unix_listener(tmp_path: Path) -> None:
    ctx = WorkerContext(settings(), RecLog(), None, None, keepalive=False)
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as lsock:
        lsock.bind(path)
        lsock.listen(8)
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(path)
            client.sendall(GET)
            conn = accept(ctx, lsock.fileno(), path)
            assert conn is not None
            seen: list[dict[str, Any]] = []
            try:
                conn.handle_request(_env_app(seen))
            finally:
                conn.close()
            assert client.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
    assert seen[0]["REMOTE_ADDR"] == "" and seen[0]["SERVER_NAME"] == "example.com"


def test_accept_error_is_an_oserror() -> None:
    ctx = WorkerContext(settings(), RecLog(), None, None)
    r, w = os.pipe()
    try:
        with pytest.raises(OSError):
            accept(ctx, r, ("127.0.0.1", 80))  # not a socket: ENOTSOCK
    finally:
        os.close(r)
        os.close(w)


def test_wake_pipe_and_epoll_helpers() -> None:
    ep = select.epoll()
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    try:
        epoll_arm(ep.fileno(), r, select.EPOLLIN | select.EPOLLONESHOT, True)
        assert ep.poll(0) == []
        for _ in range(3):
            pipe_wake(w)
        assert ep.poll(1) == [(r, select.EPOLLIN)]
        assert ep.poll(0) == []  # one-shot: disarmed until re-armed
        pipe_drain(r)
        with pytest.raises(BlockingIOError):
            os.read(r, 1)
        pipe_wake(w)
        epoll_arm(ep.fileno(), r, select.EPOLLIN | select.EPOLLONESHOT, False)
        assert ep.poll(1) == [(r, select.EPOLLIN)]
        with pytest.raises(OSError):
            epoll_arm(ep.fileno(), w, select.EPOLLIN, False)  # never added: ENOENT
    finally:
        ep.close()
        os.close(r)
        os.close(w)


# --- wait_head: a pool thread lingering for the next request ----------------------------------


def test_wait_head_times_out_then_sees_a_head_then_eof() -> None:
    ctx = WorkerContext(settings(), RecLog(), None, None)
    a, b = socket.socketpair()
    a.setblocking(False)
    conn = Connection(ctx, a, PEER, ("127.0.0.1", 80))
    try:
        assert conn.wait_head(0.01) == 0  # nothing sent: the linger expires
        b.sendall(b"GET / HTTP/1.1\r\nHo")
        assert conn.wait_head(1.0) == 0  # part of a head: not ready yet
        assert conn.buffered > 0
        b.sendall(b"st: x\r\n\r\n")
        assert conn.wait_head(1.0) == 1
        assert conn.handle_request(hello) is True
        b.settimeout(10)
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
        b.shutdown(socket.SHUT_WR)
        assert conn.wait_head(1.0) == -1  # the client closed between requests
    finally:
        conn.close()
        b.close()


# --- a response that ends its connection: the FIN goes with its last bytes ---------------------


def _list_app(status: str, body: list[bytes]) -> App:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(status, [("Content-Type", "text/plain")])
        return list(body)

    return app


def _serve_tcp_until_eof(request: bytes, app: App, keepalive: bool) -> tuple[bytes, bool, bool]:
    """One request over real loopback TCP (accepted with ``accept()``), served
    in a thread whose post_request hook waits for the client to have read the
    response to EOF. Returns what the client read, whether the hook saw that
    EOF while it ran, and the connection's ``fin_sent``."""
    eof = threading.Event()
    during_hook: list[bool] = []
    hooks = Hooks(post_request=lambda worker, req, env, resp: during_hook.append(eof.wait(3)))
    ctx = WorkerContext(settings(), RecLog(access=True), hooks, None, keepalive=keepalive)
    errors: list[BaseException] = []
    fin: list[bool] = []
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        server = lsock.getsockname()

        def run() -> None:
            try:
                sel = select.poll()
                sel.register(lsock.fileno(), select.POLLIN)
                sel.poll(10_000)
                conn = accept(ctx, lsock.fileno(), server)
                assert conn is not None
                try:
                    conn.handle_request(app)
                    fin.append(conn.fin_sent)
                finally:
                    conn.close()
            except BaseException as exc:  # surfaced in the test thread
                errors.append(exc)
                eof.set()

        lsock.setblocking(False)
        t = threading.Thread(target=run)
        t.start()
        try:
            with socket.create_connection(server, timeout=10) as client:
                client.sendall(request)
                chunks = []
                while d := client.recv(65536):
                    chunks.append(d)
                eof.set()
        finally:
            t.join(15)
    assert not t.is_alive()
    if errors:
        raise errors[0]
    return b"".join(chunks), during_hook[0], fin[0]


CLOSE_GET = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _iter_app(body: bytes) -> App:
    """Flask's and Django's shape: an iterable that is not a list, with a
    Content-Length header."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", str(len(body)))])
        yield body[:3]
        yield body[3:]

    return app


@pytest.mark.parametrize(
    "request_bytes, app, keepalive, body",
    [
        (CLOSE_GET, _iter_app(b"hello"), True, b"hello"),
        (CLOSE_GET, _list_app("200 OK", [b"hello"]), True, b"hello"),
        (CLOSE_GET, _list_app("200 OK", [b"he", b"llo"]), True, b"hello"),
        (CLOSE_GET, _list_app("302 Found", []), True, b""),
        (b"GET / HTTP/1.0\r\n\r\n", _list_app("200 OK", [b"hello"]), True, b"hello"),
        (GET, _list_app("200 OK", [b"x" * 16000]), False, b"x" * 16000),  # the sync worker
        (b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", _list_app("200 OK", [b"hello"]), False, b""),
    ],
    ids=["iterable-with-length", "one-item", "joined-items", "empty-body", "http10", "sync-16k",
         "head"],
)
def test_closing_response_reaches_eof_before_post_request_runs(
    request_bytes: bytes, app: App, keepalive: bool, body: bytes
) -> None:
    data, eof_during_hook, fin_sent = _serve_tcp_until_eof(request_bytes, app, keepalive)
    [r] = split_responses(data, head_only=request_bytes.startswith(b"HEAD"))
    assert r.header("Connection") == "close" and r.body == body
    # The last bytes went out with MSG_MORE and the write side was shut down
    # at once: the client had the whole response and its EOF while the hook
    # (after the response, before close()) was still running.
    assert fin_sent and eof_during_hook


def test_keepalive_response_keeps_the_write_side_open() -> None:
    ctx = WorkerContext(settings(), RecLog(), None, None)
    a, b = socket.socketpair()
    conn = Connection(ctx, a, PEER, ("127.0.0.1", 80))
    try:
        b.sendall(GET)
        assert conn.handle_request(hello) is True
        assert not conn.fin_sent
        b.settimeout(10)
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
        b.sendall(GET)  # the same connection carries the next request
        assert conn.handle_request(hello) is True
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
    finally:
        conn.close()
        b.close()


def test_500_reaches_eof_before_the_iterables_close_runs() -> None:
    eof = threading.Event()
    during_close: list[bool] = []
    got: list[bytes] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            raise RuntimeError("boom")
            yield b""

        def close(self) -> None:
            during_close.append(eof.wait(3))

    def client(sock: socket.socket) -> None:
        sock.sendall(GET)
        while d := sock.recv(65536):
            got.append(d)
        eof.set()

    serve(client, lambda environ, start_response: Body())
    [r] = split_responses(b"".join(got))
    assert r.status == 500 and r.header("Connection") == "close"
    assert during_close == [True]


# --- the sync worker's heartbeat follows the client I/O ----------------------------


def test_stamp_heartbeat_is_stamped_by_client_io_and_waits_only() -> None:
    """With a heartbeat slot given, bytes received and sent and every
    ``every`` seconds of a wait on the client stamp it; the app's own time
    does not, and no other slot is touched."""
    pool = HeartbeatPool(2)
    slot, other = pool.acquire(), pool.acquire()
    _age_out(slot)
    _age_out(other)
    seen = _serve_with_heartbeat(slot)
    assert seen["status"] == 200
    assert seen["wait"] > 0.0, seen  # stamped again during a wait with no bytes
    assert seen["after_head"] > 0.0
    assert seen["after_app"] == 0.0  # a silent app is not stamped for
    assert slot.age() < 5.0  # the send stamped it again
    assert other.last_beat() == 0.0
    # The context held the page exported; once it is gone the page can close.
    pool.close()


def _age_out(slot: Any) -> None:
    mem, off = slot.stamp_location()
    mem[off : off + 8] = bytes(8)  # a stamp of 0.0: very old


def _serve_with_heartbeat(slot: Any) -> dict[str, float]:
    ctx = WorkerContext(settings(), RecLog(), None, None, keepalive=False)
    ctx.stamp_heartbeat(slot, 0.02)
    seen: dict[str, float] = {}

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        seen["after_head"] = slot.last_beat()  # the recv of the head stamped it
        _age_out(slot)
        time.sleep(0.2)  # the app's own time: no stamps
        seen["after_app"] = slot.last_beat()
        start_response("200 OK", [("Content-Length", "5")])
        return [b"hello"]

    def client(b: socket.socket) -> None:
        # The connection waits 0.3 s for its head: stamped all along.
        time.sleep(0.05)
        first = slot.last_beat()
        time.sleep(0.15)
        seen["wait"] = slot.last_beat() - first
        time.sleep(0.1)
        b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    served = serve(client, app, ctx=ctx)
    seen["status"] = served.responses[0].status
    return seen


def test_stamp_heartbeat_rejects_a_bad_location_or_period() -> None:
    ctx = WorkerContext(settings(), RecLog(), None, None, keepalive=False)

    class Odd:
        def __init__(self, offset: int) -> None:
            self.mem = bytearray(64)
            self.offset = offset

        def stamp_location(self) -> tuple[bytearray, int]:
            return self.mem, self.offset

    for offset in (3, -8, 64, 60):
        with pytest.raises(ValueError, match="bad heartbeat stamp offset"):
            ctx.stamp_heartbeat(Odd(offset), 1.0)
    with pytest.raises(ValueError, match="every must be positive"):
        ctx.stamp_heartbeat(Odd(0), 0.0)


# --- the worker exits under a request ---------------------------------------------


@pytest.mark.parametrize("started", [False, True])
def test_worker_exit_under_a_request_answers_500_logs_and_goes_on(started: bool) -> None:
    """SystemExit raised inside the app (the sync worker's abort after a
    heartbeat timeout, or a fast stop) leaves handle_request after a 500 for
    the client when nothing went out yet, and an access line either way."""
    log = RecLog(access=True)
    ctx = WorkerContext(settings(), log, None, None, keepalive=True)
    a, b = socket.socketpair()
    conn = Connection(ctx, a, PEER, ("127.0.0.1", 8000))

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Length", "10")])
        if started:
            yield b"01234"
        raise SystemExit(1)

    try:
        b.sendall(b"GET /going HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(SystemExit):
            conn.handle_request(app)
        conn.close()
        b.settimeout(10)
        data = b""
        while chunk := b.recv(65536):
            data += chunk
    finally:
        b.close()
    if started:
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\n01234")
        assert log.accessed == [("/going", "200 OK", 5)]
    else:
        (resp,) = split_responses(data)
        assert resp.status == 500 and resp.header("connection") == "close"
        # The bytes of the 500's body that went out, as for any response.
        assert len(resp.body) == 26
        assert log.accessed == [("/going", "500 Internal Server Error", 26)]


# --- what the access log says happened -------------------------------------------------


def wait_for(cond: Callable[[], bool], timeout: float) -> bool:
    """Until ``cond()`` holds (True) or ``timeout`` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _serve_one(app: App, send: Callable[[socket.socket], None], log: RecLog,
               **kw: Any) -> Callable[[], None]:
    """Serve one request on a socketpair in a thread; ``send`` plays the
    client. Returns a join that surfaces the thread's error."""
    ctx = WorkerContext(settings(**kw), log, None, None, keepalive=True)
    a, b = socket.socketpair()
    conn = Connection(ctx, a, PEER, ("127.0.0.1", 8000))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            conn.handle_request(app)
        except BaseException as exc:  # surfaced in the test thread
            errors.append(exc)
        finally:
            conn.close()

    t = threading.Thread(target=run)
    t.start()
    try:
        send(b)
    finally:
        b.close()

    def join() -> None:
        t.join(15)
        assert not t.is_alive()
        if errors:
            raise errors[0]

    return join


def test_client_that_left_before_the_response_is_logged_499() -> None:
    """nginx's rule: a client that closed before the response went out is
    499 (it gave up waiting), not the 200 the app produced."""
    log = RecLog(access=True)
    gone = threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        assert gone.wait(10)
        time.sleep(2 * CLIENT_LEFT_AFTER)  # an app slow enough to be looked after
        start_response("200 OK", [])
        return [b"late"]

    def client(b: socket.socket) -> None:
        b.sendall(GET)
        b.close()
        gone.set()

    _serve_one(app, client, log)()
    # Nothing made it: the kernel refuses a write to a closed socketpair.
    assert log.accessed == [("/p", "499 Client Closed Request", 0)]


@pytest.mark.parametrize("behind", [b"", b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_client_still_there_or_pipelining_is_logged_with_the_status_sent(behind: bytes) -> None:
    """Data waiting is not EOF: a client that waits, or pipelined its next
    request before closing, gets its response logged 200."""
    log = RecLog(access=True)
    got = threading.Event()

    def client(b: socket.socket) -> None:
        b.sendall(GET + behind)
        if behind:
            b.shutdown(socket.SHUT_WR)
        b.settimeout(10)
        data = b""
        while b"hello" not in data:
            chunk = b.recv(65536)
            assert chunk, data
            data += chunk
        got.set()

    _serve_one(hello, client, log)()
    assert got.is_set()
    assert log.accessed == [("/p", "200 OK", 5)]


def slow_hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    time.sleep(2 * CLIENT_LEFT_AFTER)
    return hello(environ, start_response)


def test_half_closed_client_gets_the_response_but_is_logged_499() -> None:
    """A half-close cannot be told from a close: logged as nginx logs it,
    but the response still goes out, since such a client may be reading."""
    s = serve(GET_CLOSE, slow_hello, log=RecLog(access=True))
    [r] = s.responses
    assert r.status == 200 and r.body == b"hello"
    assert s.log.accessed == [("/p", "499 Client Closed Request", 5)]


def test_a_response_ready_at_once_does_not_look_for_a_client_that_left() -> None:
    """The look costs a syscall, so a response the app made in under
    CLIENT_LEFT_AFTER goes out unlooked: the same half-closed client as
    above is logged with the status sent."""
    s = serve(GET_CLOSE, hello, log=RecLog(access=True))
    [r] = s.responses
    assert r.status == 200 and r.body == b"hello"
    assert s.log.accessed == [("/p", "200 OK", 5)]


def test_body_error_answer_is_logged_with_its_bytes() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [b"never"]

    log = RecLog(access=True)
    s = serve(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", app,
              log=log)
    [r] = s.responses
    assert r.status == 400
    assert log.accessed == [("/p", "400 Bad Request", len(r.body))]


@pytest.mark.parametrize("how", ["iterable", "sendfile", "read"])
def test_transfer_cut_off_by_a_client_that_stopped_reading_is_logged(
    how: str, tmp_path: Path
) -> None:
    """The client reads nothing for --timeout: the worker drops it, says so
    in the error log, and both logs count the body bytes that really went
    out, which is what the client can still read afterwards."""
    size = 16 << 20
    path = tmp_path / "big"
    path.write_bytes(b"f" * size)
    log = RecLog(access=True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Length", str(size))])
        if how == "iterable":
            return (b"i" * (1 << 20) for _ in range(16))
        return environ["wsgi.file_wrapper"](open(path, "rb"))

    received = bytearray()

    def client(b: socket.socket) -> None:
        b.sendall(GET)
        # Read nothing until the worker gave up on us, then what is left.
        assert wait_for(lambda: any("stopped reading" in m for _, m in log.records), 30)
        b.settimeout(10)
        while chunk := b.recv(1 << 20):
            received.extend(chunk)

    _serve_one(app, client, log, timeout=1.0, sendfile=(how == "sendfile"))()
    body = len(received) - (received.index(b"\r\n\r\n") + 4)
    assert 0 < body < size
    [(level, msg)] = [(lv, m) for lv, m in log.records if "stopped reading" in m]
    assert level == "info"
    assert msg == (f"Client stopped reading for 1.0s (timeout): GET /p?q=1 from {PEER[0]} "
                   f"cut off with status 200 after {body} body bytes")
    assert log.accessed == [("/p", "200 OK", body)]
