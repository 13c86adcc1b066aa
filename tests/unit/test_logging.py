"""Error log and access log: Gunicorn's shapes, atoms, JSON, escaping, rotation."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import fastwsgi
from fastwsgi.config import LogSettings
from fastwsgi.glogging import JSON_FIELDS, Logger, escape

SRC = str(Path(fastwsgi.__file__).parent.parent)
ERROR_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[([A-Z]+)\] (.*)$")
CLF_TIME = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]"


@pytest.fixture(autouse=True)
def clean_loggers() -> Iterator[None]:
    """Log configs touch process-wide loggers (dictConfig sets up the root too)."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for h in list(root.handlers):
        if h not in saved[0]:
            root.removeHandler(h)
            h.close()
    root.setLevel(saved[1])
    for name in ("fastwsgi.error", "fastwsgi.access", "gunicorn.error", "gunicorn.access"):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
            h.close()
        lg.propagate = True
        lg.setLevel(logging.NOTSET)


def make(tmp_path: Path, **kw: Any) -> Logger:
    kw.setdefault("errorlog", str(tmp_path / "error.log"))
    return Logger(LogSettings(**kw))


def environ(**extra: Any) -> dict[str, Any]:
    env = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/p/a%20th?x=1&y=2",
        "PATH_INFO": "/p/a th",
        "QUERY_STRING": "x=1&y=2",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_REFERER": "http://ref/",
        "HTTP_USER_AGENT": "curl/8.0",
        "HTTP_X_REQUEST_ID": "abc-123",
        "wsgi.url_scheme": "http",
    }
    env.update(extra)
    return env


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# --- error log --------------------------------------------------------------------


def test_error_log_line_shape_and_level(tmp_path: Path) -> None:
    log = make(tmp_path, loglevel="warning")
    log.info("hidden %s", 1)
    log.warning("shown %s", 2)
    log.error("err")
    log.critical("crit")
    log.log("error", "by name")
    log.close()
    got = [ERROR_LINE.match(line) for line in lines(tmp_path / "error.log")]
    assert all(got), lines(tmp_path / "error.log")
    assert [(m[1], m[2], m[3]) for m in got if m] == [
        (str(os.getpid()), "WARNING", "shown 2"),
        (str(os.getpid()), "ERROR", "err"),
        (str(os.getpid()), "CRITICAL", "crit"),
        (str(os.getpid()), "ERROR", "by name"),
    ]


def test_error_log_dash_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    log = Logger(LogSettings(errorlog="-", loglevel="debug"))
    log.debug("to stderr")
    log.close()
    out, err = capsys.readouterr()
    assert out == ""
    m = ERROR_LINE.match(err.strip())
    assert m and m[2] == "DEBUG" and m[3] == "to stderr"


def test_exception_includes_traceback(tmp_path: Path) -> None:
    log = make(tmp_path)
    try:
        raise KeyError("k")
    except KeyError:
        log.exception("failed")
    log.close()
    text = (tmp_path / "error.log").read_text()
    assert "[ERROR] failed" in text and "Traceback" in text and "KeyError: 'k'" in text


def test_setup_again_does_not_stack_handlers(tmp_path: Path) -> None:
    log = make(tmp_path)
    log.setup(LogSettings(errorlog=str(tmp_path / "error.log")))
    log.info("once")
    log.close()
    assert len([x for x in lines(tmp_path / "error.log") if x.endswith("once")]) == 1


# --- access log ------------------------------------------------------------------


def test_default_access_format(tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "access.log"))
    log.access(environ(), "200 OK", [("Content-Length", "5")], 5, 0.0123)
    log.access(environ(REQUEST_METHOD="HEAD"), 304, [], None, 0.0)
    log.close()
    got = lines(tmp_path / "access.log")
    assert len(got) == 2
    assert re.fullmatch(
        r'127\.0\.0\.1 - - ' + CLF_TIME + r' "GET /p/a%20th\?x=1&y=2 HTTP/1\.1" 200 5 "http://ref/" "curl/8\.0"',
        got[0],
    ), got[0]
    assert re.fullmatch(r'127\.0\.0\.1 - - ' + CLF_TIME + r' "HEAD /p/a%20th\?x=1&y=2 HTTP/1\.1" 304 - "http://ref/" "curl/8\.0"',
                        got[1]), got[1]


