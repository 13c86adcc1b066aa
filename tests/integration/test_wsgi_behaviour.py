"""WSGI behaviour of a real fastwsgi process, seen from real clients.

Chunked request bodies, proxy headers from trusted and untrusted peers,
SCRIPT_NAME from the environment and from a header, a client that leaves in
the middle of a response (the app's ``close()`` still runs and the worker
keeps serving), responses the app gets wrong (CR/LF in a header, more or
fewer bytes than its Content-Length), an app wrapped in ``wsgiref.validate``
and a 100 MiB download with and without sendfile.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from httpraw import at_eof, connect, read_response
from straced import calls, strace_prefix

WORKERS = ["sync", "gthread"]


def _worker_args(worker: str) -> list[str]:
    return ["-k", worker] + (["--threads", "4"] if worker == "gthread" else [])


def _get_json(port: int, path: str, headers: dict[str, str] | None = None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


@pytest.mark.parametrize("worker", WORKERS)
def test_chunked_request_body(server, worker: str) -> None:
    srv = server(*_worker_args(worker), "apps.behave:app")
    parts = [b"a" * 10, b"", b"b" * 70000, b"c"]

    def body() -> Iterator[bytes]:
        yield from (p for p in parts if p)

    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("POST", "/echo", body=body(), encode_chunked=True)
        resp = conn.getresponse()
        got = json.loads(resp.read())
    finally:
        conn.close()
    data = b"".join(parts)
    assert got == {"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_forwarded_proto_from_trusted_and_untrusted_peers(server) -> None:
    hdrs = {"X-Forwarded-Proto": "https"}
    trusted = server("apps.behave:app")  # default forwarded_allow_ips: 127.0.0.1,::1
    assert _get_json(trusted.port, "/env", hdrs)["wsgi.url_scheme"] == "https"
    assert _get_json(trusted.port, "/env")["wsgi.url_scheme"] == "http"
    untrusted = server("--forwarded-allow-ips", "10.9.9.9", "apps.behave:app")
    assert _get_json(untrusted.port, "/env", hdrs)["wsgi.url_scheme"] == "http"
    everyone = server("--forwarded-allow-ips", "*", "apps.behave:app")
    assert _get_json(everyone.port, "/env", hdrs)["wsgi.url_scheme"] == "https"


def test_wsgi_errors_goes_to_the_error_log(server, tmp_path: Path) -> None:
    errlog = tmp_path / "error.log"
    srv = server("--error-logfile", str(errlog), "apps.behave:app")
    status, body = srv.get("/errors?word=xyzzy")
    assert status == 200 and body == b"logged"
    srv.wait_for_log(r"^app says xyzzy$", path=errlog)


@pytest.mark.parametrize("worker", WORKERS)
def test_access_log_line_per_request(server, tmp_path: Path, worker: str) -> None:
    access = tmp_path / "access.log"
    srv = server(*_worker_args(worker), "--access-logfile", str(access), "apps.behave:app")
    status, _ = srv.get("/env?x=1")
    assert status == 200
    srv.wait_for_log(r'"GET /env\?x=1 HTTP/1\.1" 200 \d+ ', path=access)
    status, _ = srv.get("/crlf")
    assert status == 500
    srv.wait_for_log(r'"GET /crlf HTTP/1\.1" 500 ', path=access)


@pytest.mark.parametrize("worker", WORKERS)
def test_client_that_gave_up_waiting_is_logged_499(server, tmp_path: Path, worker: str) -> None:
    """nginx's rule: a client that closed before the response went out is
    logged 499, not the 200 the app produced after it left. The client is
    requests with a 0.5 s read timeout; the app takes 2 s."""
    access = tmp_path / "access.log"
    srv = server(*_worker_args(worker), "--access-logfile", str(access), "apps.behave:app")
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(f"http://127.0.0.1:{srv.port}/sleep?s=2", timeout=(10, 0.5))
    srv.wait_for_log(r'"GET /sleep\?s=2 HTTP/1\.1" 499 \d+ ', path=access)
    # A client that waits is logged with the status it got.
    assert requests.get(f"http://127.0.0.1:{srv.port}/sleep?s=0.5", timeout=30).status_code == 200
    srv.wait_for_log(r'"GET /sleep\?s=0\.5 HTTP/1\.1" 200 \d+ ', path=access)


def test_script_name_from_environment(server) -> None:
    srv = server("apps.behave:app", env={"SCRIPT_NAME": "/mnt"})
    env = _get_json(srv.port, "/mnt/env")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mnt", "/env")


def test_script_name_header_only_from_trusted_peer(server) -> None:
    hdrs = {"Script-Name": "/app"}
    trusted = server("apps.behave:app")
    env = _get_json(trusted.port, "/app/env", hdrs)
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/env")
    untrusted = server("--forwarded-allow-ips", "10.9.9.9", "apps.behave:app")
    conn = http.client.HTTPConnection("127.0.0.1", untrusted.port, timeout=10)
    try:
        conn.request("GET", "/app/env", headers=hdrs)
        body = conn.getresponse().read()
    finally:
        conn.close()
    # Untrusted: the header is ignored, so /app/env is not the /env route.
    assert b"pid" in body


@pytest.mark.parametrize("worker", WORKERS)
def test_client_leaving_mid_response_still_closes_iterable(
    server, tmp_path: Path, worker: str
) -> None:
    srv = server(*_worker_args(worker), "apps.behave:app")
    _, before = srv.get("/")
    marker = tmp_path / "closed.marker"
    with connect(srv.port) as sock:
        sock.sendall(f"GET /tracked?marker={marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = sock.recv(65536)
        assert got.startswith(b"HTTP/1.1 200")
    # closed with ~6 GiB still to come
    deadline = time.monotonic() + 30
    while not marker.exists():
        assert time.monotonic() < deadline, f"close() never ran:\n{srv.log()}"
        time.sleep(0.05)
    assert marker.read_text() == "closed"
    status, after = srv.get("/")
    assert status == 200 and after == before  # same worker, still serving
    assert "Traceback" not in srv.log()


@pytest.mark.parametrize("worker", WORKERS)
def test_crlf_in_app_header_is_500_and_never_on_the_wire(server, worker: str) -> None:
    srv = server(*_worker_args(worker), "apps.behave:app")
    data = b""
    with connect(srv.port) as sock:
        sock.sendall(b"GET /crlf HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for _ in range(1000):
            d = sock.recv(65536)
            if not d:
                break
            data += d
    assert data.startswith(b"HTTP/1.1 500 ")
    assert b"pwned" not in data and b"should not be sent" not in data
    assert "control character in header" in srv.log()


@pytest.mark.parametrize("worker", WORKERS)
def test_app_body_longer_than_content_length_truncated_and_closed(server, worker: str) -> None:
    srv = server(*_worker_args(worker), "apps.behave:app")
    with connect(srv.port) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET /overflow HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f)
        assert r is not None and r.body == b"abcd"
        assert f.read() == b""  # closed right after the declared length


@pytest.mark.parametrize("worker", WORKERS)
def test_app_body_shorter_than_content_length_closes(server, worker: str) -> None:
    srv = server(*_worker_args(worker), "apps.behave:app")
    with connect(srv.port) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        r = read_response(f)
        assert r is not None and r.body == b"abc" and not r.complete


@pytest.mark.parametrize("worker", WORKERS)
def test_wsgiref_validate_app_raises_and_warns_nothing(server, worker: str) -> None:
    srv = server(*_worker_args(worker), "apps.validated:app", env={"PYTHONWARNINGS": "error"})
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        for method, path, body in [
            ("GET", "/", None),
            ("POST", "/echo", b"first line\nsecond line\nrest"),
            ("POST", "/lines", b"a\nb\nc\n"),
            ("GET", "/stream", None),
            ("GET", "/file", None),
            ("GET", "/write", None),
            ("HEAD", "/", None),
        ]:
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            data = resp.read()
            assert resp.status == 200, (path, data, srv.log())
            if path == "/echo":
                assert data == body
            if path == "/lines":
                assert data == b"3"
            if path == "/write":
                assert data == b"written returned"
            if worker == "sync":
                conn.close()
    finally:
        conn.close()
    log = srv.log()
    assert "Warning" not in log and "Traceback" not in log and "AssertionError" not in log


@pytest.mark.slow
@pytest.mark.parametrize("sendfile", [True, False])
def test_100mib_download_intact(server, tmp_path: Path, sendfile: bool) -> None:
    path = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB
        for i in range(100):
            chunk = bytes([i]) + block[1:]
            f.write(chunk)
            digest.update(chunk)
    args = [] if sendfile else ["--no-sendfile"]
    # strace starts the server (no attach needed) and logs only sendfile calls:
    # the bytes alone cannot tell the two paths apart.
    trace = tmp_path / "strace.txt"
    command = [*strace_prefix(trace, "sendfile"), sys.executable, "-m", "fastwsgi"]
    srv = server(*args, "-w", "1", "apps.behave:app", command=command)
    got = hashlib.sha256()
    n = 0
    with connect(srv.port, timeout=60) as sock, sock.makefile("rb") as f:
        sock.sendall(f"GET /file?name={path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = read_response(f, head_only=True)
        assert head is not None and head.status == 200
        assert head.header("Content-Length") == str(100 * 1024 * 1024)
        for _ in range(100_000):
            d = f.read1(1 << 20)
            if not d:
                break
            got.update(d)
            n += len(d)
    assert n == 100 * 1024 * 1024
    assert got.hexdigest() == digest.hexdigest()
    srv.close()  # strace exits with the server and has written every line
    if sendfile:
        assert calls(trace, "sendfile") >= 1, trace.read_text()[-2000:]
    else:
        assert calls(trace, "sendfile") == 0, trace.read_text()[-2000:]


def test_at_eof_helper_sees_a_server_close(server) -> None:
    srv = server("-k", "sync", "apps.behave:app")
    with connect(srv.port) as sock, sock.makefile("rb") as f:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(f) is not None
        assert at_eof(sock)
