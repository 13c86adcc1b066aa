"""The ``fastwsgi`` command: Gunicorn's command line, config file and exit codes.

Theory of operation
-------------------
Everything that can be wrong with the input is found here, in the master,
before any listener is opened or worker forked: settings are parsed and
validated (``config.load``: defaults < config file < ``FASTWSGI_CMD_ARGS`` <
command line), the APP module is located without running it
(``AppLoader.check``), the log files are opened. Each failure is one line on
stderr, ``fastwsgi: error: ...``; exit status 2 for usage errors
(``ConfigError``) and 1 for runtime failures (``AppImportError``,
``BindError``, an unwritable log file). A traceback is printed only with
``--log-level debug``.

Then the arbiter takes over (imported lazily: the CLI and its tests do not
depend on it). Before forking any worker it has a probe child import the app
(``Arbiter.probe_app``); an app that raises on import is reported the same
way, one ``fastwsgi: error: Failed to load application ...`` line and exit 1,
as ``--check-config`` reports it here. ``reloader`` re-reads the config file and arguments on SIGHUP
and returns fresh ``Groups``.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from fastwsgi import config
from fastwsgi.app import AppLoader, describe_exception
from fastwsgi.config import Groups, Settings
from fastwsgi.errors import AppImportError, ConfigError, FastWSGIError

SOMAXCONN_PATH = "/proc/sys/net/core/somaxconn"
# File descriptors a process holds besides listeners and client connections:
# std streams, log files, epoll, the wake-up pipe, the heartbeat, imports and
# whatever the app itself opens. A margin, not a measurement.
FD_RESERVE = 32


def _wants_debug(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Guess --log-level debug before (or without) a successful parse."""
    words = list(argv) + environ.get(config.CMD_ARGS_ENV, "").split()
    for i, word in enumerate(words):
        if word == "--log-level=debug" or (word == "--log-level" and words[i + 1:i + 2] == ["debug"]):
            return True
    return False


def fds_needed(groups: Groups) -> int:
    """Open files one process may need: the documented formula.

    worker: listeners + max connections (1 for sync, worker_connections for
    gthread) + FD_RESERVE; master: listeners + 2 per worker (pipes) +
    FD_RESERVE. The larger of the two.
    """
    listeners = len(groups.arbiter.bind)
    conns = groups.worker.worker_connections if groups.worker.worker_class != "sync" else 1
    worker = listeners + conns + FD_RESERVE
    master = listeners + 2 * groups.arbiter.workers + FD_RESERVE
    return max(worker, master)


def startup_warnings(groups: Groups, somaxconn_path: str = SOMAXCONN_PATH,
                     nofile: tuple[int, int] | None = None) -> list[str]:
    """Configuration the kernel will silently cut down; called once at start."""
    out = []
    try:
        with open(somaxconn_path) as f:
            somaxconn = int(f.read().strip())
    except (OSError, ValueError):
        somaxconn = None
    if somaxconn is not None and groups.arbiter.backlog > somaxconn:
        out.append(f"--backlog {groups.arbiter.backlog} exceeds net.core.somaxconn {somaxconn}: "
                   f"the kernel caps the listen queue at {somaxconn}")
    soft, _hard = nofile if nofile is not None else resource.getrlimit(resource.RLIMIT_NOFILE)
    need = fds_needed(groups)
    if soft != resource.RLIM_INFINITY and soft < need:
        out.append(f"open-file limit (RLIMIT_NOFILE) is {soft}, below the {need} this configuration "
                   "can need (listeners + connections per worker + reserve); raise it with ulimit -n")
    return out


def _check_worker_class(name: str) -> None:
    if name in ("sync", "gthread"):
        return
    module = name.rpartition(".")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(f"invalid value for --worker-class: cannot find module {module!r}")


def _apply_env(raw_env: Sequence[str]) -> None:
    for item in raw_env:
        key, _, value = item.partition("=")
        os.environ[key] = value


def prepare(
    argv: Sequence[str], environ: Mapping[str, str], cwd: str | None = None
) -> tuple[Settings, Groups, AppLoader]:
    """Parse, validate and check everything the master can check before forking.

    ``cwd``: the directory relative paths in the arguments are relative to
    (default: the current one); see ``config.load``."""
    settings = config.load(argv, environ, cwd)
    if not settings.app_uri:
        raise ConfigError("no APP given: pass module:callable (or set wsgi_app in the config file)")
    groups = settings.groups()
    _check_worker_class(groups.worker.worker_class)
    _apply_env(groups.raw_env)
    try:
        loader = make_loader(groups)
    except AppImportError as exc:  # a malformed APP is a usage error
        raise ConfigError(str(exc)) from exc
    loader.prepare()
    loader.check()
    return settings, groups, loader


