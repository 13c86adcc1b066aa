"""Turn the APP argument into a WSGI callable.

Theory of operation
-------------------
APP is ``module:expr`` where ``expr`` is a (dotted) attribute name, or a call
of one with literal arguments (``create_app("prod", debug=False)``), parsed
with ``ast`` so nothing but a name lookup and a call runs; a bare ``module``
means ``module:application``. These are Gunicorn's rules (``util.import_app``).

The master calls ``check()`` first: it resolves the module with
``importlib.util.find_spec``, which runs no application code (for a dotted
module only the parent packages' ``__init__`` run), so a misspelt module is
reported once, cleanly, instead of by every worker. Workers (or the master with
``--preload``) call ``load()``, which imports and resolves for real; at
start-up the arbiter's probe child calls it once before any worker is forked.

``prepare()`` applies ``--chdir`` and ``--pythonpath`` to the process, as
Gunicorn does in the master, so forked workers inherit the same ``sys.path``.

With ``--reload`` (development) ``load()`` also starts a daemon thread in the
worker that polls the modification times of every loaded module's file once a
second (Gunicorn's polling reloader), and the ``--reload-extra-file`` paths
and glob patterns (expanded at every check); on a change the worker sends itself
SIGTERM, finishes its request and exits, and the arbiter forks a fresh worker
that imports the new code. Not with ``--preload``: the master would watch.
A worker whose app cannot be loaded under ``--reload`` (the edit just saved
is broken) stays up, answers 500 with the error and watches the files named
in the traceback too, so saving the fix brings the app back.

Load failures are ``AppImportError`` with one line of text naming the APP, the
exception and the innermost file:line outside fastwsgi and the standard
library (``describe_exception``): that line is what the worker logs and the
master repeats; the traceback is kept on ``__cause__`` for debug logging.
"""

from __future__ import annotations

import ast
import glob
import importlib
import importlib.util
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fastwsgi.errors import AppImportError

# The type of a WSGI application (PEP 3333), for every module that holds one.
WSGIApp = Callable[..., Any]


