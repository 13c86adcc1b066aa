"""nginx answering the bench scenarios itself: the C ceiling, in the same run.

No Python and no WSGI: ``hello`` is a ``return 200`` of the same 13 bytes,
``file1m`` the same 1 MiB file served with ``sendfile on``. What a WSGI
server costs above these is what the Python, the WSGI protocol and the
server's own design add; below them nobody gets on this machine. Only the
scenarios nginx can answer without an application are offered
(``SCENARIO_CONF``), and only on the ``direct`` path.

Run as ``python -m bench.nginx_static --port PORT --app bench.apps:hello``:
this process writes a configuration into a fresh temporary prefix, runs
nginx in the foreground as its child (``daemon off``), and on SIGTERM or
SIGINT stops it (SIGQUIT, then SIGKILL to its process group after a
deadline) and removes the prefix. The bench harness measures the whole tree,
this idle parent included.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import types

from bench import apps
from bench.nginx import PRELUDE, _binary

_CONF = PRELUDE + """\
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
{location}
        }}
    }}
}}
"""

# Scenario app -> the location body that answers it the same way.
SCENARIO_CONF = {
    "bench.apps:hello": (
        '            default_type text/plain;\n'
        f'            return 200 "{apps.HELLO.decode()}";'
    ),
    "bench.apps:file1m": (  # every URI, "/" included, answers with the file
        "            default_type application/octet-stream;\n"
        "            root {file_dir};\n"
        "            try_files /{file_name} =404;"
    ),
}


def render(prefix: str, port: int, app: str, workers: int, file: str) -> str:
    if app not in SCENARIO_CONF:
        raise ValueError(f"nginx-static cannot answer {app} (only: {', '.join(SCENARIO_CONF)})")
    user = "user root;" if os.geteuid() == 0 else ""
    return _CONF.format(
        workers=max(1, workers), prefix=prefix, user=user, port=port,
        location=SCENARIO_CONF[app].format(
            file_dir=os.path.dirname(os.path.abspath(file)), file_name=os.path.basename(file)
        ),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.nginx_static")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--app", required=True)
    p.add_argument("--workers", type=int, default=1)
    ns = p.parse_args(argv)
    file = apps.ensure_file(os.environ.get(apps.FILE_ENV))
    prefix = tempfile.mkdtemp(prefix="fastwsgi-nginx-static-")
    try:
        try:
            conf_text = render(prefix, ns.port, ns.app, ns.workers, file)
        except ValueError as exc:
            print(f"nginx-static: {exc}", file=sys.stderr)
            return 2
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w") as f:
            f.write(conf_text)
        proc = subprocess.Popen(
            [_binary(), "-p", prefix + "/", "-c", conf, "-e", os.path.join(prefix, "error.log"),
             "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

        def stop(signum: int, frame: types.FrameType | None) -> None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGQUIT)  # nginx's graceful stop

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            rc = proc.wait()
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its session is its own
            except (ProcessLookupError, PermissionError):
                pass
        return 0 if rc in (0, -signal.SIGQUIT) else rc
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
