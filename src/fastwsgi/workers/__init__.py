"""Worker classes and how ``-k/--worker-class`` names them.

``-k sync`` and ``-k gthread`` name the bundled classes; anything containing a
dot is an import path (``pkg.mod.Class`` or ``pkg.mod:Class``), which is how
tests and users plug in their own subclass of :class:`Worker`. The aliases
(Gunicorn's spellings, ``egg:gunicorn#sync``...) and the rule that ``sync``
with ``threads > 1`` means ``gthread`` live in ``config.worker_class_name``,
which validates ``-k``; this module only maps the canonical name to a class.
"""

from __future__ import annotations

import importlib

from fastwsgi.config import worker_class_name
from fastwsgi.errors import ConfigError
from fastwsgi.workers.base import APP_LOAD_ERROR, WORKER_BOOT_ERROR, Worker

__all__ = [
    "APP_LOAD_ERROR",
    "WORKER_BOOT_ERROR",
    "WORKER_CLASSES",
    "Worker",
    "load_worker_class",
    "worker_class_name",
]

WORKER_CLASSES: dict[str, str] = {
    "sync": "fastwsgi.workers.sync:SyncWorker",
    "gthread": "fastwsgi.workers.gthread:ThreadWorker",
}

def load_worker_class(name: str, threads: int = 1) -> type[Worker]:
    """Resolve ``-k``: a bundled name or an import path to a Worker subclass."""
    name = worker_class_name(name, threads)
    target = WORKER_CLASSES.get(name, name)
    if ":" in target:
        modname, _, attr = target.partition(":")
    elif "." in target:
        modname, _, attr = target.rpartition(".")
    else:
        known = ", ".join(sorted(WORKER_CLASSES))
        raise ConfigError(f"unknown worker class {name!r} (known: {known}, or a dotted path)")
    try:
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise ConfigError(f"cannot import worker class {name!r}: {exc}") from exc
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Worker)):
        raise ConfigError(f"worker class {name!r} is not a fastwsgi.workers.base.Worker subclass")
    return cls
