"""Settings: one declarative table, materialised into small frozen groups.

Theory of operation
-------------------
``SETTINGS`` names every setting once: its Gunicorn name (the config-file
key), CLI flags, the environment variable that supplies its default (if any),
its validator, default and a doc line. The argparse parser (``cli.py``), the
config-file reader, ``--print-config`` and ``docs/settings.md``
(``settings_doc.py``) are all generated from it; nothing else lists settings
by hand.

``UNSUPPORTED`` lists the remaining Gunicorn 27 settings (TLS, ASGI,
HTTP/2, ...). They are accepted on the command line and in config files
so a Gunicorn deployment starts unchanged, and each is reported once as a
warning; except ``REFUSED``, those that would change what the port speaks
(TLS, the uwsgi protocol), which stop the start with one line.

Values come from four sources, later ones winning (Gunicorn's order):
defaults (some read an environment variable, like Gunicorn's ``PORT``,
``WEB_CONCURRENCY``, ``FORWARDED_ALLOW_IPS``, ``SENDFILE``) < config file <
``FASTWSGI_CMD_ARGS`` < command line. Every value, whatever its source, goes
through the same validator, which accepts the Python type or its string form.

Subsystems never see the whole configuration. ``Settings.groups()`` turns the
validated values into the frozen dataclasses of ``settings.py``, each field
taking the setting of the same name unless it is one of the few computed
values named there, and each subsystem receives only its own group: the parser
gets ``ParserSettings``, the worker ``WorkerSettings``, the arbiter
``ArbiterSettings``, logging ``LogSettings``. Tests build these groups
directly. A new setting that a subsystem reads is a row in ``SETTINGS`` plus a
field of the same name in its group.

Defaults cite their source: "Gunicorn" means Gunicorn 27's default for the
setting of the same name.
"""

from __future__ import annotations

import argparse
import dataclasses
import grp
import importlib
import inspect
import ipaddress
import json
import os
import pwd
import socket
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from fastwsgi.errors import ConfigError
from fastwsgi.http_rules import is_token
from fastwsgi.settings import ArbiterSettings as ArbiterSettings
from fastwsgi.settings import Groups as Groups
from fastwsgi.settings import HookFn as HookFn
from fastwsgi.settings import Hooks as Hooks
from fastwsgi.settings import LogSettings as LogSettings
from fastwsgi.settings import ParserSettings as ParserSettings
from fastwsgi.settings import WorkerSettings as WorkerSettings

# --- Validators ---------------------------------------------------------------
# Each takes the Python value (config file) or its string form (CLI, env) and
# returns the normalised value, or raises ValueError/TypeError with a message
# that completes "invalid value for --flag: ...".


