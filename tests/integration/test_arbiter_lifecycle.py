"""Worker lifecycle under a real master: timeouts, boot failures, recycling, zero-failure reloads."""

from __future__ import annotations

import http.client
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from server import (
    HERE,
    Server,
    default_worker,
    pid_alive,
    wait_for_text,
    wait_until_gone,
    worker_classes,
)

WORKER = ["-k", default_worker()]
# A hung request blocks a sync worker's only thread, so the master's heartbeat
# check is what notices. (gthread's selector thread keeps beating and the
# worker reports a stuck pool thread itself.)
SYNC = ["-k", "sync" if default_worker() == "gthread" else default_worker()]
Start = Callable[..., Server]


def test_hung_worker_is_aborted_with_a_traceback_and_replaced(
    server: Start, tmp_path: Path
) -> None:
    hook_log = tmp_path / "hooks.log"
    srv = server(
        *SYNC,
        *("-w", "1", "-t", "2", "-c", str(HERE / "hooks_conf.py"), "testapp:app"),
        env={"HOOK_LOG": str(hook_log)},
    )
    (stuck,) = srv.wait_workers(1)
    t = threading.Thread(target=lambda: _swallow(lambda: srv.get("/hang", timeout=30)))
    t.start()
    try:
        srv.wait_for_log(r"hang request started")
        srv.wait_for_log(rf"WORKER TIMEOUT \(pid:{stuck}\)", timeout=15)
        # The worker says where it was stuck: the app's frame is in the dump.
        # The hook runs after the dump is logged; the dump (which may hold any
        # character) ends where the next log line starts.
        wait_for_text(hook_log, rf"^worker_abort {stuck}$")
        m = re.search(rf"\[{stuck}\] \[CRITICAL\] Worker \(pid:{stuck}\) aborted.*?(?=^\[\d{{4}}-|\Z)",
                      srv.log(), re.M | re.S)
        assert m, srv.log()
        assert 'testapp.py", line' in m.group(0) and "in app" in m.group(0), m.group(0)
        (fresh,) = srv.wait_workers(1, exclude=[stuck])
        status, body = srv.get("/pid")
        assert status == 200 and int(body) == fresh
    finally:
        t.join(30)


