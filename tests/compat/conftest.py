"""The differential tier's one fixture: every server, every proxy, every case.

``compat_observations`` (session scope, so the servers start once) starts
fastwsgi sync and gthread and Gunicorn 27 sync and gthread as real processes
(through ``tests/integration/server.py``'s ``Server``: readiness by request,
cleanup by pid), each serving the compat site (``apps/site.ini``); puts a
real nginx with its default proxy settings in front of each (HTTP/1.0 to the
sync servers, as Gunicorn's docs deploy them; HTTP/1.1 with a keep-alive pool
to the gthread ones, through ``bench/nginx.py``); runs every case of
``cases.py`` on every target; stops everything; and returns
``{case: {target label: observations}}``.

Every server is first started with ``--paste apps/site.ini``; a fastwsgi
that stops on it (no ``--paste`` yet, issue 18 item 4) is started again with
``compat_wsgi:app``, which loads the same ini, and the ``paste-deploy`` case
reports how each server was started.

A missing tool fails the tier with the line that installs it: nothing here
is skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for p in (ROOT, ROOT / "tests" / "integration"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from cases import CASES, static_files  # noqa: E402
from harness import Target, env_paths  # noqa: E402
from server import SRC_DIR, Server  # noqa: E402

from bench import nginx  # noqa: E402

APPS = HERE / "apps"
TIMEOUT = "4"  # --timeout: short, so the stuck-request case is quick

# nginx as a default `proxy_pass` deployment: request and response buffering
# on, nginx's default upstream HTTP/1.0 for sync; /nobuf/ turns request
# buffering off. Bodies up to 64 MiB pass (nginx's default is 1 MiB).
NGINX_CONF = nginx.PRELUDE + """\

    upstream app {{
        server {upstream};
{pool}    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 64m;

        location / {{
            proxy_pass http://app;
            proxy_http_version {http_version};
            proxy_set_header Host $host;
            proxy_set_header Connection "{connection}";
        }}
        location /nobuf/ {{
            proxy_pass http://app/;
            proxy_request_buffering off;
            proxy_http_version {http_version};
            proxy_set_header Host $host;
            proxy_set_header Connection "{connection}";
        }}
    }}
}}
"""


class CompatNginx(nginx.Nginx):
    """bench/nginx.py's throw-away nginx (prefix dir, pid, stop) with NGINX_CONF."""

    def start(self, deadline_s: float = 15.0) -> None:
        self.dir = tempfile.mkdtemp(prefix="fastwsgi-compat-nginx-")
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(
                workers=1, prefix=self.dir, port=self.port,
                # As bench/nginx.py: a root nginx's worker must be able to enter the prefix.
                user="user root;" if os.geteuid() == 0 else "",
                upstream="{}:{}".format(*self.upstream),
                # The pool lets go of an idle connection before the servers'
                # 2 s keep-alive does, so nginx never sends on one being closed.
                pool="        keepalive 32;\n        keepalive_timeout 1s;\n"
                if self.keepalive else "",
                http_version="1.1" if self.keepalive else "1.0",
                connection="" if self.keepalive else "close"))
        with open(os.path.join(self.dir, "stderr.log"), "wb") as log:
            self.proc = subprocess.Popen(
                [nginx._binary(), "-p", self.dir + "/", "-c", conf, "-g", "daemon off;"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        if not nginx.wait_connect(("127.0.0.1", self.port), deadline_s, self.proc):
            err = self.error_log_tail()
            self.stop()
            raise RuntimeError(f"nginx did not start on port {self.port}: {err}")


def server_argv(server: str, paste: bool) -> tuple[list[str], list[str]]:
    """(command, args) for one server under test, given the site by ``--paste`` or not."""
    program, _, worker = server.partition("-")
    args = ["-k", worker, "--preload", "-t", TIMEOUT, "--access-logfile", "-",
            "--log-level", "info"]
    args += ["-w", "2"] if worker == "sync" else ["-w", "1", "--threads", "4"]
    args += ["--paste", str(APPS / "site.ini")] if paste else ["compat_wsgi:app"]
    if program == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "--no-control-socket"], args
    return [sys.executable, "-m", "fastwsgi"], args


def start_server(name: str, tmp: Path, env: dict[str, str], paste: bool) -> Server:
    command, args = server_argv(name, paste)
    suffix = "" if paste else "-app"
    return Server(args, tmp, name=name + suffix, command=command, env=env).start()


def missing_tools() -> list[str]:
    missing = [] if shutil.which("curl") else ["curl (apt-get install curl)"]
    if not nginx.available():
        missing.append("nginx (apt-get install nginx-light)")
    return missing


SERVERS = ("fastwsgi-sync", "fastwsgi-gthread", "gunicorn-sync", "gunicorn-gthread")


def _run_cases(t: Target, phase: int, tmp: Path) -> dict[str, dict[str, str]]:
    work = tmp / f"{t.server}-{t.via}"
    work.mkdir(exist_ok=True)
    return {c.name: c.run(t, work) for c in CASES.values()
            if c.phase == phase and c.runs_on(t)}


@pytest.fixture(scope="session")
def compat_observations(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, dict[str, dict[str, str]]]]:
    missing = missing_tools()
    if missing:
        pytest.fail("the compat tier needs " + ", ".join(missing))
    tmp = tmp_path_factory.mktemp("compat")
    static = tmp / "static"
    static.mkdir()
    static_files(static)
    env = {"PYTHONPATH": env_paths(Path(SRC_DIR), APPS), "COMPAT_STATIC_ROOT": str(static)}
    servers: list[Server] = []
    proxies: list[nginx.Nginx] = []
    targets: list[Target] = []
    try:
        for name in SERVERS:
            servers.append(start_server(name, tmp, env, paste=True))
        for name, srv in zip(SERVERS, list(servers), strict=True):
            how = "--paste site.ini"
            try:
                srv.wait_ready(timeout=120.0, path="/raw/hello")
            except AssertionError:
                # Issue 18 item 4: a fastwsgi without --paste stops ("no APP
                # given"); serve the same ini through compat_wsgi:app, and let
                # the paste-deploy case report it.
                if not name.startswith("fastwsgi-") or srv.proc is None or srv.proc.poll() is None:
                    raise
                srv = start_server(name, tmp, env, paste=False)
                servers.append(srv)
                srv.wait_ready(timeout=120.0, path="/raw/hello")
                how = "APP argument"
            t = Target(name, "direct", srv.port, srv.log_path, how)
            targets.append(t)
            proxy = CompatNginx(("127.0.0.1", srv.port), keepalive=t.worker == "gthread")
            proxy.start(deadline_s=30.0)
            proxies.append(proxy)
            targets.append(Target(t.server, "nginx", proxy.port, t.log_path, t.started_with))

        observations: dict[str, dict[str, dict[str, str]]] = {name: {} for name in CASES}
        for phase in (1, 2):
            batch = [t for t in targets if any(c.phase == phase and c.runs_on(t)
                                               for c in CASES.values())]
            with ThreadPoolExecutor(max_workers=len(batch)) as pool:
                results = pool.map(lambda t, ph=phase: (t, _run_cases(t, ph, tmp)), batch)
                for t, by_case in results:
                    for name, obs in by_case.items():
                        observations[name][t.label] = obs
        yield observations
    finally:
        for proxy in proxies:
            proxy.stop()
        for srv in servers:
            srv.close()
