"""PasteDeploy over real processes: ``fastwsgi --paste`` and ``pserve`` with
``use = egg:fastwsgi#main``, serving a real Pyramid app
(``apps/pyramid_app.py``) built from an ini file.

The ``paste.server_runner`` entry point exists only in an installed
distribution. Where fastwsgi is installed (CI: ``pip install ".[test]"``) the
tests use its real metadata; from a source tree (``PYTHONPATH=src``) they put
a ``fastwsgi.dist-info`` holding the entry point that pyproject.toml declares
on the server's path, so the same ``pserve`` run works in both.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest
from server import HERE, SRC_DIR, Server, server_env, wait_for_text

import fastwsgi

pytest.importorskip("paste.deploy")
pytest.importorskip("pyramid")

REPO = HERE.parent.parent
ENTRY = ("paste.server_runner", "main", "fastwsgi.paste:serve")

APP_INI = """\
[app:main]
use = call:apps.pyramid_app:main
greeting = hello
here_dir = %(here)s

[app:admin]
use = call:apps.pyramid_app:main
greeting = admin
here_dir = %(here)s
"""

LOGGING_INI = """\
[loggers]
keys = root, pyramid_app

[handlers]
keys = console, file

[formatters]
keys = generic

[logger_root]
level = INFO
handlers = console

[logger_pyramid_app]
level = INFO
handlers = file
qualname = pyramid_app

[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic

[handler_file]
class = FileHandler
args = ('%(here)s/app.log', 'a')
formatter = generic

[formatter_generic]
format = INI-FORMAT %(levelname)s [%(name)s] %(message)s
"""


def _declared_entry_point() -> str:
    text = (REPO / "pyproject.toml").read_text()
    m = re.search(r'^\[project\.entry-points\."paste\.server_runner"\]\s*\nmain = "([^"]+)"',
                  text, re.M)
    assert m is not None, "pyproject.toml declares no paste.server_runner entry point"
    return m.group(1)


def _installed() -> bool:
    """fastwsgi runs from an installed distribution (not PYTHONPATH=src)."""
    try:
        dist = importlib.metadata.distribution("fastwsgi")
    except importlib.metadata.PackageNotFoundError:
        return False
    return Path(str(dist.locate_file("fastwsgi/__init__.py"))).resolve() == Path(
        fastwsgi.__file__).resolve()


def test_entry_point_is_declared_and_resolves() -> None:
    target = _declared_entry_point()
    assert target == ENTRY[2]
    if _installed():
        (ep,) = importlib.metadata.entry_points(group=ENTRY[0], name=ENTRY[1]).select(
            module="fastwsgi.paste")
        assert ep.value == ENTRY[2]
    from fastwsgi.paste import serve

    module, _, attr = target.partition(":")
    assert getattr(sys.modules[module], attr) is serve


def _entry_point_path(tmp_path: Path) -> str:
    """Where the server finds fastwsgi's distribution metadata: nothing to add
    when installed; else a dist-info built from pyproject.toml's entry point."""
    if _installed():
        return ""
    info = tmp_path / "meta" / f"fastwsgi-{fastwsgi.__version__}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: fastwsgi\nVersion: {fastwsgi.__version__}\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY[0]}]\n{ENTRY[1]} = {_declared_entry_point()}\n")
    return str(info.parent)


def _env(*front: str) -> dict[str, str]:
    return {"PYTHONPATH": ":".join(p for p in (*front, SRC_DIR, str(HERE)) if p)}


def test_paste_serves_the_named_app_with_its_logging(server, tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "dev.ini").write_text(APP_INI + LOGGING_INI)
    # A relative path, from the server's working directory (tmp_path).
    srv = server("--paste", "conf/dev.ini#admin", "--paste-global", "who=ops", "-w", "1",
                 env=_env())
    status, body = srv.get("/")
    assert status == 200
    # The named section, the ini's own directory as %(here)s, the global conf.
    assert body.decode() == f"admin here={conf} who=ops"
    # The ini's [loggers]: our lines in its format, the app's in its file
    # (a path relative to the ini).
    srv.wait_for_log(r"^INI-FORMAT INFO \[fastwsgi\.error\] Booting worker with pid: \d+$")
    wait_for_text(conf / "app.log", r"INI-FORMAT INFO \[pyramid_app\] hello from pyramid_app")


