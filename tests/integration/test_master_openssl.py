"""The master initialises OpenSSL before it forks, so workers share it.

A worker that imports ``ssl`` itself faults in about 1.5 MiB of libcrypto and
libssl pages of its own (see ``arbiter.share_openssl``). The app below records,
while a worker imports it, whether ``ssl`` was already there: it must have come
from the master, since neither fastwsgi's modules nor the app import it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from server import Server, worker_classes

APP = '''
import sys

SSL_BEFORE_APP = "ssl" in sys.modules


def app(environ, start_response):
    body = b"ssl-inherited" if SSL_BEFORE_APP else b"ssl-missing"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


@pytest.mark.parametrize("preload", [False, True], ids=["probe", "preload"])
def test_worker_finds_ssl_imported_by_the_master(
    server: Callable[..., Server], tmp_path: Path, preload: bool
) -> None:
    (tmp_path / "sslprobeapp.py").write_text(APP)
    args = ["-k", worker_classes()[0], "--chdir", str(tmp_path)]
    srv = server(*args, *(["--preload"] if preload else []), "sslprobeapp:app")
    status, body = srv.get("/")
    assert (status, body) == (200, b"ssl-inherited")
