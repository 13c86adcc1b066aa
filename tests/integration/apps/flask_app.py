"""A small Flask app: the routes a typical site uses, served end to end."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator

from flask import Flask, Response, jsonify, request, send_file, stream_with_context

app = Flask(__name__)


@app.get("/hello")
def hello() -> str:
    return "hello flask"


@app.post("/form")
def form() -> Response:
    return jsonify(dict(request.form))


@app.post("/json")
def json_post() -> Response:
    data = request.get_json()
    return jsonify({"sum": sum(data["numbers"]), "name": data["name"]})


@app.post("/upload")
def upload() -> Response:
    f = request.files["file"]
    body = f.read()
    return jsonify(
        {
            "filename": f.filename,
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "field": request.form.get("field"),
        }
    )


@app.get("/stream")
def stream() -> Response:
    n = int(request.args.get("n", "5"))

    def gen() -> Iterator[str]:
        for i in range(n):
            yield f"line {i}\n"

    return Response(stream_with_context(gen()), mimetype="text/plain")


@app.get("/download")
def download() -> Response:
    kib = int(request.args.get("kib", "64"))
    f = tempfile.TemporaryFile()
    block = bytes(range(256)) * 4
    for _ in range(kib):
        f.write(block)
    f.seek(0)
    return send_file(f, mimetype="application/octet-stream", download_name="x.bin")


@app.get("/url")
def url() -> Response:
    return jsonify(
        {
            "scheme": request.scheme,
            "url_root": request.url_root,
            "path": request.path,
            "pid": os.getpid(),
        }
    )
