"""The sync worker with real clients: one request per connection, slow clients
bounded by the timeouts, and a busy worker never chosen for a new connection."""

from __future__ import annotations

import re
import threading

import requests
from httpraw import at_eof, connect, read_response


def test_every_response_closes_the_connection(server) -> None:
    srv = server("-k", "sync", "apps.behave:app")
    with connect(srv.port) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n" * 2)
        r = read_response(f)
        assert r is not None and r.status == 200
        assert r.header("Connection") == "close"
        assert read_response(f) is None  # the pipelined second request is not served
    with requests.Session() as s:
        for _ in range(3):
            r2 = s.get(f"http://127.0.0.1:{srv.port}/env", timeout=10)
            assert r2.status_code == 200
            assert r2.headers["Connection"] == "close"
            assert r2.json()["wsgi.multithread"] is False


def test_idle_client_is_dropped_and_others_are_served(server) -> None:
    srv = server("-k", "sync", "--header-timeout", "1", "apps.behave:app")
    with connect(srv.port) as idle:
        # One worker, busy waiting on the idle client: the next one is served
        # once the header timeout drops it.
        status, body = srv.get("/", timeout=20)
        assert status == 200 and body.startswith(b"pid")
        assert at_eof(idle, timeout=15)


def test_slow_body_is_cut_off(server) -> None:
    srv = server("-k", "sync", "--body-timeout", "1", "apps.behave:app")
    with connect(srv.port, timeout=20) as sock, sock.makefile("rb") as f:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly a bit")
        r = read_response(f)
        assert r is not None and r.status == 408
        assert read_response(f) is None
    status, _ = srv.get("/")
    assert status == 200


def test_busy_worker_is_not_woken_for_a_new_connection(server) -> None:
    srv = server("-k", "sync", "-w", "2", "apps.behave:app")
    srv.wait_workers(2)
    results: list[bytes] = []

    def slow() -> None:
        with connect(srv.port, timeout=30) as s, s.makefile("rb") as f:
            s.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            r = read_response(f)
            results.append(r.body if r else b"")

    mark = srv.mark()
    t = threading.Thread(target=slow)
    t.start()
    busy = int(srv.wait_for_log(r"sleep started (\d+)", after=mark).group(1))
    # While that worker sleeps in the app, a new connection goes to the other.
    status, body = srv.get("/", timeout=10)
    assert status == 200
    other = int(re.fullmatch(rb"pid (\d+)", body).group(1))  # type: ignore[union-attr]
    assert other != busy
    t.join(30)
    assert results == [b"slept %d" % busy]
