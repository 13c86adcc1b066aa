"""PasteDeploy: ``--paste INI[#name]`` and the ``paste.server_runner`` entry point.

Theory of operation
-------------------
Two ways in, as in Gunicorn (``gunicorn/app/pasterapp.py``):

* ``fastwsgi --paste development.ini[#name]``: the ini names the app
  (``[app:main]``, or ``[app:name]``/``[pipeline:name]``/``[composite:name]``),
  the command line (and config file) everything else. ``config.load`` makes
  the ini's absolute path the APP, the default process name and, when it has
  ``[loggers]``, the logging config; :class:`PasteLoader` builds the app with
  ``paste.deploy.loadapp`` wherever an APP module would be imported (the
  probe child, each worker, or the master with ``--preload``), with the ini's
  directory as ``relative_to`` so its relative paths mean what they say.
* ``use = egg:fastwsgi#main`` in a ``[server:main]`` section: ``pserve`` or
  ``paste.deploy.loadserver`` has built the app in its own process and calls
  :func:`serve` with it; that section's keys (``host``/``port`` or ``bind``,
  ``workers``, ``worker_class``, ``threads``, any setting by its config-file
  name) override a config file (``config = FILE``, else the default
  ``fastwsgi.conf.py``/``gunicorn.conf.py``), and the process becomes the
  master. The app is already loaded, so workers inherit it as with
  ``--preload``.

PasteDeploy is optional (``pip install 'fastwsgi[paste]'``); without it,
``--paste`` stops the start with one line that says what to install.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from fastwsgi.app import AppLoader, AppSpec, WSGIApp, describe_exception
from fastwsgi.errors import AppImportError, ConfigError

MISSING = "--paste needs PasteDeploy, which is not installed: pip install 'fastwsgi[paste]'"


def require_paste_deploy() -> None:
    """One ConfigError line when ``paste.deploy`` cannot be found."""
    try:
        found = importlib.util.find_spec("paste.deploy")
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(MISSING)


def global_conf(items: Iterable[str]) -> dict[str, str]:
    """``--paste-global KEY=VALUE`` items as PasteDeploy's ``global_conf``."""
    return dict(item.split("=", 1) for item in items)


class PasteLoader(AppLoader):
    """An :class:`AppLoader` whose APP is ``/abs/path.ini[#name]``."""

    def __init__(
        self,
        uri: str,
        chdir: str | None = None,
        pythonpath: Iterable[str] = (),
        reload: bool = False,
        log: Any = None,
        extra_files: Iterable[str] = (),
        paste_global_conf: Iterable[str] = (),
    ) -> None:
        self.path, _, self.name = uri.partition("#")
        # --reload watches the ini too.
        super().__init__(uri, chdir, pythonpath, reload, log, (*tuple(extra_files), self.path))
        self.global_conf = global_conf(paste_global_conf)

    def parse_spec(self, uri: str) -> AppSpec:
        # load() names the module a failed --reload load could not import;
        # for an ini that is PasteDeploy itself.
        return AppSpec("paste.deploy", ())

    def check(self) -> None:
        require_paste_deploy()
        if not os.path.isfile(self.path):
            raise AppImportError(f"--paste: {self.path!r} not found")

    def _resolve(self) -> WSGIApp:
        from paste.deploy import loadapp

        try:
            app: WSGIApp = loadapp(
                "config:" + self.path,
                name=self.name or None,
                relative_to=os.path.dirname(self.path),
                global_conf=self.global_conf or None,
            )
        except Exception as exc:
            raise AppImportError(
                f"Failed to load application {self.uri!r}: {describe_exception(exc)}"
            ) from exc
        if not callable(app):
            raise AppImportError(f"Failed to load application {self.uri!r}: not callable")
        return app


def serve(app: WSGIApp, global_conf: Mapping[str, Any], **local_conf: Any) -> None:
    """The ``paste.server_runner`` entry point ``main``::

        [server:main]
        use = egg:fastwsgi#main
        host = 127.0.0.1
        port = 6543
        workers = 4

    Runs the master in this process until it stops; a non-zero exit status
    is raised as ``SystemExit``.
    """
    from fastwsgi import cli, config

    ini = str(global_conf.get("__file__") or "")
    here = str(global_conf.get("here") or (os.path.dirname(ini) if ini else os.getcwd()))
    conf = {k.lower(): v for k, v in local_conf.items() if v is not None}
    host, port = conf.pop("host", ""), conf.pop("port", "")
    if host and port:
        conf["bind"] = f"{host}:{port}"
    elif host:
        conf["bind"] = host.split(",")
    elif port:
        conf["bind"] = f"127.0.0.1:{port}"  # Gunicorn's default host
    argv = ["-c", conf.pop("config")] if conf.get("config") else []
    where = f"[server] section of {ini or 'the paste config'}"
    try:
        settings = config.load(argv, os.environ, here)
        for key, value in conf.items():
            if key in config.SETTINGS_BY_NAME:
                settings.set(key, value, where)
            elif key in config.UNSUPPORTED_BY_NAME:
                settings.note_unsupported(key, where, value)
            else:
                raise ConfigError(f"unknown setting {key!r} ({where})")
        settings.app_uri = ini or "paste"
        given = settings["logconfig"] or settings["logconfig_dict"] or settings["logconfig_json"]
        if ini and not given and config.ini_has_logging(ini):
            settings.set("logconfig", ini, f"[loggers] in {ini}")
        status = cli.serve_app(settings, app)
    except ConfigError as exc:
        sys.stderr.write(f"fastwsgi: error: {exc}\n")
        status = exc.exit_status
    if status:
        raise SystemExit(status)
