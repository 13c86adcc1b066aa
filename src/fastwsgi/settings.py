"""The frozen per-subsystem settings groups and the server hooks.

A leaf module: it imports nothing from fastwsgi, so the parser, workers,
arbiter and logging can take their own group without reaching the settings
table, the validators or argparse in ``config.py``. ``Settings.groups()``
(``config.py``) fills each group from the validated values by field name;
tests build the groups directly.

Defaults cite their source: "Gunicorn" means Gunicorn 27's default for the
setting of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ParserSettings:
    """What the sans-IO parser needs; ``as_kwargs()`` feeds RequestParser."""

    # Gunicorn 4094; capped at 8190 like Gunicorn (nginx large_client_header_buffers is 8k).
    limit_request_line: int = 4094
    # Gunicorn 100 (Apache LimitRequestFields is 100 too).
    limit_request_fields: int = 100
    # Gunicorn 8190 (Apache LimitRequestFieldSize 8190).
    limit_request_field_size: int = 8190
    # Whole header block: 100 fields of 8190 bytes could be 800 KiB; nginx caps
    # the head at 4 x 8k buffers, so we allow 64 KiB by default.
    limit_request_headers_total: int = 65536
    # 0 = unlimited (Gunicorn has no body limit; nginx client_max_body_size is 1m).
    limit_request_body: int = 0
    header_map: str = "drop"  # drop | refuse | dangerous (Gunicorn)
    permit_obsolete_folding: bool = False
    permit_unconventional_http_method: bool = False
    casefold_http_method: bool = False
    strip_header_spaces: bool = False
    permit_missing_host: bool = False  # ours: RFC 9112 3.2 says 400
    # Gunicorn secure_scheme_headers default.
    secure_scheme_headers: tuple[tuple[str, str], ...] = (
        ("X-FORWARDED-PROTOCOL", "ssl"),
        ("X-FORWARDED-PROTO", "https"),
        ("X-FORWARDED-SSL", "on"),
    )
    proxy_protocol: str = "off"  # off | v1 | v2 | auto (Gunicorn)
    # Gunicorn 22+ forwarder_headers: names with '_' a trusted front-end
    # (forwarded_allow_ips) may send whatever header_map says; SCRIPT_NAME
    # is how nginx tells the app its mount point (proxy_set_header SCRIPT_NAME).
    forwarder_headers: tuple[str, ...] = ("SCRIPT_NAME", "PATH_INFO")

    def as_kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class WorkerSettings:
    """What a worker process needs (sync and gthread)."""

    worker_class: str = "sync"
    threads: int = 1
    worker_connections: int = 1000  # Gunicorn
    timeout: float = 30.0  # Gunicorn
    graceful_timeout: float = 30.0  # Gunicorn
    keepalive: float = 2.0  # Gunicorn keepalive seconds
    max_requests: int = 0  # Gunicorn: 0 = never recycle
    max_requests_jitter: int = 0
    max_worker_memory: int = 0  # MiB; ours (0 = off)
    sendfile: bool = True
    # Gunicorn 22+ default is 127.0.0.1,::1
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    proxy_allow_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    # Seconds a client may take to send a complete request head (slowloris);
    # nginx client_header_timeout is 60s, we are stricter behind no proxy.
    header_timeout: float = 30.0
    # Seconds between two reads of a request body (nginx client_body_timeout 60s).
    body_timeout: float = 30.0
    script_name: str = ""  # from the SCRIPT_NAME environment variable
    server_software: str = ""
    parser: ParserSettings = field(default_factory=ParserSettings)


@dataclass(frozen=True)
class ArbiterSettings:
    """What the master process needs."""

    bind: tuple[str, ...] = ("127.0.0.1:8000",)  # Gunicorn
    backlog: int = 2048  # Gunicorn
    workers: int = 1  # Gunicorn: WEB_CONCURRENCY else 1
    timeout: float = 30.0
    graceful_timeout: float = 30.0
    reuse_port: bool = False
    preload_app: bool = False
    daemon: bool = False
    enable_stdio_inheritance: bool = False
    pidfile: str | None = None
    user: int | None = None
    group: int | None = None
    umask: int = 0
    chdir: str | None = None
    proc_name: str | None = None
    worker_tmp_dir: str | None = None
    reload: bool = False
    reload_extra_files: tuple[str, ...] = ()
    max_worker_memory: int = 0
    enable_backlog_metric: bool = False
    metrics_bind: str | None = None


@dataclass(frozen=True)
class LogSettings:
    """What logging needs."""

    errorlog: str = "-"  # Gunicorn: stderr
    loglevel: str = "info"
    accesslog: str | None = None  # Gunicorn: off
    access_log_format: str = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    access_log_json: bool = False
    capture_output: bool = False
    logconfig: str | None = None
    logconfig_dict: dict[str, Any] | None = None
    statsd_host: str | None = None
    statsd_prefix: str = ""
    dogstatsd_tags: str = ""
    syslog: bool = False
    syslog_addr: str = "udp://localhost:514"  # Gunicorn
    syslog_prefix: str | None = None
    syslog_facility: str = "user"  # Gunicorn
    disable_redirect_access_to_syslog: bool = False
    proc_name: str | None = None
    # Workers switch to these (-u/-g): log files are chowned so they can reopen them on USR1.
    user: int | None = None
    group: int | None = None


HookFn = Callable[..., Any]


@dataclass(frozen=True)
class Hooks:
    """Server hooks with Gunicorn's names and signatures; ``None`` = not set."""

    on_starting: HookFn | None = None  # (server)
    on_reload: HookFn | None = None  # (server)
    when_ready: HookFn | None = None  # (server)
    pre_fork: HookFn | None = None  # (server, worker)
    post_fork: HookFn | None = None  # (server, worker)
    post_worker_init: HookFn | None = None  # (worker)
    worker_int: HookFn | None = None  # (worker)
    worker_abort: HookFn | None = None  # (worker)
    pre_exec: HookFn | None = None  # (server)
    pre_request: HookFn | None = None  # (worker, req)
    post_request: HookFn | None = None  # (worker, req, environ, resp)
    child_exit: HookFn | None = None  # (server, worker)
    worker_exit: HookFn | None = None  # (server, worker)
    nworkers_changed: HookFn | None = None  # (server, new_value, old_value)
    on_exit: HookFn | None = None  # (server)

    def call(self, name: str, log: Any, *args: Any) -> None:
        """Run hook ``name`` if set. A failing hook is logged through ``log``,
        never fatal (as in Gunicorn); SystemExit still propagates."""
        fn = getattr(self, name)
        if fn is None:
            return
        try:
            fn(*args)
        except SystemExit:
            raise
        except Exception:
            log.exception("Exception in %s hook", name)


@dataclass(frozen=True)
class Groups:
    """Everything a running server needs, split by subsystem."""

    app_uri: str
    arbiter: ArbiterSettings
    worker: WorkerSettings
    log: LogSettings
    hooks: Hooks
    chdir: str | None = None
    pythonpath: tuple[str, ...] = ()
    raw_env: tuple[str, ...] = ()
    # --paste: app_uri is then the ini's absolute path (and "#name").
    paste: bool = False
    paste_global_conf: tuple[str, ...] = ()
