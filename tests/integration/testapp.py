"""A WSGI app for process-level tests: each path exercises one arbiter behaviour.

``/`` and ``/pid`` answer the serving worker's pid (tests use it to tell
workers apart); ``/slow?s=F`` sleeps F seconds first (graceful shutdown keeps
it alive); ``/hang`` never answers on its own (heartbeat timeout); ``/grow?mb=N``
keeps N more MiB resident (memory recycling). The hang is bounded like every
loop in the suite: it gives up after 120 s, far past any test timeout.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

_HOARD: list[bytearray] = []


def _say(line: str) -> None:
    # The server's log file is the test's only window into the worker.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/slow":
        _say(f"slow request started {os.getpid()}")
        time.sleep(float(query.get("s", ["1"])[0]))
        body = f"slow done {os.getpid()}".encode()
    elif path == "/hang":
        _say(f"hang request started {os.getpid()}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)
        body = b"woke up"
    elif path == "/grow":
        mb = int(query.get("mb", ["1"])[0])
        chunk = bytearray(mb * 1024 * 1024)
        # Touch every page so it counts in RSS.
        for i in range(0, len(chunk), 4096):
            chunk[i] = 1
        _HOARD.append(chunk)
        body = f"{os.getpid()}".encode()
    else:
        body = f"{os.getpid()}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
