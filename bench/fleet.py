"""A fleet behind nginx: 3 hosts in network namespaces, deploys and failures under load.

Topology (all of it created here and removed on exit, also after a failure
or Ctrl-C; names carry our pid, so runs from other checkouts can go on at the
same time)::

    load generator (threads, http.client) --> nginx 127.0.0.1:<free port>
        nginx (root namespace) --> bridge fwf<pid>b 10.231.N.1/24
            veth --> netns fwf<pid>h0  10.231.N.2:8000  fastwsgi or Gunicorn -w 2
            veth --> netns fwf<pid>h1  10.231.N.3:8000
            veth --> netns fwf<pid>h2  10.231.N.4:8000

The /24 is one that no interface of this machine has (picked under a lock
file); no route leaves it. Each host serves a Flask app (``fleetapp.py`` in
its own directory) that answers with its host name and a version string, is
started with ``ip netns exec`` and stopped by pid; at the end everything left
in the namespace is killed by pid (``ip netns pids``) before the namespace is
deleted. Leftovers of an earlier run that was SIGKILLed (names with our prefix
whose pid is gone) are removed first.

nginx balances round-robin with upstream keep-alive, retries idempotent
requests on the next host (``proxy_next_upstream error timeout http_502
http_503 http_504``, never a POST that was sent) and takes a failing host out
passively (``max_fails``/``fail_timeout``). The load generator sends a
steady, bounded mix of GET and POST through it and counts what its clients
see: non-2xx answers and connection errors. A keep-alive connection to nginx
that nginx itself closed (its graceful reload closes idle client
connections) is retried once on a fresh one and counted apart
(``stale_retries``), as every browser does; that is nginx's own reload, not
the fleet.

Scenarios (each while the load runs; see bench/README.md for the targets):

* ``a``  rolling restart, each host drained in nginx first (marked ``down``,
  reload), TERMed, started again, put back;
* ``b``  rolling code deploy: the app file gets version 2, HUP, per host;
* ``c``  USR2 re-exec, then TERM of the old master, per host;
* ``d``  one host crashes (SIGKILL of master and workers), restarted 1 s later;
* ``e``  one host's app hangs until ``--timeout`` fires;
* ``f``  every worker recycles fast (``--max-requests 50``);
* ``g``  Kubernetes-style: the endpoint goes away while preStop sleeps, then
  TERM (``graceful_timeout``), restart;
* ``u``  rolling restart with TERM the balancer was not told about (the hard
  case; its losses are classified from nginx's error log);
* ``s``  the same restart, the listening socket held across it as systemd
  socket activation does (here the harness holds it, ``LISTEN_FDS``);
* ``r``  the same restart with ``--reuse-port`` and
  ``net.ipv4.tcp_migrate_req=1``: the new instance starts first, then TERM
  of the old one (queued connections move to the new listener);
* ``t``  the ``max_fails`` trap: hosts restarted undrained faster than
  ``fail_timeout`` (counts nginx's "no live upstreams").

Run (root, iproute2, nginx)::

    python3 -m bench.fleet                         # all scenarios, fastwsgi + gunicorn
    python3 -m bench.fleet --scenarios u,s,r --servers fastwsgi --workers gthread
    python3 -m bench.fleet --quick --json out.json  # the CI-sized run
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.nginx import PRELUDE, _binary, free_port, wait_connect

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
PREFIX = "fwf"  # every link and namespace we create starts with this, then our pid
PORT = 8000  # inside each namespace; no one else binds there
LOCK = "/tmp/fastwsgi-fleet.lock"
CLONE_NEWNET = 0x40000000
POLL = 0.05
_FLEETS = itertools.count()

APP = '''\
import os
import time

from flask import Flask, request

HOST = {host!r}
VERSION = {version!r}
HERE = os.path.dirname(os.path.abspath(__file__))
app = Flask(__name__)
# Imported in the worker: it is about to serve (what the harness waits on).
open(os.path.join(HERE, f"ready-{{os.getpid()}}"), "w").close()


def _hang():
    # Scenario e: the app hangs while this file exists (until --timeout).
    if os.path.exists(os.path.join(HERE, "hang")):
        time.sleep(3600)


@app.get("/")
def index():
    _hang()
    return f"{{HOST}} {{VERSION}}\\n"


@app.post("/echo")
def echo():
    data = request.get_data()
    _hang()
    return f"{{HOST}} {{VERSION}} {{len(data)}}\\n"
'''


# --- processes and namespaces --------------------------------------------------------------


def run(*argv: str, check: bool = True) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip() or out.returncode}")
    return out.stdout


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(POLL)


def kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def netns_pids(ns: str) -> list[int]:
    return [int(p) for p in run("ip", "netns", "pids", ns, check=False).split()]


def _owner(name: str) -> int | None:
    m = re.match(PREFIX + r"(\d+)[a-z]", name)
    return int(m.group(1)) if m else None


def remove_leftovers() -> list[str]:
    """Delete namespaces and links of earlier runs whose process is gone."""
    removed = []
    for line in run("ip", "netns", "list", check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        pid = _owner(name)
        if pid is not None and not pid_alive(pid):
            for p in netns_pids(name):
                kill_pid(p)
            run("ip", "netns", "del", name, check=False)
            removed.append(name)
    for line in run("ip", "-o", "link", "show", check=False).splitlines():
        m = re.match(r"\d+: ([^:@]+)", line)
        name = m.group(1) if m else ""
        pid = _owner(name)
        if pid is not None and not pid_alive(pid):
            run("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def listen_in_netns(ns: str, addr: str, port: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket that lives in namespace ``ns`` (as systemd's
    socket unit would create it on that host), held by this process."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{ns}") as target:
        _setns(target.fileno())
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            _setns(home.fileno())
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((addr, port))
    s.listen(2048)
    return s


class Net:
    """A bridge in the root namespace and ``hosts`` namespaces, each joined by a veth."""

    def __init__(self, hosts: int = 3) -> None:
        # fwf<pid><letter>: one letter per fleet of this process (<= 15 characters).
        self.tag = f"{PREFIX}{os.getpid()}{chr(ord('a') + next(_FLEETS) % 26)}"
        self.bridge = self.tag + "b"
        self.ns = [f"{self.tag}h{i}" for i in range(hosts)]
        self.subnet = ""

    def addr(self, i: int) -> str:
        return f"{self.subnet}.{i + 2}"

    def _pick_subnet(self) -> str:
        used = run("ip", "-4", "-o", "addr", "show") + run("ip", "-4", "route", "show")
        for k in range(250):
            cand = f"10.231.{(os.getpid() + k) % 250 + 1}"
            if cand + "." not in used:
                return cand
        raise RuntimeError("no free 10.231.x.0/24 subnet")

    def up(self) -> None:
        remove_leftovers()
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.subnet = self._pick_subnet()
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
        for i, ns in enumerate(self.ns):
            veth = f"{self.tag}v{i}"
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            run("ip", "link", "set", veth, "master", self.bridge, "up")
            run("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            run("ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up")
            run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in self.ns:
            for _ in range(3):
                pids = netns_pids(ns)
                if not pids:
                    break
                for p in pids:
                    kill_pid(p)
                with contextlib.suppress(TimeoutError):
                    wait_until(lambda pids=pids: not any(pid_alive(p) for p in pids), 5, "kill")
            run("ip", "netns", "del", ns, check=False)
        run("ip", "link", "del", self.bridge, check=False)
        for i in range(len(self.ns)):
            run("ip", "link", "del", f"{self.tag}v{i}", check=False)


def established(pid: int, port: int = PORT) -> int:
    """TCP connections ESTABLISHED on local ``port`` in the namespace of ``pid``."""
    n = 0
    try:
        with open(f"/proc/{pid}/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "01" and int(parts[1].split(":")[1], 16) == port:
                    n += 1
    except OSError:
        return 0
    return n


def children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.update(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


# --- hosts --------------------------------------------------------------------------------


@dataclass
class HostOpts:
    server: str = "fastwsgi"  # or "gunicorn"
    worker: str = "sync"  # or "gthread"
    workers: int = 2
    threads: int = 4
    timeout: float = 30.0
    graceful_timeout: float = 10.0
    keepalive: float = 75.0  # longer than nginx's upstream keepalive_timeout (60 s)
    extra: tuple[str, ...] = ()


class Host:
    def __init__(self, net: Net, i: int, root: Path, opts: HostOpts) -> None:
        self.net, self.i, self.opts = net, i, opts
        self.ns = net.ns[i]
        self.addr = net.addr(i)
        self.name = f"h{i}"
        self.dir = root / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.generation = 0
        self.procs: list[subprocess.Popen[bytes]] = []
        self.held: socket.socket | None = None  # systemd-style socket, scenario s
        self.write_app("v1")

    def write_app(self, version: str) -> None:
        tmp = self.dir / "fleetapp.py.tmp"
        tmp.write_text(APP.format(host=self.name, version=version))
        os.replace(tmp, self.dir / "fleetapp.py")

    @property
    def pidfile(self) -> Path:
        return self.dir / f"master{self.generation}.pid"

    def argv(self, bind: bool = True) -> list[str]:
        o = self.opts
        if o.server == "gunicorn":
            from bench.servers import gunicorn_extra

            # Its console script, not "python -m gunicorn": a USR2 re-exec of
            # the latter runs gunicorn/__main__.py with gunicorn/ first on
            # sys.path, where gunicorn/http hides the standard library's http
            # (the new master's workers cannot boot).
            script = Path(PY).parent / "gunicorn"
            argv = [str(script)] if script.exists() else [PY, "-m", "gunicorn"]
            argv += gunicorn_extra()
        else:
            argv = [PY, "-m", "fastwsgi"]
        argv += ["-w", str(o.workers), "-k", o.worker, "--pid", str(self.pidfile),
                 "--chdir", str(self.dir), "--timeout", f"{o.timeout:g}",
                 "--graceful-timeout", f"{o.graceful_timeout:g}", "--keep-alive", f"{o.keepalive:g}"]
        if o.worker == "gthread":
            argv += ["--threads", str(o.threads)]
        if bind:
            argv += ["-b", f"{self.addr}:{PORT}"]
        return argv + list(o.extra) + ["fleetapp:app"]

    def start(self, extra: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """Start a new master (generation) in the namespace; returns its Popen."""
        self.generation += 1
        from bench.servers import server_env

        env = server_env()  # the fastwsgi this interpreter imports, else the checkout's
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the deploy rewrites fleetapp.py in place
        argv = self.argv(bind=self.held is None)
        argv[-1:-1] = list(extra)
        pass_fds: tuple[int, ...] = ()
        if self.held is not None:
            fd = self.held.fileno()
            pass_fds = (fd,)
            # What systemd does: the socket on fd 3, LISTEN_FDS=1, LISTEN_PID=the server.
            # (In Python: dash's "exec 3<&N" takes one-digit fds only.)
            argv = [PY, "-c", f"import os, sys; fd = {fd}\n"
                    "if fd != 3: os.dup2(fd, 3); os.close(fd)\n"
                    "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()))\n"
                    "os.execv(sys.argv[1], sys.argv[1:])", *argv]
        log = open(self.dir / f"server{self.generation}.log", "wb")  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *argv], cwd=self.dir, env=env, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                pass_fds=pass_fds,
            )
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def workers_ready(self, master: int, n: int) -> bool:
        """``n`` workers of ``master`` have imported the app."""
        kids = children(master)
        return len(kids) >= n and all((self.dir / f"ready-{k}").exists() for k in kids)

    def master(self) -> int:
        """The current master's pid, from its pid file."""
        return int(self.pidfile.read_text().strip())

    def get(self, path: str = "/") -> tuple[int, str]:
        c = http.client.HTTPConnection(self.addr, PORT, timeout=5)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def answers(self, want: str = "") -> bool:
        try:
            status, body = self.get()
        except (OSError, http.client.HTTPException):
            return False
        return status == 200 and want in body

    def wait_ready(self, timeout: float = 60.0, want: str = "") -> None:
        proc = self.procs[-1]

        def ready() -> bool:
            if proc.poll() is not None and self.held is None and not self.pidfile.exists():
                raise RuntimeError(f"{self.name} exited: {self.log_tail()}")
            return self.pidfile.exists() and self.answers(want)

        wait_until(ready, timeout, f"{self.name} to answer")

    def log_tail(self, n: int = 5) -> str:
        try:
            lines = (self.dir / f"server{self.generation}.log").read_text(
                errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def signal(self, sig: int) -> int:
        pid = self.master()
        os.kill(pid, sig)
        return pid

    def stop(self, timeout: float = 60.0) -> None:
        """TERM the current master and wait for it and its workers to exit."""
        pid = self.master()
        kids = children(pid)
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid) and not any(pid_alive(k) for k in kids),
                   timeout, f"{self.name} to stop")
        self.reap()

    def crash(self) -> int:
        """SIGKILL every process of this host (master and workers at once)."""
        pids = netns_pids(self.ns)
        for p in pids:
            kill_pid(p)
        wait_until(lambda: not any(pid_alive(p) for p in pids), 10, "killed processes")
        self.reap()
        with contextlib.suppress(OSError):
            self.pidfile.unlink()
        return len(pids)

    def reap(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(0.01)

    def close(self) -> None:
        for p in netns_pids(self.ns):
            kill_pid(p, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not netns_pids(self.ns), 10, "host processes")
        for p in netns_pids(self.ns):
            kill_pid(p)
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)
        if self.held is not None:
            self.held.close()
            self.held = None


