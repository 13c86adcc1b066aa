"""An app that announces every import of itself, to tell --preload (one import
in the master) from the default (one import per worker)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

sys.stderr.write(f"preloadapp imported in {os.getpid()}\n")
sys.stderr.flush()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
