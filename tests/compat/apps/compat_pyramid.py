"""A Pyramid app for the differential suite, built by PasteDeploy (``site.ini``)."""

from __future__ import annotations

import hashlib
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response


def hello(request: Request) -> Response:
    greeting = request.registry.settings.get("greeting", "?")
    return Response(f"{greeting}\n", content_type="text/plain")


def echo(request: Request) -> dict[str, Any]:
    body = request.body
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def main(global_config: dict[str, str], **settings: str) -> Any:
    with Configurator(settings=settings) as config:
        config.add_route("hello", "/hello")
        config.add_route("echo", "/echo")
        config.add_view(hello, route_name="hello")
        config.add_view(echo, route_name="echo", renderer="json", request_method="POST")
        return config.make_wsgi_app()