# --- nginx --------------------------------------------------------------------------------

NGINX_CONF = PRELUDE + """\
    log_format fleet '$request_method $status $upstream_addr $upstream_status';

    upstream fleet {{
{servers}
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log {prefix}/access.log fleet;
        keepalive_requests 1000000;
        client_max_body_size 1m;

        location / {{
            proxy_pass http://fleet;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_connect_timeout 2s;
            proxy_read_timeout {read_timeout};
        }}
    }}
}}
"""


@dataclass
class Balancer:
    max_fails: int = 3
    fail_timeout: float = 5.0
    backup: bool = True  # the same hosts again as backup: never "no live upstreams"
    read_timeout: float = 60.0


class Nginx:
    def __init__(self, addrs: list[str], cfg: Balancer) -> None:
        self.addrs, self.cfg = addrs, cfg
        self.down: set[int] = set()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fastwsgi-fleet-nginx-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def render(self) -> str:
        c = self.cfg
        lines = []
        for i, a in enumerate(self.addrs):
            down = " down" if i in self.down else ""
            lines.append(f"        server {a}:{PORT} max_fails={c.max_fails} "
                         f"fail_timeout={c.fail_timeout:g}s{down};")
        if c.backup:
            for i, a in enumerate(self.addrs):
                if i not in self.down:
                    lines.append(f"        server {a}:{PORT} backup;")
        user = "user root;" if os.geteuid() == 0 else ""
        return NGINX_CONF.format(workers=2, prefix=self.dir, user=user, port=self.port,
                                 servers="\n".join(lines), read_timeout=f"{int(c.read_timeout * 1000)}ms")

    def write(self) -> None:
        (self.dir / "nginx.conf").write_text(self.render())

    def start(self) -> None:
        self.write()
        log = open(self.dir / "stderr.log", "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [_binary(), "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf"),
                 "-e", str(self.dir / "error.log"), "-g", "daemon off;"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        finally:
            log.close()
        if not wait_connect(("127.0.0.1", self.port), 15, self.proc):
            raise RuntimeError(f"nginx did not start: {self.error_log()[-500:]}")

    def set_down(self, i: int, down: bool) -> None:
        """Mark host i down (or up) and reload; returns once the new workers run."""
        (self.down.add if down else self.down.discard)(i)
        self.write()
        assert self.proc is not None
        old = children(self.proc.pid)
        self.proc.send_signal(signal.SIGHUP)
        # The new configuration is live once a worker it started is there.
        pid = self.proc.pid
        wait_until(lambda: bool(children(pid) - old), 20, "nginx reload")
        # ... and the old workers, which may still route a request of a
        # keep-alive client by the old configuration, have finished.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not children(pid) & old, 20, "old nginx workers")

    def error_log(self) -> str:
        try:
            return (self.dir / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


# Why nginx gave up on a request, from its error log: each line names the
# upstream error and the request (method) it happened to.
CAUSES = [
    ("reset after send", r"recv\(\) failed \(104: Connection reset by peer\)"),
    ("closed before answer", r"upstream prematurely closed connection"),
    ("send failed", r"(writev|send|sendfile)\(\) failed"),
    ("refused", r"connect\(\) failed \(111"),
    ("timed out", r"timed out"),
    ("no live upstreams", r"no live upstreams"),
]


def classify(error_log: str) -> dict[str, int]:
    out: Counter[str] = Counter()
    for line in error_log.splitlines():
        if "[error]" not in line and "[warn]" not in line:
            continue
        m = re.search(r'request: "(\w+)', line)
        method = m.group(1) if m else "?"
        for name, pat in CAUSES:
            if re.search(pat, line):
                out[f"{method} {name}"] += 1
                break
    return dict(out)


# --- load ---------------------------------------------------------------------------------


@dataclass
class Rec:
    t: float
    method: str
    status: int  # 0: connection error
    latency: float
    body: str
    err: str = ""


class Load:
    """``threads`` keep-alive clients through nginx, paced to ``rate`` req/s in
    all, every other request a POST of ``body`` bytes; bounded by ``limit``."""

    def __init__(self, port: int, threads: int = 8, rate: float = 200.0,
                 limit: int = 1_000_000, body: int = 1024) -> None:
        self.port, self.threads, self.rate, self.limit = port, threads, rate, limit
        self.payload = b"x" * body
        self.recs: list[Rec] = []
        self.stale_retries = 0
        self.stop_evt = threading.Event()
        self.lock = threading.Lock()
        self.workers: list[threading.Thread] = []
        self.t0 = 0.0

    def __enter__(self) -> Load:
        self.t0 = time.monotonic()
        for k in range(self.threads):
            t = threading.Thread(target=self._client, args=(k,), daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_evt.set()
        for t in self.workers:
            t.join(120)

    def _once(self, conn: http.client.HTTPConnection, post: bool) -> tuple[int, str, bool]:
        if post:
            conn.request("POST", "/echo", body=self.payload,
                         headers={"Content-Type": "application/octet-stream"})
        else:
            conn.request("GET", "/")
        r = conn.getresponse()
        body = r.read().decode(errors="replace")
        return r.status, body, r.will_close

    def _client(self, k: int) -> None:
        interval = self.threads / self.rate
        due = time.monotonic() + interval * k / self.threads
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not self.stop_evt.is_set():
            with self.lock:
                if len(self.recs) >= self.limit:
                    return
            post = (n + k) % 2 == 1
            n += 1
            t = time.monotonic()
            status, body, err = 0, "", ""
            for attempt in (0, 1):
                fresh = conn is None
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                try:
                    status, body, close = self._once(conn, post)
                    if close:
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = None
                    err = type(exc).__name__
                    # nginx closed an idle keep-alive connection under us (its
                    # reload does): what any client does, once, on a new one.
                    stale = isinstance(exc, (http.client.RemoteDisconnected,
                                             BrokenPipeError, ConnectionResetError))
                    if attempt == 0 and not fresh and stale:
                        with self.lock:
                            self.stale_retries += 1
                        continue
                    break
            rec = Rec(t - self.t0, "POST" if post else "GET", status, time.monotonic() - t,
                      body.strip(), err if status == 0 else "")
            with self.lock:
                self.recs.append(rec)
            due += interval
            delay = due - time.monotonic()
            if delay > 0:
                self.stop_evt.wait(delay)
            else:
                due = time.monotonic()  # behind (the server was slow): no burst to catch up
        if conn is not None:
            conn.close()

    def now(self) -> float:
        return time.monotonic() - self.t0


def p99(xs: list[float]) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(0.99 * len(xs)))]


@dataclass
class Result:
    scenario: str
    server: str
    worker: str
    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # "POST 502": n
    causes: dict[str, int] = field(default_factory=dict)  # from nginx's error log
    rps_before: float = 0.0
    rps_during: float = 0.0
    p99_before_ms: float = 0.0
    p99_during_ms: float = 0.0
    stale_retries: int = 0
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def total_failed(self) -> int:
        return sum(self.failed.values())


def summarize(res: Result, load: Load, t_event: float, t_end: float) -> None:
    before = [r for r in load.recs if r.t < t_event]
    during = [r for r in load.recs if t_event <= r.t < t_end]
    for m in ("GET", "POST"):
        res.sent[m] = sum(1 for r in load.recs if r.method == m)
        res.failed[m] = sum(1 for r in load.recs if r.method == m and not 200 <= r.status < 300)
    res.failures = dict(Counter(
        f"{r.method} {r.status or r.err}" for r in load.recs if not 200 <= r.status < 300))
    res.rps_before = round(len(before) / max(t_event, 1e-6), 1)
    res.rps_during = round(len(during) / max(t_end - t_event, 1e-6), 1)
    res.p99_before_ms = round(p99([r.latency for r in before]) * 1000, 1)
    res.p99_during_ms = round(p99([r.latency for r in during]) * 1000, 1)
    res.stale_retries = load.stale_retries


# --- the fleet and its scenarios ----------------------------------------------------------


@dataclass
class Timing:
    settle: float = 2.0  # load before and after each event
    prestop: float = 5.0  # scenario g: the preStop sleep (docs/deploy.md)
    propagate: float = 2.0  # scenario g: endpoint removal reaching the balancer
    recycle_run: float = 10.0  # scenario f: how long the max-requests load runs
    hang_timeout: float = 5.0  # scenario e: --timeout
    rate: float = 200.0
    threads: int = 8


class Fleet:
    def __init__(self, opts: HostOpts, lb: Balancer | None = None, hosts: int = 3,
                 sysctls: dict[str, str] | None = None) -> None:
        self.opts = opts
        self.net = Net(hosts)
        self.root = Path(tempfile.mkdtemp(prefix="fastwsgi-fleet-"))
        self.hosts: list[Host] = []
        self.nginx: Nginx | None = None
        self.lb = lb or Balancer()
        self.sysctls = sysctls or {}
        self._closed = False

    def __enter__(self) -> Fleet:
        atexit.register(self.close)
        try:
            self.net.up()
            for ns in self.net.ns:
                for k, v in self.sysctls.items():
                    run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{k}={v}")
            self.hosts = [Host(self.net, i, self.root, self.opts)
                          for i in range(len(self.net.ns))]
            for h in self.hosts:
                h.start()
            for h in self.hosts:
                h.wait_ready()
            self.nginx = Nginx([h.addr for h in self.hosts], self.lb)
            self.nginx.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.nginx is not None:
                self.nginx.stop()
            for h in self.hosts:
                h.close()
        finally:
            self.net.down()
            if not os.environ.get("FLEET_KEEP"):
                shutil.rmtree(self.root, ignore_errors=True)

    def load(self, t: Timing) -> Load:
        assert self.nginx is not None
        return Load(self.nginx.port, threads=t.threads, rate=t.rate)

    @contextlib.contextmanager
    def drained(self, i: int) -> Iterator[None]:
        """Host i out of the balancer (down + reload) until its connections are gone."""
        assert self.nginx is not None
        h = self.hosts[i]
        self.nginx.set_down(i, True)
        pid = h.master()
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: established(pid) == 0, 30, "drained connections")
        try:
            yield
        finally:
            self.nginx.set_down(i, False)

    def heal(self) -> None:
        """Any host not answering (a scenario failed halfway) started afresh."""
        for h in self.hosts:
            if h.pidfile.exists() and h.answers():
                continue
            h.crash()
            if h.held is not None:
                h.held.close()
                h.held = None
            h.start()
            h.wait_ready()

    def restart(self, i: int) -> None:
        h = self.hosts[i]
        h.stop(self.opts.graceful_timeout + 30)
        h.start()
        h.wait_ready()


