"""The bundled demo app (``fastwsgi.demo:app``) works end to end."""

from __future__ import annotations

import hashlib

import pytest
import requests


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_demo_routes(server, worker: str) -> None:
    srv = server("-k", worker, "fastwsgi.demo:app")
    base = f"http://127.0.0.1:{srv.port}"
    r = requests.get(f"{base}/", timeout=10)
    assert r.status_code == 200 and "Hello from fastwsgi" in r.text
    assert r.headers["Content-Type"].startswith("text/html")

    r = requests.post(f"{base}/echo", data=b"ping \x00\xff", timeout=10)
    assert r.content == b"ping \x00\xff"

    r = requests.get(f"{base}/stream?n=4", timeout=10)
    assert [line.split(" at ")[0] for line in r.text.splitlines()] == [f"line {i}" for i in range(4)]

    r = requests.get(f"{base}/download?kib=300", timeout=10)
    expected = (bytes(range(256)) * 4) * 300
    assert r.headers["Content-Length"] == str(len(expected))
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(expected).digest()

    r = requests.get(f"{base}/environ", timeout=10)
    assert "wsgi.url_scheme = 'http'" in r.text

    assert requests.get(f"{base}/nope", timeout=10).status_code == 404
