"""What fastwsgi imports before a worker serves: memory in every worker.

Linux ``fork()`` copies the page-table entries of anonymous memory, so every
module the master imports is counted in each worker's RSS, and a worker adds
what it imports itself. Modules needed only on rare paths (a log config, an
error report, a Date header formatter we replaced) are imported where they
are used. These tests run a fresh interpreter with ``-S`` (no ``site``, which
in some environments imports modules of its own from ``.pth`` files), so what
they see is what fastwsgi imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import fastwsgi

SRC_DIR = str(Path(fastwsgi.__file__).resolve().parent.parent)

# What a master and its workers import as modules (the worker classes are
# loaded by the master).
WORKER_MODULES = (
    "fastwsgi.cli",
    "fastwsgi.arbiter",
    "fastwsgi.workers.sync",
    "fastwsgi.workers.gthread",
    "fastwsgi.glogging",
)

# Imported only where used; each line says where.
LAZY = {
    "email": "Date header (was email.utils.formatdate)",
    "email.utils": "Date header",
    "calendar": "Date header, via email.utils",
    "datetime": "Date header, via email.utils",
    "logging.config": "glogging: only with --log-config / logconfig_dict / --log-config-json",
    "logging.handlers": "via logging.config",
    "socketserver": "via logging.config",
    "pickle": "via logging.handlers",
    "sysconfig": "app.describe_exception: only when reporting an error",
    "shlex": "config: only when FASTWSGI_CMD_ARGS is set",
    "ssl": "imported on purpose by the arbiter at start (share_openssl), not by an import",
}


def _modules_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    script = code + "\nimport json as _j, sys as _s\nprint(_j.dumps(sorted(_s.modules)))\n"
    proc = subprocess.run(
        [sys.executable, "-S", "-c", script],
        env={"PYTHONPATH": SRC_DIR, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout.splitlines()[-1]))


@pytest.fixture(scope="module", autouse=True)
def _compiled() -> None:
    pytest.importorskip("fastwsgi._conn", reason="compiled extensions not built")


def test_importing_the_server_modules_leaves_the_rare_path_modules_out() -> None:
    mods = _modules_after("\n".join(f"import {m}" for m in WORKER_MODULES))
    assert set(WORKER_MODULES) <= mods
    assert {m: LAZY[m] for m in LAZY if m in mods} == {}


def test_the_master_start_up_path_leaves_them_out_too(tmp_path: Path) -> None:
    # Everything the master runs before its first fork, except the arbiter's
    # deliberate share_openssl(): parse and check the settings, set up both
    # logs, load the worker class.
    code = f"""
from fastwsgi import cli, workers
from fastwsgi.glogging import Logger
settings, groups, loader = cli.prepare(
    ["-b", "127.0.0.1:0", "--access-logfile", {str(tmp_path / "access.log")!r},
     "--forwarded-allow-ips", "10.0.0.0/8,127.0.0.1", "fastwsgi.demo:app"],
    {{}}, {str(tmp_path)!r})
log = Logger(groups.log)
cli.startup_warnings(groups)
for name in ("sync", "gthread"):
    workers.load_worker_class(name, 1)
log.info("hello")
log.access({{"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_AUTHORIZATION": "Basic dTpw"}},
           "200 OK", [], 2, 0.001)
"""
    mods = _modules_after(code)
    assert "fastwsgi.workers.sync" in mods and "fastwsgi.glogging" in mods
    assert {m: LAZY[m] for m in LAZY if m in mods} == {}


def test_the_rare_paths_still_import_what_they_need(tmp_path: Path) -> None:
    # The lazy imports are real: each path that needs its module works from
    # a fresh interpreter and brings the module in.
    ini = tmp_path / "log.ini"
    ini.write_text(
        "[loggers]\nkeys=root\n[handlers]\nkeys=h\n[formatters]\nkeys=f\n"
        "[logger_root]\nlevel=INFO\nhandlers=h\n"
        "[handler_h]\nclass=StreamHandler\nformatter=f\nargs=(sys.stderr,)\n"
        "[formatter_f]\nformat=%(message)s\n"
    )
    code = f"""
from fastwsgi import app, config
from fastwsgi.glogging import Logger
settings = config.load(["--log-config", {str(ini)!r}, "x:app"], {{"FASTWSGI_CMD_ARGS": "-w 3"}})
assert settings.groups().arbiter.workers == 3
Logger(settings.groups().log)
import json
try:
    json.loads("{{")  # raises in the stdlib, whose frames describe_exception skips
except ValueError as exc:
    assert app.describe_exception(exc).startswith("JSONDecodeError: "), exc
"""
    mods = _modules_after(code)
    assert {"logging.config", "shlex", "sysconfig"} <= mods


def test_share_openssl_imports_ssl_into_the_calling_process() -> None:
    code = """
import sys
from fastwsgi.arbiter import share_openssl
assert "ssl" not in sys.modules
assert share_openssl() is True
assert "ssl" in sys.modules and "_ssl" in sys.modules
"""
    assert "ssl" in _modules_after(code)