def test_every_atom(tmp_path: Path) -> None:
    fmt = "|".join(f"%({a})s" for a in "hlutrmUqHsBbfaTMDLp") + "|%({x-request-id}i)s|%({X-Out}o)s|%({wsgi.url_scheme}e)s|%(zz)s|%({nope}i)s"
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"), access_log_format=fmt)
    auth = "Basic " + base64.b64encode(b"alice:secret").decode()
    log.access(environ(HTTP_AUTHORIZATION=auth), "404 Not Found", [("x-out", "o1")], 7, 2.5)
    log.close()
    parts = lines(tmp_path / "a.log")[0].split("|")
    assert re.fullmatch(CLF_TIME, parts[3])
    parts[3] = "T"
    assert parts == [
        "127.0.0.1", "-", "alice", "T", "GET /p/a%20th?x=1&y=2 HTTP/1.1", "GET", "/p/a th", "x=1&y=2",
        "HTTP/1.1", "404", "7", "7", "http://ref/", "curl/8.0", "2", "2500", "2500000", "2.500000",
        f"<{os.getpid()}>", "abc-123", "o1", "http", "-", "-",
    ]


def test_missing_values_render_as_dash(tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"))
    log.access({"REQUEST_METHOD": "GET", "RAW_URI": "/", "SERVER_PROTOCOL": "HTTP/1.0"}, 200, [], 0, 0.0)
    log.close()
    assert re.fullmatch(r'- - - ' + CLF_TIME + r' "GET / HTTP/1\.0" 200 0 "-" "-"', lines(tmp_path / "a.log")[0])


def test_request_values_are_escaped(tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"))
    hostile = 'x"\n1.2.3.4 - - [forged] "GET / HTTP/1.1" 200\x1b[31m\\\xe9'
    log.access(environ(HTTP_USER_AGENT=hostile), 200, [], 1, 0.0)
    log.close()
    got = lines(tmp_path / "a.log")
    assert len(got) == 1
    assert got[0].endswith(r'"x\"\x0a1.2.3.4 - - [forged] \"GET / HTTP/1.1\" 200\x1b[31m\\\xe9"')


def test_escape() -> None:
    assert escape("plain /path?q=1") == "plain /path?q=1"
    assert escape('a"b\\c\td\x7f\x80') == r"a\"b\\c\x09d\x7f\x80"


def test_json_access_log(tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"), access_log_json=True)
    log.access(environ(HTTP_USER_AGENT='evil"\n}{"status":1', QUERY_STRING="\x00"), "201 Created", [], 12, 0.25)
    log.access(environ(), 500, [], None, 1.5)
    log.close()
    raw = lines(tmp_path / "a.log")
    assert len(raw) == 2 and all(line.isascii() for line in raw)
    first, second = (json.loads(line) for line in raw)
    assert list(first) == list(JSON_FIELDS)  # the documented keys, in order
    assert first["status"] == 201 and first["bytes"] == 12 and first["duration_s"] == 0.25
    assert first["user_agent"] == 'evil"\n}{"status":1' and first["query"] == "\x00"
    assert first["method"] == "GET" and first["uri"] == "/p/a%20th?x=1&y=2" and first["remote_addr"] == "127.0.0.1"
    assert first["pid"] == os.getpid()
    assert time.strptime(first["time"], "%Y-%m-%dT%H:%M:%S%z")
    assert second["status"] == 500 and second["bytes"] is None and second["duration_s"] == 1.5


def test_access_log_dash_is_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    log = Logger(LogSettings(errorlog="-", accesslog="-"))
    log.access(environ(), 200, [], 2, 0.0)
    log.close()
    out, err = capfd.readouterr()
    assert '"GET /p/a%20th?x=1&y=2 HTTP/1.1" 200 2' in out and "GET" not in err


def test_no_access_log_by_default(tmp_path: Path) -> None:
    log = make(tmp_path)
    assert not log.access_enabled
    log.access(environ(), 200, [], 2, 0.0)
    log.close()
    assert lines(tmp_path / "error.log") == []


def test_reopen_files_after_rotation(tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"))
    log.info("before")
    log.access(environ(), 200, [], 1, 0.0)
    os.rename(tmp_path / "a.log", tmp_path / "a.log.1")
    os.rename(tmp_path / "error.log", tmp_path / "error.log.1")
    log.reopen_files()
    log.info("after")
    log.access(environ(), 201, [], 1, 0.0)
    log.close()
    assert " 200 " in lines(tmp_path / "a.log.1")[0] and len(lines(tmp_path / "a.log.1")) == 1
    assert " 201 " in lines(tmp_path / "a.log")[0] and len(lines(tmp_path / "a.log")) == 1
    assert lines(tmp_path / "error.log.1")[0].endswith("before")
    assert lines(tmp_path / "error.log")[0].endswith("after")


def test_reopen_files_when_the_directory_is_gone_keeps_writing_to_the_old_files(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = make(tmp_path, errorlog=str(logs / "error.log"), accesslog=str(logs / "a.log"))
    log.info("before")
    os.rename(logs, tmp_path / "moved")  # a rotation gone wrong: logs/ is no more
    log.reopen_files()  # does not raise
    log.info("after")
    log.access(environ(), 200, [], 1, 0.0)
    log.close()
    errors = lines(tmp_path / "moved" / "error.log")
    assert errors[0].endswith("before") and errors[-1].endswith("after")
    assert sum("Cannot reopen log file" in line and "No such file or directory" in line
               for line in errors) == 2  # the error log and the access log
    assert " 200 " in lines(tmp_path / "moved" / "a.log")[0]
    assert not logs.exists()


# --- log configuration ---------------------------------------------------------------


def test_logconfig_dict_for_gunicorn_loggers_is_honoured(tmp_path: Path) -> None:
    """A dict written for Gunicorn names gunicorn.error/gunicorn.access."""
    cfg = {
        "version": 1,
        "formatters": {"plain": {"format": "G %(levelname)s %(message)s"}},
        "handlers": {
            "err": {"class": "logging.FileHandler", "filename": str(tmp_path / "g-error.log"), "formatter": "plain"},
            "acc": {"class": "logging.FileHandler", "filename": str(tmp_path / "g-access.log"), "formatter": "plain"},
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["err"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["acc"], "propagate": False},
        },
    }
    log = Logger(LogSettings(logconfig_dict=cfg))
    log.info("hello")
    log.access(environ(), 200, [], 1, 0.0)
    for h in logging.getLogger("gunicorn.error").handlers + logging.getLogger("gunicorn.access").handlers:
        h.flush()
    assert lines(tmp_path / "g-error.log") == ["G INFO hello"]
    assert re.fullmatch(r'G INFO 127\.0\.0\.1 - - ' + CLF_TIME + r' "GET .*" 200 1 .*', lines(tmp_path / "g-access.log")[0])


def test_logconfig_file(tmp_path: Path) -> None:
    ini = tmp_path / "log.ini"
    out = tmp_path / "out.log"
    ini.write_text(
        "[loggers]\nkeys=root,error\n[handlers]\nkeys=f\n[formatters]\nkeys=x\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n"
        "[logger_error]\nlevel=DEBUG\nhandlers=f\nqualname=fastwsgi.error\npropagate=0\n"
        f"[handler_f]\nclass=FileHandler\nformatter=x\nargs=({str(out)!r},)\n"
        "[formatter_x]\nformat=INI %(message)s\n"
    )
    log = Logger(LogSettings(logconfig=str(ini), loglevel="debug"))
    log.debug("from ini")
    for h in logging.getLogger("fastwsgi.error").handlers:
        h.flush()
    assert lines(out) == ["INI from ini"]


def test_missing_logconfig_file_fails(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="does not exist"):
        Logger(LogSettings(logconfig=str(tmp_path / "none.ini")))


def test_capture_output_redirects_stdout_and_stderr(tmp_path: Path) -> None:
    """fds 1 and 2 are rewired, so this runs in its own process."""
    errlog = tmp_path / "err.log"
    code = (
        "import os, sys\n"
        "from fastwsgi.config import LogSettings\n"
        "from fastwsgi.glogging import Logger\n"
        f"log = Logger(LogSettings(errorlog={str(errlog)!r}, capture_output=True))\n"
        "print('printed'); sys.stdout.flush()\n"
        "os.write(2, b'raw fd 2\\n')\n"
        "log.info('logged')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC},
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"" and proc.stderr == b""
    text = errlog.read_text()
    assert "printed\n" in text and "raw fd 2\n" in text and "[INFO] logged" in text


# --- statsd ----------------------------------------------------------------------------


@pytest.fixture
def statsd_udp() -> Iterator[socket.socket]:
    """A UDP socket on 127.0.0.1 standing in for the statsd server."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    try:
        yield sock
    finally:
        sock.close()


def test_statsd_metrics_over_udp(tmp_path: Path, statsd_udp: socket.socket) -> None:
    port = statsd_udp.getsockname()[1]
    log = make(tmp_path, statsd_host=f"127.0.0.1:{port}", statsd_prefix="web")
    log.access(environ(), "404 Not Found", [], 0, 0.0125)
    log.critical("down")
    got = {statsd_udp.recv(512).decode() for _ in range(4)}
    log.close()
    assert got == {
        "web.gunicorn.request.duration:12.500|ms",
        "web.gunicorn.requests:1|c",
        "web.gunicorn.request.status.404:1|c",
        "web.gunicorn.log.critical:1|c",
    }


def test_dogstatsd_tags_end_every_metric(tmp_path: Path, statsd_udp: socket.socket) -> None:
    port = statsd_udp.getsockname()[1]
    log = make(tmp_path, statsd_host=f"127.0.0.1:{port}", dogstatsd_tags="env:prod,app:shop")
    log.access(environ(), "200 OK", [], 0, 0.002)
    got = {statsd_udp.recv(512).decode() for _ in range(3)}
    log.close()
    assert got == {
        "gunicorn.request.duration:2.000|ms|#env:prod,app:shop",
        "gunicorn.requests:1|c|#env:prod,app:shop",
        "gunicorn.request.status.200:1|c|#env:prod,app:shop",
    }


def test_log_extra_metric_goes_to_statsd_like_gunicorn(
    tmp_path: Path, statsd_udp: socket.socket
) -> None:
    # Gunicorn's statsd logger sends extra={"metric", "value", "mtype"} on any
    # log call (its arbiter's gunicorn.workers gauge, apps' own metrics).
    port = statsd_udp.getsockname()[1]
    log = make(tmp_path, statsd_host=f"127.0.0.1:{port}", statsd_prefix="web")
    log.debug("3 workers", extra={"metric": "gunicorn.workers", "value": 3, "mtype": "gauge"})
    log.info("hit", extra={"metric": "app.hits", "value": 2, "mtype": "counter"})
    log.warning("slow", extra={"metric": "app.lat", "value": 1.5, "mtype": "histogram"})
    log.info("no metric", extra={"user": "x"})  # sends nothing
    log.info("bad", extra={"metric": "app.bad", "value": "x", "mtype": "gauge"})  # dropped
    got = {statsd_udp.recv(512).decode() for _ in range(3)}
    statsd_udp.settimeout(0.3)
    with pytest.raises(TimeoutError):
        statsd_udp.recv(512)
    log.close()
    assert got == {"web.gunicorn.workers:3|g", "web.app.hits:2|c", "web.app.lat:1.500|ms"}


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("%(D)d|%(s)5s|%(h)s", "1500|  200|127.0.0.1"),  # non-%s conversions use '%' formatting
        ("100%% %(m)s %(m)s", "100% GET GET"),  # literal percent, repeated atom
        ("%(B)s %(b)s %(T)s", "0 - 0"),
        ("no atoms at all", "no atoms at all"),
        ("", ""),
    ],
)
def test_format_variants(fmt: str, expected: str, tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"), access_log_format=fmt)
    log.access(environ(), "200 OK", [], None, 0.0015)
    log.close()
    assert (tmp_path / "a.log").read_text() == expected + "\n"


def test_escaping_in_a_non_simple_format(tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"), access_log_format="%(a)10s|%(D)d")
    log.access(environ(HTTP_USER_AGENT="a\nb"), 200, [], 0, 0.0)
    log.close()
    assert (tmp_path / "a.log").read_text() == "    a\\x0ab|0\n"


def test_access_logfile_wins_over_a_log_config(tmp_path: Path) -> None:
    cfg = {"version": 1, "loggers": {"fastwsgi.error": {"level": "INFO"}}}
    log = Logger(LogSettings(logconfig_dict=cfg, accesslog=str(tmp_path / "a.log")))
    log.access(environ(), 200, [], 1, 0.0)
    log.close()
    assert len(lines(tmp_path / "a.log")) == 1


def test_log_config_without_access_logger_means_no_access_log(tmp_path: Path) -> None:
    cfg = {"version": 1, "loggers": {"fastwsgi.error": {"level": "INFO"}}}
    log = Logger(LogSettings(logconfig_dict=cfg))
    assert not log.access_enabled
    log.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_log_files_are_chowned_to_the_worker_user(tmp_path: Path) -> None:
    log = Logger(LogSettings(errorlog=str(tmp_path / "e.log"), accesslog=str(tmp_path / "a.log"),
                             user=65534, group=65534))
    log.close()
    for name in ("e.log", "a.log"):
        st = (tmp_path / name).stat()
        assert (st.st_uid, st.st_gid) == (65534, 65534)


def test_json_access_log_stays_valid_for_any_value(tmp_path: Path) -> None:
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"), access_log_json=True)
    env = environ(PATH_INFO="/caf\xe9\u2028", HTTP_REFERER="\\\"}", REMOTE_ADDR=None, RAW_URI=12)
    log.access(env, "599 Odd", [], 0, 1e-9)
    log.access({}, 200, [], None, 0.0)
    log.close()
    first, second = (json.loads(line) for line in lines(tmp_path / "a.log"))
    assert first["path"] == "/caf\xe9\u2028" and first["referer"] == "\\\"}" and first["remote_addr"] is None
    assert first["uri"] == "12" and first["status"] == 599 and first["duration_s"] == 0.0
    assert second["method"] is None and second["query"] == "" and second["status"] == 200


def test_reopen_files_covers_file_handlers_from_a_log_config(tmp_path: Path) -> None:
    out = tmp_path / "app.log"
    cfg = {
        "version": 1,
        "handlers": {"f": {"class": "logging.FileHandler", "filename": str(out)}},
        "root": {"level": "INFO", "handlers": ["f"]},
        "loggers": {},
    }
    log = Logger(LogSettings(logconfig_dict=cfg))
    logging.getLogger("some.app").warning("before")
    os.rename(out, tmp_path / "app.log.1")
    log.reopen_files()
    logging.getLogger("some.app").warning("after")
    for h in logging.getLogger().handlers:
        h.flush()
    assert lines(tmp_path / "app.log.1") == ["before"] and lines(out) == ["after"]


def test_hand_written_json_format_stays_valid_json(tmp_path: Path) -> None:
    """Gunicorn #2457's recipe: access_log_format = json.dumps({...}) with atoms."""
    fmt = json.dumps({"remote_address": "%(h)s", "user_agent": "%(a)s", "url_path": "%(U)s",
                      "status": "%(s)s", "request_time_seconds": "%(L)s"})
    log = make(tmp_path, accesslog=str(tmp_path / "a.log"), access_log_format=fmt)
    hostile = 'x"}, "forged": "1\n\\\x00\xe9\U0001f600'
    log.access(environ(HTTP_USER_AGENT=hostile, PATH_INFO="/caf\xe9"), 200, [], 1, 0.5)
    log.close()
    (line,) = lines(tmp_path / "a.log")
    record = json.loads(line)
    assert record == {"remote_address": "127.0.0.1", "user_agent": hostile, "url_path": "/caf\xe9",
                      "status": "200", "request_time_seconds": "0.500000"}


def test_escape_json() -> None:
    from fastwsgi.glogging import escape_json

    assert escape_json("plain") == "plain"
    assert escape_json('a"\\\n\xe9') == 'a\\"\\\\\\u000a\\u00e9'
    assert json.loads(f'"{escape_json(chr(0x1F600))}"') == chr(0x1F600)


# --- syslog ------------------------------------------------------------------------------


def test_syslog_gets_error_and_access_lines_tagged_like_gunicorn(
    tmp_path: Path, statsd_udp: socket.socket
) -> None:
    # (statsd_udp is just a UDP socket on loopback: here it is the syslog server.)
    port = statsd_udp.getsockname()[1]
    log = make(tmp_path, syslog=True, syslog_addr=f"udp://127.0.0.1:{port}",
               syslog_prefix="web", syslog_facility="local3", proc_name="shop:app")
    assert log.access_enabled  # no --access-logfile: syslog alone turns it on
    log.error("disk %s", "full")
    log.access(environ(), "200 OK", [], 5, 0.001)
    got = [statsd_udp.recv(2048).decode() for _ in range(2)]
    log.close()
    pid = os.getpid()
    # <PRI> = facility * 8 + severity: local3 (19), error (3) and info (6).
    assert got[0] == f"<155>gunicorn.web.error: [{pid}] disk full\x00"
    assert got[1].startswith(f"<158>gunicorn.web.access: [{pid}] 127.0.0.1 - - [")
    assert '"GET /p/a%20th?x=1&y=2 HTTP/1.1" 200 5' in got[1]
    assert (tmp_path / "error.log").read_text().endswith("[ERROR] disk full\n")  # still there too


def test_syslog_over_a_unix_datagram_socket_without_access_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        server.settimeout(10)
        log = make(tmp_path, syslog=True, syslog_addr=f"unix://{path}#dgram",
                   disable_redirect_access_to_syslog=True, proc_name="shop:app")
        assert not log.access_enabled
        log.access(environ(), "200 OK", [], 5, 0.001)
        log.warning("slow")
        got = server.recv(2048).decode()
        log.close()
    # Default prefix: the process name with ':' made '.'; facility user (1), warning (4).
    assert got == f"<12>gunicorn.shop.app.error: [{os.getpid()}] slow\x00"


def test_syslog_over_tcp_that_nobody_answers_fails_the_setup(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connect is refused
        with pytest.raises(OSError):
            make(tmp_path, syslog=True, syslog_addr=f"tcp://127.0.0.1:{port}")
