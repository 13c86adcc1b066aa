"""Answers what the server handed the app, as JSON: the method, the path and
every ``HTTP_*`` variable; reads the body whole first (so a body limit is the
server's answer, not the app's). For end-to-end settings tests."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    out = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "body": len(body),
        "headers": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
    }
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
