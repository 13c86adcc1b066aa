"""Refused requests leave a trace, over real sockets on a real server.

Every request the server refuses (400, 413, 414, 431, 501) gets Gunicorn's
``Invalid request from ip=ADDR: REASON`` warning in the error log and an
access-log line with the status actually sent, ``-`` where the request line
could not be read; a flood of bad requests is rate-limited to a bounded
number of warnings plus one ``N more invalid requests suppressed`` line, and
the counts add up to the number of requests refused.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from server import Server, read_text, wait_for_text, worker_classes

from fastwsgi.glogging import INVALID_BURST, INVALID_WINDOW

H = "Host: example.test\r\n"
IO_DEADLINE = 20.0

# (id, raw request, status, what the access line's request shows, warning text)
CASES = [
    ("400-header", f"GET /bad-header HTTP/1.1\r\n{H}X\x01A: b\r\n\r\n", 400,
     "GET /bad-header HTTP/1.1", "not a token"),
    ("400-line", "GET /a b c HTTP/1.1\r\n" + H + "\r\n", 400, "- - -", ""),
    ("413", f"POST /big HTTP/1.1\r\n{H}Content-Length: 5000\r\n\r\n", 413,
     "POST /big HTTP/1.1", "limit_request_body"),
    ("414", f"GET /{'a' * 5000} HTTP/1.1\r\n{H}\r\n", 414, "- - -", "request line over"),
    ("431", f"GET /many HTTP/1.1\r\n{H}" + "".join(f"X-{i}: v\r\n" for i in range(101)) + "\r\n",
     431, "GET /many HTTP/1.1", ""),
    ("501", f"POST /te HTTP/1.1\r\n{H}Transfer-Encoding: br, chunked\r\n\r\n0\r\n\r\n", 501,
     "POST /te HTTP/1.1", "unsupported transfer coding"),
]


def send_raw(port: int, payload: bytes) -> bytes:
    """Send on a fresh connection, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=IO_DEADLINE) as s:
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed before taking everything
        data = b""
        deadline = time.monotonic() + IO_DEADLINE
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return data


def start(server, tmp_path: Path, kind: str, *extra: str) -> tuple[Server, Path]:
    access = tmp_path / f"access-{kind}.log"
    srv = server("-k", kind, "--access-logfile", str(access), "--limit-request-body", "1000",
                 *extra, "testapp:app")
    wait_for_text(access, r'"GET / HTTP/1\.1" 200 ')  # the readiness probe's line is out
    return srv, access


@pytest.mark.parametrize("kind", worker_classes())
def test_each_refusal_is_warned_and_access_logged(server, tmp_path: Path, kind: str) -> None:
    srv, access = start(server, tmp_path, kind)
    for case_id, raw, status, request, reason in CASES:
        log_at, access_at = srv.mark(), len(read_text(access))
        got = send_raw(srv.port, raw.encode("latin-1"))
        assert got.startswith(f"HTTP/1.1 {status} ".encode()), (case_id, got[:200])
        body_len = len(got.partition(b"\r\n\r\n")[2])
        m = srv.wait_for_log(r"\[WARNING\] Invalid request from ip=127\.0\.0\.1: (.*)$",
                             after=log_at)
        assert reason in m.group(1), (case_id, m.group(0))
        line = wait_for_text(access, r"^127\.0\.0\.1 .*$", after=access_at).group(0)
        assert f'"{request}" {status} {body_len} ' in line, (case_id, line)


@pytest.mark.parametrize("kind", worker_classes())
def test_a_flood_of_bad_requests_is_rate_limited_and_counted(
    server, tmp_path: Path, kind: str
) -> None:
    # -t 2: the worker's heartbeat (every timeout / 2) writes the count soon
    # after the window closes, with no further request.
    srv, access = start(server, tmp_path, kind, "-w", "1", "-t", "2")
    flood = 60
    began = time.monotonic()
    for i in range(flood):
        got = send_raw(srv.port, f"GET /f{i} HTTP/1.1\r\n{H}X\x00: y\r\n\r\n".encode())
        assert got.startswith(b"HTTP/1.1 400 "), got[:200]
    elapsed = time.monotonic() - began
    warned = r"\[WARNING\] Invalid request from ip=127\.0\.0\.1: "
    counted = r"\[WARNING\] (\d+) more invalid requests suppressed"
    # Every refusal is either a warning or in a suppressed count, once the
    # last window's count is out (the heartbeat writes it, nothing else).
    deadline = time.monotonic() + INVALID_WINDOW + 30
    while True:
        log = srv.log()
        lines = len(re.findall(warned, log))
        held = sum(int(n) for n in re.findall(counted, log))
        if lines + held >= flood or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert lines + held == flood, log[-3000:]
    windows = int(elapsed // INVALID_WINDOW) + 1
    assert INVALID_BURST <= lines <= INVALID_BURST * windows, (lines, elapsed)
    assert held >= flood - INVALID_BURST * windows
    # The access log is not rate-limited: one line each, with the status sent.
    wait_for_text(access, rf'"GET /f{flood - 1} HTTP/1\.1" 400 ')
    assert len(re.findall(r'"GET /f\d+ HTTP/1\.1" 400 ', read_text(access))) == flood


@pytest.mark.parametrize("kind", worker_classes())
def test_a_head_too_slow_is_access_logged_but_not_warned(
    server, tmp_path: Path, kind: str
) -> None:
    """408 is the client's pace, not an invalid request (Gunicorn answers
    nothing at all): an access line, no ``Invalid request`` warning."""
    srv, access = start(server, tmp_path, kind, "--header-timeout", "1", "--log-level", "debug")
    log_at = srv.mark()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=IO_DEADLINE) as s:
        s.sendall(b"GET /slow-head HTTP/1.1\r\nHost: a\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    wait_for_text(access, r'^127\.0\.0\.1 .*"GET /slow-head HTTP/1\.1" 408 \d+ ')
    srv.wait_for_log(r"\[DEBUG\] Request timeout from ip=127\.0\.0\.1", after=log_at)
    assert "Invalid request" not in srv.log()[log_at:]


@pytest.mark.parametrize("kind", worker_classes())
def test_a_body_refused_while_the_app_reads_it_is_warned(
    server, tmp_path: Path, kind: str
) -> None:
    """A chunked body over ``limit_request_body`` is found only as the app
    reads it: 413, the warning, and the access line of the 413 sent."""
    access = tmp_path / "access.log"
    srv = server("-k", kind, "--access-logfile", str(access), "--limit-request-body", "1000",
                 "apps.behave:app")
    wait_for_text(access, r'"GET / HTTP/1\.1" ')
    log_at = srv.mark()
    chunk = b"x" * 800
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(2)) + b"0\r\n\r\n"
    got = send_raw(srv.port, f"POST /echo HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n"
                   .encode() + body)
    assert got.startswith(b"HTTP/1.1 413 "), got[:200]
    m = srv.wait_for_log(r"\[WARNING\] Invalid request from ip=127\.0\.0\.1: (.*)$", after=log_at)
    assert "limit_request_body" in m.group(1)
    wait_for_text(access, r'"POST /echo HTTP/1\.1" 413 \d+ ')
