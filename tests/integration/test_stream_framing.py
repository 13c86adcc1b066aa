"""Responses of unknown length, seen by real clients (issue 18, item 2).

Every HTTP/1.1 response whose length is not known when its head goes out is
chunked, in every worker, also when the connection closes afterwards (the
sync worker): only the terminating chunk tells the client the body is whole.
So a stream whose app fails after two parts ends without it, and the client
says so: curl exits 18 ("transfer closed with outstanding read data
remaining"), Python's http.client raises IncompleteRead. Close-delimited, the
same truncated body looked complete (curl exit 0). An HTTP/1.0 request has no
chunked encoding: its stream stays close-delimited.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess

import pytest

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="needs curl (apt-get install curl)")
WORKERS = ["sync", "gthread"]
FAILING = ["/broken", "/broken?via=write"]  # through the iterable, through write()


def _start(server, worker: str):
    # (--threads > 1 would turn sync into gthread, as in Gunicorn.)
    threads = ["--threads", "2"] if worker == "gthread" else []
    return server("-k", worker, *threads, "apps.behave:app")


def _curl(port: int, path: str, *flags: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CURL or "curl", "-s", "-S", "-i", "--max-time", "30", *flags,
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, timeout=60,
    )


@needs_curl
@pytest.mark.parametrize("path", FAILING)
@pytest.mark.parametrize("worker", WORKERS)
def test_curl_sees_a_stream_cut_by_the_app(server, worker: str, path: str) -> None:
    srv = _start(server, worker)
    proc = _curl(srv.port, path)
    assert proc.returncode == 18, (proc.returncode, proc.stdout, proc.stderr)
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert body == b"part one\npart two\n"  # what was sent arrived, and no more
    srv.wait_for_log(r"Error handling request GET /broken")


@pytest.mark.parametrize("path", FAILING)
@pytest.mark.parametrize("worker", WORKERS)
def test_http_client_raises_incomplete_read_for_a_cut_stream(
        server, worker: str, path: str) -> None:
    srv = _start(server, worker)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
        with pytest.raises(http.client.IncompleteRead) as err:
            resp.read()
        assert err.value.partial == b"part one\npart two\n"
    finally:
        conn.close()


@needs_curl
@pytest.mark.parametrize("worker", WORKERS)
def test_a_whole_stream_is_chunked_and_complete(server, worker: str) -> None:
    srv = _start(server, worker)
    proc = _curl(srv.port, "/broken?fail=0", "-H", "Connection: close")
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head and b"\r\nConnection: close" in head
    assert body == b"part one\npart two\n"
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request("GET", "/broken?fail=0")
        assert conn.getresponse().read() == b"part one\npart two\n"
    finally:
        conn.close()


@needs_curl
@pytest.mark.parametrize("worker", WORKERS)
def test_http10_stream_stays_close_delimited(server, worker: str) -> None:
    srv = _start(server, worker)
    proc = _curl(srv.port, "/broken?fail=0", "--http1.0")
    assert proc.returncode == 0, proc.stderr
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert b"\r\nConnection: close" in head
    assert body == b"part one\npart two\n"
