"""The servers under test: how to start each, check it is ready, stop it.

A ``ServerSpec`` turns (bind address, app spec, workers, threads) into an argv;
the bind is ``127.0.0.1:PORT`` or, for the Gunicorn-style servers,
``unix:/path`` (the ``nginx-unix`` path).
fastwsgi and Gunicorn are always attempted (fastwsgi is the product; a build
that does not serve yet shows up as "failed to start", not as a crash of the
harness); bjoern, waitress, granian and uWSGI run only when installed, and
``nginx-static`` (nginx answering hello and file1m itself, no Python: the C
ceiling, ``bench/nginx_static.py``) whenever nginx is; ``floor`` (fastwsgi's
system calls for hello and file1m and nothing else, ``bench/floor.py``)
always.

Each server is started in its own session (``start_new_session``) so that it
and every worker it forks share one process group that only we own: stop is
SIGTERM to the master, a bounded wait, then SIGKILL to that group. Readiness
is a connect poll with a deadline, then one real request whose body length is
checked (a listening master whose worker cannot load the app is not ready).
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bench import floor, nginx_static
from bench.nginx import available as nginx_available
from bench.nginx import free_port, wait_connect

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass(frozen=True)
class ServerSpec:
    name: str
    family: str
    threaded: bool  # overlaps blocking requests in one worker (sleep scenario)
    baseline: str  # the Gunicorn entry its ratios are taken against
    build: Callable[[str, str, int, int], list[str]]  # (bind, app, workers, threads)
    missing: Callable[[], str | None] = lambda: None  # why it cannot run, or None
    unix_ok: bool = False  # can bind a unix socket
    apps: frozenset[str] | None = None  # the scenario apps it can serve (None: any)
    paths: frozenset[str] | None = None  # the bench paths it runs on (None: all)

    def argv(self, bind: str, app: str, workers: int, threads: int) -> list[str]:
        return self.build(bind, app, workers, threads)


@cache
def gunicorn_extra() -> tuple[str, ...]:
    """``--no-control-socket`` where this Gunicorn has it (27+)."""
    try:
        out = subprocess.run(
            [PY, "-m", "gunicorn", "--help"], capture_output=True, text=True, timeout=60
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return ("--no-control-socket",) if "--no-control-socket" in out else ()


def _has_module(name: str) -> Callable[[], str | None]:
    def check() -> str | None:
        if importlib.util.find_spec(name) is None:
            return f"{name} not installed (pip install {name})"
        return None

    return check


def _has_uwsgi() -> str | None:
    if shutil.which("uwsgi") is None:
        return "uwsgi not installed (pip install pyuwsgi)"
    return None


def _port(bind: str) -> int:
    host, _, port = bind.rpartition(":")
    if host != "127.0.0.1":
        raise ValueError(f"this server binds TCP loopback only, not {bind!r}")
    return int(port)


def _gunicorn_like(module: str, worker: str) -> Callable[[str, str, int, int], list[str]]:
    def build(bind: str, app: str, workers: int, threads: int) -> list[str]:
        argv = [PY, "-m", module, "-b", bind, "-k", worker, "-w", str(workers)]
        if worker == "gthread":
            argv += ["--threads", str(threads)]
        if module == "gunicorn":
            argv += list(gunicorn_extra())
        return argv + [app]

    return build


def _with_metrics(worker: str) -> Callable[[str, str, int, int], list[str]]:
    """fastwsgi with --metrics-bind on a free loopback port: the B side of
    the metrics cost A/B (bench/README.md, "Metrics on/off")."""
    plain = _gunicorn_like("fastwsgi", worker)

    def build(bind: str, app: str, workers: int, threads: int) -> list[str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        argv = plain(bind, app, workers, threads)
        return [*argv[:-1], "--metrics-bind", f"127.0.0.1:{port}", argv[-1]]

    return build


def _bjoern(bind: str, app: str, workers: int, threads: int) -> list[str]:
    port = _port(bind)
    mod, _, attr = app.partition(":")
    code = (
        "import bjoern, importlib; "
        f"bjoern.run(getattr(importlib.import_module({mod!r}), {attr!r}), '127.0.0.1', {port})"
    )
    return [PY, "-c", code]


def _waitress(bind: str, app: str, workers: int, threads: int) -> list[str]:
    return [PY, "-m", "waitress", f"--listen=127.0.0.1:{_port(bind)}", f"--threads={threads}",
            app]


def _granian(bind: str, app: str, workers: int, threads: int) -> list[str]:
    return [
        PY, "-m", "granian", "--interface", "wsgi", "--host", "127.0.0.1", "--port",
        str(_port(bind)),
        "--workers", str(workers), "--blocking-threads", str(threads), "--no-ws",
        "--log-level", "warning", app,
    ]


def _uwsgi(bind: str, app: str, workers: int, threads: int) -> list[str]:
    uwsgi = shutil.which("uwsgi") or "uwsgi"
    return [
        uwsgi, "--http11-socket", f"127.0.0.1:{_port(bind)}", "--module", app,
        "--master", "--processes", str(workers), "--threads", str(threads),
        "--die-on-term", "--disable-logging", "--need-app", "--pythonpath", str(REPO),
    ]


def _nginx_static(bind: str, app: str, workers: int, threads: int) -> list[str]:
    return [PY, "-m", "bench.nginx_static", "--port", str(_port(bind)), "--app", app,
            "--workers", str(workers)]


def _floor(bind: str, app: str, workers: int, threads: int) -> list[str]:
    return [PY, "-m", "bench.floor", "--port", str(_port(bind)), "--app", app]


def _has_nginx() -> str | None:
    return None if nginx_available() else "nginx not installed (apt-get install nginx-light)"


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec("fastwsgi-sync", "fastwsgi", False, "gunicorn-sync",
                   _gunicorn_like("fastwsgi", "sync"), unix_ok=True),
        ServerSpec("fastwsgi-gthread", "fastwsgi", True, "gunicorn-gthread",
                   _gunicorn_like("fastwsgi", "gthread"), unix_ok=True),
        # Metrics on, compared with the same worker with metrics off (not in
        # the default set: run them by name).
        ServerSpec("fastwsgi-sync-metrics", "fastwsgi-metrics", False, "fastwsgi-sync",
                   _with_metrics("sync"), unix_ok=True),
        ServerSpec("fastwsgi-gthread-metrics", "fastwsgi-metrics", True, "fastwsgi-gthread",
                   _with_metrics("gthread"), unix_ok=True),
        ServerSpec("gunicorn-sync", "gunicorn", False, "gunicorn-sync",
                   _gunicorn_like("gunicorn", "sync"), _has_module("gunicorn"), unix_ok=True),
        ServerSpec("gunicorn-gthread", "gunicorn", True, "gunicorn-gthread",
                   _gunicorn_like("gunicorn", "gthread"), _has_module("gunicorn"), unix_ok=True),
        ServerSpec("bjoern", "bjoern", False, "gunicorn-sync", _bjoern, _has_module("bjoern")),
        ServerSpec("waitress", "waitress", True, "gunicorn-gthread", _waitress,
                   _has_module("waitress")),
        ServerSpec("granian", "granian", True, "gunicorn-gthread", _granian,
                   _has_module("granian")),
        ServerSpec("uwsgi", "uwsgi", True, "gunicorn-gthread", _uwsgi, _has_uwsgi),
        # The C ceiling: nginx answering hello/file1m itself, keep-alive clients.
        ServerSpec("nginx-static", "nginx", False, "gunicorn-gthread", _nginx_static,
                   _has_nginx, apps=frozenset(nginx_static.SCENARIO_CONF),
                   paths=frozenset({"direct"})),
        # The kernel's floor: fastwsgi's system calls for hello/file1m and
        # nothing else, one thread (bench/floor.py).
        ServerSpec("floor", "floor", False, "gunicorn-gthread", _floor,
                   apps=frozenset(floor.SCENARIO_BODY), paths=frozenset({"direct", "nginx"})),
    )
}


def server_env() -> dict[str, str]:
    """Environment for server processes: bench.apps and fastwsgi importable.

    fastwsgi comes from wherever this interpreter finds it (an installed wheel
    or ``PYTHONPATH=src``), else from the checkout's ``src/``.
    """
    paths = [str(REPO)]
    spec = importlib.util.find_spec("fastwsgi")
    if spec is not None and spec.origin:
        paths.append(str(Path(spec.origin).resolve().parent.parent))
    else:
        paths.append(str(REPO / "src"))
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(paths + ([old] if old else []))
    return env


class StartError(RuntimeError):
    pass


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except OSError:
            s.close()
            raise
        self.sock = s


class Server:
    """One running server process tree on a free loopback port or a unix socket."""

    def __init__(
        self,
        spec: ServerSpec,
        app: str,
        *,
        workers: int = 1,
        threads: int = 8,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
        unix_path: str | None = None,
    ) -> None:
        self.spec = spec
        self.app = app
        self.unix_path = unix_path
        if unix_path is not None:
            self.port = 0
            self.address: tuple[str, int] | str = unix_path
            bind = f"unix:{unix_path}"
        else:
            self.port = free_port()
            self.address = ("127.0.0.1", self.port)
            bind = f"127.0.0.1:{self.port}"
        self.argv = list(prefix) + spec.argv(bind, app, workers, threads)
        self.env = env if env is not None else server_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, deadline_s: float = 60.0) -> None:
        fd, self.log_path = tempfile.mkstemp(prefix=f"fastwsgi-bench-{self.spec.name}-", suffix=".log")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=fd, stderr=fd, stdin=subprocess.DEVNULL, env=self.env,
                cwd=str(REPO), start_new_session=True,
            )
        except OSError as e:
            os.close(fd)
            raise StartError(f"cannot exec {self.argv[0]}: {e}") from e
        os.close(fd)
        if not wait_connect(self.address, deadline_s, self.proc):
            reason = "exited" if self.proc.poll() is not None else "not listening"
            raise StartError(f"{reason} after start: {self.log_tail()}")

    def check(self, path: str = "/", method: str = "GET", body: bytes | None = None,
              expect_len: int | None = None, timeout_s: float = 60.0) -> None:
        """One real request: the app must answer 200 with the expected length."""
        conn = (
            _UnixHTTPConnection(self.unix_path, timeout_s) if self.unix_path
            else http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)
        )
        try:
            headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            raise StartError(f"first request failed ({e}): {self.log_tail()}") from e
        finally:
            conn.close()
        if resp.status != 200:
            raise StartError(f"first request got {resp.status}: {self.log_tail()}")
        if expect_len is not None and len(data) != expect_len:
            raise StartError(f"first request got {len(data)} bytes, expected {expect_len}")

    def log_tail(self, lines: int = 4) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                tail = [ln.strip() for ln in f.read().splitlines() if ln.strip()][-lines:]
        except OSError:
            return "(no log)"
        return " | ".join(tail) or "(empty log)"

    def stop(self, deadline_s: float = 15.0) -> int | None:
        proc, self.proc = self.proc, None
        status = None
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGTERM)
                    status = proc.wait(timeout=deadline_s)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # our own session: workers left behind
            except (ProcessLookupError, PermissionError):
                pass
            try:
                status = proc.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                pass
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass
            self.log_path = ""
        return status