def scenario(fleet: Fleet, name: str, t: Timing) -> Result:
    o = fleet.opts
    res = Result(name, o.server, o.worker)
    nginx = fleet.nginx
    assert nginx is not None
    hosts = fleet.hosts
    if name == "f":
        # Every worker recycles after 50 (+0..10) requests, started that way.
        for i in range(len(hosts)):
            h = hosts[i]
            h.stop()
            h.start(("--max-requests", "50", "--max-requests-jitter", "10"))
            h.wait_ready()
    if name == "r":
        for ns in fleet.net.ns:
            run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.tcp_migrate_req=1")
        for h in hosts:
            h.stop()
            h.start(("--reuse-port",))
            h.wait_ready()
    if name == "s":
        for h in hosts:
            h.stop()
            h.held = listen_in_netns(h.ns, h.addr, PORT)
            h.start()
            h.wait_ready()
    log_at = len(nginx.error_log())  # the causes of this scenario's event only
    with fleet.load(t) as load:
        wait_until(lambda: load.now() >= t.settle, t.settle + 5, "warm-up")
        t_event = load.now()
        if name == "a":
            for i in range(len(hosts)):
                with fleet.drained(i):
                    fleet.restart(i)
        elif name in ("u", "s"):
            for i in range(len(hosts)):
                fleet.restart(i)
        elif name == "t":
            # Undrained restarts back to back, faster than fail_timeout, each
            # host down for half a second (a supervisor's restart delay), so
            # each fails a few requests.
            for h in hosts:
                h.stop()
                load.stop_evt.wait(0.5)
                h.start()
                h.wait_ready()
        elif name == "r":
            for h in hosts:
                old = h.master()
                kids = children(old)
                h.start(("--reuse-port",))
                wait_until(lambda h=h: h.pidfile.exists() and h.pidfile.read_text().strip() != ""
                           and h.workers_ready(h.master(), o.workers), 60, "the new instance")
                os.kill(old, signal.SIGTERM)
                wait_until(lambda old=old, kids=kids: not pid_alive(old)
                           and not any(pid_alive(k) for k in kids), 60, "old instance")
                h.reap()
        elif name == "b":
            for h in hosts:
                h.write_app("v2")
                h.signal(signal.SIGHUP)
                # Switched once the old workers are gone: every answer says v2.
                wait_until(lambda h=h: all(h.answers("v2") for _ in range(6)), 60,
                           f"{h.name} to serve v2")
            res.notes["switched_at"] = round(load.now(), 2)
        elif name == "c":
            for h in hosts:
                old = h.master()
                kids = children(old)
                # While both run, the new master's pid file is PIDFILE.2 (Gunicorn's names).
                two = Path(str(h.pidfile) + ".2")
                os.kill(old, signal.SIGUSR2)
                wait_until(lambda two=two: two.exists() and two.read_text().strip() != "",
                           60, "the new master's pid file")
                new = int(two.read_text())
                wait_until(lambda h=h, new=new: h.workers_ready(new, o.workers), 60,
                           "new workers")
                os.kill(old, signal.SIGTERM)
                wait_until(lambda old=old, kids=kids: not pid_alive(old)
                           and not any(pid_alive(k) for k in kids), 60, "old master")
                h.reap()
                wait_until(h.answers, 60, "the new master serving")
        elif name == "d":
            killed = hosts[0].crash()
            res.notes["killed"] = killed
            load.stop_evt.wait(1.0)  # a supervisor restarts it a second later
            hosts[0].start()
            hosts[0].wait_ready()
        elif name == "e":
            h = hosts[0]
            pid = h.master()
            before = children(pid)
            (h.dir / "hang").touch()
            # The app hangs until --timeout fires: the master starts a
            # replacement. (Gunicorn's gthread worker never times out a hung
            # thread: its main loop keeps the heartbeat going.)
            try:
                wait_until(lambda: bool(children(pid) - before), o.timeout * 3 + 10,
                           "a timed-out worker replaced")
                res.notes["timeout_fired"] = True
            except TimeoutError:
                res.notes["timeout_fired"] = False
            (h.dir / "hang").unlink()
            h.wait_ready()
        elif name == "f":
            load.stop_evt.wait(t.recycle_run)
            res.notes["workers_started"] = sum(
                (h.dir / f"server{h.generation}.log").read_text(errors="replace").count(
                    "Booting worker") for h in hosts)
        elif name == "g":
            for i in range(len(hosts)):
                # The endpoint leaves the balancer `propagate` s into the preStop sleep.
                remover = threading.Timer(t.propagate, nginx.set_down, (i, True))
                remover.start()
                load.stop_evt.wait(t.prestop)
                remover.join()
                fleet.restart(i)
                nginx.set_down(i, False)
        t_end = load.now()
        load.stop_evt.wait(t.settle)
    summarize(res, load, t_event, t_end)
    if name == "b":
        sw = float(res.notes["switched_at"])  # type: ignore[arg-type]
        late = [r.body for r in load.recs if r.t > sw + 0.5 and r.status == 200]
        res.notes["late_v1"] = sum(1 for b in late if " v1" in b)
        res.notes["late_v2"] = sum(1 for b in late if " v2" in b)
    res.causes = classify(nginx.error_log()[log_at:])
    if name == "f":
        for h in hosts:  # back to the plain hosts for what follows
            h.stop()
            h.start()
            h.wait_ready()
    if name in ("r", "s"):
        for h in hosts:
            h.stop()
            if h.held is not None:
                h.held.close()
                h.held = None
            h.start()
            h.wait_ready()
    return res


