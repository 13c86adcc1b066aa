"""Every setting that changes what a running server does, proven end to end.

Theory of operation
-------------------
``CASES`` is a table: one row per setting, naming the group it runs in, the
command-line arguments that set it (``{tmp}`` is the group's directory,
``{udp:NAME}`` the port of a UDP socket the test owns, for syslog and
statsd) and a check that observes the effect from outside: over a socket,
in ``/proc``, with ``ss``, in a log file or a datagram. Each check contrasts
with the default (a request the defaults would serve is refused, or the
other way round), so a setting that never reaches the code it steers fails
its row. The rows of one group share one server, started with all their
arguments together on first use, so the whole table costs a few server
starts.

``COVERED_ELSEWHERE`` names, for every other setting, the test that already
starts a real server with it and observes the effect, and ``NO_RUNTIME_EFFECT``
the few that cannot change what a server does (with why).
``test_every_setting_is_proven_end_to_end`` fails when a setting in
``config.SETTINGS`` is in none of the three, or when a named test no longer
exists: a new setting cannot land untested.

Adding a setting's end-to-end case is one row in ``CASES`` (and, if its
check needs one, a short ``check_*`` function); pick an existing group when
its other settings do not interfere, else add a group to ``GROUPS``.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from hostile_support import recv_until_close
from httpraw import parse_responses
from server import Server

from fastwsgi.config import SETTINGS

HERE = Path(__file__).resolve().parent
DEADLINE = 20.0  # seconds for any one observation on a loaded machine


@dataclass
class Ctx:
    """What a check gets: the group's running server and what it owns."""

    srv: Server
    tmp: Path
    udp: dict[str, socket.socket] = field(default_factory=dict)
    seen: dict[str, list[str]] = field(default_factory=dict)

    def exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection: (status, headers, body) of the answer."""
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=DEADLINE) as s:
            s.sendall(raw)
            got = recv_until_close(s, time.monotonic() + DEADLINE)
        resps, _ = parse_responses(got.data)
        assert resps, f"no response to {raw[:200]!r}: {got.data[:300]!r}"
        r = resps[0]
        return r.status, {k.lower(): v for k, v in r.headers}, r.body

    def get(self, head: str, body: bytes = b"", method: str = "GET") -> tuple[int, dict]:
        """Status and, on a 200, the probe app's JSON for one request."""
        raw = f"{method} /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n".encode()
        status, _, data = self.exchange(raw + body)
        return status, (json.loads(data) if status == 200 else {})

    def datagrams(self, name: str, want: Callable[[list[str]], bool]) -> list[str]:
        """Every datagram seen on the group's UDP socket ``name`` so far,
        reading more until ``want`` holds for them."""
        sock, got = self.udp[name], self.seen.setdefault(name, [])
        deadline = time.monotonic() + DEADLINE
        while not want(got):
            left = deadline - time.monotonic()
            assert left > 0, f"no matching datagram on {name}: {got}"
            sock.settimeout(left)
            try:
                got.append(sock.recv(4096).decode(errors="replace"))
            except TimeoutError:
                continue
        return got


# --- checks: each observes one setting against the default ----------------------------


