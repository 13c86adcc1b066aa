"""Flask's hello world, for the ``flask`` scenario.

The same 13-byte body as ``bench.apps:hello``, served through Flask's routing,
request and response objects: comparing the two scenarios shows how much of a
framework request is the server's cost and how much is the framework's.
"""

from __future__ import annotations

from flask import Flask

from bench.apps import HELLO

app = Flask(__name__)


@app.route("/")
def hello() -> tuple[bytes, int, dict[str, str]]:
    return HELLO, 200, {"Content-Type": "text/plain"}
