"""A raw WSGI app for the differential suite: the edges a framework hides.

Streams of unknown length (an iterable and ``write()``), lists without a
Content-Length, ``wsgi.file_wrapper``,
an early answer that never reads the body, a failure after two parts, a
request that hangs (for ``--timeout``), and an echo that reads every body
framing (Content-Length, chunked) to EOF and answers its hash.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

StartResponse = Callable[..., Callable[[bytes], object]]

# The static files the fixtures write (COMPAT_STATIC_ROOT): one directory
# every server reads, so mtimes and ETags agree across servers.
STATIC_ROOT = os.environ.get("COMPAT_STATIC_ROOT", "")


def _stream() -> Iterator[bytes]:
    for i in range(3):
        yield f"part {i}\n".encode()


def _fail() -> Iterator[bytes]:
    yield b"part 0\n"
    yield b"part 1\n"
    raise RuntimeError("compat: the app fails mid-stream")


def _read_all(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    return stream.read()  # chunked: the server ends the input at the last chunk


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream()
    if path == "/list":
        # A list of known parts but no Content-Length: the server may count it.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"one\n", b"two\n"]
    if path == "/empty":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return []
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written 0\n")
        write(b"written 1\n")
        return [b"returned\n"]
    if path == "/file":
        f = open(os.path.join(STATIC_ROOT, "blob.bin"), "rb")  # noqa: SIM115 (closed by the wrapper)
        size = os.fstat(f.fileno()).st_size
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(size))],
        )
        return environ["wsgi.file_wrapper"](f, 64 * 1024)
    if path == "/early":
        # A size check that answers before reading a byte of the body.
        start_response("413 Content Too Large", [("Content-Type", "text/plain"),
                                                 ("Content-Length", "9")])
        return [b"too large"]
    if path == "/fail":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _fail()
    if path == "/hang":
        time.sleep(float(environ.get("QUERY_STRING", "").partition("=")[2] or 10))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"woke\n"]
    if path == "/echo":
        body = _read_all(environ)
        out = f"{len(body)} {hashlib.sha256(body).hexdigest()}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(out)))])
        return [out]
    if path == "/hello":
        # Answers a body to HEAD too: the server must leave it out.
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
        return [b"hello\n"]
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return [b"not found\n"]


def app_factory(global_config: dict[str, str], **local: str) -> Callable[..., Iterable[bytes]]:
    return app
