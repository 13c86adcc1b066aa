"""An app whose import takes a while once ``$SLOW_IMPORT_FLAG`` names an existing
file: lets a test catch a HUP while the new workers are still loading the app."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

_flag = os.environ.get("SLOW_IMPORT_FLAG", "")
if _flag and os.path.exists(_flag):
    sys.stderr.write(f"slow import started {os.getpid()}\n")
    sys.stderr.flush()
    # Bounded: released early when the test removes the flag file.
    _deadline = time.monotonic() + 20
    while os.path.exists(_flag) and time.monotonic() < _deadline:
        time.sleep(0.05)
    sys.stderr.write(f"slow import done {os.getpid()}\n")
    sys.stderr.flush()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
