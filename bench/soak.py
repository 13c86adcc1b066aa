"""Soak: many requests through nginx to 2 workers; RSS and fds must stay flat.

Starts ``python -m fastwsgi -w 2 -k sync|gthread`` (or Gunicorn) on a free
loopback port behind a throw-away nginx (bench/nginx.py; upstream keep-alive
for gthread), then sends ``--requests`` requests from ``--clients`` keep-alive
threads, a mix of small answers (GET /small), streamed ones (GET /stream: 16
chunks of 4 KiB from a generator) and uploads (POST /upload, 64 KiB, echoed
as its length). After ``--warmup`` requests it reads the RSS (VmRSS) and the
open descriptors (/proc/PID/fd) of the master and of every worker, and again
at the end: the growth of each must be at most 1 MiB and 0 descriptors other
than sockets (the sockets summed over the processes: at most nginx's
keep-alive pool, whose idle connections move between gthread workers), and
no request may fail (non-2xx, wrong body, connection error). The workers must
be the same processes at both reads (none recycled or crashed).

    python3 -m bench.soak --requests 1000000 --worker sync       # the issue's soak
    python3 -m bench.soak --requests 1000000 --worker gthread
    python3 -m bench.soak --requests 3000 --warmup 1000           # CI-sized
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.nginx import Nginx, free_port, wait_connect
from bench.servers import server_env

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
APP = '''\
def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/upload":
        n = len(environ["wsgi.input"].read())
        body = str(n).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (b"s" * 4096 for _ in range(16))
    start_response("200 OK", [("Content-Length", "6")])
    return [b"small\\n"]
'''
UPLOAD = b"u" * 65536


# nginx's upstream keep-alive pool (bench/nginx.py): idle connections it
# holds open, which move between the gthread workers from one read to the next.
POOL = 32


def proc_stats(pid: int) -> tuple[int, int, int]:
    """(VmRSS KiB, open fds other than sockets, sockets) of pid."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    socks = other = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:"):
            socks += 1
        else:
            other += 1
    return rss, other, socks


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return sorted(int(c) for c in f.read().split())


class Client:
    def __init__(self, port: int, total: int, clients: int) -> None:
        self.port, self.total, self.clients = port, total, clients
        self.done = 0
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()

    def _take(self) -> int:
        with self.lock:
            if self.done >= self.total:
                return -1
            self.done += 1
            return self.done

    def _err(self, what: str) -> None:
        with self.lock:
            self.errors[what] = self.errors.get(what, 0) + 1

    def _run(self) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while (n := self._take()) >= 0:
            kind = n % 4  # small, stream, upload, small
            try:
                if kind == 2:
                    c.request("POST", "/upload", body=UPLOAD)
                    want = str(len(UPLOAD)).encode()
                elif kind == 1:
                    c.request("GET", "/stream")
                    want = b"s" * 65536
                else:
                    c.request("GET", "/small")
                    want = b"small\n"
                r = c.getresponse()
                body = r.read()
                if r.status != 200 or body != want:
                    self._err(f"{r.status} {len(body)}B")
            except (OSError, http.client.HTTPException) as exc:
                self._err(type(exc).__name__)
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.close()

    def run(self) -> None:
        ts = [threading.Thread(target=self._run, daemon=True) for _ in range(self.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()


def soak(requests: int, worker: str = "sync", server: str = "fastwsgi", warmup: int = 20000,
         clients: int = 8) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="fastwsgi-soak-"))
    (tmp / "soakapp.py").write_text(APP)
    port = free_port()
    argv = [PY, "-m", server, "-w", "2", "-k", worker, "--keep-alive", "75",
            "-b", f"127.0.0.1:{port}", "--chdir", str(tmp), "soakapp:app"]
    if worker == "gthread":
        argv[5:5] = ["--threads", "4"]
    env = server_env()  # the fastwsgi this interpreter imports, else the checkout's
    env["PYTHONPATH"] += os.pathsep + str(tmp)
    with open(tmp / "server.log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    nginx = Nginx(("127.0.0.1", port), keepalive=worker == "gthread", workers=1)
    try:
        if not wait_connect(("127.0.0.1", port), 60, proc):
            raise RuntimeError((tmp / "server.log").read_text()[-2000:])
        nginx.start()
        started = time.monotonic()
        Client(nginx.port, min(warmup, requests), clients).run()
        pids = [proc.pid, *children(proc.pid)]
        before = {p: proc_stats(p) for p in pids}
        cl = Client(nginx.port, max(requests - warmup, 0), clients)
        cl.run()
        took = time.monotonic() - started
        after_pids = [proc.pid, *children(proc.pid)]
        after = {p: proc_stats(p) for p in after_pids if p in before}
        return {
            "server": server, "worker": worker, "requests": requests, "seconds": round(took, 1),
            "errors": cl.errors, "same_workers": after_pids == pids,
            "rss_growth_kib": {str(p): after[p][0] - before[p][0] for p in after},
            "fd_growth": {str(p): after[p][1] - before[p][1] for p in after},
            # Summed over the processes: a kept-alive connection may change worker.
            "socket_growth": sum(after[p][2] - before[p][2] for p in after),
        }
    finally:
        nginx.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def flat(res: dict[str, object]) -> bool:
    rss = res["rss_growth_kib"]
    fds = res["fd_growth"]
    assert isinstance(rss, dict) and isinstance(fds, dict)
    socks = res["socket_growth"]
    assert isinstance(socks, int)
    return (not res["errors"] and bool(res["same_workers"])
            and max(rss.values()) <= 1024 and max(fds.values()) <= 0 and socks <= POOL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--warmup", type=int, default=20_000)
    ap.add_argument("--worker", default="sync", choices=["sync", "gthread"])
    ap.add_argument("--server", default="fastwsgi", choices=["fastwsgi", "gunicorn"])
    ap.add_argument("--clients", type=int, default=8)
    a = ap.parse_args()
    res = soak(a.requests, a.worker, a.server, a.warmup, a.clients)
    res["flat"] = flat(res)
    print(json.dumps(res))
    return 0 if res["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
