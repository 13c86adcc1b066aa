"""The settings table: every flag, every source, precedence, config files."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from fastwsgi import config, settings_doc
from fastwsgi.config import SETTINGS, SETTINGS_BY_NAME, UNSUPPORTED, Settings, load
from fastwsgi.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

# For every setting with a command-line flag: a value to pass and the value it
# must produce. A setting added to the table without a row here fails
# test_every_flag_has_a_case.
FLAG_CASES: dict[str, tuple[str | None, object]] = {
    "config": ("{cfg}", "{cfg}"),
    "bind": ("unix:/tmp/x.sock", ("unix:/tmp/x.sock",)),
    "backlog": ("64", 64),
    "reuse_port": (None, True),
    "workers": ("5", 5),
    "worker_class": ("gthread", "gthread"),
    "threads": ("8", 8),
    "worker_connections": ("50", 50),
    "max_requests": ("1000", 1000),
    "max_requests_jitter": ("50", 50),
    "max_worker_memory": ("256", 256),
    "timeout": ("12", 12.0),
    "graceful_timeout": ("7.5", 7.5),
    "keepalive": ("5", 5.0),
    "header_timeout": ("3", 3.0),
    "body_timeout": ("4", 4.0),
    "limit_request_line": ("2048", 2048),
    "limit_request_fields": ("20", 20),
    "limit_request_field_size": ("1024", 1024),
    "limit_request_headers_total": ("4096", 4096),
    "limit_request_body": ("1000000", 1000000),
    "header_map": ("refuse", "refuse"),
    "permit_obsolete_folding": (None, True),
    "permit_unconventional_http_method": (None, True),
    "casefold_http_method": (None, True),
    "strip_header_spaces": (None, True),
    "permit_missing_host": (None, True),
    "forwarded_allow_ips": ("10.0.0.0/8, 192.168.1.1", ("10.0.0.0/8", "192.168.1.1")),
    "proxy_protocol": ("v2", "v2"),
    "forwarder_headers": ("script_name, X-Remote_User", ("SCRIPT_NAME", "X-REMOTE_USER")),
    "proxy_allow_ips": ("*", ("*",)),
    "preload_app": (None, True),
    "sendfile": (None, False),
    "chdir": ("/tmp", "/tmp"),
    "pythonpath": ("/a,/b", ("/a", "/b")),
    "raw_env": ("A=1", ("A=1",)),
    "paste": ("{ini}", "{ini}"),  # an absolute path to an ini file that exists: see _paste_case
    "raw_paste_global_conf": ("A=1", ("A=1",)),
    "daemon": (None, True),
    "enable_stdio_inheritance": (None, True),
    "pidfile": ("/tmp/p.pid", "/tmp/p.pid"),
    "worker_tmp_dir": ("/dev/shm", "/dev/shm"),
    "user": ("0", 0),
    "group": ("0", 0),
    "umask": ("022", 0o22),
    "proc_name": ("web", "web"),
    "accesslog": ("-", "-"),
    "access_log_format": ("%(h)s %(s)s", "%(h)s %(s)s"),
    "access_log_json": (None, True),
    "errorlog": ("/tmp/e.log", "/tmp/e.log"),
    "loglevel": ("WARN", "warning"),
    "capture_output": (None, True),
    "logconfig": ("/tmp/log.ini", "/tmp/log.ini"),
    "logconfig_dict": ('{"version": 1}', {"version": 1}),
    "logconfig_json": ("/tmp/log.json", "/tmp/log.json"),
    "statsd_host": ("127.0.0.1:9125", "127.0.0.1:9125"),
    "statsd_prefix": ("app", "app"),
    "enable_backlog_metric": (None, True),
    "metrics_bind": ("127.0.0.1:9101", "127.0.0.1:9101"),
    "syslog": (None, True),
    "syslog_addr": ("unix:///dev/log#dgram", "unix:///dev/log#dgram"),
    "syslog_prefix": ("web", "web"),
    "syslog_facility": ("LOCAL3", "local3"),
    "disable_redirect_access_to_syslog": (None, True),
    "dogstatsd_tags": ("env:prod,app:shop", "env:prod,app:shop"),
    "reload": (None, True),
    "reload_extra_files": ("templates/*.html", ("templates/*.html",)),
    "reload_engine": ("inotify", "inotify"),
    "check_config": (None, True),
    "print_config": (None, True),
}


def flag_params() -> list[tuple[str, str]]:
    return [(s.name, flag) for s in SETTINGS for flag in s.cli]


@pytest.fixture
def empty_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no default config file in it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_flag_has_a_case() -> None:
    with_cli = {s.name for s in SETTINGS if s.cli}
    assert with_cli == set(FLAG_CASES)


def _paste_ini(where: Path) -> str:
    ini = where / "p.ini"
    ini.write_text("[app:main]\nuse = call:x:y\n")
    return str(ini)


@pytest.mark.parametrize(("name", "flag"), flag_params())
def test_flag_sets_its_setting(name: str, flag: str, empty_cwd: Path) -> None:
    raw, expected = FLAG_CASES[name]
    argv = [flag] if raw is None else [flag, raw]
    app = ["app:app"]
    if name == "config":
        cfg = empty_cwd / "c.py"
        cfg.write_text("")
        argv, expected = [flag, str(cfg)], str(cfg)
    if name == "paste":  # the ini is the APP
        expected = _paste_ini(empty_cwd)
        argv, app = [flag, expected], []
    settings = load([*argv, *app], {})
    assert settings[name] == expected
    assert settings.sources[name] == "command line"
    assert settings[name] != SETTINGS_BY_NAME[name].default_value({})
    assert settings.app_uri == (expected if name == "paste" else "app:app")


@pytest.mark.parametrize(
    ("name", "flag"),
    [(n, f) for n, f in flag_params()
     if FLAG_CASES[n][0] is not None and f.startswith("--") and n not in ("config", "paste")],
)
def test_flag_equals_form(name: str, flag: str, empty_cwd: Path) -> None:
    raw, expected = FLAG_CASES[name]
    assert load([f"{flag}={raw}", "app:app"], {})[name] == expected


@pytest.mark.parametrize("name", [n for n in FLAG_CASES if n != "config"])
def test_config_file_sets_the_same_value(name: str, empty_cwd: Path) -> None:
    raw, expected = FLAG_CASES[name]
    value = True if raw is None and expected is True else expected if raw is None else raw
    if name == "paste":
        value = expected = _paste_ini(empty_cwd)
    (empty_cwd / "fastwsgi.conf.py").write_text(f"{name} = {value!r}\n")
    settings = load([] if name == "paste" else ["app:app"], {})
    assert settings[name] == expected
    assert settings.sources[name].startswith("config file")


def test_repeatable_flags_accumulate(empty_cwd: Path) -> None:
    s = load(["-b", "127.0.0.1:1", "--bind", "[::1]:2", "-e", "A=1", "-e", "B=2", "app"], {})
    assert s["bind"] == ("127.0.0.1:1", "[::1]:2")
    assert s["raw_env"] == ("A=1", "B=2")


def test_proxy_protocol_flag_alone_means_auto(empty_cwd: Path) -> None:
    assert load(["--proxy-protocol", "--", "app"], {})["proxy_protocol"] == "auto"


def test_defaults_match_the_groups_defaults(empty_cwd: Path) -> None:
    """The table's defaults and the frozen groups' defaults must not drift."""
    groups = load(["app"], {}).groups()
    assert groups.worker.parser == config.ParserSettings()
    assert groups.worker == config.WorkerSettings(server_software=groups.worker.server_software)
    assert groups.arbiter == config.ArbiterSettings(proc_name="app")
    assert groups.log == config.LogSettings(proc_name="app")
    assert groups.hooks == config.Hooks()


def test_defaults_match_gunicorn(empty_cwd: Path) -> None:
    gconfig = pytest.importorskip("gunicorn.config")
    ours = Settings({})
    for s in gconfig.KNOWN_SETTINGS:
        if s.name not in SETTINGS_BY_NAME or s.section == "Server Hooks":
            continue
        if s.name in ("config", "chdir", "user", "group", "sendfile", "logconfig_dict", "pythonpath"):
            continue  # theirs: gunicorn.conf.py, the process's cwd/uid/gid, None-means-default
        theirs = s.default
        mine = ours[s.name]
        if isinstance(mine, tuple) and mine and isinstance(mine[0], tuple):
            mine = dict(mine)
        elif isinstance(mine, tuple):
            mine = list(mine)
            theirs = config.v_comma_list(theirs) if isinstance(theirs, str) else theirs
            theirs = list(theirs)
        assert mine == theirs, s.name
        assert tuple(s.cli or ()) == SETTINGS_BY_NAME[s.name].cli[: len(s.cli or ())], s.name


def test_every_gunicorn_setting_is_known() -> None:
    gconfig = pytest.importorskip("gunicorn.config")
    theirs = {s.name for s in gconfig.KNOWN_SETTINGS}
    ours = set(SETTINGS_BY_NAME) | {u.name for u in UNSUPPORTED}
    assert theirs - ours == set()
    for u in UNSUPPORTED:
        g = next(s for s in gconfig.KNOWN_SETTINGS if s.name == u.name)
        assert tuple(g.cli or ()) == u.cli, u.name
        assert u.takes_value == (g.action not in ("store_true", "store_const")), u.name


# --- environment-supplied defaults ------------------------------------------------


def test_port_env_changes_the_default_bind(empty_cwd: Path) -> None:
    assert load(["app"], {"PORT": "5000"})["bind"] == ("0.0.0.0:5000",)
    assert load(["-b", "127.0.0.1:1", "app"], {"PORT": "5000"})["bind"] == ("127.0.0.1:1",)


def test_web_concurrency(empty_cwd: Path) -> None:
    s = load(["app"], {"WEB_CONCURRENCY": "4"})
    assert s["workers"] == 4 and s.sources["workers"] == "environment variable WEB_CONCURRENCY"
    assert load(["-w", "2", "app"], {"WEB_CONCURRENCY": "4"})["workers"] == 2
    with pytest.raises(ConfigError, match="invalid value for --workers \\(environment variable WEB_CONCURRENCY\\)"):
        load(["app"], {"WEB_CONCURRENCY": "many"})
    # Overridden, a bad environment value does no harm.
    assert load(["-w", "2", "app"], {"WEB_CONCURRENCY": "many"})["workers"] == 2


def test_forwarded_allow_ips_env(empty_cwd: Path) -> None:
    assert load(["app"], {"FORWARDED_ALLOW_IPS": "10.1.1.1"})["forwarded_allow_ips"] == ("10.1.1.1",)


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("no", False), ("1", True), ("yes", True)])
def test_sendfile_env(value: str, expected: bool, empty_cwd: Path) -> None:
    assert load(["app"], {"SENDFILE": value})["sendfile"] is expected
    assert load(["--no-sendfile", "app"], {"SENDFILE": value})["sendfile"] is False


def test_script_name_env(empty_cwd: Path) -> None:
    groups = load(["app"], {"SCRIPT_NAME": "/api/"}).groups()
    assert groups.worker.script_name == "/api"


# --- precedence ------------------------------------------------------------------


def test_precedence_default_config_cmdargs_cli(empty_cwd: Path) -> None:
    cfg = empty_cwd / "fastwsgi.conf.py"
    cfg.write_text("workers = 2\ntimeout = 11\nkeepalive = 3\nbacklog = 100\n")
    env = {"FASTWSGI_CMD_ARGS": "--timeout 12 --keep-alive 4"}
    s = load(["--keep-alive", "5", "app"], env)
    assert s["max_requests"] == 0 and s.sources["max_requests"] == "default"
    assert s["workers"] == 2 and s["backlog"] == 100  # config file
    assert s["timeout"] == 12.0 and s.sources["timeout"] == "FASTWSGI_CMD_ARGS"
    assert s["keepalive"] == 5.0 and s.sources["keepalive"] == "command line"


def test_config_file_beats_env_default(empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text("workers = 3\n")
    assert load(["app"], {"WEB_CONCURRENCY": "8"})["workers"] == 3


def test_config_path_from_cmd_args_env(tmp_path: Path, empty_cwd: Path) -> None:
    cfg = tmp_path / "other.py"
    cfg.write_text("workers = 6\n")
    assert load(["app"], {"FASTWSGI_CMD_ARGS": f"-c {cfg}"})["workers"] == 6


def test_cli_config_wins_over_default_file(tmp_path: Path, empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text("workers = 2\n")
    other = tmp_path / "o.py"
    other.write_text("workers = 7\n")
    assert load(["-c", str(other), "app"], {})["workers"] == 7


def test_gunicorn_conf_is_the_fallback_default(empty_cwd: Path) -> None:
    (empty_cwd / "gunicorn.conf.py").write_text("workers = 4\n")
    assert load(["app"], {})["workers"] == 4
    (empty_cwd / "fastwsgi.conf.py").write_text("workers = 5\n")
    assert load(["app"], {})["workers"] == 5


def test_wsgi_app_from_config_file(empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text("wsgi_app = 'pkg.mod:make()'\n")
    assert load([], {}).app_uri == "pkg.mod:make()"
    assert load(["other:app"], {}).app_uri == "other:app"


# --- config files ---------------------------------------------------------------


def test_python_module_config(tmp_path: Path, empty_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myconf_mod_cfgtest.py").write_text("workers = 9\nbind = '127.0.0.1:9'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        s = load(["-c", "python:myconf_mod_cfgtest", "app"], {})
    finally:
        sys.modules.pop("myconf_mod_cfgtest", None)
    assert s["workers"] == 9 and s["bind"] == ("127.0.0.1:9",)


def test_config_file_helpers_and_imports_are_ignored(empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text(
        "import multiprocessing\nimport os\n_private = 1\nhelper = 2\n"
        "workers = multiprocessing.cpu_count() * 2 + 1\n"
    )
    assert load(["app"], {})["workers"] == os.cpu_count() * 2 + 1


def test_config_file_sees_its_own_path(empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text("import os\nproc_name = os.path.basename(__file__)\n")
    assert load(["app"], {})["proc_name"] == "fastwsgi.conf.py"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = (\n", r"line 1: '\(' was never closed"),
        ("x = 1\nraise RuntimeError('boom')\n", r"line 2: RuntimeError: boom"),
        ("import no_such_module_xyz\n", r"line 1: ModuleNotFoundError"),
        ("workers = 'many'\n", r"invalid value for --workers \(config file .*\): 'many' is not an integer"),
        ("timeout = [1]\n", r"invalid value for --timeout"),
        ("bind = 5\n", r"invalid value for --bind"),
        ("bind = ['127.0.0.1:8000', '127.0.0.1:70000']\n",
         r"invalid value for --bind \(config file .*\): invalid port in '127\.0\.0\.1:70000'"),
        ("worker_class = 'gevent'\n", r"Gunicorn worker class fastwsgi does not provide"),
        ("post_fork = 3\n", r"invalid value for post_fork.*not callable"),
        ("def pre_fork(server):\n    pass\n", r"pre_fork.*must take 2 positional arguments, it takes 1"),
        ("import sys\nsys.exit(3)\n", r"line 2: SystemExit"),
    ],
)
def test_broken_config_file(text: str, message: str, empty_cwd: Path) -> None:
    cfg = empty_cwd / "broken.py"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load(["-c", str(cfg), "app"], {})
    assert "\n" not in str(info.value)


def test_missing_config_file(empty_cwd: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file 'nope.py': No such file"):
        load(["-c", "nope.py", "app"], {})


def test_hooks_from_config_file(empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text(
        "def on_starting(server):\n    return ('starting', server)\n"
        "def pre_fork(server, worker):\n    return ('pre_fork', server, worker)\n"
        "def nworkers_changed(server, new, old):\n    return (new, old)\n"
        "def post_request(worker, req):\n    return ('post', worker, req)\n"
        "when_ready = 'os.path.exists'\n"
    )
    hooks = load(["app"], {}).groups().hooks
    assert hooks.on_starting("srv") == ("starting", "srv")
    assert hooks.pre_fork("srv", "w") == ("pre_fork", "srv", "w")
    assert hooks.nworkers_changed(None, 3, 2) == (3, 2)
    # Gunicorn accepts a two-argument post_request and calls it with the first two.
    assert hooks.post_request("w", "r", {}, "resp") == ("post", "w", "r")
    assert hooks.when_ready is os.path.exists
    assert hooks.on_exit is None


# --- unsupported Gunicorn settings ------------------------------------------------


def test_unsupported_flags_are_accepted_and_reported_once(empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text("ciphers = 'HIGH'\nlogger_class = 'x.Log'\n")
    s = load(["--ciphers", "HIGH", "--spew", "app"], {"FASTWSGI_CMD_ARGS": "--ssl-version 2"})
    warnings = s.warnings()
    names = [w.split()[2] for w in warnings]
    assert sorted(names) == sorted(["ciphers", "logger_class", "ssl_version", "spew"])
    assert all("not supported by fastwsgi" in w for w in warnings)
    assert s.app_uri == "app"


# --- PasteDeploy (--paste) ----------------------------------------------------------

LOGGING_INI = "[loggers]\nkeys = root\n[handlers]\nkeys =\n[formatters]\nkeys =\n"


def test_paste_ini_is_the_app_relative_to_the_start_directory(empty_cwd: Path) -> None:
    (empty_cwd / "conf").mkdir()
    ini = empty_cwd / "conf" / "dev.ini"
    ini.write_text("[app:main]\nuse = call:x:y\n" + LOGGING_INI)
    s = load(["--paster", "conf/dev.ini#admin", "--paste-global", "a=1", "-b", ":9"], {})
    assert s.app_uri == f"{ini}#admin" and s["paste"] == f"{ini}#admin"
    g = s.groups()
    assert g.paste and g.paste_global_conf == ("a=1",) and g.arbiter.bind == (":9",)
    assert g.log.logconfig == str(ini)  # its [loggers] configure logging (Gunicorn)
    assert g.arbiter.proc_name == f"{ini}#admin"
    assert s.warnings() == []


def test_paste_logging_only_from_an_ini_with_loggers_and_no_other_log_config(
    empty_cwd: Path,
) -> None:
    (empty_cwd / "a.ini").write_text("[app:main]\nuse = call:x:y\n")
    assert load(["--paste", "a.ini"], {}).groups().log.logconfig is None
    (empty_cwd / "b.ini").write_text("[app:main]\nuse = call:x:y\n" + LOGGING_INI)
    (empty_cwd / "log.ini").write_text(LOGGING_INI)
    assert load(["--paste", "b.ini", "--log-config", "log.ini"], {}).groups().log.logconfig == "log.ini"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--paste", "missing.ini"], "not found"),
        (["--paste", "a.ini", "app:app"], "either APP"),
        (["--paste-global", "novalue", "--paste", "a.ini"], "not KEY=VALUE"),
    ],
)
def test_paste_errors_are_one_line(empty_cwd: Path, argv: list[str], message: str) -> None:
    (empty_cwd / "a.ini").write_text("[app:main]\nuse = call:x:y\n")
    with pytest.raises(ConfigError, match=message):
        load(argv, {})


def test_unsupported_settings_left_off_in_a_config_file_are_not_reported(empty_cwd: Path) -> None:
    (empty_cwd / "fastwsgi.conf.py").write_text(
        "spew = False\ntmp_upload_dir = None\nkeyfile = ''\nreload_extra_files = []\n"
        "logger_class = 'gunicorn.glogging.Logger'\nspew = True\n"
    )
    assert [w.split()[2] for w in load(["app"], {}).warnings()] == ["spew"]


@pytest.mark.parametrize("u", [u for u in UNSUPPORTED
                               if u.cli and u.name not in config.REFUSED and u.name not in config.OURS],
                         ids=lambda u: u.name)
def test_each_unsupported_flag_is_accepted(u: config.Unsupported, empty_cwd: Path) -> None:
    argv = [u.cli[0], "x"] if u.takes_value else [u.cli[0]]
    s = load([*argv, "app:app"], {})
    assert [w.split()[2] for w in s.warnings()] == [u.name]
    assert s.app_uri == "app:app"


def test_initgroups_is_what_fastwsgi_does_anyway(empty_cwd: Path) -> None:
    # Workers switching to --user/--group always take the user's groups, so
    # Gunicorn's --initgroups asks for nothing new: no warning, from either source.
    (empty_cwd / "fastwsgi.conf.py").write_text("initgroups = True\n")
    assert load(["--initgroups", "app"], {}).warnings() == []
    # And the settings doc does not list it among the settings that warn.
    assert "- `initgroups` (`--initgroups`) *no warning*\n" in settings_doc.markdown()


def test_reload_extra_files_from_flags_and_config_file(empty_cwd: Path) -> None:
    s = load(["--reload-extra-file", "a.cfg", "--reload-extra-file", "tpl/**/*.html", "app"], {})
    assert s["reload_extra_files"] == ("a.cfg", "tpl/**/*.html")
    (empty_cwd / "fastwsgi.conf.py").write_text(
        "reload = True\nreload_extra_files = ['x.yaml', 'y.yaml']\nreload_engine = 'poll'\n"
    )
    s = load(["app"], {})
    assert s.groups().arbiter.reload_extra_files == ("x.yaml", "y.yaml")
    assert s.groups().arbiter.reload and s.warnings() == []


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("unix:///dev/log", (None, "/dev/log")),
        ("unix:///run/log#stream", (socket.SOCK_STREAM, "/run/log")),
        ("udp://LogHost", (socket.SOCK_DGRAM, ("loghost", 514))),
        ("udp://:5514", (socket.SOCK_DGRAM, ("localhost", 5514))),
        ("tcp://10.0.0.1:601", (socket.SOCK_STREAM, ("10.0.0.1", 601))),
        ("udp://[::1]:5514", (socket.SOCK_DGRAM, ("::1", 5514))),
        ("udp://[::1]", (socket.SOCK_DGRAM, ("::1", 514))),
    ],
)
def test_syslog_address_forms(addr: str, expected: tuple[Any, Any]) -> None:
    assert config.parse_syslog_address(addr) == expected


@pytest.mark.parametrize(
    "addr", ["syslog.local:514", "udp://host:http", "udp://host:70000", "unix://", "unix:///x#raw"]
)
def test_bad_syslog_address_is_one_line(addr: str, empty_cwd: Path) -> None:
    with pytest.raises(ConfigError, match="invalid value for --log-syslog-to") as info:
        load(["--log-syslog-to", addr, "app"], {})
    assert "\n" not in str(info.value)


def test_unknown_reload_engine_is_one_line(empty_cwd: Path) -> None:
    with pytest.raises(ConfigError, match="--reload-engine.*'fsevents' is not one of auto, poll, inotify"):
        load(["--reload-engine", "fsevents", "app"], {})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--certfile", "/etc/ssl/site.pem"], "^certfile \\(command line\\): TLS is not supported"),
        (["--keyfile", "k.pem"], "^keyfile \\(command line\\): TLS is not supported"),
        (["--protocol", "uwsgi"], "^protocol \\(command line\\): only HTTP is supported"),
    ],
)
def test_settings_that_would_change_what_the_port_speaks_are_refused(
    argv: list[str], message: str, empty_cwd: Path
) -> None:
    # Ignoring them with a warning would leave a port its owner believes is
    # TLS (or uwsgi) serving plain HTTP: one line and no start instead.
    with pytest.raises(ConfigError, match=message) as info:
        load([*argv, "app"], {})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="TLS is not supported"):
        load(["app"], {config.CMD_ARGS_ENV: "--certfile c.pem"})


def test_tls_in_a_config_file_is_refused_and_its_off_values_are_not(empty_cwd: Path) -> None:
    conf = empty_cwd / "tls.conf.py"
    conf.write_text("certfile = None\nkeyfile = ''\nprotocol = 'http'\nssl_version = 2\n")
    s = load(["-c", str(conf), "app"], {})
    assert [w.split()[2] for w in s.warnings()] == ["ssl_version"]  # ignored, with TLS off
    conf.write_text("certfile = '/etc/ssl/site.pem'\nkeyfile = '/etc/ssl/site.key'\n")
    with pytest.raises(ConfigError, match=f"^certfile \\(config file {conf}\\): TLS is not"):
        load(["-c", str(conf), "app"], {})


# --- validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["-w", "0"], "invalid value for --workers"),
        (["-w", "-1"], "invalid value for --workers"),
        (["--threads", "two"], "invalid value for --threads"),
        (["-t", "nan"], "invalid value for --timeout"),
        (["--forwarded-allow-ips", "10.0.0.1/8"], "not an IP address or network"),
        (["-k", "gevent"], "Gunicorn worker class"),
        (["-k", "not a class"], "not sync, gthread or a dotted path"),
        (["--header-map", "keep"], "not one of drop, refuse, dangerous"),
        (["--forwarder-headers", "SCRIPT NAME"], "not a header field name"),
        (["--proxy-protocol", "v3"], "invalid value for --proxy-protocol"),
        (["--log-level", "loud"], "invalid value for --log-level"),
        (["-u", "no_such_user_xyz"], "no such user"),
        (["-g", "no_such_group_xyz"], "no such group"),
        (["-m", "0999"], "not a umask"),
        (["-e", "NOEQUALS"], "is not KEY=VALUE"),
        (["--statsd-host", "host:notaport"], "not HOST:PORT"),
        (["--statsd-host", "[::1:8125"], "not HOST:PORT"),
        (["--metrics-bind", "127.0.0.1"], "needs a port"),
        (["--metrics-bind", "fd://3"], "fd:// is not supported here"),
        (["--metrics-bind", "unix:"], "empty unix socket path"),
        (["-w"], "expected one argument"),
    ],
)
def test_bad_values(argv: list[str], message: str, empty_cwd: Path) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load([*argv, "app"] if argv != ["-w"] else argv, {})
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("bind", "metrics"),
    [
        ("127.0.0.1:9000", "127.0.0.1:9000"),
        ("127.0.0.1:9000", "0.0.0.0:9000"),  # a wildcard takes the port on every address
        ("0.0.0.0:9000", "10.0.0.1:9000"),
        ("unix:/run/a.sock", "unix:///run/a.sock"),
    ],
)
def test_metrics_bind_may_not_be_a_bind_address(bind: str, metrics: str, empty_cwd: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--metrics-bind .* is also a --bind address \("):
        load(["-b", bind, "--metrics-bind", metrics, "app"], {}).groups()


def test_metrics_bind_beside_the_bind_addresses(empty_cwd: Path) -> None:
    groups = load(["-b", "127.0.0.1:9000", "--metrics-bind", "127.0.0.2:9000", "app"], {}).groups()
    assert groups.arbiter.metrics_bind == "127.0.0.2:9000"
    assert load(["app"], {}).groups().arbiter.metrics_bind is None


def test_bad_cmd_args_env_is_named(empty_cwd: Path) -> None:
    with pytest.raises(ConfigError, match="^FASTWSGI_CMD_ARGS: unrecognized arguments: --nope"):
        load(["app"], {"FASTWSGI_CMD_ARGS": "--nope"})
    with pytest.raises(ConfigError, match="^FASTWSGI_CMD_ARGS: No closing quotation"):
        load(["app"], {"FASTWSGI_CMD_ARGS": "--name 'x"})


def test_worker_class_aliases(empty_cwd: Path) -> None:
    assert load(["-k", "gunicorn.workers.gthread.ThreadWorker", "app"], {})["worker_class"] == "gthread"
    assert load(["-k", "egg:gunicorn#sync", "app"], {})["worker_class"] == "sync"
    assert load(["-k", "my.pkg.Worker", "app"], {})["worker_class"] == "my.pkg.Worker"


def test_threads_turn_sync_into_gthread(empty_cwd: Path) -> None:
    assert load(["--threads", "4", "app"], {}).groups().worker.worker_class == "gthread"
    assert load(["--threads", "1", "app"], {}).groups().worker.worker_class == "sync"
    # An explicit custom class is kept.
    assert load(["--threads", "4", "-k", "my.pkg.W", "app"], {}).groups().worker.worker_class == "my.pkg.W"


def test_groups_carry_every_value(empty_cwd: Path) -> None:
    s = load(
        ["-b", "127.0.0.1:1", "-w", "3", "-t", "9", "--graceful-timeout", "8", "--max-worker-memory", "64",
         "--limit-request-body", "10", "--access-logfile", "-", "--access-log-json", "-n", "web",
         "--pythonpath", "/x", "--chdir", "/tmp", "-e", "K=V", "--log-level", "debug", "app:app"],
        {},
    )
    g = s.groups()
    assert g.app_uri == "app:app" and g.chdir == "/tmp" and g.pythonpath == ("/x",) and g.raw_env == ("K=V",)
    assert g.arbiter.bind == ("127.0.0.1:1",) and g.arbiter.workers == 3
    assert g.arbiter.timeout == g.worker.timeout == 9.0
    assert g.arbiter.graceful_timeout == g.worker.graceful_timeout == 8.0
    assert g.arbiter.max_worker_memory == g.worker.max_worker_memory == 64
    assert g.arbiter.proc_name == g.log.proc_name == "web"
    assert g.worker.parser.limit_request_body == 10
    assert g.log.accesslog == "-" and g.log.access_log_json and g.log.loglevel == "debug"


def test_logconfig_json_file(empty_cwd: Path) -> None:
    (empty_cwd / "log.json").write_text('{"version": 1, "root": {"level": "WARNING"}}')
    assert load(["--log-config-json", "log.json", "app"], {}).groups().log.logconfig_dict == {
        "version": 1, "root": {"level": "WARNING"}}
    (empty_cwd / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="'bad.json' is not valid JSON"):
        load(["--log-config-json", "bad.json", "app"], {}).groups()
    with pytest.raises(ConfigError, match="cannot read --log-config-json file 'none.json'"):
        load(["--log-config-json", "none.json", "app"], {}).groups()
    with pytest.raises(ConfigError, match="not a JSON object"):
        load(["--log-config-dict", "{x", "app"], {})


def test_print_config_lists_every_setting(empty_cwd: Path) -> None:
    text = load(["-w", "3", "-m", "022", "app"], {}).format()
    names = [line.split(" = ")[0].strip() for line in text.splitlines()]
    assert names == [s.name for s in SETTINGS] + ["app_uri"]
    values = {line.split(" = ")[0].strip(): line.split(" = ", 1)[1] for line in text.splitlines()}
    assert values["workers"] == "3" and values["umask"] == "0o22" and values["on_exit"] == "None"


def test_settings_doc_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == settings_doc.markdown(), "regenerate: make docs"
    for s in SETTINGS:
        assert f"### `{s.name}`" in committed


@pytest.mark.parametrize("fmt", ["%(h)s %", "%(h)s %(", "%(h)q", "%d"])
def test_bad_access_log_format_is_a_config_error(fmt: str, empty_cwd: Path) -> None:
    with pytest.raises(ConfigError, match="not a valid access log format"):
        load(["--access-logformat", fmt, "app"], {})


def test_gunicorn_cmd_args_is_not_silently_ignored(empty_cwd: Path) -> None:
    s = load(["app"], {"GUNICORN_CMD_ARGS": "-w 4"})
    assert s["workers"] == 1
    assert s.warnings() == ["GUNICORN_CMD_ARGS is set but not read; fastwsgi reads FASTWSGI_CMD_ARGS"]
    assert load(["app"], {"GUNICORN_CMD_ARGS": "-w 4", "FASTWSGI_CMD_ARGS": "-w 2"}).warnings() == []


def test_relative_paths_resolve_against_the_start_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a SIGHUP reload needs: the master has moved into --chdir since it
    started, and the same arguments must name the same files."""
    start = tmp_path / "start"
    (start / "conf").mkdir(parents=True)
    (start / "conf" / "c.py").write_text("workers = 3\n")
    (start / "fastwsgi.conf.py").write_text("workers = 4\n")
    (start / "proj").mkdir()
    argv = ["-c", "conf/c.py", "--chdir", "proj", "--pythonpath", "lib,/abs", "app:app"]
    monkeypatch.chdir(start)
    first = load(argv, {}, cwd=str(start))
    monkeypatch.chdir(start / "proj")  # where the master is by the time of a HUP
    again = load(argv, {}, cwd=str(start))
    for settings in (first, again):
        assert settings["workers"] == 3
        assert settings["chdir"] == str(start / "proj")
        # --pythonpath is relative to --chdir, as in Gunicorn (it chdirs first).
        assert settings["pythonpath"] == (str(start / "proj" / "lib"), "/abs")
    # The default config file is looked up where the command started.
    assert load(["app:app"], {}, cwd=str(start))["workers"] == 4
    # Without --chdir, --pythonpath is relative to the start directory.
    assert load(["--pythonpath", "lib", "app:app"], {}, cwd=str(start))["pythonpath"] == (str(start / "lib"),)