def _to_int(value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise TypeError("expected an integer, got a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        try:
            n = int(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not an integer") from None
    else:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if n < minimum:
        raise ValueError(f"{n} is below the minimum {minimum}")
    return n


def v_pos_int(value: Any) -> int:
    return _to_int(value, 0)


def v_int_ge1(value: Any) -> int:
    return _to_int(value, 1)


def v_seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a number of seconds, got a boolean")
    if isinstance(value, int | float):
        n = float(value)
    elif isinstance(value, str):
        try:
            n = float(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a number of seconds") from None
    else:
        raise TypeError(f"expected a number of seconds, got {type(value).__name__}")
    if not n >= 0 or n == float("inf"):
        raise ValueError(f"{value!r} is not a finite number >= 0")
    return n


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", ""}


def v_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (true/false)")
    raise TypeError(f"expected a boolean, got {type(value).__name__}")


def v_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def v_opt_str(value: Any) -> str | None:
    return None if value is None else v_str(value)


def v_str_list(value: Any) -> tuple[str, ...]:
    """A string (one item) or a list of strings: Gunicorn's validate_list_string."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple):
        return tuple(v_str(v) for v in value if v)
    raise TypeError(f"expected a string or a list of strings, got {type(value).__name__}")


def v_comma_list(value: Any) -> tuple[str, ...]:
    """'a, b' or ['a', 'b'] (Gunicorn's validate_string_to_list)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(v.strip() for v in v_str_list(value) if v.strip())


def v_addr_list(value: Any) -> tuple[str, ...]:
    """Comma-separated IPs or CIDR networks, or '*' (Gunicorn's validate_string_to_addr_list)."""
    addrs = v_comma_list(value)
    for addr in addrs:
        if addr != "*":
            try:
                ipaddress.ip_network(addr)
            except ValueError:
                raise ValueError(f"{addr!r} is not an IP address or network") from None
    return addrs


def v_bind(value: Any) -> tuple[str, ...]:
    binds = v_str_list(value)
    if not binds:
        raise ValueError("at least one address is needed")
    # Parsed now, not at bind time: a malformed address is a usage error
    # (exit 2) reported before anything starts, like any other bad value.
    from fastwsgi.errors import BindError
    from fastwsgi.sock import parse_address

    for b in binds:
        if not b.strip():
            raise ValueError("empty address")
        try:
            parse_address(b)
        except BindError as exc:
            raise ValueError(str(exc)) from None
    return binds


def v_env(value: Any) -> tuple[str, ...]:
    items = v_str_list(value)
    for item in items:
        if "=" not in item or item.startswith("="):
            raise ValueError(f"{item!r} is not KEY=VALUE")
    return items


def choice(*allowed: str, aliases: Mapping[str, str] | None = None) -> Callable[[Any], str]:
    table = {a: a for a in allowed} | dict(aliases or {})

    def v_choice(value: Any) -> str:
        key = v_str(value).strip().lower()
        if key not in table:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return table[key]

    v_choice.choices = allowed  # type: ignore[attr-defined]
    return v_choice


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
v_loglevel = choice(*LOG_LEVELS, aliases={"warn": "warning", "fatal": "critical"})

# Gunicorn accepts booleans and several spellings (validate_proxy_protocol).
_v_proxy = choice(
    "off",
    "v1",
    "v2",
    "auto",
    aliases={"false": "off", "0": "off", "none": "off", "true": "auto", "1": "auto"},
)


def v_proxy_protocol(value: Any) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "auto" if value else "off"
    return _v_proxy(value)


# Worker classes Gunicorn offers that need an event loop library we do not use.
_FOREIGN_WORKERS = ("eventlet", "gevent", "gevent_wsgi", "gevent_pywsgi", "tornado", "asgi")
# Every spelling of the bundled classes, lower-cased: ours, and Gunicorn's so a
# Gunicorn config file keeps working. The one table (workers/ resolves -k
# through worker_class_name below).
WORKER_ALIASES = {
    "sync": "sync",
    "gthread": "gthread",
    "gunicorn.workers.sync.syncworker": "sync",
    "gunicorn.workers.gthread.threadworker": "gthread",
    "egg:gunicorn#sync": "sync",
    "egg:gunicorn#gthread": "gthread",
    "fastwsgi.workers.sync.syncworker": "sync",
    "fastwsgi.workers.gthread.threadworker": "gthread",
}


def worker_class_name(name: str, threads: int = 1) -> str:
    """The canonical -k name: aliases resolved, ``sync`` + threads > 1 → ``gthread``
    (Gunicorn's rule); any other name (a dotted path) is returned as given."""
    name = WORKER_ALIASES.get(name.lower(), name)
    if name == "sync" and threads > 1:
        return "gthread"
    return name


def v_worker_class(value: Any) -> str:
    name = v_str(value).strip()
    low = name.lower()
    if low in WORKER_ALIASES:
        return WORKER_ALIASES[low]
    short = low.rsplit("#", 1)[-1]
    if short in _FOREIGN_WORKERS or low.startswith("gunicorn.workers."):
        raise ValueError(
            f"{name!r} is a Gunicorn worker class fastwsgi does not provide; use sync or gthread"
        )
    if "." not in name or not all(p.isidentifier() for p in name.split(".")):
        raise ValueError(f"{name!r} is not sync, gthread or a dotted path to a Worker subclass")
    return name


def _v_id(value: Any, lookup: Callable[[str], int], what: str) -> int | None:
    """A numeric id, or a name resolved through the system database."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    name = v_str(value).strip()
    if name.isdigit():
        return int(name)
    try:
        return lookup(name)
    except KeyError:
        raise ValueError(f"no such {what}: {name!r}") from None


def v_user(value: Any) -> int | None:
    return _v_id(value, lambda n: pwd.getpwnam(n).pw_uid, "user")


def v_group(value: Any) -> int | None:
    return _v_id(value, lambda n: grp.getgrnam(n).gr_gid, "group")


def v_umask(value: Any) -> int:
    """An int, or a string in any base Python accepts ('0o22', '0x12'); a
    string with a leading 0 ('022') is octal, as in a shell."""
    if isinstance(value, str):
        text = value.strip()
        try:
            n = (
                int(text, 8)
                if len(text) > 1 and text[0] == "0" and text[1].isdigit()
                else int(text, 0)
            )
        except ValueError:
            raise ValueError(f"{value!r} is not a umask") from None
    else:
        n = _to_int(value, 0)
    if not 0 <= n <= 0o777:
        raise ValueError(f"{value!r} is not a umask between 0 and 0o777")
    return n


def v_forwarder_headers(value: Any) -> tuple[str, ...]:
    """Comma-separated field names (upper-cased, as Gunicorn compares them), or '*'."""
    names = v_comma_list(value)
    for n in names:
        # Checked before upper-casing: "ß".upper() is "SS", a token.
        if n != "*" and not is_token(n):
            raise ValueError(f"{n.upper()!r} is not a header field name")
    return tuple(n.upper() for n in names)


def v_scheme_headers(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = [tuple(i) for i in value]
    else:
        raise TypeError(f"expected a dict of header: value, got {type(value).__name__}")
    out = []
    for item in items:
        if len(item) != 2 or not all(isinstance(x, str) for x in item):
            raise ValueError(f"{item!r} is not a (header, value) pair of strings")
        out.append((item[0].upper(), item[1]))
    return tuple(out)


def v_dict(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):  # from the command line: a JSON object
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ValueError(f"not a JSON object: {exc}") from None
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a dict, got {type(value).__name__}")
    return dict(value) or None


class _AnyAtom(dict[str, int]):
    def __missing__(self, key: str) -> int:
        return 0


def v_access_format(value: Any) -> str:
    """A %-format over a mapping: checked once here, not on every request."""
    fmt = v_str(value)
    try:
        fmt % _AnyAtom()
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a valid access log format: {exc}") from None
    return fmt


# syslog facility names and codes (RFC 5424 section 6.2.1; Gunicorn's table).
SYSLOG_FACILITIES: dict[str, int] = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "security": 4, "syslog": 5,
    "lpr": 6, "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
SYSLOG_PORT = 514  # RFC 5426


def parse_syslog_address(addr: str) -> tuple[socket.SocketKind | None, str | tuple[str, int]]:
    """Gunicorn's syslog_addr forms: ``unix://PATH[#dgram|#stream]``,
    ``udp://HOST[:PORT]``, ``tcp://HOST[:PORT]`` (``[IPv6]`` in brackets,
    port 514 when omitted). Returns ``(socktype, address)`` for
    ``logging.handlers.SysLogHandler``: socktype None for a unix path with no
    ``#TYPE`` (the handler tries datagram, then stream)."""
    if addr.startswith("unix://"):
        path, _, kind = addr[len("unix://"):].partition("#")
        if not path or kind not in ("", "dgram", "stream"):
            raise ValueError(f"{addr!r} is not unix://PATH[#dgram|#stream]")
        socktype = {"": None, "dgram": socket.SOCK_DGRAM, "stream": socket.SOCK_STREAM}[kind]
        return socktype, path
    for scheme, socktype in (("udp://", socket.SOCK_DGRAM), ("tcp://", socket.SOCK_STREAM)):
        if addr.startswith(scheme):
            rest = addr[len(scheme):]
            if rest.startswith("["):
                host, _, tail = rest[1:].partition("]")
                port = tail[1:] if tail.startswith(":") else ("" if not tail else "x")
            else:
                host, _, port = rest.partition(":")
            if port and not (port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"{addr!r}: {port!r} is not a port number")
            return socktype, (host.lower() or "localhost", int(port) if port else SYSLOG_PORT)
    raise ValueError(f"{addr!r} is not unix://PATH, udp://HOST:PORT or tcp://HOST:PORT")


def v_syslog_addr(value: Any) -> str:
    text = v_str(value).strip()
    parse_syslog_address(text)
    return text


def v_statsd_host(value: Any) -> str | None:
    if value is None:
        return None
    text = v_str(value).strip()
    if not text:
        return None
    if text.startswith("unix:"):
        return text
    host, sep, port = text.rpartition(":")
    if not sep:
        return f"{text}:8125"  # Gunicorn: the statsd default port
    if (not host or not port.isdigit() or not 0 < int(port) < 65536
            or host.startswith("[") != host.endswith("]")):
        raise ValueError(f"{text!r} is not HOST:PORT")
    return text


def v_metrics_bind(value: Any) -> str | None:
    """HOST:PORT, [IPv6]:PORT or unix:PATH; empty or None = off."""
    if value is None:
        return None
    text = v_str(value).strip()
    if not text:
        return None
    from fastwsgi.errors import BindError
    from fastwsgi.sock import parse_address

    try:
        address = parse_address(text)
    except BindError as exc:
        raise ValueError(str(exc)) from None
    if isinstance(address, int):
        raise ValueError(f"{text!r}: fd:// is not supported here; use HOST:PORT or unix:PATH")
    if isinstance(address, tuple) and ":" not in text.rpartition("]")[2]:
        raise ValueError(f"{text!r} needs a port: HOST:PORT")
    return text


def metrics_collision(metrics_bind: str, binds: Iterable[str]) -> str | None:
    """The --bind address that --metrics-bind would take, or None."""
    from fastwsgi.errors import BindError
    from fastwsgi.sock import parse_address

    wild = ("", "0.0.0.0", "::", "*")
    mine = parse_address(metrics_bind)
    for b in binds:
        try:
            other = parse_address(b)
        except BindError:
            continue
        if isinstance(mine, str) and isinstance(other, str):
            if os.path.abspath(mine) == os.path.abspath(other):
                return b
        elif isinstance(mine, tuple) and isinstance(other, tuple) and mine[1] == other[1]:
            if mine[1] and (mine[0] == other[0] or mine[0] in wild or other[0] in wild):
                return b
    return None


def import_dotted(path: str) -> Any:
    """'pkg.mod.attr' → the attribute (used for hooks given as strings)."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError(f"{path!r} is not a dotted path module.name")
    try:
        module = __import__(module_name, fromlist=[attr])
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {path!r}: {exc}") from None


def _arity(fn: Callable[..., Any]) -> int | None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = sig.parameters.values()
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def hook(arity: int, accept_fewer: bool = False) -> Callable[[Any], Any]:
    """A callable taking ``arity`` positional arguments (Gunicorn's
    validate_callable). ``accept_fewer``: post_request, which Gunicorn lets
    take 2, 3 or 4 arguments, is wrapped to the full signature."""

    def v_hook(value: Any) -> Any:
        if value is None:
            return None
        fn = import_dotted(value.strip()) if isinstance(value, str) else value
        if not callable(fn):
            raise TypeError(f"{value!r} is not callable")
        n = _arity(fn)
        if n is None or n == arity:
            return fn
        if accept_fewer and 2 <= n < arity:

            def wrapped(*args: Any, _fn: Callable[..., Any] = fn, _n: int = n) -> Any:
                return _fn(*args[:_n])

            wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
            return wrapped
        raise TypeError(
            f"{getattr(fn, '__name__', fn)!r} must take {arity} positional arguments, it takes {n}"
        )

    v_hook.arity = arity  # type: ignore[attr-defined]
    return v_hook


# --- Defaults read from the environment (Gunicorn's) ---------------------------


def _default_bind(env: Mapping[str, str]) -> Any:
    return [f"0.0.0.0:{env['PORT']}"] if env.get("PORT") else ["127.0.0.1:8000"]


def _default_sendfile(env: Mapping[str, str]) -> Any:
    # Gunicorn: SENDFILE in (y, 1, yes, true) enables, anything else disables.
    if "SENDFILE" in env:
        return env["SENDFILE"].strip().lower() in ("y", "1", "yes", "true")
    return True


def _env_default(var: str, fallback: Any) -> Callable[[Mapping[str, str]], Any]:
    def default(env: Mapping[str, str]) -> Any:
        value = env.get(var)
        return value if value else fallback

    return default


# --- The table ------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting. ``name`` is the config-file key (Gunicorn's name)."""

    name: str
    section: str
    validate: Callable[[Any], Any]
    default: Any
    doc: str
    cli: tuple[str, ...] = ()
    # argparse: "store" (takes a value), "store_true", "store_false"
    # (the flag sets the setting to False), "append", "optional" (nargs="?").
    action: str = "store"
    const: Any = None
    metavar: str | None = None
    env: str | None = None  # environment variable that supplies the default
    origin: str = "Gunicorn"  # "Gunicorn" or "fastwsgi" (ours)
    hidden: bool = False  # left out of --help (aliases we keep for compatibility)

    def default_value(self, environ: Mapping[str, str]) -> Any:
        raw = self.default(environ) if callable(self.default) else self.default
        return self.validate(raw)

    @property
    def flag(self) -> str:
        """How error messages name the setting."""
        return self.cli[-1] if self.cli else self.name

    @property
    def takes_value(self) -> bool:
        return self.action in ("store", "append", "optional")

    def check(self, value: Any, where: str = "") -> Any:
        try:
            return self.validate(value)
        except (TypeError, ValueError) as exc:
            origin = f" ({where})" if where else ""
            raise ConfigError(f"invalid value for {self.flag}{origin}: {exc}") from exc


S = Setting
_ACCESS_FORMAT = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'

SETTINGS: tuple[Setting, ...] = (
    # Config file
    S(
        "config",
        "Config File",
        v_opt_str,
        None,
        "Python config file (or python:module); default ./fastwsgi.conf.py, else ./gunicorn.conf.py, when present.",
        cli=("-c", "--config"),
        metavar="CONFIG",
    ),
    S(
        "wsgi_app",
        "Config File",
        v_opt_str,
        None,
        "The APP to serve when none is given on the command line (module:callable).",
    ),
    # Server socket
    S(
        "bind",
        "Server Socket",
        v_bind,
        _default_bind,
        "Address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://FD; repeatable. "
        "Default 127.0.0.1:8000, or 0.0.0.0:$PORT when PORT is set.",
        cli=("-b", "--bind"),
        action="append",
        metavar="ADDRESS",
        env="PORT",
    ),
    S(
        "backlog",
        "Server Socket",
        v_int_ge1,
        2048,
        "Maximum number of pending connections (listen() backlog; capped by net.core.somaxconn).",
        cli=("--backlog",),
        metavar="INT",
    ),
    S(
        "reuse_port",
        "Server Socket",
        v_bool,
        False,
        "Set SO_REUSEPORT on the listening socket.",
        cli=("--reuse-port",),
        action="store_true",
    ),
    # Worker processes
    S(
        "workers",
        "Worker Processes",
        v_int_ge1,
        _env_default("WEB_CONCURRENCY", 1),
        "Number of worker processes (default $WEB_CONCURRENCY or 1).",
        cli=("-w", "--workers"),
        metavar="INT",
        env="WEB_CONCURRENCY",
    ),
    S(
        "worker_class",
        "Worker Processes",
        v_worker_class,
        "sync",
        "sync, gthread, or a dotted path to a fastwsgi Worker subclass. "
        "--threads > 1 with sync selects gthread, as in Gunicorn.",
        cli=("-k", "--worker-class"),
        metavar="STRING",
    ),
    S(
        "threads",
        "Worker Processes",
        v_int_ge1,
        1,
        "Threads per worker for the gthread worker.",
        cli=("--threads",),
        metavar="INT",
    ),
    S(
        "worker_connections",
        "Worker Processes",
        v_int_ge1,
        1000,
        "Maximum simultaneous connections per gthread worker.",
        cli=("--worker-connections",),
        metavar="INT",
    ),
    S(
        "max_requests",
        "Worker Processes",
        v_pos_int,
        0,
        "Restart a worker after this many requests (0 = never). Its replacement "
        "starts at once, while it finishes the requests in hand.",
        cli=("--max-requests",),
        metavar="INT",
    ),
    S(
        "max_requests_jitter",
        "Worker Processes",
        v_pos_int,
        0,
        "Add randint(0, jitter) to max_requests per worker, to stagger restarts.",
        cli=("--max-requests-jitter",),
        metavar="INT",
    ),
    S(
        "max_worker_memory",
        "Worker Processes",
        v_pos_int,
        0,
        "Restart a worker after a request leaves its resident memory above this many MiB (0 = off).",
        cli=("--max-worker-memory",),
        metavar="MIB",
        origin="fastwsgi",
    ),
    S(
        "timeout",
        "Worker Processes",
        v_seconds,
        30,
        "A worker silent for this many seconds is killed and replaced (0 = never). "
        "Silent means stuck in the app: a sync worker moving a long download or "
        "upload keeps its heartbeat (Gunicorn's is killed mid-transfer), and a "
        "client that stops reading for this long is dropped by the worker itself.",
        cli=("-t", "--timeout"),
        metavar="INT",
    ),
    S(
        "graceful_timeout",
        "Worker Processes",
        v_seconds,
        30,
        "Seconds workers get to finish in-flight requests after a graceful stop or restart.",
        cli=("--graceful-timeout",),
        metavar="INT",
    ),
    S(
        "keepalive",
        "Worker Processes",
        v_seconds,
        2,
        "Seconds to wait for the next request on a keep-alive connection (gthread).",
        cli=("--keep-alive",),
        metavar="INT",
    ),
    S(
        "header_timeout",
        "Worker Processes",
        v_seconds,
        30,
        "Seconds a client may take to send a complete request head (slowloris guard; "
        "nginx client_header_timeout is 60).",
        cli=("--header-timeout",),
        metavar="SECONDS",
        origin="fastwsgi",
    ),
    S(
        "body_timeout",
        "Worker Processes",
        v_seconds,
        30,
        "Seconds allowed between two reads of a request body (nginx client_body_timeout is 60).",
        cli=("--body-timeout",),
        metavar="SECONDS",
        origin="fastwsgi",
    ),
    # Security / HTTP parsing
    S(
        "limit_request_line",
        "Security",
        v_pos_int,
        4094,
        "Maximum size of the request line in bytes (0 = Gunicorn's cap, 8190).",
        cli=("--limit-request-line",),
        metavar="INT",
    ),
    S(
        "limit_request_fields",
        "Security",
        v_pos_int,
        100,
        "Maximum number of header fields in a request.",
        cli=("--limit-request-fields",),
        metavar="INT",
    ),
    S(
        "limit_request_field_size",
        "Security",
        v_pos_int,
        8190,
        "Maximum size of one header field in bytes.",
        cli=("--limit-request-field_size", "--limit-request-field-size"),
        metavar="INT",
    ),
    S(
        "limit_request_headers_total",
        "Security",
        v_pos_int,
        65536,
        "Maximum size of the whole request head in bytes (nginx allows 4 x 8k buffers).",
        cli=("--limit-request-headers-total",),
        metavar="INT",
        origin="fastwsgi",
    ),
    S(
        "limit_request_body",
        "Security",
        v_pos_int,
        0,
        "Maximum request body size in bytes; larger bodies get 413 (0 = unlimited).",
        cli=("--limit-request-body",),
        metavar="INT",
        origin="fastwsgi",
    ),
    S(
        "header_map",
        "Security",
        choice("drop", "refuse", "dangerous"),
        "drop",
        "Headers whose name contains '_': drop them, refuse the request, or (dangerous) map them.",
        cli=("--header-map",),
        metavar="MODE",
    ),
    S(
        "permit_obsolete_folding",
        "Security",
        v_bool,
        False,
        "Accept obsolete line folding in headers (RFC 9112 5.2) instead of answering 400.",
        cli=("--permit-obsolete-folding",),
        action="store_true",
    ),
    S(
        "permit_unconventional_http_method",
        "Security",
        v_bool,
        False,
        "Accept methods that are not upper-case tokens of 3-20 characters.",
        cli=("--permit-unconventional-http-method",),
        action="store_true",
    ),
    S(
        "casefold_http_method",
        "Security",
        v_bool,
        False,
        "Upper-case the request method before handing it to the app.",
        cli=("--casefold-http-method",),
        action="store_true",
    ),
    S(
        "strip_header_spaces",
        "Security",
        v_bool,
        False,
        "Strip spaces between a header name and the colon (unsafe; RFC 9112 5.1 says 400).",
        cli=("--strip-header-spaces",),
        action="store_true",
    ),
    S(
        "permit_missing_host",
        "Security",
        v_bool,
        False,
        "Accept HTTP/1.1 requests without Host (RFC 9112 3.2 says 400).",
        cli=("--permit-missing-host",),
        action="store_true",
        origin="fastwsgi",
    ),
    S(
        "forwarded_allow_ips",
        "Security",
        v_addr_list,
        _env_default("FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        "Front-end IPs/networks trusted to set secure_scheme_headers ('*' = all); "
        "default $FORWARDED_ALLOW_IPS or 127.0.0.1,::1.",
        cli=("--forwarded-allow-ips",),
        metavar="STRING",
        env="FORWARDED_ALLOW_IPS",
    ),
    S(
        "secure_scheme_headers",
        "Security",
        v_scheme_headers,
        {"X-FORWARDED-PROTOCOL": "ssl", "X-FORWARDED-PROTO": "https", "X-FORWARDED-SSL": "on"},
        "Headers (from trusted front-ends) that mark a request as https (config file only).",
    ),
    S(
        "forwarder_headers",
        "Security",
        v_forwarder_headers,
        "SCRIPT_NAME,PATH_INFO",
        "Header names with '_' that a trusted front-end (forwarded_allow_ips) may send "
        "regardless of header_map ('*' = any); a SCRIPT_NAME header from it sets the "
        "mount point.",
        cli=("--forwarder-headers",),
        metavar="STRING",
    ),
    S(
        "proxy_protocol",
        "Security",
        v_proxy_protocol,
        "off",
        "Accept a PROXY protocol header: off, v1, v2 or auto (the flag alone means auto).",
        cli=("--proxy-protocol",),
        action="optional",
        const="auto",
        metavar="MODE",
    ),
    S(
        "proxy_allow_ips",
        "Security",
        v_addr_list,
        "127.0.0.1,::1",
        "Front-end IPs/networks allowed to send a PROXY header ('*' = all).",
        cli=("--proxy-allow-from",),
        metavar="STRING",
    ),
    S(
        "script_name",
        "Security",
        v_str,
        _env_default("SCRIPT_NAME", ""),
        "Mount point of the app (WSGI SCRIPT_NAME); default $SCRIPT_NAME.",
        env="SCRIPT_NAME",
        origin="fastwsgi",
    ),
    # Server mechanics
    S(
        "preload_app",
        "Server Mechanics",
        v_bool,
        False,
        "Load the app in the master before forking workers.",
        cli=("--preload",),
        action="store_true",
    ),
    S(
        "sendfile",
        "Server Mechanics",
        v_bool,
        _default_sendfile,
        "Use sendfile() for wsgi.file_wrapper responses; --no-sendfile (or SENDFILE=0) disables.",
        cli=("--no-sendfile",),
        action="store_false",
        env="SENDFILE",
    ),
    S(
        "chdir",
        "Server Mechanics",
        v_opt_str,
        None,
        "Change to this directory before loading the app (default: the current directory).",
        cli=("--chdir",),
        metavar="DIR",
    ),
    S(
        "pythonpath",
        "Server Mechanics",
        v_comma_list,
        None,
        "Comma-separated directories to prepend to sys.path.",
        cli=("--pythonpath",),
        metavar="STRING",
    ),
    S(
        "raw_env",
        "Server Mechanics",
        v_env,
        [],
        "Set an environment variable KEY=VALUE in the server and workers; repeatable.",
        cli=("-e", "--env"),
        action="append",
        metavar="ENV",
    ),
    S(
        "paste",
        "Server Mechanics",
        v_opt_str,
        None,
        "Load the app from a PasteDeploy ini file: [app:main], or the section NAME after '#'; its "
        "[loggers] sections, when present, configure logging. Needs fastwsgi[paste].",
        cli=("--paste", "--paster"),
        metavar="INI[#NAME]",
    ),
    S(
        "raw_paste_global_conf",
        "Server Mechanics",
        v_env,
        [],
        "A PasteDeploy global_conf variable KEY=VALUE for --paste; repeatable.",
        cli=("--paste-global",),
        action="append",
        metavar="CONF",
    ),
    S(
        "daemon",
        "Server Mechanics",
        v_bool,
        False,
        "Detach from the terminal and run in the background.",
        cli=("-D", "--daemon"),
        action="store_true",
    ),
    S(
        "enable_stdio_inheritance",
        "Server Mechanics",
        v_bool,
        False,
        "With --daemon, keep stdout and stderr as the launching shell set them (a "
        "redirection to a file, say) instead of /dev/null; stdin is /dev/null either way.",
        cli=("-R", "--enable-stdio-inheritance"),
        action="store_true",
    ),
    S(
        "pidfile",
        "Server Mechanics",
        v_opt_str,
        None,
        "Write the master's PID to this file.",
        cli=("-p", "--pid"),
        metavar="FILE",
    ),
    S(
        "worker_tmp_dir",
        "Server Mechanics",
        v_opt_str,
        None,
        "Directory for worker temporary files.",
        cli=("--worker-tmp-dir",),
        metavar="DIR",
    ),
    S(
        "user",
        "Server Mechanics",
        v_user,
        None,
        "Switch workers to this user (name or uid).",
        cli=("-u", "--user"),
        metavar="USER",
    ),
    S(
        "group",
        "Server Mechanics",
        v_group,
        None,
        "Switch workers to this group (name or gid).",
        cli=("-g", "--group"),
        metavar="GROUP",
    ),
    S(
        "umask",
        "Server Mechanics",
        v_umask,
        0,
        "umask of the server processes (e.g. 0o22 or 022).",
        cli=("-m", "--umask"),
        metavar="INT",
    ),
    # Process naming
    S(
        "proc_name",
        "Process Naming",
        v_opt_str,
        None,
        "Process title base (needs setproctitle); default: the APP.",
        cli=("-n", "--name"),
        metavar="STRING",
    ),
    # Logging
    S(
        "accesslog",
        "Logging",
        v_opt_str,
        None,
        "Access log file; '-' is stdout. Default: no access log.",
        cli=("--access-logfile",),
        metavar="FILE",
    ),
    S(
        "access_log_format",
        "Logging",
        v_access_format,
        _ACCESS_FORMAT,
        "Access log line format, with Gunicorn's atoms (see below). Request values are "
        "escaped (quote and backslash with a backslash, control and non-ASCII characters as "
        "\\xHH, like nginx); a format that starts with '{' gets JSON escapes (\\u00HH) instead, "
        "so a hand-written JSON format stays valid JSON.",
        cli=("--access-logformat",),
        metavar="STRING",
    ),
    S(
        "access_log_json",
        "Logging",
        v_bool,
        False,
        "Write the access log as one JSON object per request instead of the format.",
        cli=("--access-log-json",),
        action="store_true",
        origin="fastwsgi",
    ),
    S(
        "errorlog",
        "Logging",
        v_str,
        "-",
        "Error log file; '-' is stderr.",
        cli=("--error-logfile", "--log-file"),
        metavar="FILE",
    ),
    S(
        "loglevel",
        "Logging",
        v_loglevel,
        "info",
        "Error log level: debug, info, warning, error, critical.",
        cli=("--log-level",),
        metavar="LEVEL",
    ),
    S(
        "capture_output",
        "Logging",
        v_bool,
        False,
        "Redirect stdout and stderr of the server and workers to the error log file.",
        cli=("--capture-output",),
        action="store_true",
    ),
    S(
        "logconfig",
        "Logging",
        v_opt_str,
        None,
        "logging.config.fileConfig file; replaces the built-in log setup.",
        cli=("--log-config",),
        metavar="FILE",
    ),
    S(
        "logconfig_dict",
        "Logging",
        v_dict,
        None,
        "logging.config.dictConfig dict, merged over the built-in one; on the command line "
        "a JSON object.",
        cli=("--log-config-dict",),
        metavar="JSON",
        origin="fastwsgi",  # the setting is Gunicorn's, the flag is ours
    ),
    S(
        "logconfig_json",
        "Logging",
        v_opt_str,
        None,
        "JSON file holding a dictConfig dict (used when logconfig_dict is not set).",
        cli=("--log-config-json",),
        metavar="FILE",
    ),
    S(
        "syslog",
        "Logging",
        v_bool,
        False,
        "Also send the error log to syslog, and the access log too unless "
        "--disable-redirect-access-to-syslog. Entries are tagged "
        "gunicorn.PREFIX.error / gunicorn.PREFIX.access (Gunicorn's names, so existing "
        "syslog filters keep matching).",
        cli=("--log-syslog",),
        action="store_true",
    ),
    S(
        "syslog_addr",
        "Logging",
        v_syslog_addr,
        "udp://localhost:514",
        "Where syslog entries go: unix://PATH[#dgram|#stream] (e.g. unix:///dev/log), "
        "udp://HOST:PORT or tcp://HOST:PORT.",
        cli=("--log-syslog-to",),
        metavar="SYSLOG_ADDR",
    ),
    S(
        "syslog_prefix",
        "Logging",
        v_opt_str,
        None,
        "PREFIX in the syslog tag; default: the process name (proc_name, else the APP, "
        "':' made '.').",
        cli=("--log-syslog-prefix",),
        metavar="SYSLOG_PREFIX",
    ),
    S(
        "syslog_facility",
        "Logging",
        choice(*SYSLOG_FACILITIES),
        "user",
        "Syslog facility name.",
        cli=("--log-syslog-facility",),
        metavar="SYSLOG_FACILITY",
    ),
    S(
        "disable_redirect_access_to_syslog",
        "Logging",
        v_bool,
        False,
        "With --log-syslog, keep the access log out of syslog.",
        cli=("--disable-redirect-access-to-syslog",),
        action="store_true",
    ),
    S(
        "enable_backlog_metric",
        "Logging",
        v_bool,
        False,
        "Once a second the master sends the listeners' accept-queue length (connections "
        "no worker has taken yet) as the statsd histogram gunicorn.backlog (Linux, TCP).",
        cli=("--enable-backlog-metric",),
        action="store_true",
    ),
    S(
        "metrics_bind",
        "Logging",
        v_metrics_bind,
        None,
        "Serve Prometheus metrics (GET /metrics) from the master on this address: HOST:PORT "
        "or unix:PATH (off by default). It must not be a --bind address.",
        cli=("--metrics-bind",),
        metavar="ADDRESS",
    ),
    S(
        "statsd_host",
        "Logging",
        v_statsd_host,
        None,
        "HOST:PORT of a statsd server to send request metrics to (UDP).",
        cli=("--statsd-host",),
        metavar="STATSD_ADDR",
    ),
    S(
        "statsd_prefix",
        "Logging",
        v_str,
        "",
        "Prefix for statsd metric names.",
        cli=("--statsd-prefix",),
        metavar="STATSD_PREFIX",
    ),
    S(
        "dogstatsd_tags",
        "Logging",
        v_str,
        "",
        "Comma-separated DogStatsD tags added to every statsd metric "
        "(e.g. 'env:prod,app:shop'), as '|#TAGS'.",
        cli=("--dogstatsd-tags",),
        metavar="DOGSTATSD_TAGS",
    ),
    # Debugging
    S(
        "reload",
        "Debugging",
        v_bool,
        False,
        "Restart workers when application code changes (development).",
        cli=("--reload",),
        action="store_true",
    ),
    S(
        "reload_extra_files",
        "Debugging",
        v_str_list,
        (),
        "With --reload, also restart workers when these files change (templates, "
        "configuration); repeatable. Entries with *, ? or [ are glob patterns (** "
        "recurses), expanded again at every check, so a file created later is watched "
        "from its first edit. Relative paths are relative to the working directory "
        "(after --chdir).",
        cli=("--reload-extra-file",),
        action="append",
        metavar="FILES",
    ),
    S(
        "reload_engine",
        "Debugging",
        choice("auto", "poll", "inotify"),
        "auto",
        "Gunicorn's reloader choice; accepted for compatibility. fastwsgi always polls "
        "the watched files once a second, which works on every filesystem (all three "
        "values mean that).",
        cli=("--reload-engine",),
        metavar="STRING",
    ),
    S(
        "check_config",
        "Debugging",
        v_bool,
        False,
        "Check the configuration and that the app loads, then exit (0 = good).",
        cli=("--check-config",),
        action="store_true",
    ),
    S(
        "print_config",
        "Debugging",
        v_bool,
        False,
        "Print every setting with its value, then exit.",
        cli=("--print-config",),
        action="store_true",
    ),
    # Server hooks (config file only), Gunicorn's names and signatures
    S(
        "on_starting",
        "Server Hooks",
        hook(1),
        None,
        "on_starting(server): before the master initialises.",
    ),
    S(
        "on_reload",
        "Server Hooks",
        hook(1),
        None,
        "on_reload(server): on SIGHUP, before workers are replaced.",
    ),
    S("when_ready", "Server Hooks", hook(1), None, "when_ready(server): the server is listening."),
    S(
        "pre_fork",
        "Server Hooks",
        hook(2),
        None,
        "pre_fork(server, worker): just before a worker forks.",
    ),
    S(
        "post_fork",
        "Server Hooks",
        hook(2),
        None,
        "post_fork(server, worker): in the worker, just after fork.",
    ),
    S(
        "post_worker_init",
        "Server Hooks",
        hook(1),
        None,
        "post_worker_init(worker): in the worker, after the app loaded.",
    ),
    S(
        "worker_int",
        "Server Hooks",
        hook(1),
        None,
        "worker_int(worker): the worker got SIGINT or SIGQUIT.",
    ),
    S(
        "worker_abort",
        "Server Hooks",
        hook(1),
        None,
        "worker_abort(worker): the worker got SIGABRT (it timed out).",
    ),
    S(
        "pre_exec",
        "Server Hooks",
        hook(1),
        None,
        "pre_exec(server): before a new master is exec'd (USR2).",
    ),
    S(
        "pre_request",
        "Server Hooks",
        hook(2),
        None,
        "pre_request(worker, req): before the app is called.",
    ),
    S(
        "post_request",
        "Server Hooks",
        hook(4, accept_fewer=True),
        None,
        "post_request(worker, req, environ, resp): after the response is sent.",
    ),
    S(
        "child_exit",
        "Server Hooks",
        hook(2),
        None,
        "child_exit(server, worker): in the master, after a worker exited.",
    ),
    S(
        "worker_exit",
        "Server Hooks",
        hook(2),
        None,
        "worker_exit(server, worker): in the worker, just before it exits.",
    ),
    S(
        "nworkers_changed",
        "Server Hooks",
        hook(3),
        None,
        "nworkers_changed(server, new_value, old_value): after TTIN/TTOU changed the worker count.",
    ),
    S("on_exit", "Server Hooks", hook(1), None, "on_exit(server): just before the master exits."),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
HOOK_NAMES: tuple[str, ...] = tuple(s.name for s in SETTINGS if s.section == "Server Hooks")


@dataclass(frozen=True)
class Unsupported:
    """A Gunicorn 27 setting fastwsgi accepts and ignores (with one warning)."""

    name: str
    cli: tuple[str, ...] = ()
    takes_value: bool = True
    repeatable: bool = False


U = Unsupported
# Gunicorn 27's remaining settings (gunicorn/config.py KNOWN_SETTINGS).
UNSUPPORTED: tuple[Unsupported, ...] = (
    U("spew", ("--spew",), takes_value=False),
    U("initgroups", ("--initgroups",), takes_value=False),
    U("tmp_upload_dir"),
    U("logger_class", ("--logger-class",)),
    U("default_proc_name"),
    U("ssl_context"),
    U("protocol", ("--protocol",)),
    U("uwsgi_allow_ips", ("--uwsgi-allow-from",)),
    U("keyfile", ("--keyfile",)),
    U("certfile", ("--certfile",)),
    U("ssl_version", ("--ssl-version",)),
    U("cert_reqs", ("--cert-reqs",)),
    U("ca_certs", ("--ca-certs",)),
    U("suppress_ragged_eofs", ("--suppress-ragged-eofs",), takes_value=False),
    U("do_handshake_on_connect", ("--do-handshake-on-connect",), takes_value=False),
    U("ciphers", ("--ciphers",)),
    U("http_protocols", ("--http-protocols",)),
    U("http2_cleartext", ("--http2-cleartext",)),
    U("http2_max_concurrent_streams", ("--http2-max-concurrent-streams",)),
    U("http2_initial_window_size", ("--http2-initial-window-size",)),
    U("http2_max_frame_size", ("--http2-max-frame-size",)),
    U("http2_max_header_list_size", ("--http2-max-header-list-size",)),
    U(
        "permit_unconventional_http_version",
        ("--permit-unconventional-http-version",),
        takes_value=False,
    ),
    U("asgi_loop", ("--asgi-loop",)),
    U("asgi_lifespan", ("--asgi-lifespan",)),
    U("asgi_disconnect_grace_period", ("--asgi-disconnect-grace-period",)),
    U("websocket_max_message_size", ("--websocket-max-message-size",)),
    U("http_parser", ("--http-parser",)),
    U("root_path", ("--root-path",)),
    U("dirty_apps", ("--dirty-app",), repeatable=True),
    U("dirty_workers", ("--dirty-workers",)),
    U("dirty_timeout", ("--dirty-timeout",)),
    U("dirty_threads", ("--dirty-threads",)),
    U("dirty_graceful_timeout", ("--dirty-graceful-timeout",)),
    U("on_dirty_starting"),
    U("dirty_post_fork"),
    U("dirty_worker_init"),
    U("dirty_worker_exit"),
    U("control_socket", ("--control-socket",)),
    U("control_socket_mode", ("--control-socket-mode",)),
    U("control_socket_disable", ("--no-control-socket",), takes_value=False),
)
UNSUPPORTED_BY_NAME: dict[str, Unsupported] = {u.name: u for u in UNSUPPORTED}

_TLS_REFUSED = (
    "TLS is not supported: fastwsgi serves plain HTTP only, so this port would not be "
    "encrypted; terminate TLS in front of it (nginx, a load balancer; see docs/deploy.md)"
)
# Unsupported settings that are refused, not ignored, when set (to anything
# but an off value): they would change what the port speaks. The reason is
# the one line the start stops with.
REFUSED: dict[str, str] = {
    "certfile": _TLS_REFUSED,
    "keyfile": _TLS_REFUSED,
    "protocol": "only HTTP is supported (not the uwsgi protocol): point nginx's proxy_pass, "
    "not uwsgi_pass, at fastwsgi",
}
# Unsupported settings given the value fastwsgi has anyway: nothing to warn about.
# initgroups: switching to --user/--group, workers always take the user's
# supplementary groups (Gunicorn without --initgroups keeps the root
# master's, see arbiter._drop_privileges).
OURS: dict[str, str] = {"protocol": "http", "initgroups": "true"}


# --- Command-line parser, generated from the table ------------------------------

CMD_ARGS_ENV = "FASTWSGI_CMD_ARGS"
DEFAULT_CONFIG_FILES = ("fastwsgi.conf.py", "gunicorn.conf.py")


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line, exit 2) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


class _VersionAction(argparse.Action):
    """``--version``: the version and how this copy was built (``buildinfo``), then exit 0."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0,
                         help="show the version and build, then exit")

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from fastwsgi.buildinfo import describe

        print(describe(parser.prog))
        parser.exit(0)


class _UnsupportedAction(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        seen = getattr(namespace, "_unsupported", None) or []
        seen.append((self.dest, True if values is None or values == [] else values))
        namespace._unsupported = seen


def build_parser(prog: str = "fastwsgi") -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog=prog,
        usage="%(prog)s [OPTIONS] [APP_MODULE]",
        description="fastwsgi: a pre-fork WSGI HTTP server, command-line compatible with Gunicorn.",
        epilog=f"Settings can also come from a config file (-c) and ${CMD_ARGS_ENV}. "
        "Gunicorn's other flags (HTTP/2, ASGI, ...) are accepted and ignored with a "
        "warning; TLS settings are refused: terminate TLS in a proxy. "
        "See docs/settings.md.",
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("-v", "--version", action=_VersionAction)
    parser.add_argument(
        "app_uri",
        nargs="?",
        metavar="APP_MODULE",
        help="module:callable, a module (its 'application'), or module:factory(args)",
    )
    sections: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        if not s.cli:
            continue
        group = sections.get(s.section)
        if group is None:
            group = sections[s.section] = parser.add_argument_group(s.section)
        kw: dict[str, Any] = {"dest": s.name, "help": argparse.SUPPRESS if s.hidden else s.doc}
        if s.action == "store_true":
            kw.update(action="store_const", const=True)
        elif s.action == "store_false":
            kw.update(action="store_const", const=False)
        elif s.action == "append":
            kw.update(action="append", metavar=s.metavar)
        elif s.action == "optional":
            kw.update(nargs="?", const=s.const, metavar=s.metavar)
        else:
            kw.update(metavar=s.metavar)
        group.add_argument(*s.cli, **kw)
    compat = parser.add_argument_group("Gunicorn settings accepted and ignored (a warning says so)")
    for u in UNSUPPORTED:
        if u.cli:
            compat.add_argument(
                *u.cli,
                dest=u.name,
                action=_UnsupportedAction,
                nargs=None if u.takes_value else 0,
                help=argparse.SUPPRESS,
            )
    return parser


def parse_args(
    argv: Iterable[str], where: str = "command line"
) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Parse argv; return (explicitly given settings, unsupported (name, value) pairs)."""
    parser = build_parser()
    try:
        ns = parser.parse_args(list(argv))
    except ConfigError as exc:
        if where != "command line":
            raise ConfigError(f"{where}: {exc}") from exc
        raise
    given = vars(ns)
    unsupported: list[tuple[str, Any]] = given.pop("_unsupported", [])
    for name in UNSUPPORTED_BY_NAME:
        given.pop(name, None)
    return given, unsupported


# --- Config files -----------------------------------------------------------------


def read_config_file(path: str) -> dict[str, Any]:
    """Run a Python config file (or import ``python:module``); return its names.

    Like Gunicorn, the file runs as a module named ``__config__`` so hooks
    defined in it keep a module namespace.
    """
    if path.startswith("python:"):
        modname = path[len("python:") :]
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # the module's own code may raise anything
            raise ConfigError(
                f"cannot import config module {modname!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return dict(vars(module))
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from exc
    module = types.ModuleType("__config__")
    module.__file__ = os.path.abspath(path)
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as exc:
        line = f" line {exc.lineno}:" if isinstance(exc, SyntaxError) and exc.lineno else ""
        msg = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise ConfigError(f"config file {path!r}:{line} {msg}") from exc
    saved = sys.modules.get("__config__")
    sys.modules["__config__"] = module
    try:
        exec(code, module.__dict__)
    except (Exception, SystemExit) as exc:
        lineno = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == path:
                lineno = tb.tb_lineno
            tb = tb.tb_next
        where = f" line {lineno}:" if lineno else ""
        raise ConfigError(f"config file {path!r}:{where} {type(exc).__name__}: {exc}") from exc
    finally:
        if saved is not None:
            sys.modules["__config__"] = saved
    return dict(module.__dict__)


def _is_off(value: Any) -> bool:
    """A Gunicorn config file often spells out unsupported settings at their
    off value (``spew = False``, ``keyfile = None``): nothing to warn about."""
    if value == "gunicorn.glogging.Logger":  # logger_class at its default
        return True
    try:
        return not value
    except Exception:  # an object with a broken __bool__ is "set"
        return False


def default_config_file(cwd: str | None = None) -> str | None:
    for name in DEFAULT_CONFIG_FILES:
        path = os.path.join(cwd or os.getcwd(), name)
        if os.path.isfile(path):
            return path
    return None


# --- Settings: the values from all sources ---------------------------------------


_G = TypeVar("_G")


def _fill(group: type[_G], values: Mapping[str, Any], **computed: Any) -> _G:
    """Build a frozen group: each field takes the setting of the same name,
    except the ``computed`` ones; a field with neither is a KeyError here, in
    every test that loads a configuration."""
    return group(
        **{
            f.name: computed[f.name] if f.name in computed else values[f.name]
            for f in dataclasses.fields(group)  # type: ignore[arg-type]
        }
    )


class Settings:
    """Validated values of every setting, and where each came from."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ: dict[str, str] = dict(os.environ if environ is None else environ)
        self.values: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self._bad_env: dict[str, ConfigError] = {}
        for s in SETTINGS:
            where = (
                f"environment variable {s.env}" if s.env and self.environ.get(s.env) else "default"
            )
            self.sources[s.name] = where
            try:
                self.values[s.name] = s.default_value(self.environ)
            except (TypeError, ValueError) as exc:
                # A bad environment variable matters only if nothing overrides it.
                self.values[s.name] = s.validate(s.default({}) if callable(s.default) else s.default)
                self._bad_env[s.name] = ConfigError(f"invalid value for {s.flag} ({where}): {exc}")
        self.app_uri: str | None = None
        self._unsupported: dict[str, str] = {}

    def check_environment(self) -> None:
        """Raise for a malformed environment variable whose value is in use."""
        for name, exc in self._bad_env.items():
            if self.sources[name].startswith("environment variable"):
                raise exc

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def set(self, name: str, value: Any, where: str) -> None:
        s = SETTINGS_BY_NAME[name]
        self.values[name] = s.check(value, where)
        self.sources[name] = where

    def note_unsupported(self, name: str, where: str, value: Any = True) -> None:
        """Remember an ignored Gunicorn setting for one warning, unless
        ignoring it would change what the server is: a --certfile/--keyfile
        would leave a port its owner believes is TLS serving plain HTTP, and
        --protocol uwsgi a port nginx speaks uwsgi to answering every request
        400. Those stop the start with one line instead."""
        if name in OURS and str(value).lower() == OURS[name]:
            return
        if name in REFUSED and not _is_off(value):
            raise ConfigError(f"{name} ({where}): {REFUSED[name]}")
        self._unsupported.setdefault(name, where)

    def apply_args(
        self, given: Mapping[str, Any], unsupported: Iterable[tuple[str, Any]], where: str
    ) -> None:
        for name, value in given.items():
            if name == "app_uri":
                if value:
                    self.app_uri = value
                continue
            self.set(name, value, where)
        for name, value in unsupported:
            self.note_unsupported(name, where, value)

    def apply_config_file(self, path: str) -> None:
        names = read_config_file(path)
        where = f"config file {path}"
        for key, value in names.items():
            if key.startswith("_") or key == "config":
                continue
            if key in SETTINGS_BY_NAME:
                self.set(key, value, where)
            elif key in UNSUPPORTED_BY_NAME and not _is_off(value):
                self.note_unsupported(key, where, value)
            # Anything else (imports, helper variables) is ignored, as by Gunicorn.

    def warnings(self) -> list[str]:
        """One line per unsupported Gunicorn setting that was given (and a
        GUNICORN_CMD_ARGS left behind by a Gunicorn deployment)."""
        out = []
        if self.environ.get("GUNICORN_CMD_ARGS", "").strip() and CMD_ARGS_ENV not in self.environ:
            out.append(f"GUNICORN_CMD_ARGS is set but not read; fastwsgi reads {CMD_ARGS_ENV}")
        for name, where in self._unsupported.items():
            u = UNSUPPORTED_BY_NAME[name]
            flag = f" ({u.cli[-1]})" if u.cli else ""
            out.append(
                f"Gunicorn setting {name}{flag} from {where} is not supported by fastwsgi; ignored"
            )
        return out

    @property
    def worker_class(self) -> str:
        return worker_class_name(self.values["worker_class"], self.values["threads"])

    def hooks(self) -> Hooks:
        return Hooks(**{name: self.values[name] for name in HOOK_NAMES})

    def groups(self) -> Groups:
        from fastwsgi import SERVER_SOFTWARE

        v = self.values
        proc_name = v["proc_name"] or self.app_uri
        parser = _fill(ParserSettings, v)
        worker = _fill(
            WorkerSettings,
            v,
            worker_class=self.worker_class,
            script_name=v["script_name"].rstrip("/"),
            server_software=SERVER_SOFTWARE,
            parser=parser,
        )
        arbiter = _fill(ArbiterSettings, v, proc_name=proc_name)
        if arbiter.metrics_bind:
            taken = metrics_collision(arbiter.metrics_bind, arbiter.bind)
            if taken is not None:
                raise ConfigError(
                    f"--metrics-bind {arbiter.metrics_bind} is also a --bind address ({taken})"
                )
        log = _fill(
            LogSettings,
            v,
            logconfig_dict=v["logconfig_dict"] or self._logconfig_json(),
            proc_name=proc_name,
        )
        return _fill(
            Groups,
            v,
            app_uri=self.app_uri or "",
            arbiter=arbiter,
            worker=worker,
            log=log,
            hooks=self.hooks(),
            paste=bool(v["paste"]),
            paste_global_conf=v["raw_paste_global_conf"],
        )

    def _logconfig_json(self) -> dict[str, Any] | None:
        path = self.values["logconfig_json"]
        if not path:
            return None
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as exc:
            raise ConfigError(f"cannot read --log-config-json file {path!r}: {exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(f"--log-config-json file {path!r} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"--log-config-json file {path!r} must hold a JSON object")
        return data

    def format(self) -> str:
        """--print-config: every setting with its value, Gunicorn's layout."""
        width = max(len(s.name) for s in SETTINGS)
        lines = []
        for s in SETTINGS:
            value = self.values[s.name]
            if s.section == "Server Hooks" and value is not None:
                text = getattr(value, "__qualname__", None) or repr(value)
            elif s.name == "worker_class":
                text = repr(self.worker_class)  # after the threads > 1 rule
            elif s.name == "umask":
                text = oct(value)
            else:
                text = repr(value)
            lines.append(f"{s.name:{width}} = {text}")
        lines.append(f"{'app_uri':{width}} = {self.app_uri!r}")
        return "\n".join(lines)


def _resolve(path: str, base: str) -> str:
    """``path`` against ``base``; as typed when that already means the same
    file (so messages at start-up show what the user wrote)."""
    if os.path.isabs(path) or os.path.abspath(base) == os.getcwd():
        return path
    return os.path.join(base, path)


def load(
    argv: Iterable[str], environ: Mapping[str, str] | None = None, cwd: str | None = None
) -> Settings:
    """All sources in Gunicorn's order: defaults (and their environment
    variables) < config file < FASTWSGI_CMD_ARGS < command line.

    ``cwd`` is the directory the command was started in (default: the
    current one). Relative paths mean what they meant there, however often
    this runs: the config file (and the default one's lookup) and ``chdir``
    resolve against it, and ``pythonpath`` entries against the ``chdir``
    directory (Gunicorn applies ``--chdir`` before making them absolute). The
    result holds absolute ``chdir`` and ``pythonpath``, so a SIGHUP reload,
    which runs after the master changed directory, reads the same files.
    """
    base = os.path.abspath(cwd) if cwd is not None else os.getcwd()
    env = dict(os.environ if environ is None else environ)
    cli_given, cli_unsupported = parse_args(argv)
    env_given: dict[str, Any] = {}
    env_unsupported: list[tuple[str, Any]] = []
    if env.get(CMD_ARGS_ENV, "").strip():
        import shlex  # rarely set; every module the master imports is in each worker's RSS

        try:
            env_argv = shlex.split(env[CMD_ARGS_ENV])
        except ValueError as exc:
            raise ConfigError(f"{CMD_ARGS_ENV}: {exc}") from exc
        env_given, env_unsupported = parse_args(env_argv, where=CMD_ARGS_ENV)
    settings = Settings(env)
    config = cli_given.get("config") or env_given.get("config")
    if config is None:
        config = default_config_file(base)
    if config:
        settings.apply_config_file(config if config.startswith("python:") else _resolve(config, base))
    settings.apply_args(env_given, env_unsupported, CMD_ARGS_ENV)
    settings.apply_args(cli_given, cli_unsupported, "command line")
    settings.check_environment()
    chdir = settings.values.get("chdir")
    if chdir:
        settings.values["chdir"] = chdir = os.path.normpath(os.path.join(base, chdir))
    if settings.values.get("pythonpath"):
        root = chdir or base
        settings.values["pythonpath"] = tuple(
            os.path.normpath(os.path.join(root, entry)) for entry in settings.values["pythonpath"]
        )
    if settings["paste"]:
        _apply_paste(settings, base)
    elif not settings.app_uri and settings["wsgi_app"]:
        settings.app_uri = settings["wsgi_app"]
    return settings


def ini_has_logging(path: str) -> bool:
    """The ini has a ``[loggers]`` section: it is a logging config too (Gunicorn's test)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read([path])
    except configparser.Error:
        return False
    return parser.has_section("loggers")


def _apply_paste(settings: Settings, base: str) -> None:
    """``--paste INI[#name]``: the ini (relative to where the command started)
    is the APP, the default process name, and the logging config when it has
    ``[loggers]`` and no other log config was given (Gunicorn's rules)."""
    if settings.app_uri:
        raise ConfigError(f"give either APP ({settings.app_uri}) or --paste, not both")
    path, sep, name = settings["paste"].partition("#")
    path = os.path.normpath(os.path.join(base, path))
    if not os.path.isfile(path):
        raise ConfigError(f"--paste: {path!r} not found")
    settings.values["paste"] = path + sep + name
    settings.app_uri = path + sep + name
    given = settings["logconfig"] or settings["logconfig_dict"] or settings["logconfig_json"]
    if not given and ini_has_logging(path):
        settings.set("logconfig", path, f"[loggers] in {path}")


if __name__ == "__main__":
    # The settings doc's old command, kept working; the generator is
    # fastwsgi.settings_doc (imported only here, so config imports no module
    # that imports it back).
    if sys.argv[1:] == ["--markdown"]:
        from fastwsgi.settings_doc import markdown

        sys.stdout.write(markdown())
    else:
        sys.stderr.write("usage: python -m fastwsgi.settings_doc > docs/settings.md\n")
        sys.exit(2)
