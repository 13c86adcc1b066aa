"""A small Pyramid app, built by PasteDeploy from an ini file (``--paste``,
``pserve``): it answers with the settings the ini gave it and the PasteDeploy
``global_conf``, and logs through the ini's logging config."""

from __future__ import annotations

import logging
import os
from typing import Any

from pyramid.config import Configurator
from pyramid.request import Request
from pyramid.response import Response

log = logging.getLogger("pyramid_app")


def hello(request: Request) -> Response:
    settings = request.registry.settings
    log.info("hello from pyramid_app in %s", os.getpid())
    return Response(
        f"{settings['greeting']} here={settings['here_dir']} who={settings.get('who', '-')}",
        content_type="text/plain",
    )


def main(global_config: dict[str, Any], **settings: Any) -> Any:
    settings["who"] = global_config.get("who", "-")
    with Configurator(settings=settings) as config:
        config.add_route("hello", "/")
        config.add_view(hello, route_name="hello")
        return config.make_wsgi_app()