def test_aborted_request_is_answered_500_logged_and_named(server: Start, tmp_path: Path) -> None:
    # Gunicorn's timed-out sync worker leaves its client a bare close (nginx
    # answers 502), no access line (#1060) and a WORKER TIMEOUT that names
    # only the pid (#765, #1243). Ours answers 500, logs the access line and
    # says which request it was serving.
    access = tmp_path / "access.log"
    srv = server(*SYNC, "-w", "1", "-t", "2", "--access-logfile", str(access), "testapp:app")
    (stuck,) = srv.wait_workers(1)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(b"GET /hang?who=me HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), data
    assert b"\r\nConnection: close\r\n" in data
    body = data.partition(b"\r\n\r\n")[2]
    srv.wait_for_log(
        rf"Worker \(pid:{stuck}\) aborted after 2\.0s without a heartbeat, "
        r"serving GET /hang\?who=me from 127\.0\.0\.1 for \d+\.\ds; where it was stuck"
    )
    # The access line counts the 500's body, which did go out.
    wait_for_text(access, rf'"GET /hang\?who=me HTTP/1\.1" 500 {len(body)} ')
    (fresh,) = srv.wait_workers(1, exclude=[stuck])
    status, body = srv.get("/pid")
    assert status == 200 and int(body) == fresh


def test_worker_that_ignores_sigabrt_is_killed(server: Start) -> None:
    srv = server("-k", "pyworker.DeafWorker", "-w", "1", "-t", "2", "testapp:app")
    (stuck,) = srv.wait_workers(1)
    t = threading.Thread(target=lambda: _swallow(lambda: srv.get("/hang", timeout=30)))
    t.start()
    try:
        srv.wait_for_log(rf"WORKER TIMEOUT \(pid:{stuck}\)", timeout=15)
        srv.wait_for_log(rf"Worker \(pid:{stuck}\) still alive .* after SIGABRT: sending SIGKILL")
        srv.wait_for_log(rf"Worker \(pid:{stuck}\) was sent SIGKILL! \(timeout\)")
        srv.wait_workers(1, exclude=[stuck])
    finally:
        t.join(30)


def _swallow(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        pass


def test_app_that_fails_to_import_is_found_before_any_worker(server: Start, tmp_path: Path) -> None:
    hook_log = tmp_path / "hooks.log"
    srv = server(*WORKER, "-w", "2", "-c", str(HERE / "hooks_conf.py"), "brokenapp:app",
                 ready=False, env={"HOOK_LOG": str(hook_log)})
    assert srv.wait_exit(30) == 1
    log = srv.log()
    line = "Failed to load application 'brokenapp:app': RuntimeError: brokenapp refuses to import ("
    errors = [entry for entry in log.splitlines() if "fastwsgi: error:" in entry]
    assert len(errors) == 1 and errors[0].startswith(f"fastwsgi: error: {line}"), log
    assert "Traceback" not in log and "Booting worker" not in log
    # on_starting ran before the probe; the probe is no worker: no fork hooks.
    hooks = [entry.split()[0] for entry in hook_log.read_text().splitlines()]
    assert hooks[0] == "on_starting" and "pre_fork" not in hooks and "post_fork" not in hooks, hooks


BROKEN = "raise RuntimeError('flipapp was broken after start-up')  # padding to change the size\n"


def test_app_broken_after_start_up_halts_when_a_new_worker_loads_it(
    server: Start, tmp_path: Path
) -> None:
    """The probe runs at start-up only: a worker that later fails to load the
    app (here one TTIN adds after the file broke) still halts the master with
    exit 4 and the worker's line, as in Gunicorn, instead of respawning in a loop."""
    app = tmp_path / "flipapp.py"
    app.write_text((HERE / "testapp.py").read_text())
    srv = server(*WORKER, "-w", "1", "flipapp:app")
    (first,) = srv.wait_workers(1)
    app.write_text(BROKEN)
    srv.signal(signal.SIGTTIN)
    assert srv.wait_exit(30) == 4
    log = srv.log()
    line = "Failed to load application 'flipapp:app': RuntimeError: flipapp was broken after start-up ("
    assert f"[ERROR] Reason: {line}" in log.splitlines()[-1], log
    assert "Traceback" not in log
    assert log.count("Booting worker") == 2
    wait_until_gone(first)


def test_worker_boot_error_stops_the_master_once(server: Start) -> None:
    srv = server("-k", "pyworker.BootFailWorker", "-w", "2", "testapp:app", ready=False)
    assert srv.wait_exit(30) == 3
    log = srv.log()
    line = "Reason: Worker failed to boot: RuntimeError: BootFailWorker cannot set up its signals ("
    last = log.splitlines()[-1]
    assert line in last and re.search(r"/pyworker\.py:\d+\)$", last), last
    assert "Traceback" not in log
    assert log.count("Booting worker") <= 2


@pytest.mark.parametrize("worker", worker_classes())
def test_max_requests_recycles_the_worker(server: Start, worker: str) -> None:
    srv = server("-k", worker, "-w", "1", "--max-requests", "3", "testapp:app")
    # wait_ready already spent one request.
    (first,) = srv.wait_workers(1)
    pids = [int(srv.get("/pid")[1]) for _ in range(2)]
    assert pids == [first, first]
    srv.wait_for_log(r"Autorestarting worker after current request: max_requests 3")
    (second,) = srv.wait_workers(1, exclude=[first])
    assert int(srv.get("/pid")[1]) == second


def test_a_worker_retiring_at_max_requests_is_replaced_before_it_exits(server: Start) -> None:
    # One gthread worker reaches max_requests while a slow request is still
    # in hand. It stops accepting at once; its replacement must be serving
    # new connections while it finishes, not only after it exits (Gunicorn's
    # arbiter learns when the worker exits, and nothing accepts meanwhile).
    srv = server("-k", "gthread", "-w", "1", "--threads", "2", "--max-requests", "3", "testapp:app")
    (first,) = srv.wait_workers(1)  # wait_ready spent request 1
    assert int(srv.get("/pid")[1]) == first  # request 2
    slow: list[tuple[int, bytes]] = []
    t = threading.Thread(target=lambda: slow.append(srv.get("/slow?s=4", timeout=30)))
    t.start()
    try:
        srv.wait_for_log(f"slow request started {first}")  # counted when done
        mark = srv.mark()
        assert int(srv.get("/pid")[1]) == first  # request 3: it retires
        second = int(srv.wait_for_log(r"Booting worker with pid: (\d+)", after=mark).group(1))
        assert int(srv.get("/pid")[1]) == second
        assert pid_alive(first)  # still finishing the slow request
    finally:
        t.join(30)
    assert slow and slow[0] == (200, f"slow done {first}".encode())
    wait_until_gone(first)


def test_max_requests_jitter_spreads_the_limit(server: Start) -> None:
    # Each worker draws its limit from 1 + randint(0, 4). Eight retirements
    # with no jitter all say 1; with it, eight equal draws happen with
    # probability 5 * (1/5)**8, about 1 in 78,000.
    srv = server(
        *WORKER, "-w", "2", "--max-requests", "1", "--max-requests-jitter", "4", "testapp:app"
    )
    pattern = r"max_requests (\d+) reached"
    for _ in range(80):  # about 3 requests a retirement; bounded whatever happens
        if srv.count_log(pattern) >= 8:
            break
        assert srv.get("/pid", timeout=30)[0] == 200
    limits = [int(n) for n in re.findall(pattern, srv.log())]
    assert len(limits) >= 8, limits
    assert all(1 <= n <= 5 for n in limits), limits
    assert len(set(limits)) > 1, f"every worker drew the same limit: {limits}"


@pytest.mark.parametrize("worker", worker_classes())
def test_memory_limit_recycles_the_worker(server: Start, worker: str) -> None:
    srv = server("-k", worker, "-w", "1", "--max-worker-memory", "64", "testapp:app")
    (fat,) = srv.wait_workers(1)
    status, body = srv.get("/grow?mb=80")
    # The request that crossed the limit is still answered...
    assert status == 200 and int(body) == fat
    # ...and then the worker leaves, saying why.
    srv.wait_for_log(r"RSS \d+ MiB exceeds max_worker_memory 64 MiB")
    (slim,) = srv.wait_workers(1, exclude=[fat])
    assert int(srv.get("/pid")[1]) == slim


class Load:
    """Requests on loopback until stopped (bounded in count and time).

    By default one client, a new connection per request (``Connection:
    close``). With ``keepalive`` clients, that many threads each keep one
    connection and send the next request as soon as the last answer is read,
    as a busy client or a proxy's upstream pool does; a client reconnects
    only when an answer says ``Connection: close``. A failure is a request
    sent that got no answer (reset, EOF) or a status other than 200."""

    def __init__(
        self, port: int, max_requests: int = 20000, max_seconds: float = 60.0, keepalive: int = 0
    ) -> None:
        self.port = port
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(keepalive > 0,))
            for _ in range(max(keepalive, 1))
        ]

    def _run(self, keepalive: bool) -> None:
        deadline = time.monotonic() + self.max_seconds
        headers = {} if keepalive else {"Connection": "close"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            while not self._stop.is_set() and self.ok + len(self.failures) < self.max_requests:
                if time.monotonic() > deadline:
                    break
                try:
                    # http.client reconnects by itself after an answer that
                    # said "Connection: close".
                    conn.request("GET", "/pid", headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    with self._lock:
                        if resp.status == 200:
                            self.ok += 1
                        else:
                            self.failures.append(f"status {resp.status}")
                except Exception as exc:
                    with self._lock:
                        self.failures.append(repr(exc))
                    conn.close()
                if not keepalive:
                    conn.close()
        finally:
            conn.close()

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        """Until ``count`` more requests succeeded (proof the load is flowing)."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target:
            assert time.monotonic() < deadline, f"load stalled at {self.ok}: {self.failures[:3]}"
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


@pytest.mark.slow
@pytest.mark.parametrize("worker", worker_classes())
def test_hup_under_load_fails_no_request(server: Start, worker: str) -> None:
    srv = server("-k", worker, "-w", "2", "testapp:app")
    old = srv.wait_workers(2)
    with Load(srv.port) as load:
        load.wait_for(20)
        srv.signal(signal.SIGHUP)
        srv.wait_workers(2, exclude=old)
        for pid in old:
            wait_until_gone(pid)
        load.wait_for(20)
    assert load.failures == []


def test_hup_under_keepalive_load_fails_no_request(server: Start) -> None:
    # Eight clients keep their connections busy (the next request leaves as
    # soon as the last answer is read). A retiring worker that closed its
    # idle keep-alive connections at once reset requests already on their
    # way (a few per retired worker); it keeps them for a short linger and
    # answers each one's next request with "Connection: close" instead.
    srv = server("-k", "gthread", "-w", "2", "--threads", "4", "testapp:app")
    old = srv.wait_workers(2)
    with Load(srv.port, keepalive=8) as load:
        load.wait_for(200)
        for _ in range(3):
            srv.signal(signal.SIGHUP)
            new = srv.wait_workers(2, exclude=old)
            for pid in old:
                wait_until_gone(pid)
            old = new
            load.wait_for(200)
    assert load.failures == []


def test_max_requests_under_keepalive_load_fails_no_request(server: Start) -> None:
    # Gunicorn #3038: keep-alive requests reset when a gthread worker
    # restarts at max_requests. Two workers recycle every 100 requests or so
    # under eight busy keep-alive clients.
    srv = server(
        "-k", "gthread", "-w", "2", "--threads", "4", "--max-requests", "100", "testapp:app"
    )
    srv.wait_workers(2)
    with Load(srv.port, keepalive=8) as load:
        load.wait_for(1500, timeout=60)
    assert srv.count_log("Autorestarting worker") >= 5
    assert load.failures == []


@pytest.mark.slow
@pytest.mark.parametrize("worker", worker_classes())
def test_ttou_under_load_fails_no_request(server: Start, worker: str) -> None:
    srv = server("-k", worker, "-w", "3", "testapp:app")
    srv.wait_workers(3)
    with Load(srv.port) as load:
        load.wait_for(20)
        srv.signal(signal.SIGTTOU)
        srv.wait_workers(2)
        load.wait_for(20)
    assert load.failures == []


@pytest.mark.slow
@pytest.mark.parametrize("worker", worker_classes())
def test_usr2_then_term_old_master_under_load_fails_no_request(server: Start, worker: str) -> None:
    srv = server("-k", worker, "-w", "2", "testapp:app")
    old = srv.wait_workers(2)
    new_master = 0
    try:
        with Load(srv.port) as load:
            load.wait_for(20)
            mark = srv.mark()
            srv.signal(signal.SIGUSR2)
            m = srv.wait_for_log(r"Listening at: .* \((\d+)\)$", after=mark)
            new_master = int(m.group(1))
            srv.wait_workers(2, master=new_master)
            load.wait_for(20)
            srv.signal(signal.SIGTERM)
            assert srv.wait_exit(20) == 0
            for pid in old:
                assert not pid_alive(pid)
            load.wait_for(20)
        assert load.failures == []
    finally:
        if new_master and pid_alive(new_master):
            srv.signal(signal.SIGTERM, pid=new_master)
            wait_until_gone(new_master)
