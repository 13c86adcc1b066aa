"""The fastwsgi command in-process: error lines, exit codes, --check-config,
--print-config, start-up warnings. Real processes: tests/integration/test_cli_*.py."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastwsgi import __version__, cli
from fastwsgi.config import SETTINGS, load


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Own cwd, sys.path, sys.modules and error-log handlers per test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FASTWSGI_CMD_ARGS", raising=False)
    saved_path = list(sys.path)
    before = set(sys.modules)
    (tmp_path / "cliapp_ok.py").write_text(
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [b'ok']\n"
        "def factory(tag):\n    return application\n"
    )
    (tmp_path / "cliapp_raises.py").write_text("raise RuntimeError('broken at import')\n")
    (tmp_path / "cliapp_exits.py").write_text("import sys\nsys.exit('bye')\n")
    yield tmp_path
    sys.path[:] = saved_path
    for name in set(sys.modules) - before:
        del sys.modules[name]
    for name in ("fastwsgi.error", "fastwsgi.access"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            if isinstance(h, logging.FileHandler):
                h.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.run(list(argv), dict(os.environ))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--bogus", "cliapp_ok"], 2, "unrecognized arguments: --bogus"),
        (["-w", "lots", "cliapp_ok"], 2, "invalid value for --workers (command line): 'lots' is not an integer"),
        ([], 2, "no APP given"),
        (["-c", "missing.py", "cliapp_ok"], 2, "cannot read config file 'missing.py': No such file or directory"),
        (["cliapp_nonesuch:app"], 1, "cannot import 'cliapp_nonesuch:app': no module named 'cliapp_nonesuch'"),
        (["cliapp_ok:f(open('x'))"], 2, "factory arguments must be literals"),
        (["-k", "cliapp_nomod.Worker", "cliapp_ok"], 2, "cannot find module 'cliapp_nomod'"),
        (["--chdir", "/nonexistent/dir", "cliapp_ok"], 1, "cannot change directory to '/nonexistent/dir'"),
        (["--error-logfile", "/nonexistent/dir/e.log", "cliapp_ok"], 1, "cannot set up logging"),
        (["--check-config", "cliapp_raises"], 1, "RuntimeError: broken at import"),
        (["--check-config", "cliapp_ok:nothing"], 1, "cannot find 'nothing'"),
        (["--check-config", "--reload", "cliapp_raises"], 1, "RuntimeError: broken at import (cliapp_raises.py:1)"),
        (["--check-config", "cliapp_exits"], 1, "Failed to load application 'cliapp_exits': SystemExit: bye (cliapp_exits.py:2)"),
    ],
)
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str) -> None:
    rc, out, err = run(capsys, *argv)
    assert rc == status
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("fastwsgi: error: "), err
    assert message in err


def test_broken_config_file_is_one_line_unless_debug(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    (isolated / "bad.py").write_text("workers = 2\nundefined_name + 1\n")
    rc, _, err = run(capsys, "-c", "bad.py", "cliapp_ok")
    assert rc == 2
    assert err == "fastwsgi: error: config file 'bad.py': line 2: NameError: name 'undefined_name' is not defined\n"
    rc, _, err = run(capsys, "-c", "bad.py", "--log-level", "debug", "cliapp_ok")
    assert rc == 2
    assert "Traceback" in err and err.endswith("is not defined\n")


def test_check_config_good(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--check-config", "-w", "2", "cliapp_ok:factory('x')")
    assert (rc, out) == (0, "")
    assert "error" not in err.lower()


def test_check_config_reports_unsupported_settings_once(capsys: pytest.CaptureFixture[str], isolated: Path) -> None:
    (isolated / "fastwsgi.conf.py").write_text("ciphers = 'HIGH'\n")
    rc, _, err = run(capsys, "--check-config", "--ciphers", "HIGH", "--spew", "cliapp_ok")
    assert rc == 0
    warned = [line for line in err.splitlines() if "[WARNING]" in line and "not supported" in line]
    assert len(warned) == 2
    assert "ciphers (--ciphers) from config file" in warned[0] and "spew (--spew)" in warned[1]


def test_reload_with_preload_warns_that_it_does_nothing(
    capsys: pytest.CaptureFixture[str], isolated: Path
) -> None:
    rc, _, err = run(capsys, "--check-config", "--reload", "--preload", "cliapp_ok")
    assert rc == 0
    assert "[WARNING] --reload has no effect with --preload" in err
    rc, _, err = run(capsys, "--check-config", "--reload", "cliapp_ok")
    assert rc == 0 and "--reload has no effect" not in err


def test_tls_settings_stop_the_start_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # A Gunicorn deployment that terminated TLS itself must not come up as
    # plain HTTP on the port its clients believe is encrypted.
    rc, out, err = run(capsys, "--certfile", "site.pem", "--keyfile", "site.key", "cliapp_ok")
    assert rc != 0 and out == ""
    assert err.splitlines() == [
        "fastwsgi: error: certfile (command line): TLS is not supported: fastwsgi serves plain "
        "HTTP only, so this port would not be encrypted; terminate TLS in front of it (nginx, "
        "a load balancer; see docs/deploy.md)"
    ]


def test_print_config(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--print-config", "-w", "3", "--threads", "2", "cliapp_ok")
    assert rc == 0
    values = dict(line.split(" = ", 1) for line in out.splitlines())
    values = {k.strip(): v for k, v in values.items()}
    assert set(values) == {s.name for s in SETTINGS} | {"app_uri"}
    assert values["workers"] == "3" and values["worker_class"] == "'gthread'" and values["app_uri"] == "'cliapp_ok'"


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.run(["--version"], {})
    assert info.value.code == 0
    first, *build = capsys.readouterr().out.strip().splitlines()
    assert first == f"fastwsgi (version {__version__})"  # Gunicorn's line, which scripts parse
    assert build[0].startswith("compiled core: ")  # the rest: tests/unit/test_buildinfo.py
    with pytest.raises(SystemExit) as info:
        cli.run(["--help"], {})
    assert info.value.code == 0
    text = capsys.readouterr().out
    for s in SETTINGS:
        for flag in s.cli:
            assert flag in text
    assert "--certfile" not in text  # accepted, but not advertised


def test_raw_env_is_applied(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLI_TEST_VAR", raising=False)
    monkeypatch.setenv("CLI_TEST_VAR", "before")  # so monkeypatch restores it
    rc, _, _ = run(capsys, "--check-config", "-e", "CLI_TEST_VAR=a=b", "cliapp_ok")
    assert rc == 0 and os.environ["CLI_TEST_VAR"] == "a=b"


# --- start-up warnings ----------------------------------------------------------------


def test_backlog_above_somaxconn(tmp_path: Path) -> None:
    path = tmp_path / "somaxconn"
    path.write_text("128\n")
    groups = load(["--backlog", "2048", "app"], {}).groups()
    warnings = cli.startup_warnings(groups, str(path), nofile=(1 << 20, 1 << 20))
    assert warnings == ["--backlog 2048 exceeds net.core.somaxconn 128: the kernel caps the listen queue at 128"]
    assert cli.startup_warnings(load(["--backlog", "128", "app"], {}).groups(), str(path), (1 << 20, 1 << 20)) == []


def test_missing_somaxconn_is_not_an_error(tmp_path: Path) -> None:
    groups = load(["app"], {}).groups()
    assert cli.startup_warnings(groups, str(tmp_path / "none"), nofile=(1 << 20, 1 << 20)) == []


def test_fds_needed_formula() -> None:
    sync = load(["-b", "127.0.0.1:1", "-b", "127.0.0.1:2", "-w", "4", "app"], {}).groups()
    assert cli.fds_needed(sync) == 2 + max(1, 2 * 4) + cli.FD_RESERVE
    gthread = load(["--threads", "4", "--worker-connections", "500", "app"], {}).groups()
    assert cli.fds_needed(gthread) == 1 + 500 + cli.FD_RESERVE
    many = load(["-w", "300", "app"], {}).groups()
    assert cli.fds_needed(many) == 1 + 600 + cli.FD_RESERVE


def test_fd_formula_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    assert f"The {cli.FD_RESERVE} is a reserve" in doc


def test_low_open_file_limit_warns(tmp_path: Path) -> None:
    groups = load(["--threads", "4", "--worker-connections", "1000", "app"], {}).groups()
    warnings = cli.startup_warnings(groups, str(tmp_path / "none"), nofile=(256, 4096))
    assert len(warnings) == 1
    assert warnings[0].startswith("open-file limit (RLIMIT_NOFILE) is 256, below the 1033 this configuration can need")
    assert cli.startup_warnings(groups, str(tmp_path / "none"), nofile=(1033, 4096)) == []
