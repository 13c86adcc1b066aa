"""Slow, idle and stalled clients against a running fastwsgi.

These are liveness checks, not performance assertions: each deadline is
several times what the behaviour needs, and a failure means the server was
stuck, not slow.

* gthread: hundreds of idle or half-sent connections cost a file descriptor
  each, not a thread, so a new well-formed request is served while they sit
  there.
* Slowloris (a head sent byte by byte): the header timeout ends it with 408
  or a close, long before the head is complete.
* A stalled request body: the body timeout ends it; the app never sees a
  complete request.
* Keep-alive (gthread): an idle kept-alive connection is closed after
  ``--keep-alive`` seconds.
* sync: a client that connects and stalls cannot pin the only worker; the
  next client is served once the header timeout fires.
"""

from __future__ import annotations

import re
import resource
import select
import socket
import time
from pathlib import Path

import pytest
from hostile_support import (
    IO_DEADLINE,
    Server,
    new_token,
    recv_until_close,
    run_server,
)
from httpraw import parse_responses, recv_response

H = "Host: example.test\r\n"
SHORT = "2"  # seconds, for --header-timeout / --body-timeout / --keep-alive
# How long after a short timeout we wait before calling the server stuck: the
# machine is shared and slow, and the server checks timeouts on its own tick.
MARGIN = 13.0
N_IDLE = 500


def raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {soft} is below the {need} this test needs")


def timed_request(server: Server, path: str, deadline_s: float) -> tuple[int | None, float]:
    """A complete GET on a new connection; (status or None, seconds it took)."""
    t0 = time.monotonic()
    with server.connect(timeout=deadline_s) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\n{H}Connection: close\r\n\r\n".encode())
        resp, _ = recv_response(s, t0 + deadline_s)
    return (resp.status if resp is not None else None), time.monotonic() - t0


# --- gthread: many idle and half-sent connections ------------------------------------


def test_gthread_many_idle_and_slow_connections_do_not_block_a_new_request(
    tmp_path: Path,
) -> None:
    raise_nofile(N_IDLE + 200)
    token = new_token()
    with run_server(
        tmp_path, "gthread", "--threads", "4", "--worker-connections", "1000"
    ) as server:
        socks: list[socket.socket] = []
        try:
            for i in range(N_IDLE):
                s = server.connect()
                socks.append(s)
                if i % 2:
                    # Half a head, never finished: a stalled sender.
                    s.sendall(f"GET /t/{token}/slow{i} HTTP/1.1\r\n{H}X-Slow: ".encode())
            # More than a thread's worth of partial senders: send them one
            # more byte each, so they are "slowly sending", not just stalled.
            for s in socks[1::2][:50]:
                s.sendall(b"a")
            status, took = timed_request(server, f"/t/{token}/fresh", 5.0)
            assert status == 200, f"new request not served within 5 s (took {took:.1f}s)"
            # The half-sent heads never reached the app.
            assert server.recorded_paths(token) == [f"/t/{token}/fresh"]
            # The idle connections are still open (they are within header_timeout).
            r, _, _ = select.select(socks[:20:2], [], [], 0)
            for s in r:
                assert s.recv(1, socket.MSG_PEEK) != b"", "idle connection closed early"
        finally:
            for s in socks:
                s.close()
        server.assert_alive()


# --- slowloris and stalled bodies, both worker kinds ---------------------------------


