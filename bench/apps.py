"""WSGI apps the benchmark serves, one per scenario.

Each app does as little as it can so that what the benchmark measures is the
server: parsing, environ building, response framing and the socket calls. The
bodies are fixed bytes built once at import; the file scenario streams a real
1 MiB file through ``wsgi.file_wrapper`` so servers that support sendfile(2)
can show it. Every server under test loads these same callables by the spec
``bench.apps:NAME``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

HELLO = b"Hello, World!"  # 13 bytes: the classic smallest-useful response
BODY_64K = b"x" * (64 * 1024)
FILE_SIZE = 1024 * 1024
SLEEP_S = 0.010
# The file scenario's file: run.py creates it and passes its path; an app
# loaded on its own makes one in the temp dir.
FILE_ENV = "FASTWSGI_BENCH_FILE"


def _plain(start_response: StartResponse, body: bytes) -> list[bytes]:
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return _plain(start_response, HELLO)


def body64k(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    return _plain(start_response, BODY_64K)


def echo(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Read the whole request body and send it back."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    return _plain(start_response, body)


def sleep10(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """Stand-in for an app waiting 10 ms on a database: threads must overlap."""
    time.sleep(SLEEP_S)
    return _plain(start_response, HELLO)


def ensure_file(path: str | None = None) -> str:
    """Create the 1 MiB file (once) and return its path.

    Written to a temporary name and renamed, so servers starting at the same
    time never read a half-written file.
    """
    if path is None:
        path = os.path.join(tempfile.gettempdir(), "fastwsgi-bench-1m.bin")
    if os.path.exists(path) and os.path.getsize(path) == FILE_SIZE:
        return path
    tmp = f"{path}.{os.getpid()}.tmp"
    block = bytes(range(256)) * 256  # 64 KiB of non-compressible-looking bytes
    with open(tmp, "wb") as f:
        for _ in range(FILE_SIZE // len(block)):
            f.write(block)
    os.replace(tmp, path)
    return path


_FILE_PATH: str | None = None


def file1m(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    global _FILE_PATH
    if _FILE_PATH is None:
        _FILE_PATH = ensure_file(os.environ.get(FILE_ENV))
    f = open(_FILE_PATH, "rb")  # noqa: SIM115 - closed by the server via file_wrapper.close()
    start_response(
        "200 OK",
        [("Content-Type", "application/octet-stream"), ("Content-Length", str(FILE_SIZE))],
    )
    wrapper = environ.get("wsgi.file_wrapper")
    if wrapper is not None:
        return wrapper(f, 65536)
    return _read_chunks(f)


def _read_chunks(f: Any) -> Iterable[bytes]:
    with f:
        while chunk := f.read(65536):
            yield chunk


def reject(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    """An early answer (a size limit, an auth check): 413 without reading the
    request body (``?status=401`` for another status)."""
    status = "401 Unauthorized" if "401" in environ.get("QUERY_STRING", "") else "413 Content Too Large"
    body = b"rejected"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
