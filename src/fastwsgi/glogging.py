"""Error log and access log, in Gunicorn's shapes.

Theory of operation
-------------------
The error log is a stdlib ``logging`` logger (``fastwsgi.error``) with
Gunicorn's line shape ``[%Y-%m-%d %H:%M:%S %z] [pid] [LEVEL] message``, so
``--log-config`` (fileConfig) and ``logconfig_dict`` (dictConfig) can
reconfigure it. A log config written for Gunicorn that configures
``gunicorn.error``/``gunicorn.access`` and not ours is honoured: we log
through those loggers instead.

The access log is on the request path, so by default it bypasses ``logging``:
the format is compiled once into the list of atoms it uses, each request
computes only those, and the line goes out in one ``os.write`` on an
``O_APPEND`` descriptor, so lines from several workers (and gthread threads)
never interleave. Only when a log config routes the access log do lines go
through ``logging``. Values taken from the request are escaped (``"`` and
``\\`` with a backslash, control and non-ASCII bytes as ``\\xHH``, like nginx)
so a client cannot forge log lines; the JSON log escapes via ``json.dumps``.

A request the server refuses (a ``ParseError`` with a status) gets
Gunicorn's ``Invalid request from ip=ADDR: REASON`` at WARNING, which
alerting rules key on, limited per worker to ``INVALID_BURST`` lines per
``INVALID_WINDOW`` seconds so a flood of bad requests cannot fill a disk;
what was held back is counted and written as one ``N more invalid requests
suppressed`` line once the window is over (the kernel's printk rate limit
and its "callbacks suppressed" line).

``-`` means stderr for the error log and stdout for the access log (Gunicorn).
``reopen_files()`` reopens both on SIGUSR1 for log rotation.

``--log-syslog`` adds a ``SysLogHandler`` (made in the master, inherited by
the workers) to the error logger and, unless
``disable_redirect_access_to_syslog``, to the access logger, whose lines
then also go through ``logging``. Entries are tagged as Gunicorn tags them,
``gunicorn.PREFIX.error: [pid] message``, so syslog rules written for a
Gunicorn deployment keep matching (the statsd metric names follow the same
rule).
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any, NamedTuple

from fastwsgi.config import SYSLOG_FACILITIES, parse_syslog_address
from fastwsgi.settings import LogSettings

ERROR_FMT = "%(asctime)s [%(process)d] [%(levelname)s] %(message)s"
DATE_FMT = "[%Y-%m-%d %H:%M:%S %z]"
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# The Linux kernel's printk rate limit (printk_ratelimit_burst = 10 per
# printk_ratelimit = 5 s): a few lines a second, per worker.
INVALID_BURST = 10
INVALID_WINDOW = 5.0

class Atom(NamedTuple):
    """One access log atom: what docs/settings.md says, and how it is computed."""

    doc: str
    # A Python expression over e=environ, st=status, hd=response headers,
    # ln=length, du=duration ("" for the {name} families: see _atom_expr).
    expr: str
    # The value comes from the request: checked for unsafe characters and escaped.
    escaped: bool = False
    # The expression is already a str (the joined fast path skips str()).
    text: bool = False


# Gunicorn's access log atoms (gunicorn/glogging.py Logger.atoms), computed
# the same way.
ATOMS: dict[str, Atom] = {
    "h": Atom("remote address", 'e.get("REMOTE_ADDR") or "-"', True),
    "l": Atom("`-`", '"-"', text=True),
    "u": Atom("user name (HTTP Basic auth)", '_user(e) or "-"', True),
    "t": Atom("date of the request, `[10/Oct/2000:13:55:36 -0700]`", "_now()", text=True),
    "r": Atom("status line (`GET /path?q HTTP/1.1`)", "_rline(e)", True),
    "m": Atom("request method", 'e.get("REQUEST_METHOD") or "-"', True),
    "U": Atom("URL path without query string", 'e.get("PATH_INFO") or "-"', True),
    "q": Atom("query string", 'e.get("QUERY_STRING") or ""', True),
    "H": Atom("protocol", 'e.get("SERVER_PROTOCOL") or "-"', True),
    "s": Atom("status", "_code(st)", True),
    "B": Atom("response length", "ln if ln is not None else 0"),
    "b": Atom("response length or `-` (CLF format)", 'str(ln) if ln is not None else "-"', text=True),
    "f": Atom("referer", 'e.get("HTTP_REFERER") or "-"', True),
    "a": Atom("user agent", 'e.get("HTTP_USER_AGENT") or "-"', True),
    "T": Atom("request time in seconds", "int(du)"),
    "M": Atom("request time in milliseconds", "int(du * 1000)"),
    "D": Atom("request time in microseconds", "int(du * 1000000)"),
    "L": Atom("request time in decimal seconds", 'f"{du:.6f}"', text=True),
    "p": Atom("process ID, `<pid>`", 'f"<{_getpid()}>"', text=True),
    "{header}i": Atom("request header", "", True),
    "{header}o": Atom("response header", "", True),
    "{variable}e": Atom("environment (WSGI environ) variable", "", True),
}

# The JSON access log (--access-log-json): one object per line, these keys.
JSON_FIELDS: dict[str, str] = {
    "time": "ISO 8601 local time with UTC offset",
    "remote_addr": "client address (REMOTE_ADDR)",
    "user": "HTTP Basic user name, or null",
    "method": "request method",
    "uri": "request target as sent (RAW_URI)",
    "path": "PATH_INFO (percent-decoded)",
    "query": "query string",
    "protocol": "HTTP version (SERVER_PROTOCOL)",
    "status": "status code (integer)",
    "bytes": "response body bytes sent, or null",
    "referer": "Referer header, or null",
    "user_agent": "User-Agent header, or null",
    "duration_s": "request duration in seconds (microsecond precision)",
    "pid": "worker process id",
}

# Gunicorn's CONFIG_DEFAULTS, for our logger names: the base a logconfig_dict
# is merged over (see _apply_log_config).
CONFIG_DEFAULTS: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {
        "fastwsgi.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "fastwsgi.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stdout",
        },
        "error_console": {
            "class": "logging.StreamHandler",
            "formatter": "generic",
            "stream": "ext://sys.stderr",
        },
    },
    "formatters": {
        "generic": {"format": ERROR_FMT, "datefmt": DATE_FMT, "class": "logging.Formatter"},
    },
}



def _mark_ours(handler: logging.Handler) -> None:
    """Tag a handler this module installed, so a reload removes only those."""
    handler._fastwsgi = True  # type: ignore[attr-defined]


def _js(value: Any) -> str:
    """One JSON value: null, or a string escaped by json's C encoder (ASCII only)."""
    if value is None:
        return "null"
    return _json_str(value if isinstance(value, str) else str(value))