def _slowloris(server: Server, head: bytes, interval: float) -> tuple[bytes, bool, int, float]:
    """Send ``head`` one byte per ``interval``; stop when the server answers or closes.

    Returns (bytes received, closed?, bytes sent, seconds).
    """
    t0 = time.monotonic()
    received = b""
    sent = 0
    closed = False
    with server.connect() as s:
        for i in range(len(head)):
            try:
                s.sendall(head[i : i + 1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            r, _, _ = select.select([s], [], [], interval)
            if r:
                got = recv_until_close(s, time.monotonic() + IO_DEADLINE)
                received += got.data
                closed = got.closed
                break
        else:
            got = recv_until_close(s, time.monotonic() + IO_DEADLINE)
            received, closed = got.data, got.closed
    return received, closed, sent, time.monotonic() - t0


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_slowloris_head_is_cut_off(tmp_path: Path, kind: str) -> None:
    token = new_token()
    head = (
        f"GET /t/{token}/loris HTTP/1.1\r\n{H}"
        + "".join(f"X-Loris-{i}: {'a' * 8}\r\n" for i in range(8))
        + "\r\n"
    ).encode()
    interval = 0.1
    # Sending the whole head would take ~len(head) * interval (> 20 s); the
    # header timeout is 2 s.
    assert len(head) * interval > float(SHORT) + MARGIN
    extra = ["--threads", "4"] if kind == "gthread" else []
    with run_server(tmp_path, kind, "--header-timeout", SHORT, *extra) as server:
        received, closed, sent, took = _slowloris(server, head, interval)
        assert closed, f"slowloris connection still open after {took:.1f}s"
        assert sent < len(head), f"the whole head was sent over {took:.1f}s without a timeout"
        resps, _ = parse_responses(received)
        assert [r.status for r in resps] in ([], [408]), received[:300]
        assert server.recorded_paths(token) == []
        # And the server still serves.
        status, _ = timed_request(server, f"/t/{token}/after", IO_DEADLINE)
        assert status == 200
        server.assert_alive()


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_stalled_body_is_cut_off(tmp_path: Path, kind: str) -> None:
    token = new_token()
    extra = ["--threads", "4"] if kind == "gthread" else []
    with run_server(tmp_path, kind, "--body-timeout", SHORT, *extra) as server:
        with server.connect() as s:
            s.sendall(f"POST /t/{token}/upload HTTP/1.1\r\n{H}Content-Length: 100\r\n\r\n".encode())
            s.sendall(b"0123456789")  # 10 of 100 bytes, then nothing
            got = recv_until_close(s, time.monotonic() + float(SHORT) + MARGIN)
        assert got.closed, "stalled upload still open after the body timeout"
        resps, rest = parse_responses(got.data)
        # The app was still reading the body, so nothing was sent yet: the
        # client is told why with exactly one 408, never a bare close or a 200.
        assert [r.status for r in resps] == [408] and rest == b"", got.data[:300]
        assert server.recorded_paths(token) == []
        status, _ = timed_request(server, f"/t/{token}/after", IO_DEADLINE)
        assert status == 200
        server.assert_alive()


# --- idle connections get closed -------------------------------------------------------


def test_gthread_keepalive_idle_connection_is_closed(tmp_path: Path) -> None:
    token = new_token()
    with run_server(tmp_path, "gthread", "--threads", "2", "--keep-alive", SHORT) as server:
        with server.connect() as s:
            s.sendall(f"GET /t/{token}/ka HTTP/1.1\r\n{H}\r\n".encode())
            resp, extra = recv_response(s, time.monotonic() + IO_DEADLINE)
            assert resp is not None and resp.status == 200
            assert (resp.header("connection") or "").lower() != "close"
            got = recv_until_close(s, time.monotonic() + float(SHORT) + MARGIN)
        assert got.closed, "idle keep-alive connection not closed"
        assert extra + got.data == b"", "unexpected bytes on an idle connection"
        server.assert_alive()


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_silent_connection_is_closed_after_header_timeout(tmp_path: Path, kind: str) -> None:
    extra = ["--threads", "2"] if kind == "gthread" else []
    with run_server(tmp_path, kind, "--header-timeout", SHORT, *extra) as server:
        with server.connect() as s:
            got = recv_until_close(s, time.monotonic() + float(SHORT) + MARGIN)
        assert got.closed, "a connection that never sent a byte is held open"
        resps, _ = parse_responses(got.data)
        assert [r.status for r in resps] in ([], [408]), got.data[:300]
        server.assert_alive()


# --- sync: a stalled client cannot pin the worker -------------------------------------------


def test_sync_stalled_client_does_not_pin_the_only_worker(tmp_path: Path) -> None:
    token = new_token()
    with run_server(tmp_path, "sync", "--header-timeout", SHORT, workers=1) as server:
        stalled = server.connect()
        try:
            # Connected first, so first in the accept queue: the only worker
            # takes it before the next client.
            stalled.sendall(f"GET /t/{token}/stalled HTTP/1.1\r\n{H}".encode())
            status, took = timed_request(server, f"/t/{token}/next", float(SHORT) + MARGIN)
            assert status == 200, f"next client not served ({took:.1f}s)"
            got = recv_until_close(stalled, time.monotonic() + MARGIN)
            assert got.closed
            resps, _ = parse_responses(got.data)
            assert [r.status for r in resps] in ([], [408]), got.data[:300]
        finally:
            stalled.close()
        assert server.recorded_paths(token) == [f"/t/{token}/next"]
        server.assert_alive()


def test_gthread_worker_connections_cap_holds_and_releases(tmp_path: Path) -> None:
    """At --worker-connections the worker stops accepting; one connection
    closing lets the next one in (nothing is dropped, nothing is starved)."""
    token = new_token()
    cap = 5
    with run_server(
        tmp_path, "gthread", "--threads", "2", "--worker-connections", str(cap), workers=1
    ) as server:
        idle = [server.connect() for _ in range(cap)]
        try:
            with server.connect() as extra:
                extra.sendall(
                    f"GET /t/{token}/queued HTTP/1.1\r\n{H}Connection: close\r\n\r\n".encode()
                )
                # While the cap is held, the request waits in the listen backlog.
                early = recv_until_close(extra, time.monotonic() + 1.0)
                assert early.data == b"" and not early.closed
                assert server.recorded_paths(token) == []
                idle.pop().close()
                resp, _ = recv_response(extra, time.monotonic() + IO_DEADLINE)
            assert resp is not None and resp.status == 200
            assert server.recorded_paths(token) == [f"/t/{token}/queued"]
        finally:
            for s in idle:
                s.close()
        server.assert_alive()


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_client_that_stops_reading_cannot_pin_the_worker(tmp_path: Path, kind: str) -> None:
    """A client asks for a big response and never reads it. The write makes no
    progress, so after --timeout the worker gives up on it and the next
    client is served. A sync worker gives up by itself (its send deadline),
    not by being killed: its heartbeat goes on while it waits on a client."""
    token = new_token()
    extra = ["--threads", "1"] if kind == "gthread" else []
    with run_server(tmp_path, kind, "--timeout", SHORT, *extra, workers=1) as server:
        reader = server.connect()
        try:
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.sendall(f"GET /t/{token}/big HTTP/1.1\r\n{H}\r\n".encode())
            status, took = timed_request(server, f"/t/{token}/next", float(SHORT) * 2 + MARGIN)
            assert status == 200, f"next client not served ({took:.1f}s)"
        finally:
            reader.close()
        assert server.recorded_paths(token) == [f"/t/{token}/big", f"/t/{token}/next"]
        # The error log says why the transfer ended, with its status and bytes.
        assert re.search(
            rf"\[INFO\] Client stopped reading for 2\.0s \(timeout\): GET /t/{token}/big "
            r"from 127\.0\.0\.1 cut off with status 200 after \d+ body bytes$",
            server.log_text(), re.M), server.log_text()[-2000:]
        if kind == "sync":
            big, nxt = _pids(server, token)
            assert big == nxt, "the worker was replaced"
            assert "WORKER TIMEOUT" not in server.log_text()


# --- sync: a long transfer that keeps moving is not a stuck worker ----------------------

TIMEOUT = 2.0  # --timeout for the transfer tests; each transfer lasts 2.5x that or more


def _pids(server: Server, token: str) -> list[int]:
    return [int(r["pid"]) for r in server.recorded() if token in r["path"]]


def test_sync_slow_download_outlasting_timeout_is_not_killed(tmp_path: Path) -> None:
    """Gunicorn's sync worker is killed mid-download once a response takes
    longer than --timeout to send (its #1186, #1736, #3259). Ours keeps its
    heartbeat while the bytes move: the whole 64 MiB arrives, and the same
    worker serves the next request."""
    token = new_token()
    with run_server(tmp_path, "sync", "--timeout", str(int(TIMEOUT)), workers=1) as server:
        with server.connect() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.sendall(f"GET /t/{token}/big HTTP/1.1\r\n{H}\r\n".encode())
            t0 = time.monotonic()
            want = 64 << 20
            data = bytearray()
            head_end = -1
            # Paced to about 10 MiB/s: at least 5 s (2.5 timeouts) for the body.
            while head_end < 0 or len(data) - head_end < want:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
                if head_end < 0 and b"\r\n\r\n" in data:
                    head_end = data.index(b"\r\n\r\n") + 4
                time.sleep(0.005)
                assert time.monotonic() - t0 < 120, "download stalled"
            took = time.monotonic() - t0
        assert head_end > 0 and data.startswith(b"HTTP/1.1 200"), data[:200]
        assert len(data) - head_end == want, f"cut off after {len(data) - head_end} bytes, {took:.1f}s"
        assert took > 2.5 * TIMEOUT, f"the transfer took only {took:.1f}s: nothing was tested"
        status, _ = timed_request(server, f"/t/{token}/next", MARGIN)
        assert status == 200
        big, nxt = _pids(server, token)
        assert big == nxt, "the worker was replaced"
        assert "WORKER TIMEOUT" not in server.log_text()


def test_sync_slow_upload_outlasting_timeout_is_not_killed(tmp_path: Path) -> None:
    """The same for a request body trickling in for 2.5+ timeouts (each piece
    well inside --body-timeout): the app reads all of it and answers."""
    token = new_token()
    piece, pieces = 65536, 32
    with run_server(tmp_path, "sync", "--timeout", str(int(TIMEOUT)), workers=1) as server:
        with server.connect() as s:
            s.sendall(
                f"POST /t/{token}/upload HTTP/1.1\r\n{H}Content-Length: {piece * pieces}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            t0 = time.monotonic()
            for _ in range(pieces):
                s.sendall(b"u" * piece)
                time.sleep(2.5 * TIMEOUT / pieces)
            resp, _ = recv_response(s, time.monotonic() + IO_DEADLINE)
            took = time.monotonic() - t0
        assert resp is not None and resp.status == 200, server.log_text()[-2000:]
        (rec,) = [r for r in server.recorded() if r["path"] == f"/t/{token}/upload"]
        assert len(rec["body"]) == piece * pieces
        assert took > 2.5 * TIMEOUT
        status, _ = timed_request(server, f"/t/{token}/next", MARGIN)
        assert status == 200
        assert len(set(_pids(server, token))) == 1, "the worker was replaced"
        assert "WORKER TIMEOUT" not in server.log_text()


def test_sync_header_wait_longer_than_timeout_is_not_a_stuck_worker(tmp_path: Path) -> None:
    """With --header-timeout above --timeout, a client that connects and sends
    its request a while later (within the header timeout) is answered: the
    worker waiting on it stamps its heartbeat, where a silent wait would get
    it killed and the request reset."""
    token = new_token()
    with run_server(
        tmp_path, "sync", "--timeout", str(int(TIMEOUT)), "--header-timeout", "30", workers=1
    ) as server:
        with server.connect() as s:
            # The only worker takes this connection and waits for its head;
            # the client's delay is the behaviour under test, not a wait.
            time.sleep(2.5 * TIMEOUT)
            s.sendall(f"GET /t/{token}/late HTTP/1.1\r\n{H}Connection: close\r\n\r\n".encode())
            resp, _ = recv_response(s, time.monotonic() + IO_DEADLINE)
        assert resp is not None and resp.status == 200, server.log_text()[-2000:]
        assert "WORKER TIMEOUT" not in server.log_text()
