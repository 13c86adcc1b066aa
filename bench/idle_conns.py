"""Idle keep-alive connections against one gthread worker: RSS per connection.

Starts ``python -m fastwsgi -w 1 -k gthread`` (or Gunicorn, ``--server
gunicorn``) on a free loopback port, opens ``--conns`` keep-alive
connections, each of which sends one request and reads its answer, then
stays open and idle; the worker's RSS (``VmRSS`` of /proc) is read after a
warm-up of 50 such connections and again with all of them idle: the
difference over the count is the memory an idle connection costs. With
``--load`` a paced load on fresh keep-alive connections runs before and while
the idle ones are held, and its p99 is reported both ways. At the end every
idle connection must still answer one more request.

RLIMIT_NOFILE is raised to its hard limit (the server inherits it).

    python3 -m bench.idle_conns --conns 10000 --load 20      # the issue's run
    python3 -m bench.idle_conns --conns 10000 --server gunicorn
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.servers import server_env

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
APP = '''\
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\\n"]
'''
REQ = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(c) for c in f.read().split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def read_answer(s: socket.socket) -> bytes:
    """One 'ok' answer (the app's fixed 3-byte body) off a blocking socket."""
    data = b""
    while not (b"\r\n\r\n" in data and data.endswith(b"ok\n")):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def open_idle(port: int, n: int, into: list[socket.socket]) -> None:
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(REQ)
        read_answer(s)
        into.append(s)


class Paced:
    """``rate`` GET/s on ``threads`` keep-alive clients; latencies kept."""

    def __init__(self, port: int, rate: float, threads: int = 2) -> None:
        self.port, self.rate, self.threads = port, rate, threads
        self.lat: list[float] = []
        self.errors = 0
        self.stop = threading.Event()
        self.ts = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        due = time.monotonic()
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                c.request("GET", "/")
                c.getresponse().read()
                self.lat.append(time.monotonic() - t)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            due += self.threads / self.rate
            self.stop.wait(max(0.0, due - time.monotonic()))
        c.close()

    def run_for(self, seconds: float) -> float:
        self.lat.clear()
        self.stop.clear()
        self.ts = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for t in self.ts:
            t.start()
        self.stop.wait(seconds)
        self.stop.set()
        for t in self.ts:
            t.join(60)
        lat = sorted(self.lat)
        return lat[int(0.99 * (len(lat) - 1))] * 1000 if lat else 0.0


def measure(conns: int, server: str = "fastwsgi", load: float = 0.0,
            load_s: float = 5.0, threads: int = 4) -> dict[str, object]:
    limit = raise_nofile()
    if conns + 200 > limit:
        raise SystemExit(f"RLIMIT_NOFILE {limit} is too low for {conns} connections")
    tmp = Path(tempfile.mkdtemp(prefix="fastwsgi-idle-"))
    (tmp / "idleapp.py").write_text(APP)
    port = free_port()
    mod = "gunicorn" if server == "gunicorn" else "fastwsgi"
    argv = [PY, "-m", mod, "-w", "1", "-k", "gthread", "--threads", str(threads),
            "--worker-connections", str(conns + 100), "--keep-alive", "600",
            "-b", f"127.0.0.1:{port}", "--chdir", str(tmp), "idleapp:app"]
    env = server_env()  # the fastwsgi this interpreter imports, else the checkout's
    env["PYTHONPATH"] += os.pathsep + str(tmp)
    log = open(tmp / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    idle: list[socket.socket] = []
    try:
        end = time.monotonic() + 60
        while True:
            try:
                open_idle(port, 1, idle)
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise RuntimeError((tmp / "server.log").read_text()[-2000:]) from None
                time.sleep(0.1)
        worker = children(proc.pid)[0]
        open_idle(port, 49, idle)  # warm-up: the pools and the allocator
        pc = Paced(port, load) if load else None
        p99_before = pc.run_for(load_s) if pc else 0.0
        before = rss_kib(worker)
        open_idle(port, conns - len(idle), idle)
        after = rss_kib(worker)
        p99_during = pc.run_for(load_s) if pc else 0.0
        bad = 0
        for s in idle:  # every idle connection still answers
            try:
                s.sendall(REQ)
                read_answer(s)
            except OSError:
                bad += 1
        return {
            "server": server, "conns": conns, "rss_before_kib": before, "rss_after_kib": after,
            "per_idle_kib": round((after - before) / max(conns - 50, 1), 2),
            "p99_before_ms": round(p99_before, 2), "p99_during_ms": round(p99_during, 2),
            "load_errors": pc.errors if pc else 0, "idle_not_answering": bad,
        }
    finally:
        for s in idle:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=10_000)
    ap.add_argument("--server", default="fastwsgi", choices=["fastwsgi", "gunicorn"])
    ap.add_argument("--load", type=float, default=0.0, help="GET/s while idle ones are held")
    ap.add_argument("--load-seconds", type=float, default=5.0)
    a = ap.parse_args()
    print(json.dumps(measure(a.conns, a.server, a.load, a.load_seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
