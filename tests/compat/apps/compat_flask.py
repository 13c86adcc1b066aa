"""A Flask app for the differential suite: streams, send_file, a size limit."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

from compat_raw import STATIC_ROOT
from flask import Flask, Response, abort, request, send_file, stream_with_context

app = Flask(__name__)
LIMIT = 1024  # /flask/limit answers 413 above it


@app.get("/hello")
def hello() -> Response:
    return Response("hello flask\n", mimetype="text/plain")


@app.post("/upload")
def upload() -> Response:
    body = request.get_data()
    return Response(f"{len(body)} {hashlib.sha256(body).hexdigest()}\n", mimetype="text/plain")


@app.post("/limit")
def limit() -> Response:
    if (request.content_length or 0) > LIMIT:
        abort(413)  # before reading a byte of the body
    body = request.get_data()
    return Response(f"{len(body)}\n", mimetype="text/plain")


@app.get("/stream")
def stream() -> Response:
    def gen() -> Iterator[str]:
        for i in range(4):
            yield f"flask line {i}\n"

    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.get("/file")
def file() -> Response:
    return send_file(os.path.join(STATIC_ROOT, "blob.bin"), conditional=True)


def app_factory(global_config: dict[str, str], **local: str) -> Flask:
    return app