@dataclass(frozen=True)
class AppSpec:
    module: str
    attrs: tuple[str, ...]
    call: bool = False
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_app_uri(uri: str) -> AppSpec:
    """Split and check ``module:expr`` without importing anything."""
    uri = uri.strip()
    module, sep, expr = uri.partition(":")
    if not uri or not module or (sep and not expr.strip()):
        raise AppImportError(f"APP {uri!r} is not of the form module:callable")
    if not all(p.isidentifier() for p in module.split(".")):
        raise AppImportError(f"APP {uri!r}: {module!r} is not a module name")
    if not sep:
        return AppSpec(module, ("application",))
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise AppImportError(
            f"APP {uri!r}: cannot parse {expr!r} as an attribute name or call"
        ) from None
    call = isinstance(node, ast.Call)
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    if isinstance(node, ast.Call):
        try:
            args = tuple(ast.literal_eval(a) for a in node.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
        except ValueError:
            raise AppImportError(f"APP {uri!r}: factory arguments must be literals") from None
        if any(k.arg is None for k in node.keywords) or any(
            isinstance(a, ast.Starred) for a in node.args
        ):
            raise AppImportError(f"APP {uri!r}: factory arguments must be literals")
        node = node.func
    attrs: list[str] = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppImportError(f"APP {uri!r}: {expr!r} is not an attribute name or a call of one")
    attrs.append(node.id)
    return AppSpec(module, tuple(reversed(attrs)), call, args, kwargs)


def describe_exception(exc: BaseException) -> str:
    """``Type: message (file:line)``: the location is the innermost frame of
    code that is neither fastwsgi's, the import machinery's nor the standard
    library's, which is where the app (or a library it uses) raised. (A
    SyntaxError names its file and line in its message already.)"""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    where = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if not _is_loader_frame(frame.filename):
            where = f"{_short_path(frame.filename)}:{frame.lineno}"
    return f"{text} ({where})" if where else text


_FASTWSGI_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_install_dirs: tuple[str, tuple[str, ...]] | None = None


def _stdlib_and_site_dirs() -> tuple[str, tuple[str, ...]]:
    # Looked up on the first error, not at import: sysconfig loads the build's
    # whole _sysconfigdata dict, memory the master would hand to every worker.
    # If sysconfig cannot be imported, the error being described is often
    # the reason: a worker that dropped to --user cannot read a standard
    # library installed under a private directory (/root/.pyenv...). Then
    # the stdlib is where ``os`` came from and the site dirs are the
    # sys.path entries below it, so the message still names the app's own
    # error rather than this lookup's.
    global _install_dirs
    if _install_dirs is None:
        try:
            import sysconfig

            paths = sysconfig.get_paths()
            site = tuple({paths[k] + os.sep for k in ("purelib", "platlib")})
            _install_dirs = (paths["stdlib"] + os.sep, site)
        except Exception:
            stdlib = os.path.dirname(os.__file__) + os.sep
            site = tuple({p + os.sep for p in sys.path if p.startswith(stdlib)
                          and os.path.basename(p) in ("site-packages", "dist-packages")})
            _install_dirs = (stdlib, site)
    return _install_dirs


def _is_loader_frame(filename: str) -> bool:
    if filename.startswith(("<", _FASTWSGI_DIR)):
        return True
    stdlib, site = _stdlib_and_site_dirs()
    return filename.startswith(stdlib) and not filename.startswith(site)


def _short_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith(os.pardir) else rel


class AppLoader:
    """``AppLoader(uri, chdir, pythonpath)``: ``check()`` in the master, ``load()`` in workers.

    The instance is callable (``loader()`` is ``load()``), so it can be passed
    wherever a zero-argument app factory is expected.
    """

    def __init__(
        self,
        uri: str,
        chdir: str | None = None,
        pythonpath: Iterable[str] = (),
        reload: bool = False,
        log: Any = None,
        extra_files: Iterable[str] = (),
    ) -> None:
        self.uri = uri
        self.chdir = chdir
        self.pythonpath = tuple(pythonpath)
        self.spec = self.parse_spec(uri)
        self.reload = reload
        self.log = log
        self.extra_files = tuple(extra_files)  # --reload-extra-file
        self.watcher: CodeWatcher | None = None

    def parse_spec(self, uri: str) -> AppSpec:
        """What ``load()`` imports: ``module:callable`` (a subclass loads otherwise)."""
        return parse_app_uri(uri)

    def prepare(self) -> None:
        """chdir and sys.path as Gunicorn: the working directory first on the
        path (so ``module`` resolves relative to it), --pythonpath before it."""
        if self.chdir:
            try:
                os.chdir(self.chdir)
            except OSError as exc:
                raise AppImportError(
                    f"cannot change directory to {self.chdir!r}: {exc.strerror}"
                ) from exc
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        for path in reversed(self.pythonpath):
            path = os.path.abspath(path)
            if path not in sys.path:
                sys.path.insert(0, path)

    def check(self) -> None:
        """Fail early, before any fork, when the module cannot be found."""
        name = self.spec.module
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError as exc:
            raise AppImportError(
                f"cannot import {self.uri!r}: no module named {exc.name!r}"
            ) from exc
        except (ImportError, ValueError) as exc:
            raise AppImportError(f"cannot import {self.uri!r}: {exc}") from exc
        except Exception as exc:  # a parent package's __init__ raised
            raise AppImportError(
                f"cannot import {self.uri!r}: {type(exc).__name__}: {exc}"
            ) from exc
        if found is None:
            raise AppImportError(f"cannot import {self.uri!r}: no module named {name!r}")

    def load(self) -> WSGIApp:
        """Import and resolve the app. Every failure is an ``AppImportError``
        whose message is one line: ``Failed to load application 'mod:app': ...``
        with the exception and, when the app's own code raised, the file and
        line where it did (the traceback stays on ``__cause__`` for debug).

        With ``--reload`` a failure whose source can be watched does not stop
        the worker (Gunicorn does this for a SyntaxError): the error is logged
        in one line and answered as a 500 page, and saving a fix restarts the
        worker as any other change does."""
        try:
            obj = self._resolve()
        except AppImportError as exc:
            if not self.reload:
                raise
            extra = _source_files(exc)
            if not extra and self.spec.module not in sys.modules:
                raise  # nothing there yet whose fix could be seen
            if self.log is not None:
                self.log.error("%s", exc)
                self.log.info("--reload: answering 500 with this error until a watched file changes")
                self.log.debug("Traceback of the failed application load:", exc_info=exc)
            self._watch(extra)
            return error_app(str(exc), "".join(traceback.format_exception(exc.__cause__ or exc)))
        if self.reload:
            self._watch(())
        return obj

    def _watch(self, extra_files: Iterable[str]) -> None:
        self.watcher = watcher = CodeWatcher(
            on_change=self._code_changed, extra_files=self.extra_files + tuple(extra_files)
        )
        # The baseline is taken here, before the worker serves anything:
        # taken in the thread instead, a starved thread on a busy machine
        # could record a file already edited after the worker was ready, and
        # that edit would never be seen.
        watcher.changed()
        watcher.start()

    def _resolve(self) -> WSGIApp:
        spec = self.spec
        fail = f"Failed to load application {self.uri!r}"
        try:
            obj: Any = importlib.import_module(spec.module)
        except ModuleNotFoundError as exc:
            if exc.name and spec.module.startswith(exc.name):
                raise AppImportError(f"{fail}: no module named {exc.name!r}") from exc
            raise AppImportError(f"{fail}: {describe_exception(exc)}") from exc
        except Exception as exc:  # anything the app module raises at import
            raise AppImportError(f"{fail}: {describe_exception(exc)}") from exc
        for attr in spec.attrs:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                raise AppImportError(f"{fail}: cannot find {attr!r} in module {spec.module!r}") from None
        name = ".".join(spec.attrs)
        if spec.call:
            if not callable(obj):
                raise AppImportError(f"{fail}: {name} is not callable")
            try:
                obj = obj(*spec.args, **spec.kwargs)
            except Exception as exc:
                raise AppImportError(
                    f"{fail}: the factory {name}() raised {describe_exception(exc)}"
                ) from exc
        if obj is None:
            raise AppImportError(f"{fail}: the application is None")
        if not callable(obj):
            raise AppImportError(f"{fail}: application object must be callable")
        app: WSGIApp = obj
        return app

    def _code_changed(self, path: str) -> None:
        if self.log is not None:
            self.log.info("Worker reloading: %s modified", path)
        os.kill(os.getpid(), signal.SIGTERM)

    __call__ = load


def _source_files(exc: AppImportError) -> list[str]:
    """Files a fix for this load failure would be saved in: a SyntaxError's
    file (its module never made it into ``sys.modules``) and the app's frames
    in the traceback."""
    cause = exc.__cause__
    if cause is None:
        return []
    out = []
    if isinstance(cause, SyntaxError) and cause.filename:
        out.append(cause.filename)
    for frame in traceback.extract_tb(cause.__traceback__):
        if not _is_loader_frame(frame.filename):
            out.append(frame.filename)
    return out


def error_app(message: str, detail: str) -> WSGIApp:
    """The app a ``--reload`` worker serves while the real one cannot load:
    500 with the error and its traceback (development only, as Gunicorn's)."""
    body = f"{message}\n\n{detail}".encode("utf-8", "replace")

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("500 Internal Server Error", [
            ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))
        ])
        return [body]

    return application


