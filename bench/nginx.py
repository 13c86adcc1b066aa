"""A throw-away nginx in front of the server under test.

In production a pre-fork WSGI server sits behind a buffering reverse proxy:
nginx reads the whole response quickly and trickles it to slow clients, so a
sync worker is never held by a slow reader. This module reproduces that setup
without touching the system's nginx: everything (config, pid file, error log,
temp paths) lives in a fresh temporary directory used as nginx's prefix
(``-p``), nginx runs in the foreground (``daemon off``) as our child and is
stopped by pid.

Two upstream styles:

* ``keepalive=False``: ``proxy_http_version 1.0`` and no upstream pool, so
  every request opens a new connection to the server. This is how Gunicorn's
  docs deploy sync workers, and it charges the server a full
  accept/close per request.
* ``keepalive=True``: ``proxy_http_version 1.1`` with an upstream
  ``keepalive`` pool (and ``Connection: ""``), for workers that keep
  connections alive (gthread).

Buffers are sized so the bench responses (up to 1 MiB) and POST bodies
(64 KiB) stay in memory: ``proxy_max_temp_file_size 0`` means nginx never
spills to disk, so the disk is not part of what we measure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence

NGINX = "/usr/sbin/nginx"

# Shared by every throw-away nginx we start (also bench/nginx_static.py): all
# of its files inside the prefix; each template goes on inside the http block.
PRELUDE = """\
worker_processes {workers};
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
{user}
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
"""

_CONF = PRELUDE + """\

    upstream app {{
        server {upstream};
{pool}    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 16m;
        client_body_buffer_size 128k;

        location / {{
            proxy_pass http://app;
            proxy_buffering on;
            proxy_buffer_size 16k;
            proxy_buffers 64 32k;
            proxy_busy_buffers_size 64k;
            proxy_max_temp_file_size 0;
            proxy_http_version {http_version};
            proxy_set_header Host $host;
            proxy_set_header Connection "{connection}";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
{extra}        }}
    }}
}}
"""


def available() -> bool:
    return os.access(NGINX, os.X_OK) or shutil.which("nginx") is not None


def _binary() -> str:
    if os.access(NGINX, os.X_OK):
        return NGINX
    found = shutil.which("nginx")
    if found is None:
        raise FileNotFoundError("nginx not found (apt-get install nginx-light)")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_connect(
    addr: tuple[str, int] | str, deadline_s: float, proc: subprocess.Popen[bytes] | None = None
) -> bool:
    """Poll-connect until the address accepts, the process dies, or the deadline."""
    end = time.monotonic() + deadline_s
    delay = 0.01
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(addr)
                return True
            except OSError:
                pass
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
    return False


def render_conf(
    prefix: str, port: int, upstream: tuple[str, int] | str, keepalive: bool,
    workers: int = 1, queue_start: bool = False, location_extra: str = "",
) -> str:
    """nginx.conf for a proxy on ``port``; ``location_extra`` holds more
    directives for its location (each line ending in a newline)."""
    up = f"unix:{upstream}" if isinstance(upstream, str) else f"{upstream[0]}:{upstream[1]}"
    # Running as root, nginx drops its worker to "nobody", which could not
    # enter our private temp dir; keep it as the user that started it.
    user = "user root;" if os.geteuid() == 0 else ""
    return _CONF.format(
        workers=max(1, workers),
        prefix=prefix,
        port=port,
        upstream=up,
        user=user,
        pool="        keepalive 32;\n" if keepalive else "",
        http_version="1.1" if keepalive else "1.0",
        connection="" if keepalive else "close",
        # The request's arrival at nginx, for the server's queue-time metric
        # (docs/deploy.md, Monitoring).
        extra=('            proxy_set_header X-Request-Start "t=${msec}";\n' if queue_start else "")
        + "".join(f"            {line}\n" for line in location_extra.splitlines()),
    )


class Nginx:
    """One nginx master (+``workers`` workers) proxying 127.0.0.1:port → upstream.

    One worker is enough in front of one server worker on two cores; the
    multi-worker scaling runs (bench/scaling.py) give nginx several so the
    proxy is not what they measure.
    """

    def __init__(
        self,
        upstream: tuple[str, int] | str,
        *,
        keepalive: bool = False,
        prefix_cmd: Sequence[str] = (),
        port: int | None = None,
        workers: int = 1,
        queue_start: bool = False,
        location_extra: str = "",
    ) -> None:
        self.upstream = upstream
        self.queue_start = queue_start
        self.location_extra = location_extra
        self.workers = workers
        self.keepalive = keepalive
        self.prefix_cmd = list(prefix_cmd)
        self.port = port or free_port()
        self.dir = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, deadline_s: float = 15.0) -> None:
        self.dir = tempfile.mkdtemp(prefix="fastwsgi-nginx-")
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(render_conf(self.dir, self.port, self.upstream, self.keepalive,
                                self.workers, self.queue_start, self.location_extra))
        argv = self.prefix_cmd + [
            _binary(), "-p", self.dir + "/", "-c", conf, "-e", os.path.join(self.dir, "error.log"),
            "-g", "daemon off;",
        ]
        log = open(os.path.join(self.dir, "stderr.log"), "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        if not wait_connect(("127.0.0.1", self.port), deadline_s, self.proc):
            err = self.error_log_tail()
            self.stop()
            raise RuntimeError(f"nginx did not start on port {self.port}: {err}")

    def error_log_tail(self, lines: int = 5) -> str:
        out = []
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out += f.read().splitlines()[-lines:]
            except OSError:
                pass
        return " | ".join(out)

    def pids(self) -> list[int]:
        """nginx master and its worker (for pinning and CPU accounting)."""
        if self.proc is None:
            return []
        from bench.procstat import tree_pids

        return tree_pids(self.proc.pid)

    def stop(self, deadline_s: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                # SIGQUIT is nginx's graceful stop; it finishes in-flight requests.
                proc.send_signal(signal.SIGQUIT)
                try:
                    proc.wait(timeout=deadline_s)
                except subprocess.TimeoutExpired:
                    pass
            # The session is ours alone (start_new_session): clear any worker left.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=deadline_s)
            except subprocess.TimeoutExpired:
                pass
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""

    def __enter__(self) -> Nginx:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
