"""bench/floor.py, the kernel floor the benchmark measures fastwsgi against.

A floor that answered anything else than the scenario's bytes, or kept a
connection the client asked to end, would make the comparison a lie: these
tests run the real process over real loopback sockets and check the bytes,
keep-alive and pipelining, the HTTP/1.0 close (nginx's upstream) and a clean
stop on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpraw import Response, recv_response

from bench import apps, servers

pytestmark = pytest.mark.bench  # the harness tier: `-m "not bench"` skips it

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    e = servers.server_env()  # bench.apps and this fastwsgi importable
    e["FASTWSGI_BENCH_FILE"] = str(tmp_path / "file1m.bin")
    return e


@pytest.fixture(params=["bench.apps:hello", "bench.apps:file1m"])
def floor(request: pytest.FixtureRequest, env: dict[str, str]) -> Iterator[servers.Server]:
    srv = servers.Server(servers.SERVERS["floor"], request.param, env=env)
    try:
        srv.start(60)
        yield srv
    finally:
        srv.stop()


def expected_body(srv: servers.Server, env: dict[str, str]) -> bytes:
    if srv.app == "bench.apps:hello":
        return apps.HELLO
    return Path(apps.ensure_file(env["FASTWSGI_BENCH_FILE"])).read_bytes()


def next_response(s: socket.socket, rest: bytes = b"") -> tuple[Response, bytes]:
    """One response from ``s`` (after ``rest``, what the last one left over)."""
    resp, rest = recv_response(s, time.monotonic() + 10, rest)
    assert resp is not None, f"no whole response, only {rest[:200]!r}"
    return resp, rest


GET11 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
GET10 = b"GET / HTTP/1.0\r\n\r\n"


def test_keep_alive_pipelined_and_split_requests(
    floor: servers.Server, env: dict[str, str]
) -> None:
    body = expected_body(floor, env)
    with socket.create_connection(("127.0.0.1", floor.port), timeout=10) as s:
        rest = b""
        s.sendall(GET11 * 2)  # pipelined: both answered, in order
        for _ in range(2):
            resp, rest = next_response(s, rest)
            assert resp.raw_head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert resp.body == body
        for b in GET11:  # a head in one-byte pieces, on the same connection
            s.send(bytes([b]))
        resp, rest = next_response(s, rest)
        assert resp.body == body
        assert not rest


def test_http10_request_gets_its_answer_then_eof(
    floor: servers.Server, env: dict[str, str]
) -> None:
    body = expected_body(floor, env)
    with socket.create_connection(("127.0.0.1", floor.port), timeout=10) as s:
        s.sendall(GET10)
        resp, rest = next_response(s)
        assert resp.body == body
        assert not rest and s.recv(1) == b""  # closed by the server


def test_refuses_a_scenario_it_cannot_answer(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.floor", "--port", "1", "--app", "bench.apps:sleep10"],
        capture_output=True, text=True, timeout=30, env=env, cwd=str(REPO),
    )
    assert proc.returncode == 2
    assert "cannot answer bench.apps:sleep10" in proc.stderr
    assert servers.SERVERS["floor"].apps == {"bench.apps:hello", "bench.apps:file1m"}


def test_sigterm_stops_it_with_status_0(env: dict[str, str]) -> None:
    srv = servers.Server(servers.SERVERS["floor"], "bench.apps:hello", env=env)
    try:
        srv.start(60)
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(GET11)
            next_response(s)  # an open keep-alive connection
            os.kill(srv.pid, signal.SIGTERM)
            assert srv.proc is not None
            assert srv.proc.wait(timeout=10) == 0
            assert s.recv(1) == b""  # its connections closed on the way out
    finally:
        srv.stop()
