"""An app wrapped in wsgiref.validate: any PEP 3333 slip by the server raises
an AssertionError (answered 500) or a WSGIWarning (an error under
PYTHONWARNINGS=error)."""

from __future__ import annotations

import wsgiref.validate
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def _inner(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    if path == "/echo":
        n = int(environ.get("CONTENT_LENGTH") or 0)
        first = inp.readline()
        rest = inp.read(n - len(first)) if n > len(first) else b""
        body = first + rest
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/lines":
        lines = list(iter(inp.readline, b""))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"%d" % len(lines)]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen() -> Iterator[bytes]:
            for i in range(5):
                yield b"part %d\n" % i

        return gen()
    if path == "/file":
        f = open(__file__, "rb")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return environ["wsgi.file_wrapper"](f, 1024)
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return [b"returned"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


app = wsgiref.validate.validator(_inner)
