"""Every compat app in one WSGI site, assembled by PasteDeploy from ``site.ini``.

One server process then serves them all (``/django``, ``/flask``,
``/pyramid``, ``/falcon``, ``/raw``), which keeps the tier's start-up cost to
one app load per server. ``urlmap`` is the ini's composite factory: it mounts
each app at its prefix, moving the prefix from ``PATH_INFO`` to
``SCRIPT_NAME`` as a WSGI mount does.

``compat_wsgi:app`` loads the same ini for servers started with an APP
argument rather than ``--paste site.ini``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def urlmap(loader: Any, global_conf: dict[str, str], **mounts: str) -> WSGIApp:
    apps = {prefix.rstrip("/"): loader.get_app(name, global_conf=global_conf)
            for prefix, name in mounts.items()}

    def site(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        for prefix, mounted in apps.items():
            if path == prefix or path.startswith(prefix + "/"):
                environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
                environ["PATH_INFO"] = path[len(prefix):]
                return mounted(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain"),
                                         ("Content-Length", "10")])
        return [b"no mount\n"]

    return site

