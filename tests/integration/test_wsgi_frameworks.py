"""Flask and Django served end to end by a real fastwsgi, sync and gthread.

One server per (framework, worker) pair; each test walks the things a real
site does: GET, form POST, JSON POST, multipart upload, a streamed response
and a file download (through ``wsgi.file_wrapper``, so sendfile), with the
``requests`` client over real sockets.
"""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

FRAMEWORKS = {"flask": "apps.flask_app:app", "django": "apps.django_app:app"}


def _blocks(kib: int) -> bytes:
    return (bytes(range(256)) * 4) * kib


@pytest.mark.parametrize("worker", ["sync", "gthread"])
@pytest.mark.parametrize("framework", ["flask", "django"])
def test_framework_end_to_end(server, framework: str, worker: str) -> None:
    srv = server(
        "-k", worker, "--threads", "4" if worker == "gthread" else "1", FRAMEWORKS[framework]
    )
    base = f"http://127.0.0.1:{srv.port}"
    with requests.Session() as s:
        r = s.get(f"{base}/hello", timeout=10)
        assert r.status_code == 200 and r.text == f"hello {framework}"
        assert r.headers["Connection"] == ("keep-alive" if worker == "gthread" else "close")

        r = s.post(f"{base}/form", data={"a": "1", "b": "zwei é"}, timeout=10)
        assert r.status_code == 200 and r.json() == {"a": "1", "b": "zwei é"}

        r = s.post(f"{base}/json", json={"numbers": [1, 2, 3.5], "name": "n"}, timeout=10)
        assert r.json() == {"sum": 6.5, "name": "n"}

        payload = os.urandom(3 * 1024 * 1024 + 17)
        r = s.post(
            f"{base}/upload",
            files={"file": ("data.bin", payload)},
            data={"field": "value"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert r.json() == {
            "filename": "data.bin",
            "size": len(payload),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "field": "value",
        }

        r = s.get(f"{base}/stream?n=50", timeout=10, stream=True)
        lines = list(r.iter_lines())
        assert lines == [f"line {i}".encode() for i in range(50)]
        if worker == "gthread":
            assert r.headers.get("Transfer-Encoding") == "chunked"

        r = s.get(f"{base}/download?kib=2048", timeout=30)
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(2048 * 1024)
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(_blocks(2048)).digest()

        # The session is still usable after everything above.
        assert s.get(f"{base}/hello", timeout=10).status_code == 200
    assert "Traceback" not in srv.log()
