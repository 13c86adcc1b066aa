"""One route per server behaviour the WSGI integration tests check."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]


class _Tracked:
    """An iterable whose close() leaves a marker file (PEP 3333: always called)."""

    def __init__(self, marker: str, blocks: int, size: int) -> None:
        self.marker = marker
        self.blocks = blocks
        self.size = size

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.blocks):
            yield b"x" * self.size

    def close(self) -> None:
        with open(self.marker, "w") as f:
            f.write("closed")


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/thread":
        body = b"%d" % threading.get_ident()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/tid":  # the kernel's id, to find the thread in /proc/<pid>/task
        body = b"%d" % threading.get_native_id()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/env":
        keys = (
            "wsgi.url_scheme",
            "SCRIPT_NAME",
            "PATH_INFO",
            "REMOTE_ADDR",
            "SERVER_NAME",
            "SERVER_PORT",
            "wsgi.multithread",
            "wsgi.multiprocess",
        )
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/errors":
        environ["wsgi.errors"].write(f"app says {q.get('word', 'hi')}\n")
        start_response("200 OK", [])
        return [b"logged"]
    if path == "/echo":
        data = environ["wsgi.input"].read()
        body = json.dumps({"len": len(data), "sha256": hashlib.sha256(data).hexdigest()}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/crlf":
        start_response("200 OK", [("X-Injected", "a\r\nSet-Cookie: pwned=1")])
        return [b"should not be sent"]
    if path == "/overflow":
        start_response("200 OK", [("Content-Length", "4")])
        return iter([b"ab", b"cdef", b"ghij"])
    if path == "/short":
        start_response("200 OK", [("Content-Length", "10")])
        return iter([b"abc"])
    if path == "/tracked":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _Tracked(q["marker"], int(q.get("blocks", "100000")), 65536)
    if path == "/file":
        f = open(q["name"], "rb")
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 65536)
    if path == "/drip":
        n, pause = int(q.get("n", "5")), float(q.get("s", "0.5"))

        def drip() -> Iterator[bytes]:
            for i in range(n):
                yield b"drop %d\n" % i
                time.sleep(pause)

        start_response("200 OK", [("Content-Type", "text/plain")])
        return drip()
    if path == "/reject":
        # An early answer (an auth check, a size limit): the body is never read.
        body = b"rejected"
        reasons = {"401": "Unauthorized", "403": "Forbidden", "413": "Content Too Large"}
        code = q.get("status", "413")
        start_response(f"{code} {reasons[code]}",
                       [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/broken":
        # A stream of unknown length whose app fails after two parts, through
        # the iterable or through write().
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        if q.get("via") == "write":
            write(b"part one\n")
            write(b"part two\n")
            raise RuntimeError("the app failed mid-stream")

        def parts() -> Iterator[bytes]:
            yield b"part one\n"
            yield b"part two\n"
            if q.get("fail", "1") == "1":
                raise RuntimeError("the app failed mid-stream")

        return parts()
    if path == "/sleep":
        # The server log is the test's window into the worker.
        sys.stderr.write(f"sleep started {os.getpid()}\n")
        sys.stderr.flush()
        time.sleep(float(q.get("s", "1")))
        start_response("200 OK", [])
        return [b"slept %d" % os.getpid()]
    body = b"pid %d" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
