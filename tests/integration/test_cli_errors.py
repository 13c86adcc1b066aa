"""Bad input to the real ``python -m fastwsgi``: one line on stderr, exit 2 for
usage errors, 1 for runtime failures, no traceback unless --log-level debug,
and no worker forked."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import fastwsgi

SRC = str(Path(fastwsgi.__file__).parent.parent)
APP = "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'ok']\n"


def fastwsgi_cmd(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": SRC, **(env or {})}
    full_env.pop("FASTWSGI_CMD_ARGS", None) if "FASTWSGI_CMD_ARGS" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "fastwsgi", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    (tmp_path / "errapp.py").write_text(APP)
    (tmp_path / "errapp_raises.py").write_text("raise RuntimeError('cannot start: missing DATABASE_URL')\n")
    (tmp_path / "broken.conf.py").write_text("workers = 2\nbind = ['127.0.0.1:1'\n")
    (tmp_path / "errapp_exits.py").write_text("import sys\n\nsys.exit('no DATABASE_URL')\n")
    (tmp_path / "errapp_factory.py").write_text(
        "import os\n\ndef create(env):\n    return os.environ['DATABASE_URL_' + env]\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--no-such-flag", "errapp"], 2, "unrecognized arguments: --no-such-flag"),
        (["--workers", "x", "errapp"], 2, "invalid value for --workers"),
        (["--keep-alive", "-3", "errapp"], 2, "invalid value for --keep-alive"),
        # An address that cannot be parsed is a usage error too, found before
        # the master starts (it used to be exit 1 at bind time).
        (["-b", "127.0.0.1:99999", "errapp"], 2,
         "invalid value for --bind (command line): invalid port in '127.0.0.1:99999'"),
        (["-b", "[::1", "errapp"], 2, "unclosed '[' in IPv6 address"),
        (["-b", "unix:", "errapp"], 2, "empty unix socket path"),
        (["-c", "broken.conf.py", "errapp"], 2, "config file 'broken.conf.py': line 2: '[' was never closed"),
        (["-c", "nothere.py", "errapp"], 2, "cannot read config file 'nothere.py'"),
        (["-k", "eventlet", "errapp"], 2, "Gunicorn worker class fastwsgi does not provide"),
        (["--certfile", "s.pem", "--keyfile", "s.key", "errapp"], 2, "TLS is not supported"),
        (["--protocol", "uwsgi", "errapp"], 2, "only HTTP is supported"),
        (["errapp_nope:app"], 1, "no module named 'errapp_nope'"),
        (["errapp:app("], 2, "cannot parse"),
        ([], 2, "no APP given"),
    ],
)
def test_bad_input(appdir: Path, args: list[str], status: int, message: str) -> None:
    proc = fastwsgi_cmd(appdir, *args)
    assert proc.returncode == status, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("fastwsgi: error: "), proc.stderr
    assert message in proc.stderr
    assert "Booting worker" not in proc.stderr


def test_bad_cmd_args_env(appdir: Path) -> None:
    proc = fastwsgi_cmd(appdir, "errapp", env={"FASTWSGI_CMD_ARGS": "--timeout soon"})
    assert proc.returncode == 2
    assert proc.stderr == "fastwsgi: error: invalid value for --timeout (FASTWSGI_CMD_ARGS): 'soon' is not a number of seconds\n"


def test_traceback_only_with_debug(appdir: Path) -> None:
    quiet = fastwsgi_cmd(appdir, "-c", "broken.conf.py", "errapp")
    loud = fastwsgi_cmd(appdir, "-c", "broken.conf.py", "--log-level", "debug", "errapp")
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and loud.returncode == 2
    assert loud.stderr.splitlines()[-1] == quiet.stderr.strip()


LOAD_FAILURES = [
    ("errapp_raises", "RuntimeError: cannot start: missing DATABASE_URL (errapp_raises.py:1)"),
    ("errapp:nothere", "cannot find 'nothere' in module 'errapp'"),
    ("errapp_factory:create('PROD')", "the factory create() raised KeyError: 'DATABASE_URL_PROD' (errapp_factory.py:4)"),
    # sys.exit() at import is a load error too, not a worker to replace in a loop.
    ("errapp_exits", "SystemExit: no DATABASE_URL (errapp_exits.py:3)"),
]


def _one_error_line(stderr: str) -> str:
    """The single ``fastwsgi: error:`` line; no worker booted, no traceback."""
    errors = [line for line in stderr.splitlines() if "fastwsgi: error:" in line]
    assert len(errors) == 1 and errors[0].startswith("fastwsgi: error: "), stderr
    assert "Booting worker" not in stderr and "[ERROR]" not in stderr, stderr
    return errors[0]


@pytest.mark.parametrize(("app", "detail"), LOAD_FAILURES)
def test_app_load_failure_is_found_before_any_worker(appdir: Path, app: str, detail: str) -> None:
    # The master's probe child loads the app once before forking workers.
    proc = fastwsgi_cmd(appdir, "-b", "127.0.0.1:0", "-w", "2", app)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert _one_error_line(proc.stderr) == f"fastwsgi: error: Failed to load application {app!r}: {detail}"


def test_app_import_that_outlives_the_timeout_is_killed(appdir: Path) -> None:
    (appdir / "errapp_hangs.py").write_text(
        "import os, time\n\nopen('hang.pid', 'w').write(str(os.getpid()))\n"
        "for _ in range(600):\n    time.sleep(0.1)\n"
    )
    proc = fastwsgi_cmd(appdir, "-b", "127.0.0.1:0", "-t", "3", "errapp_hangs")
    assert proc.returncode == 1, proc.stderr
    assert _one_error_line(proc.stderr) == (
        "fastwsgi: error: Failed to load application 'errapp_hangs': "
        "the import did not finish within the 3s timeout (--timeout)"
    )
    # The probe was killed and reaped, not left behind.
    probe = int((appdir / "hang.pid").read_text())
    assert not Path(f"/proc/{probe}").exists()


def test_app_load_failure_traceback_only_with_debug(appdir: Path) -> None:
    app, detail = LOAD_FAILURES[0]
    proc = fastwsgi_cmd(appdir, "-b", "127.0.0.1:0", "-w", "1", "--log-level", "debug", app)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert 'errapp_raises.py", line 1' in proc.stderr
    assert "Booting worker" not in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"fastwsgi: error: Failed to load application {app!r}: {detail}"


@pytest.mark.parametrize(("app", "detail"), [LOAD_FAILURES[0], LOAD_FAILURES[-1]])
def test_app_load_failure_with_preload_is_one_line(appdir: Path, app: str, detail: str) -> None:
    proc = fastwsgi_cmd(appdir, "-b", "127.0.0.1:0", "--preload", app)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert _one_error_line(proc.stderr) == f"fastwsgi: error: Failed to load application {app!r}: {detail}"


def test_fatal_line_reaches_stderr_when_the_error_log_is_a_file(appdir: Path) -> None:
    app, detail = LOAD_FAILURES[0]
    proc = fastwsgi_cmd(appdir, "-b", "127.0.0.1:0", "--error-logfile", "err.log", app)
    assert proc.returncode == 1
    line = f"Failed to load application {app!r}: {detail}"
    assert proc.stderr == f"fastwsgi: error: {line}\n"
    log = (appdir / "err.log").read_text()
    assert log.splitlines()[-1].endswith(f"[ERROR] {line}") and "Booting worker" not in log
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = fastwsgi_cmd(appdir, "-b", f"127.0.0.1:{port}", "--error-logfile", "err.log", "errapp")
    assert proc.returncode == 1
    assert proc.stderr == f"fastwsgi: error: cannot bind 127.0.0.1:{port}: Address already in use\n"


def test_address_in_use(appdir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = fastwsgi_cmd(appdir, "-b", f"127.0.0.1:{port}", "errapp")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Booting worker" not in proc.stderr
    # Like Gunicorn it retries a few times ("Connection in use"), then gives up
    # with one line naming the address.
    last = proc.stderr.splitlines()[-1]
    assert f"127.0.0.1:{port}" in last and "Address already in use" in last, proc.stderr


def test_check_config(appdir: Path) -> None:
    good = fastwsgi_cmd(appdir, "--check-config", "-w", "3", "errapp:application")
    assert good.returncode == 0 and good.stdout == "" and "error" not in good.stderr.lower()
    bad = fastwsgi_cmd(appdir, "--check-config", "errapp_raises")
    assert bad.returncode == 1
    assert bad.stderr == (
        "fastwsgi: error: Failed to load application 'errapp_raises': "
        "RuntimeError: cannot start: missing DATABASE_URL (errapp_raises.py:1)\n"
    )
    assert "Traceback" not in bad.stderr
    broken = fastwsgi_cmd(appdir, "--check-config", "-c", "broken.conf.py", "errapp")
    assert broken.returncode == 2


def test_print_config(appdir: Path) -> None:
    proc = fastwsgi_cmd(appdir, "--print-config", "-w", "4", "--access-logfile", "-", "errapp")
    assert proc.returncode == 0
    values = {k.strip(): v for k, v in (line.split(" = ", 1) for line in proc.stdout.splitlines())}
    assert values["workers"] == "4" and values["accesslog"] == "'-'" and values["bind"] == "('127.0.0.1:8000',)"


def test_version(appdir: Path) -> None:
    proc = fastwsgi_cmd(appdir, "--version")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"fastwsgi (version {fastwsgi.__version__})"
    assert lines[1].startswith("compiled core: CPython ") and "Cython" in lines[1], lines