ALL = "a,b,c,d,e,f,g,u,s,r,t"


def run_pass(server: str, worker: str, names: list[str], t: Timing, quick: bool,
             log: Callable[[str], None] = print) -> list[Result]:
    """One fleet (one server, one worker class) through the named scenarios."""
    results = []
    groups: list[tuple[Balancer, HostOpts, list[str]]] = []
    graceful = 5.0 if quick else 20.0  # docs/deploy.md's Kubernetes recipe
    base = HostOpts(server=server, worker=worker, graceful_timeout=graceful)
    main = [n for n in names if n not in ("e", "t")]
    if main:
        groups.append((Balancer(), base, main))
    if "e" in names:
        # nginx waits less than --timeout: a hung GET goes to the next host.
        hb = HostOpts(server=server, worker=worker, graceful_timeout=graceful,
                      timeout=t.hang_timeout)
        groups.append((Balancer(read_timeout=t.hang_timeout / 2), hb, ["e"]))
    if "t" in names:
        # fail_timeout longer than the three restarts take (2-3 s each here).
        groups.append((Balancer(max_fails=1, fail_timeout=30.0, backup=False), base, ["t"]))
    for lb, opts, scen in groups:
        with Fleet(opts, lb) as fleet:
            for name in scen:
                try:
                    r = scenario(fleet, name, t)
                except (TimeoutError, RuntimeError) as exc:
                    # Recorded, and the hosts brought back for what follows.
                    r = Result(name, server, worker, notes={"error": str(exc)})
                    fleet.heal()
                log(line(r))
                results.append(r)
    return results