_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def _escape_char(m: re.Match[str]) -> str:
    c = m.group()
    if c == '"' or c == "\\":
        return "\\" + c
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else c.encode("unicode_escape").decode("ascii")


def escape(value: str) -> str:
    """Make a request-supplied value safe for a one-line text log."""
    return _UNSAFE.sub(_escape_char, value) if _UNSAFE.search(value) else value


def _escape_char_json(m: re.Match[str]) -> str:
    c = m.group()
    if c == '"' or c == "\\":
        return "\\" + c
    return "".join(f"\\u{u:04x}" for u in _utf16_units(ord(c)))


def _utf16_units(n: int) -> tuple[int, ...]:
    if n < 0x10000:
        return (n,)
    n -= 0x10000
    return (0xD800 + (n >> 10), 0xDC00 + (n & 0x3FF))


def escape_json(value: str) -> str:
    """Like escape(), but with JSON's escapes (``\\u00HH``): for hand-written JSON
    formats (``access_log_format = json.dumps({...})``, Gunicorn #2457), whose
    output must stay valid JSON whatever the client sends."""
    return _UNSAFE.sub(_escape_char_json, value) if _UNSAFE.search(value) else value


def _basic_user(environ: Mapping[str, Any]) -> str | None:
    auth = environ.get("HTTP_AUTHORIZATION")
    if not auth or not auth[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(auth[6:].strip(), validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        return None
    return raw.split(":", 1)[0]


def _status_code(status: int | str) -> str:
    if isinstance(status, int):
        return str(status)
    return status.split(None, 1)[0] if status else "-"


def _header_env_key(name: str) -> str:
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def _request_line(e: Mapping[str, Any]) -> str:
    return f"{e.get('REQUEST_METHOD', '-')} {e.get('RAW_URI', '-')} {e.get('SERVER_PROTOCOL', '-')}"


def _resp_header(headers: Iterable[tuple[str, str]], low: str) -> str:
    for k, v in headers:
        if k.lower() == low:
            return v
    return "-"


def _environ_var(e: Mapping[str, Any], name: str, low: str) -> str:
    if name in e:
        return str(e[name])
    for k, v in e.items():  # Gunicorn matches environ keys case-insensitively
        if k.lower() == low:
            return str(v)
    return "-"


_FORMAT_ITEM = re.compile(r"%\((?P<key>[^)]*)\)(?P<spec>[#0 +\-]*\d*(?:\.\d+)?[a-zA-Z])|%%")

AccessFormatter = Callable[[Mapping[str, Any], "int | str", Iterable[tuple[str, str]], "int | None", float], str]


def _atom_expr(key: str) -> tuple[str, bool]:
    atom = ATOMS.get(key)
    if atom is not None and atom.expr:
        return atom.expr, atom.escaped
    if key.startswith("{") and len(key) > 3 and key[-2] == "}":
        name, kind = key[1:-2], key[-1]
        if kind == "i":
            return f"e.get({_header_env_key(name)!r}) or '-'", True
        if kind == "o":
            return f"_rhead(hd, {name.lower()!r})", True
        if kind == "e":
            return f"_evar(e, {name!r}, {name.lower()!r})", True
    return '"-"', False  # Gunicorn's SafeAtoms: unknown atoms render as '-'


def compile_access_format(fmt: str, now: Callable[[], str]) -> AccessFormatter:
    """Turn a Gunicorn access_log_format into one function.

    Only the atoms the format names are computed; request-supplied values are
    checked for unsafe characters in one regex search over all of them and
    escaped only when one is found. Formats using only ``%(x)s`` become a
    string join; others (``%(D)d``, widths) use ``%`` with a dict.
    """
    keys: list[str] = []
    pieces: list[tuple[str, str]] = []  # ("lit", text) or ("key", name)
    simple = True
    pos = 0
    for m in _FORMAT_ITEM.finditer(fmt):
        pieces.append(("lit", fmt[pos:m.start()]))
        pos = m.end()
        if m.group() == "%%":
            pieces.append(("lit", "%"))
            continue
        key = m.group("key")
        if m.group("spec") != "s":
            simple = False
        if key not in keys:
            keys.append(key)
        pieces.append(("key", key))
    pieces.append(("lit", fmt[pos:]))
    if "%" in "".join(text for kind, text in pieces if kind == "lit" and text != "%"):
        simple = False  # a stray '%': let '%' formatting decide (and complain once)
    var = {key: f"v{i}" for i, key in enumerate(keys)}
    body = ["def _format(e, st, hd, ln, du):"]
    unsafe: list[str] = []
    for key in keys:
        expr, escaped = _atom_expr(key)
        body.append(f"    {var[key]} = {expr}")
        if escaped:
            unsafe.append(var[key])
    if unsafe:
        body.append(f"    if _unsafe({' + '.join(unsafe)}) is not None:")
        body.extend(f"        {v} = _esc({v})" for v in unsafe)
    if simple:
        parts = []
        for kind, text in pieces:
            if kind == "lit":
                if text:
                    parts.append(repr(text))
            else:
                _, escaped = _atom_expr(text)
                atom = ATOMS.get(text)
                is_str = escaped or (atom is not None and atom.text)
                parts.append(var[text] if is_str else f"str({var[text]})")
        body.append(f"    return {' + '.join(parts) if parts else repr('')}")
    else:
        items = ", ".join(f"{k!r}: {var[k]}" for k in keys)
        body.append(f"    return _FMT % {{{items}}}")
    namespace: dict[str, Any] = {
        "_now": now,
        "_user": _basic_user,
        "_rline": _request_line,
        "_code": _status_code,
        "_rhead": _resp_header,
        "_evar": _environ_var,
        "_getpid": os.getpid,
        "_unsafe": _UNSAFE.search,
        # A format that looks like a JSON object gets JSON-valid escapes.
        "_esc": escape_json if fmt.strip().startswith("{") else escape,
        "_FMT": fmt,
    }
    exec(compile("\n".join(body), f"<access_log_format {fmt!r}>", "exec"), namespace)
    formatter: AccessFormatter = namespace["_format"]
    return formatter


class Logger:
    """``Logger(LogSettings)``: the error log methods, ``access()`` and ``reopen_files()``."""

    def __init__(self, settings: LogSettings) -> None:
        self.settings = settings
        self.error_log = logging.getLogger("fastwsgi.error")
        self.access_log = logging.getLogger("fastwsgi.access")
        # Re-entrant: reopen_files() runs in signal handlers, which can nest.
        self._lock = threading.RLock()
        self._capture_file: Any = None
        self._access_fd: int | None = None
        self._access_own_fd = False
        self._access_via_logging = False
        self._access_syslog = False
        self._time_cache: tuple[int, str] = (-1, "")
        self._iso_cache: tuple[int, str] = (-1, "")
        self._format: AccessFormatter | None = None
        self.statsd: Any = None
        # Rejected-request warnings: window start, lines in it, lines held back.
        self._invalid_lock = threading.Lock()
        self._invalid_start = -INVALID_WINDOW
        self._invalid_count = 0
        self.invalid_suppressed = 0
        self.setup(settings)

    # -- set-up ---------------------------------------------------------------

    def setup(self, settings: LogSettings) -> None:
        """(Re)configure from settings; also used after SIGHUP."""
        self.settings = cfg = settings
        self._remove_own_handlers()
        if cfg.capture_output and cfg.errorlog != "-":
            self._capture(cfg.errorlog)
        level = LEVELS.get(cfg.loglevel, logging.INFO)
        self.error_log = logging.getLogger("fastwsgi.error")
        self.access_log = logging.getLogger("fastwsgi.access")
        if cfg.logconfig or cfg.logconfig_dict:
            self._apply_log_config(cfg)
        else:
            self.error_log.propagate = False
            handler: logging.Handler
            if cfg.errorlog == "-":
                handler = logging.StreamHandler(sys.stderr)
            else:
                handler = logging.FileHandler(cfg.errorlog)
                self._chown(cfg.errorlog)
            handler.setFormatter(logging.Formatter(ERROR_FMT, DATE_FMT))
            _mark_ours(handler)
            self.error_log.addHandler(handler)
        self.error_log.setLevel(level)
        self._access_syslog = False
        if cfg.syslog:
            self._add_syslog(self.error_log, cfg, "error")
            if not cfg.disable_redirect_access_to_syslog:
                self._add_syslog(self.access_log, cfg, "access")
                if not (cfg.logconfig or cfg.logconfig_dict):
                    self.access_log.propagate = False
                    self.access_log.setLevel(logging.INFO)
                self._access_syslog = True
        self._setup_access(cfg)
        if self.statsd is not None:
            self.statsd.close()
        if cfg.statsd_host:
            from fastwsgi.statsd import Statsd

            self.statsd = Statsd(cfg.statsd_host, cfg.statsd_prefix, self, cfg.dogstatsd_tags)
        else:
            self.statsd = None

    def _add_syslog(self, log: logging.Logger, cfg: LogSettings, name: str) -> None:
        # Imported here: logging.handlers costs every worker memory (see
        # _apply_log_config), and few deployments log to syslog.
        import logging.handlers

        socktype, address = parse_syslog_address(cfg.syslog_addr)
        prefix = cfg.syslog_prefix or (cfg.proc_name or "fastwsgi").replace(":", ".")
        handler = logging.handlers.SysLogHandler(
            address=address, facility=SYSLOG_FACILITIES[cfg.syslog_facility], socktype=socktype
        )
        handler.setFormatter(logging.Formatter(f"gunicorn.{prefix}.{name}: [%(process)d] %(message)s"))
        _mark_ours(handler)
        log.addHandler(handler)

    def _chown(self, path: str) -> None:
        """Let workers running as -u/-g reopen the file (Gunicorn does the same)."""
        cfg = self.settings
        if cfg.user is None and cfg.group is None:
            return
        try:
            os.chown(path, -1 if cfg.user is None else cfg.user, -1 if cfg.group is None else cfg.group)
        except OSError:
            pass  # /dev/null, or not ours to give away: workers may still write

    def _remove_own_handlers(self) -> None:
        for log in (logging.getLogger("fastwsgi.error"), logging.getLogger("fastwsgi.access")):
            for h in list(log.handlers):
                if getattr(h, "_fastwsgi", False):
                    log.removeHandler(h)
                    h.close()  # a file, a syslog socket; a stderr StreamHandler keeps stderr open
        if self._access_fd is not None and self._access_own_fd:
            os.close(self._access_fd)
        self._access_fd = None

    def _capture(self, path: str) -> None:
        # Gunicorn's capture_output: point fds 1 and 2 at the error log file,
        # so print() and C-level writes from the app land there too.
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if self._capture_file is not None:
            self._capture_file.close()
        self._capture_file = open(path, "a", buffering=1)  # noqa: SIM115 - held for the process life
        os.dup2(self._capture_file.fileno(), 1)
        os.dup2(self._capture_file.fileno(), 2)

    def _apply_log_config(self, cfg: LogSettings) -> None:
        # Imported here, not at the top: logging.config brings logging.handlers,
        # socketserver and pickle, about 1 MiB in the master and so in every
        # worker, for a feature few deployments use.
        import logging.config

        if cfg.logconfig_dict:
            # Gunicorn replaces top-level keys; we merge handlers, formatters
            # and filters key by key so a dict that names its own handlers
            # does not break the default root logger's "console" handler.
            config = copy.deepcopy(CONFIG_DEFAULTS)
            user = copy.deepcopy(cfg.logconfig_dict)
            for key in ("handlers", "formatters", "filters"):
                if isinstance(user.get(key), dict):
                    config.setdefault(key, {}).update(user.pop(key))
            config.update(user)
            logging.config.dictConfig(config)
            configured = set(config.get("loggers", {}))
        else:
            assert cfg.logconfig is not None
            if not os.path.exists(cfg.logconfig):
                raise OSError(f"log config file {cfg.logconfig!r} does not exist")
            # %(here)s and %(__file__)s, as pserve defines them for a
            # PasteDeploy ini that is also the logging config.
            path = os.path.abspath(cfg.logconfig)
            logging.config.fileConfig(
                cfg.logconfig,
                defaults={"here": os.path.dirname(path), "__file__": path},
                disable_existing_loggers=False,
            )
            configured = {
                name
                for name, lg in logging.Logger.manager.loggerDict.items()
                if isinstance(lg, logging.Logger) and lg.handlers
            }
        # A config written for Gunicorn: use its loggers when ours are not named.
        for ours, theirs in (
            ("fastwsgi.error", "gunicorn.error"),
            ("fastwsgi.access", "gunicorn.access"),
        ):
            if ours not in configured and theirs in configured:
                setattr(
                    self,
                    "error_log" if ours.endswith("error") else "access_log",
                    logging.getLogger(theirs),
                )

    def _setup_access(self, cfg: LogSettings) -> None:
        # --access-logfile always means our direct writer; without it, a log
        # config that gives the access logger handlers routes lines there.
        self._access_via_logging = (
            cfg.accesslog is None
            and bool(cfg.logconfig or cfg.logconfig_dict)
            and bool(self.access_log.handlers)
        )
        self.access_enabled = (
            cfg.accesslog is not None or self._access_via_logging or self._access_syslog
        )
        if cfg.accesslog is not None:
            if cfg.accesslog == "-":
                self._access_fd, self._access_own_fd = 1, False
            else:
                self._access_fd = os.open(
                    cfg.accesslog, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                )
                self._access_own_fd = True
                self._chown(cfg.accesslog)
        self._format = compile_access_format(cfg.access_log_format, self.now)

    # -- error log --------------------------------------------------------------

    def _metric(self, kw: dict[str, Any]) -> None:
        """Gunicorn's statsd logger turns ``extra={"metric": NAME, "value": V,
        "mtype": "gauge" | "counter" | "histogram"}`` on any log call into a
        metric (its arbiter reports ``gunicorn.workers`` that way, and apps
        use it from hooks): so do we, whatever the log level."""
        extra = kw.get("extra")
        if self.statsd is None or not isinstance(extra, Mapping):
            return
        name, value = extra.get("metric"), extra.get("value")
        if not name or value is None:
            return
        try:
            mtype = extra.get("mtype")
            if mtype == "gauge":
                self.statsd.gauge(str(name), value if isinstance(value, int) else float(value))
            elif mtype == "counter":
                self.statsd.increment(str(name), int(value))
            elif mtype == "histogram":
                self.statsd.histogram(str(name), float(value))
        except (TypeError, ValueError):
            pass  # a malformed metric must not break the log call

    def debug(self, msg: str, *args: Any, **kw: Any) -> None:
        self.error_log.debug(msg, *args, **kw)
        self._metric(kw)

    def info(self, msg: str, *args: Any, **kw: Any) -> None:
        self.error_log.info(msg, *args, **kw)
        self._metric(kw)

    def warning(self, msg: str, *args: Any, **kw: Any) -> None:
        self.error_log.warning(msg, *args, **kw)
        self._metric(kw)

    def error(self, msg: str, *args: Any, **kw: Any) -> None:
        self.error_log.error(msg, *args, **kw)
        self._metric(kw)

    def exception(self, msg: str, *args: Any, **kw: Any) -> None:
        self.error_log.exception(msg, *args, **kw)
        self._metric(kw)

    def critical(self, msg: str, *args: Any, **kw: Any) -> None:
        self.error_log.critical(msg, *args, **kw)
        if self.statsd is not None:
            self.statsd.increment("gunicorn.log.critical")
        self._metric(kw)

    def log(self, level: int | str, msg: str, *args: Any, **kw: Any) -> None:
        if isinstance(level, str):
            level = LEVELS.get(level.lower(), logging.INFO)
        self.error_log.log(level, msg, *args, **kw)
        self._metric(kw)

    def invalid_request(self, ip: str, error: str) -> None:
        """Gunicorn's warning for a refused request, rate-limited (see the
        module docstring); thread-safe, as gthread's pool threads share it."""
        now = time.monotonic()
        with self._invalid_lock:
            if now - self._invalid_start >= INVALID_WINDOW:
                self._flush_invalid_locked()
                self._invalid_start, self._invalid_count = now, 0
            if self._invalid_count >= INVALID_BURST:
                self.invalid_suppressed += 1
                return
            self._invalid_count += 1
        self.warning("Invalid request from ip=%s: %s", ip, error)

    def flush_invalid(self, force: bool = False) -> None:
        """Write the suppressed-count line once its window is over (or now,
        with ``force``, as a worker exits); the worker calls this from its
        heartbeat, so the count comes out even when the flood stops."""
        if not self.invalid_suppressed:
            return
        with self._invalid_lock:
            if force or time.monotonic() - self._invalid_start >= INVALID_WINDOW:
                self._flush_invalid_locked()

    def _flush_invalid_locked(self) -> None:
        n, self.invalid_suppressed = self.invalid_suppressed, 0
        if n:
            self.warning(
                "%d more invalid requests suppressed (at most %d logged per %gs per worker)",
                n, INVALID_BURST, INVALID_WINDOW,
            )

    # -- access log ---------------------------------------------------------------

    def now(self) -> str:
        """The date in Apache Common Log Format, rendered once per second."""
        sec = int(time.time())
        cached = self._time_cache
        if cached[0] != sec:
            cached = (sec, time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(sec)))
            self._time_cache = cached
        return cached[1]

    def access(
        self,
        environ: Mapping[str, Any],
        status: int | str,
        resp_headers: Iterable[tuple[str, str]],
        resp_length: int | None,
        duration_s: float,
    ) -> None:
        """Log one request. ``status`` is an int or the status string ("200 OK")."""
        if self.statsd is not None:
            self.statsd.access(status, duration_s)
        if not self.access_enabled:
            return
        try:
            if self.settings.access_log_json:
                line = self._json_line(environ, status, resp_length, duration_s)
            else:
                assert self._format is not None
                line = self._format(environ, status, resp_headers, resp_length, duration_s)
            self._write_access(line)
        except Exception:
            self.exception("Failed to write the access log line")

    def _iso_now(self) -> str:
        sec = int(time.time())
        cached = self._iso_cache
        if cached[0] != sec:
            cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(sec)))
            self._iso_cache = cached
        return cached[1]

    def _json_line(
        self, e: Mapping[str, Any], status: int | str, length: int | None, duration: float
    ) -> str:
        # Built by hand around json's C string escaper: 3-4x cheaper than
        # json.dumps on a dict, and every string still goes through it.
        code = _status_code(status)
        return (
            f'{{"time":"{self._iso_now()}","remote_addr":{_js(e.get("REMOTE_ADDR"))},'
            f'"user":{_js(_basic_user(e))},"method":{_js(e.get("REQUEST_METHOD"))},'
            f'"uri":{_js(e.get("RAW_URI"))},"path":{_js(e.get("PATH_INFO"))},'
            f'"query":{_js(e.get("QUERY_STRING", ""))},"protocol":{_js(e.get("SERVER_PROTOCOL"))},'
            f'"status":{code if code.isdigit() and code.isascii() else _js(code)},'
            f'"bytes":{"null" if length is None else int(length)},'
            f'"referer":{_js(e.get("HTTP_REFERER"))},"user_agent":{_js(e.get("HTTP_USER_AGENT"))},'
            f'"duration_s":{round(float(duration), 6)!r},"pid":{os.getpid()}}}'
        )

    def _write_access(self, line: str) -> None:
        if self._access_via_logging or self._access_syslog:
            self.access_log.info(line)  # a log config's handlers, and/or syslog
            if self._access_via_logging:
                return
        fd = self._access_fd
        if fd is None:
            return
        data = (line + "\n").encode("utf-8", "backslashreplace")
        while data:
            n = os.write(fd, data)
            data = data[n:]

    # -- rotation ------------------------------------------------------------------

    def reopen_files(self) -> None:
        """SIGUSR1: reopen log files (after logrotate moved them).

        A file that cannot be opened again (its directory was removed or
        made unwritable) keeps the descriptor it had, and the error is
        logged there: a log rotation gone wrong must not stop the server
        (Gunicorn's master and workers die of the exception)."""
        cfg = self.settings
        failed: list[str] = []
        with self._lock:
            if cfg.capture_output and cfg.errorlog != "-":
                try:
                    self._capture(cfg.errorlog)
                except OSError as exc:
                    failed.append(f"{cfg.errorlog} (captured output): {exc.strerror or exc}")
            # Every logger, as Gunicorn does: a log config may put file
            # handlers on the root or on the app's own loggers.
            loggers = [logging.getLogger()] + [
                lg for lg in list(logging.Logger.manager.loggerDict.values())
                if isinstance(lg, logging.Logger)
            ]
            for log in loggers:
                for h in log.handlers:
                    if isinstance(h, logging.FileHandler):
                        h.acquire()
                        try:
                            if h.stream:
                                old, h.stream = h.stream, h._open()
                                old.close()
                        except OSError as exc:
                            failed.append(f"{h.baseFilename}: {exc.strerror or exc}")
                        finally:
                            h.release()
            if self._access_own_fd and self._access_fd is not None and cfg.accesslog:
                try:
                    new = os.open(
                        cfg.accesslog, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
                    )
                except OSError as exc:
                    failed.append(f"{cfg.accesslog}: {exc.strerror or exc}")
                else:
                    os.dup2(new, self._access_fd, inheritable=False)
                    os.close(new)
        for what in failed:
            self.error("Cannot reopen log file %s; still writing to the one open before", what)

    def close(self) -> None:
        """Drop our handlers and descriptors (tests; a process exiting needs nothing)."""
        self._remove_own_handlers()
        if self._capture_file is not None:
            self._capture_file.close()
            self._capture_file = None
        if self.statsd is not None:
            self.statsd.close()
            self.statsd = None