def check_limit_request_line(c: Ctx) -> None:
    assert c.get("")[0] == 200
    status, _, _ = c.exchange(f"GET /{'a' * 120} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 414  # the default (4094) serves this line


def check_limit_request_fields(c: Ctx) -> None:
    assert c.get("".join(f"X-{i}: v\r\n" for i in range(3)))[0] == 200
    assert c.get("".join(f"X-{i}: v\r\n" for i in range(6)))[0] == 431


def check_limit_request_field_size(c: Ctx) -> None:
    assert c.get(f"X-Big: {'a' * 35}\r\n")[0] == 200
    assert c.get(f"X-Big: {'a' * 80}\r\n")[0] == 431


def check_limit_request_headers_total(c: Ctx) -> None:
    fields = [f"X-{i}: {'h' * 40}\r\n" for i in range(3)]  # each under the field size
    assert c.get("".join(fields[:1]))[0] == 200
    assert c.get("".join(fields))[0] == 431


def check_limit_request_body(c: Ctx) -> None:
    status, got = c.get("Content-Length: 10\r\n", b"0123456789", "POST")
    assert status == 200 and got["body"] == 10
    assert c.get("Content-Length: 11\r\n", b"0123456789A", "POST")[0] == 413


def check_header_map(c: Ctx) -> None:
    assert c.get("X_Under: 1\r\n")[0] == 400  # refuse; the default drops it and serves


def check_permit_obsolete_folding(c: Ctx) -> None:
    status, got = c.get("X-Fold: first\r\n second\r\n")
    assert status == 200 and got["headers"]["HTTP_X_FOLD"] == "first second"


def check_permit_unconventional_http_method(c: Ctx) -> None:
    method = "LONGERTHANTWENTYCHARS"  # outside 3..20 upper-case letters
    status, got = c.get("", method=method)
    assert status == 200 and got["method"] == method


def check_casefold_http_method(c: Ctx) -> None:
    status, got = c.get("", method="patch")
    assert status == 200 and got["method"] == "PATCH"


def check_strip_header_spaces(c: Ctx) -> None:
    status, got = c.get("X-Spaced : kept\r\n")
    assert status == 200 and got["headers"]["HTTP_X_SPACED"] == "kept"


def check_permit_missing_host(c: Ctx) -> None:
    status, _, _ = c.exchange(b"GET /probe HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status == 200  # the default answers 400 (RFC 9112 3.2)


def check_backlog(c: Ctx) -> None:
    # ss shows a listening socket's accept-queue limit (the listen() backlog) as Send-Q.
    ss = shutil.which("ss")
    assert ss, "ss is not installed (.ci/run installs iproute2)"
    out = subprocess.run(
        [ss, "-Hltn", f"sport = :{c.srv.port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[:1] == ["LISTEN"] and int(out[2]) == 37, out


def check_umask(c: Ctx) -> None:
    # The unix socket is created under the umask (Gunicorn's meaning): 0777 & ~027.
    assert (c.tmp / "e2e.sock").stat().st_mode & 0o777 == 0o750


def check_workers(c: Ctx) -> None:
    c.srv.wait_workers(2)


def check_loglevel(c: Ctx) -> None:
    c.srv.wait_for_log(r"\[WARNING\] e2e probe warning")  # from the logconfig-free default handler
    assert "[INFO]" not in c.srv.log(), c.srv.log()[-2000:]


def check_syslog_facility(c: Ctx) -> None:
    # <PRI> = facility * 8 + severity: local3 (19) and warning (4) give 156.
    got = c.datagrams("syslog", lambda g: any("e2e probe warning" in m for m in g))
    line = next(m for m in got if "e2e probe warning" in m)
    assert line.startswith("<156>"), line


def check_disable_redirect_access_to_syslog(c: Ctx) -> None:
    path = "/no-access-in-syslog"
    assert c.exchange(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())[0] == 200
    # The one worker logs a warning on its next request: a fence behind the
    # access line, which (redirected) would have left before it.
    assert c.exchange(b"GET /warn HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200
    got = c.datagrams("syslog", lambda g: any("e2e fence" in m for m in g))
    assert not any(path in m for m in got), got
    assert path in (c.tmp / "access.log").read_text()  # the access log itself still has it


def check_dogstatsd_tags(c: Ctx) -> None:
    c.get("")
    got = c.datagrams("statsd", lambda g: any("gunicorn.requests:1|c" in m for m in g))
    req = next(m for m in got if "gunicorn.requests:1|c" in m)
    assert req.endswith("|#env:e2e,team:t"), req


def _check_marker_log(name: str) -> Callable[[Ctx], None]:
    def check(c: Ctx) -> None:
        # The configured handler writes "E2E-<name> <level> <message>" lines to its own file.
        path = c.tmp / f"{name}.log"
        deadline = time.monotonic() + DEADLINE
        while not re.search(rf"^E2E-{name} INFO .*Booting worker", path.read_text() if path.exists() else "", re.M):
            assert time.monotonic() < deadline, f"{path} never got the worker's boot line"
            time.sleep(0.05)

    return check


def _logconfig_dict(name: str, tmp: Path) -> dict:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"e2e": {"format": f"E2E-{name} %(levelname)s %(message)s"}},
        "handlers": {
            "e2e": {"class": "logging.FileHandler", "filename": str(tmp / f"{name}.log"), "formatter": "e2e"}
        },
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["e2e"], "propagate": False}},
    }


def _write_logconfig_json(tmp: Path) -> None:
    (tmp / "logconfig.json").write_text(json.dumps(_logconfig_dict("json", tmp)))


def _write_logconfig_dict(tmp: Path) -> None:
    (tmp / "e2e_conf.py").write_text(f"logconfig_dict = {_logconfig_dict('dict', tmp)!r}\n")


def _write_logconfig_ini(tmp: Path) -> None:
    (tmp / "logconfig.ini").write_text(
        "[loggers]\nkeys=root,error\n\n"
        "[handlers]\nkeys=e2e\n\n"
        "[formatters]\nkeys=e2e\n\n"
        "[logger_root]\nlevel=WARNING\nhandlers=\n\n"
        "[logger_error]\nlevel=INFO\nhandlers=e2e\npropagate=0\nqualname=gunicorn.error\n\n"
        f"[handler_e2e]\nclass=FileHandler\nformatter=e2e\nargs=({str(tmp / 'ini.log')!r},)\n\n"
        "[formatter_e2e]\nformat=E2E-ini %(levelname)s %(message)s\n"
    )


# --- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    args: tuple[str, ...]  # besides its cases' own: the app, the worker count...
    udp: tuple[str, ...] = ()  # UDP sockets to open first ({udp:NAME} in args)
    prepare: Callable[[Path], None] | None = None  # writes files the args name


# Hooks that log WARNING lines from the worker (what --log-level warning
# must let through, and syslog must carry): one at boot, one per ``/warn``.
_WARN_CONF = (
    "def post_worker_init(worker):\n"
    "    worker.log.warning('e2e probe warning')\n"
    "def pre_request(worker, req):\n"
    "    if req.path == '/warn':\n"
    "        worker.log.warning('e2e fence')\n"
)

GROUPS: dict[str, Group] = {
    "parser": Group(("-w", "2", "-b", "unix:{tmp}/e2e.sock", "apps.probe:app")),
    "logging": Group(
        ("-c", "{tmp}/warn_conf.py", "--access-logfile", "{tmp}/access.log", "apps.probe:app"),
        udp=("syslog", "statsd"),
        prepare=lambda tmp: (tmp / "warn_conf.py").write_text(_WARN_CONF),
    ),
    "logconfig_json": Group(("apps.probe:app",), prepare=_write_logconfig_json),
    "logconfig_dict": Group(("apps.probe:app",), prepare=_write_logconfig_dict),
    "logconfig_ini": Group(("apps.probe:app",), prepare=_write_logconfig_ini),
}


@dataclass(frozen=True)
class Case:
    setting: str
    group: str
    args: tuple[str, ...]
    check: Callable[[Ctx], None]


CASES: list[Case] = [
    Case("limit_request_line", "parser", ("--limit-request-line", "100"), check_limit_request_line),
    Case("limit_request_fields", "parser", ("--limit-request-fields", "5"), check_limit_request_fields),
    Case("limit_request_field_size", "parser", ("--limit-request-field-size", "50"), check_limit_request_field_size),
    Case("limit_request_headers_total", "parser", ("--limit-request-headers-total", "120"), check_limit_request_headers_total),
    Case("limit_request_body", "parser", ("--limit-request-body", "10"), check_limit_request_body),
    Case("header_map", "parser", ("--header-map", "refuse"), check_header_map),
    Case("permit_obsolete_folding", "parser", ("--permit-obsolete-folding",), check_permit_obsolete_folding),
    Case("permit_unconventional_http_method", "parser", ("--permit-unconventional-http-method",), check_permit_unconventional_http_method),
    Case("casefold_http_method", "parser", ("--casefold-http-method",), check_casefold_http_method),
    Case("strip_header_spaces", "parser", ("--strip-header-spaces",), check_strip_header_spaces),
    Case("permit_missing_host", "parser", ("--permit-missing-host",), check_permit_missing_host),
    Case("backlog", "parser", ("--backlog", "37"), check_backlog),
    Case("umask", "parser", ("--umask", "027"), check_umask),
    Case("workers", "parser", (), check_workers),
    Case("loglevel", "logging", ("--log-level", "warning"), check_loglevel),
    Case("syslog_facility", "logging", ("--log-syslog", "--log-syslog-to", "udp://127.0.0.1:{udp:syslog}", "--log-syslog-facility", "local3"), check_syslog_facility),
    Case("disable_redirect_access_to_syslog", "logging", ("--disable-redirect-access-to-syslog",), check_disable_redirect_access_to_syslog),
    Case("dogstatsd_tags", "logging", ("--statsd-host", "127.0.0.1:{udp:statsd}", "--dogstatsd-tags", "env:e2e,team:t"), check_dogstatsd_tags),
    Case("logconfig_json", "logconfig_json", ("--log-config-json", "{tmp}/logconfig.json"), _check_marker_log("json")),
    Case("logconfig_dict", "logconfig_dict", ("-c", "{tmp}/e2e_conf.py"), _check_marker_log("dict")),
    Case("logconfig", "logconfig_ini", ("--log-config", "{tmp}/logconfig.ini"), _check_marker_log("ini")),
]

# Settings whose effect another test already observes on a real server.
COVERED_ELSEWHERE: dict[str, str] = {
    "config": "test_cli_serve.py::test_hup_rereads_the_config_file",
    "wsgi_app": "test_cli_serve.py::test_hup_after_a_relative_chdir_rereads_a_relative_config",
    "bind": "test_arbiter_operations.py::test_unix_socket_serves_and_is_removed_on_exit",
    "reuse_port": "test_arbiter_operations.py::test_reuse_port_lets_two_servers_share_a_port",
    "worker_class": "test_workers_gthread.py::test_keepalive_reuses_one_connection_then_idles_out",
    "threads": "test_workers_gthread.py::test_lingering_thread_leaves_the_pool_to_others",
    "worker_connections": "test_slow_clients.py::test_gthread_worker_connections_cap_holds_and_releases",
    "max_requests": "test_arbiter_lifecycle.py::test_max_requests_recycles_the_worker",
    "max_requests_jitter": "test_arbiter_lifecycle.py::test_max_requests_jitter_spreads_the_limit",
    "max_worker_memory": "test_arbiter_lifecycle.py::test_memory_limit_recycles_the_worker",
    "timeout": "test_arbiter_lifecycle.py::test_hung_worker_is_aborted_with_a_traceback_and_replaced",
    "graceful_timeout": "test_signals.py::test_term_lets_an_in_flight_request_finish",
    "keepalive": "test_slow_clients.py::test_gthread_keepalive_idle_connection_is_closed",
    "header_timeout": "test_slow_clients.py::test_silent_connection_is_closed_after_header_timeout",
    "body_timeout": "test_slow_clients.py::test_stalled_body_is_cut_off",
    "forwarded_allow_ips": "test_wsgi_behaviour.py::test_forwarded_proto_from_trusted_and_untrusted_peers",
    "secure_scheme_headers": "test_hostile_trust.py::test_conflicting_secure_scheme_headers_are_rejected",
    "forwarder_headers": "test_hostile_trust.py::test_script_name_header_only_from_trusted_peer",
    "proxy_protocol": "test_hostile_trust.py::test_proxy_line_from_an_allowed_peer_sets_remote_addr",
    "proxy_allow_ips": "test_hostile_trust.py::test_proxy_line_from_a_peer_not_in_proxy_allow_from_is_forbidden",
    "script_name": "test_wsgi_behaviour.py::test_script_name_from_environment",
    "preload_app": "test_arbiter_operations.py::test_preload_imports_the_app_once_in_the_master",
    "sendfile": "test_wsgi_behaviour.py::test_100mib_download_intact",
    "chdir": "test_cli_serve.py::test_chdir_pythonpath_and_captured_output",
    "pythonpath": "test_cli_serve.py::test_chdir_pythonpath_and_captured_output",
    "raw_env": "test_cli_serve.py::test_hup_rereads_the_config_file",
    "daemon": "test_arbiter_operations.py::test_daemon_mode_detaches_and_winch_stops_the_workers",
    "enable_stdio_inheritance": "test_arbiter_operations.py::test_daemon_with_stdio_inheritance_keeps_the_launchers_stderr",
    "pidfile": "test_arbiter_operations.py::test_daemon_mode_detaches_and_winch_stops_the_workers",
    "worker_tmp_dir": "test_arbiter_operations.py::test_process_titles",
    "user": "test_arbiter_operations.py::test_workers_drop_to_user_and_group_the_master_keeps_root",
    "group": "test_arbiter_operations.py::test_workers_drop_to_user_and_group_the_master_keeps_root",
    "proc_name": "test_arbiter_operations.py::test_process_titles",
    "accesslog": "test_cli_serve.py::test_default_access_log_line",
    "access_log_format": "test_cli_serve.py::test_custom_access_log_format",
    "access_log_json": "test_cli_serve.py::test_json_access_log",
    "errorlog": "test_cli_errors.py::test_fatal_line_reaches_stderr_when_the_error_log_is_a_file",
    "capture_output": "test_cli_serve.py::test_chdir_pythonpath_and_captured_output",
    "syslog": "test_cli_serve.py::test_syslog_gets_the_masters_and_the_workers_lines",
    "syslog_addr": "test_cli_serve.py::test_syslog_gets_the_masters_and_the_workers_lines",
    "syslog_prefix": "test_cli_serve.py::test_syslog_gets_the_masters_and_the_workers_lines",
    "metrics_bind": "test_metrics.py::test_only_get_metrics_is_served",
    "paste": "test_paste.py::test_paste_serves_the_named_app_with_its_logging",
    "raw_paste_global_conf": "test_paste.py::test_paste_serves_the_named_app_with_its_logging",
    "enable_backlog_metric": "test_cli_serve.py::test_backlog_metric_reports_connections_waiting_for_a_worker",
    "statsd_host": "test_cli_serve.py::test_statsd_metrics_for_a_real_request",
    "statsd_prefix": "test_cli_serve.py::test_statsd_metrics_for_a_real_request",
    "reload": "test_cli_serve.py::test_reload_picks_up_changed_code",
    "reload_extra_files": "test_cli_serve.py::test_reload_extra_file_change_restarts_the_worker",
    "check_config": "test_cli_errors.py::test_check_config",
    "print_config": "test_cli_errors.py::test_print_config",
    # Every hook, called with Gunicorn's arguments by a real master and workers.
    **{
        hook: "test_arbiter_operations.py::test_every_hook_is_called_with_gunicorn_arguments"
        for hook in (
            "on_starting", "on_reload", "when_ready", "pre_fork", "post_fork",
            "post_worker_init", "worker_int", "child_exit", "worker_exit",
            "nworkers_changed", "on_exit",
        )
    },
    "worker_abort": "test_arbiter_lifecycle.py::test_hung_worker_is_aborted_with_a_traceback_and_replaced",
    "pre_exec": "test_cli_serve.py::test_pre_exec_on_usr2",
    "pre_request": "test_cli_serve.py::test_every_hook_is_called_with_its_arguments",
    "post_request": "test_cli_serve.py::test_every_hook_is_called_with_its_arguments",
}

# Settings that cannot change what a running server does.
NO_RUNTIME_EFFECT: dict[str, str] = {
    "reload_engine": "accepted for Gunicorn compatibility only: every value means the one "
    "polling reloader (docs/settings.md), whose effect test_reload_picks_up_changed_code proves",
}


# --- running the table ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def group_ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Ctx]]:
    """``group_ctx(name)``: that group's server, started on first use, stopped at module end."""
    started: dict[str, Ctx] = {}

    def get(name: str) -> Ctx:
        if name in started:
            return started[name]
        group = GROUPS[name]
        tmp = tmp_path_factory.mktemp(f"e2e-{name}")
        udp: dict[str, socket.socket] = {}
        for sock_name in group.udp:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            udp[sock_name] = s
        if group.prepare is not None:
            group.prepare(tmp)
        args = [a for case in CASES if case.group == name for a in case.args]
        args += group.args

        def fill(arg: str) -> str:
            arg = arg.replace("{tmp}", str(tmp))
            return re.sub(r"\{udp:(\w+)\}", lambda m: str(udp[m.group(1)].getsockname()[1]), arg)

        srv = Server([fill(a) for a in args], tmp, name=name)
        ctx = Ctx(srv, tmp, udp)
        started[name] = ctx
        srv.start()
        srv.wait_ready(30.0, path="/probe")
        return ctx

    try:
        yield get
    finally:
        for ctx in started.values():
            ctx.srv.close()
            for s in ctx.udp.values():
                s.close()


@pytest.mark.parametrize("case", CASES, ids=[c.setting for c in CASES])
def test_setting_end_to_end(group_ctx: Callable[[str], Ctx], case: Case) -> None:
    case.check(group_ctx(case.group))


def test_every_response_carries_a_date_header(group_ctx: Callable[[str], Ctx]) -> None:
    # RFC 9110 6.6.1: an origin server with a clock MUST send Date, on the
    # app's answers and on the server's own error answers alike.
    c = group_ctx("parser")
    for raw in (
        b"GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /probe HTTP/1.1\r\nHost: x\r\nX_Under: 1\r\n\r\n",  # 400 from the server
    ):
        before = time.time()
        _, headers, _ = c.exchange(raw)
        after = time.time()
        when = parsedate_to_datetime(headers["date"]).timestamp()
        assert before - 2 <= when <= after + 1, (headers["date"], before, after)


def _test_exists(ref: str) -> bool:
    file, _, name = ref.partition("::")
    path = HERE / file
    return path.is_file() and re.search(rf"^def {re.escape(name)}\(", path.read_text(), re.M) is not None


def test_every_setting_is_proven_end_to_end() -> None:
    names = [s.name for s in SETTINGS]
    in_table = {c.setting for c in CASES}
    sources = [in_table, set(COVERED_ELSEWHERE), set(NO_RUNTIME_EFFECT)]
    missing = [n for n in names if not any(n in src for src in sources)]
    assert not missing, (
        f"settings with no end-to-end test: {missing}; add a row to CASES in {__file__} "
        "(or name the test that proves it in COVERED_ELSEWHERE)"
    )
    twice = [n for n in names if sum(n in src for src in sources) > 1]
    assert not twice, f"settings listed in more than one place: {twice}"
    stale = sorted(set().union(*sources) - set(names))
    assert not stale, f"not settings (any more): {stale}"
    gone = {n: ref for n, ref in COVERED_ELSEWHERE.items() if not _test_exists(ref)}
    assert not gone, f"named tests that do not exist: {gone}"
    assert {c.group for c in CASES} <= set(GROUPS)


def test_the_meta_test_notices_a_setting_without_a_case(monkeypatch: pytest.MonkeyPatch) -> None:
    # Drop one row: the coverage check must name the setting.
    monkeypatch.setattr(
        sys.modules[__name__], "CASES", [c for c in CASES if c.setting != "limit_request_line"]
    )
    with pytest.raises(AssertionError, match="limit_request_line"):
        test_every_setting_is_proven_end_to_end()