def line(r: Result) -> str:
    return (f"{r.server:9} {r.worker:7} {r.scenario}  sent GET {r.sent.get('GET', 0):5} "
            f"POST {r.sent.get('POST', 0):5}  failed GET {r.failed.get('GET', 0):3} "
            f"POST {r.failed.get('POST', 0):3}  rps {r.rps_before:6.0f} -> {r.rps_during:6.0f}  "
            f"p99 {r.p99_before_ms:6.0f} -> {r.p99_during_ms:6.0f} ms  "
            f"{r.failures or ''} {r.causes or ''} {r.notes or ''}")


def markdown(rows: list[dict[str, object]]) -> str:
    """The results as a Markdown table (``--report FILE.json``)."""
    out = ["| server | worker | scenario | GET sent/failed | POST sent/failed | "
           "req/s before → during | p99 ms before → during | nginx's causes |",
           "|---|---|---|--:|--:|--:|--:|---|"]
    for r in rows:
        sent, failed = r["sent"], r["failed"]
        assert isinstance(sent, dict) and isinstance(failed, dict)
        causes = r["causes"] or r["notes"].get("error", "")  # type: ignore[union-attr]
        out.append(
            f"| {r['server']} | {r['worker']} | {r['scenario']} | "
            f"{sent.get('GET', 0)} / **{failed.get('GET', 0)}** | "
            f"{sent.get('POST', 0)} / **{failed.get('POST', 0)}** | "
            f"{r['rps_before']:.0f} → {r['rps_during']:.0f} | "
            f"{r['p99_before_ms']:.0f} → {r['p99_during_ms']:.0f} | "
            f"{', '.join(f'{k} {v}' for k, v in causes.items()) if isinstance(causes, dict) else causes} |")
    return "\n".join(out)


def missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    try:
        _binary()
    except FileNotFoundError:
        return "needs nginx"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", default="fastwsgi,gunicorn")
    ap.add_argument("--workers", default="sync,gthread")
    ap.add_argument("--scenarios", default=ALL)
    ap.add_argument("--quick", action="store_true", help="CI-sized: short settle and events")
    ap.add_argument("--rate", type=float, default=None, help="requests/s in all")
    ap.add_argument("--threads", type=int, default=None, help="load generator clients")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--report", help="print a results file as a Markdown table")
    a = ap.parse_args(argv)
    if a.report:
        with open(a.report) as f:
            print(markdown(json.load(f)))
        return 0
    why = missing()
    if why:
        print(f"fleet: {why}", file=sys.stderr)
        return 2
    t = Timing(settle=1.0, prestop=2.0, propagate=1.0, recycle_run=4.0, hang_timeout=3.0,
               rate=100.0, threads=4) if a.quick else Timing()
    if a.rate:
        t.rate = a.rate
    if a.threads:
        t.threads = a.threads
    names = a.scenarios.split(",")
    results: list[Result] = []
    # Ctrl-C or TERM: unwind through every finally (the fleets remove themselves).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for server in a.servers.split(","):
        for worker in a.workers.split(","):
            results += run_pass(server, worker, names, t, a.quick)
    if a.json:
        with open(a.json, "w") as f:
            json.dump([dict(r.__dict__) for r in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