def make_loader(groups: Groups) -> AppLoader:
    """The APP's loader: a module's, or a PasteDeploy ini's (``--paste``)."""
    reload = groups.arbiter.reload and not groups.arbiter.preload_app
    if groups.paste:
        from fastwsgi.paste import PasteLoader

        return PasteLoader(groups.app_uri, groups.chdir, groups.pythonpath, reload=reload,
                           extra_files=groups.arbiter.reload_extra_files,
                           paste_global_conf=groups.paste_global_conf)
    return AppLoader(groups.app_uri, groups.chdir, groups.pythonpath, reload=reload,
                     extra_files=groups.arbiter.reload_extra_files)


def make_reloader(
    argv: Sequence[str], app_uri: str, log: Any = None, cwd: str | None = None
) -> Callable[[], Groups | tuple[Groups, AppLoader]]:
    """For the arbiter's SIGHUP: re-read the config file and arguments.

    Returns the new Groups, or (Groups, AppLoader) when the APP itself
    changed (a config file's ``wsgi_app``). Raises ConfigError or
    AppImportError when the new configuration is broken; the arbiter logs it
    and keeps running with the old one. ``cwd`` is the directory the command
    started in: the master has moved to ``--chdir`` since, and a relative
    ``-c`` or ``--pythonpath`` must mean what it meant at start-up.
    """
    start_cwd = os.getcwd() if cwd is None else cwd

    def reloader() -> Groups | tuple[Groups, AppLoader]:
        settings = config.load(argv, os.environ, start_cwd)
        if not settings.app_uri:
            raise ConfigError("no APP given")
        groups = settings.groups()
        _check_worker_class(groups.worker.worker_class)
        _apply_env(groups.raw_env)
        if groups.app_uri == app_uri:
            return groups
        loader = make_loader(groups)
        loader.log = log
        loader.prepare()
        loader.check()
        return groups, loader

    return reloader


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    debug = _wants_debug(argv, environ)
    start_cwd = os.getcwd()  # before --chdir: where a USR2 re-exec must start
    try:
        settings, groups, loader = prepare(argv, environ, start_cwd)
        debug = groups.log.loglevel == "debug"
        return _start(settings, groups, loader,
                      lambda log: make_reloader(argv, groups.app_uri, log, start_cwd), start_cwd)
    except FastWSGIError as exc:
        return _fail(str(exc), getattr(exc, "exit_status", 1), debug)
    except _RuntimeFailure as exc:
        return _fail(str(exc), 1, debug)


class _Built:
    """A loader for an app object that exists already (the paste server runner)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.log: Any = None

    def load(self) -> Any:
        return self.app

    __call__ = load


def serve_app(settings: Settings, app: Any) -> int:
    """Run the master for an app built by the caller (``pserve``, through
    ``fastwsgi.paste.serve``): the settings are complete, the app fixed, so
    a HUP restarts the workers with the same app, as ``--preload`` does."""
    debug = settings["loglevel"] == "debug"
    try:
        groups = settings.groups()
        debug = groups.log.loglevel == "debug"
        _check_worker_class(groups.worker.worker_class)
        _apply_env(groups.raw_env)
        return _start(settings, groups, _Built(app), None, os.getcwd())
    except FastWSGIError as exc:
        return _fail(str(exc), getattr(exc, "exit_status", 1), debug)
    except _RuntimeFailure as exc:
        return _fail(str(exc), 1, debug)


def _start(settings: Settings, groups: Groups, loader: Any,
           make_reload: Callable[[Any], Any] | None, start_cwd: str) -> int:
    """Logging, start-up warnings, then the arbiter (or --check-config).
    ``make_reload(log)`` builds the SIGHUP reloader (None: nothing to re-read)."""
    from fastwsgi.glogging import Logger

    try:
        log = Logger(groups.log)
    except (OSError, ValueError, TypeError, AttributeError, ImportError, KeyError) as exc:
        raise _RuntimeFailure(f"cannot set up logging: {exc}") from exc
    loader.log = log
    for line in settings.warnings():
        log.warning(line)
    if groups.arbiter.reload and groups.arbiter.preload_app:
        log.warning("--reload has no effect with --preload: the app is loaded once, in the master")
    for line in startup_warnings(groups):
        log.warning(line)
    if settings["print_config"]:
        print(settings.format())
    if settings["check_config"] or settings["print_config"]:
        loader.reload = False  # a check must fail, not serve the error page
        try:
            loader.load()
        except SystemExit as exc:  # sys.exit() in the app at import
            raise _RuntimeFailure(
                f"Failed to load application {groups.app_uri!r}: {describe_exception(exc)}"
            ) from exc
        return 0
    from fastwsgi.arbiter import Arbiter

    return Arbiter(
        groups, loader, log, reloader=make_reload(log) if make_reload is not None else None,
        start_cwd=start_cwd,
    ).run()


class _RuntimeFailure(Exception):
    pass


def _fail(message: str, status: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    sys.stderr.write(f"fastwsgi: error: {message}\n")
    sys.stderr.flush()
    return status


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))