class CodeWatcher(threading.Thread):
    """Poll the files of loaded modules; call ``on_change(path)`` once on the first change.

    A file counts as changed when its mtime (in nanoseconds), size or inode
    moved: the inode catches an editor's save-by-rename, the size a rewrite
    within one tick of a coarse filesystem clock. ``extra_files`` entries
    with ``*``, ``?`` or ``[`` are glob patterns (``**`` recurses),
    expanded at every scan: a file that appears later is recorded when first
    seen, and its first edit after that is a change (Gunicorn's rule)."""

    def __init__(
        self, on_change: Callable[[str], None], interval: float = 1.0, extra_files: Iterable[str] = ()
    ) -> None:
        super().__init__(name="fastwsgi-reload", daemon=True)
        self.on_change = on_change
        self.interval = interval
        self.extra_files = tuple(extra_files)
        self.stamps: dict[str, tuple[int, int, int]] = {}

    def files(self) -> list[str]:
        out = []
        for entry in self.extra_files:
            if any(c in entry for c in "*?["):
                out.extend(sorted(glob.glob(entry, recursive=True)))
            else:
                out.append(entry)
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if path and path.endswith((".py", ".so", ".pyd")):
                out.append(path)
        return out

    def changed(self) -> str | None:
        """The first file that moved since the last scan, each change reported
        once (new files are recorded). The first call records the baseline."""
        for path in self.files():
            try:
                st = os.stat(path)
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            old = self.stamps.setdefault(path, stamp)
            if stamp != old:
                self.stamps[path] = stamp
                return path
        return None

    def run(self) -> None:
        if not self.stamps:
            self.changed()  # the baseline, when the creator did not take it
        while True:
            time.sleep(self.interval)
            path = self.changed()
            if path is not None:
                self.on_change(path)
                return