def test_paste_default_section_and_command_line_flags(server, tmp_path: Path) -> None:
    (tmp_path / "plain.ini").write_text(APP_INI)
    srv = server("--paster", "plain.ini", "-k", "gthread", "--threads", "2", env=_env())
    assert srv.get("/") == (200, f"hello here={tmp_path} who=-".encode())
    assert "Using worker: gthread" in srv.log()


def test_paste_without_pastedeploy_says_what_to_install(tmp_path: Path) -> None:
    # A sitecustomize that makes paste.deploy unfindable, as if PasteDeploy
    # were not installed (its namespace 'paste' is set up by a .pth file
    # before any path entry could shadow it).
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'paste.deploy' or name.startswith('paste.deploy.'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    (tmp_path / "plain.ini").write_text(APP_INI)
    srv = Server(["--paste", "plain.ini"], tmp_path, env=_env(str(blocker))).start()
    try:
        assert srv.wait_exit(30) == 2
    finally:
        srv.close()
    lines = srv.log().strip().splitlines()
    assert lines == [
        "fastwsgi: error: --paste needs PasteDeploy, which is not installed: "
        "pip install 'fastwsgi[paste]'"
    ]


def test_pserve_runs_fastwsgi_from_the_server_section(server, tmp_path: Path) -> None:
    probe = Server([], tmp_path)  # only for a free port
    ini = tmp_path / "site.ini"
    ini.write_text(
        APP_INI + LOGGING_INI
        + "[server:main]\nuse = egg:fastwsgi#main\n"
        + f"host = 127.0.0.1\nport = {probe.port}\nworkers = 2\nworker_class = gthread\n"
        + "threads = 2\ntimeout = 20\n"
    )
    srv = server(str(ini), port=probe.port, bind=False,
                 command=[sys.executable, "-m", "pyramid.scripts.pserve"],
                 env=_env(_entry_point_path(tmp_path)))
    assert srv.get("/") == (200, f"hello here={tmp_path} who=-".encode())
    assert len(srv.wait_workers(2)) == 2
    log = srv.log()
    assert f"Listening at: http://127.0.0.1:{probe.port}" in log
    assert "INI-FORMAT INFO [fastwsgi.error] Using worker: gthread" in log


def _run_serve(tmp_path: Path, local_conf: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Call the runner itself (no entry point needed), as pserve would."""
    (tmp_path / "site.ini").write_text(APP_INI)
    code = (
        "import sys\n"
        "from fastwsgi.paste import serve\n"
        "app = lambda environ, start_response: []\n"
        f"serve(app, {{'__file__': {str(tmp_path / 'site.ini')!r}, 'here': {str(tmp_path)!r}}},"
        f" **{local_conf!r})\n"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=server_env(_env()),
                          capture_output=True, text=True, timeout=60)


def test_serve_takes_the_server_section_settings(tmp_path: Path) -> None:
    (tmp_path / "extra.conf.py").write_text("keepalive = 7\nworkers = 9\n")
    done = _run_serve(tmp_path, {
        "host": "127.0.0.1", "port": "6543", "workers": "3", "worker_class": "gthread",
        "threads": "4", "timeout": "11", "config": "extra.conf.py", "print_config": "true",
    })
    assert done.returncode == 0, done.stderr
    shown = dict(re.findall(r"^(\w+)\s+= (.*)$", done.stdout, re.M))
    assert shown["bind"] == "('127.0.0.1:6543',)"
    # The section wins over its config file, which wins over the defaults.
    assert (shown["workers"], shown["keepalive"]) == ("3", "7.0")
    assert (shown["worker_class"], shown["threads"], shown["timeout"]) == ("'gthread'", "4", "11.0")
    assert shown["proc_name"] == "None" and shown["app_uri"] == repr(str(tmp_path / "site.ini"))


def test_serve_refuses_an_unknown_setting_in_one_line(tmp_path: Path) -> None:
    done = _run_serve(tmp_path, {"port": "6543", "wokers": "3"})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"fastwsgi: error: unknown setting 'wokers' ([server] section of {tmp_path / 'site.ini'})"
    )
