"""The app behind the metrics tests: a status on demand, a body read, a hang.

* ``/status/NNN`` answers NNN with a 4-byte body;
* ``/boom`` raises (the server answers 500);
* ``/read`` reads the whole request body (a client that leaves first is a 499);
* ``/hang`` says so on stderr and sleeps up to 120 s (a busy or stuck worker);
* ``/grow?mb=N`` keeps N MiB more resident (max_worker_memory);
* ``/crash`` ends the worker process with exit status 1;
* anything else: 200 with the worker's pid.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

_HOARD: list[bytearray] = []


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    status = "200 OK"
    body = str(os.getpid()).encode()
    if path.startswith("/status/"):
        status = f"{path[8:]} Status"
        body = b"body"
    elif path == "/boom":
        raise RuntimeError("boom")
    elif path == "/read":
        body = str(len(environ["wsgi.input"].read())).encode()
    elif path == "/hang":
        sys.stderr.write(f"hang request started {os.getpid()}\n")
        sys.stderr.flush()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.2)
    elif path == "/crash":
        os._exit(1)
    elif path == "/grow":
        mb = int(environ.get("QUERY_STRING", "mb=1").partition("=")[2] or 1)
        chunk = bytearray(mb * 1024 * 1024)
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1  # touch every page so it counts in RSS
        _HOARD.append(chunk)
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
