"""Signals sent to a real master: what each one does to the processes and requests.

Every test starts ``python -m fastwsgi`` on a free port (``server`` fixture),
synchronises on log lines, worker pid sets or answered requests, and never
sleeps blindly. Short timeouts (``-t 2``, small ``--graceful-timeout``) keep
the suite fast.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server import HERE, Server, default_worker, pid_alive, wait_for_text, wait_until_gone

WORKER = ["-k", default_worker()]
Start = Callable[..., Server]


def test_hup_replaces_every_worker_and_keeps_serving(server: Start) -> None:
    srv = server(*WORKER, "-w", "2", "testapp:app")
    old = srv.wait_workers(2)
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_for_log(r"Handling signal: hup", after=mark)
    new = srv.wait_workers(2, exclude=old)
    for pid in old:
        wait_until_gone(pid)
    status, body = srv.get("/pid")
    assert status == 200 and int(body) in new


def test_hup_keeps_old_workers_serving_until_the_new_ones_booted(
    server: Start, tmp_path: Path
) -> None:
    flag = tmp_path / "slow-import"
    srv = server(*WORKER, "-w", "1", "slowimportapp:app", env={"SLOW_IMPORT_FLAG": str(flag)})
    (old,) = srv.wait_workers(1)
    flag.write_text("")
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    m = srv.wait_for_log(r"slow import started (\d+)", after=mark)
    new = int(m.group(1))
    # The new worker is still importing: the old one answers.
    for _ in range(3):
        assert srv.get("/pid") == (200, str(old).encode())
    assert pid_alive(old)
    flag.unlink()  # let the import finish
    wait_until_gone(old)
    assert srv.get("/pid") == (200, str(new).encode())


def test_ttin_adds_and_ttou_removes_a_worker(server: Start) -> None:
    # Workers are added one at a time, each seen before the next TTIN, so
    # their age order is known. (Workers forked together may log "Booting
    # worker" in any order: the log does not tell which is older.)
    srv = server(*WORKER, "-w", "1", "testapp:app")
    (oldest,) = srv.wait_workers(1)
    srv.signal(signal.SIGTTIN)
    two = srv.wait_workers(2)
    srv.signal(signal.SIGTTIN)
    three = srv.wait_workers(3)
    assert oldest in two and set(two) < set(three)
    srv.signal(signal.SIGTTOU)
    # TTOU retires the oldest worker, like Gunicorn.
    left = srv.wait_workers(2, exclude=[oldest])
    assert set(left) == set(three) - {oldest}


def test_ttou_never_goes_below_one_worker(server: Start) -> None:
    srv = server(*WORKER, "-w", "1", "testapp:app")
    (only,) = srv.wait_workers(1)
    mark = srv.mark()
    srv.signal(signal.SIGTTOU)
    srv.wait_for_log(r"Handling signal: ttou", after=mark)
    # A request after the signal was handled is served by the same worker.
    status, body = srv.get("/pid")
    assert status == 200 and int(body) == only
    assert srv.workers() == [only]


# One worker that a single slow request keeps from accepting anything else:
# a sync worker, or a gthread worker at its connection cap.
ONE_BUSY_WORKER = pytest.mark.parametrize(
    "worker",
    [["-k", "sync"], ["-k", "gthread", "--threads", "1", "--worker-connections", "1"]],
    ids=["sync", "gthread-at-its-connection-cap"],
)


@contextlib.contextmanager
def slow_request_in_flight(srv: Server, seconds: float) -> Iterator[dict[str, object]]:
    """A ``/slow`` request that the worker is serving for the whole block;
    after the block its outcome is under "resp" (status, body) or "error"."""
    result: dict[str, object] = {}

    def client() -> None:
        try:
            result["resp"] = srv.get(f"/slow?s={seconds}", timeout=20)
        except Exception as exc:  # reported by the caller's assertions
            result["error"] = exc

    t = threading.Thread(target=client)
    t.start()
    try:
        srv.wait_for_log(r"slow request started")
        yield result
    finally:
        t.join(30)


def test_term_lets_an_in_flight_request_finish(server: Start) -> None:
    srv = server(*WORKER, "-w", "1", "--graceful-timeout", "10", "testapp:app")
    with slow_request_in_flight(srv, 1.5) as result:
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
    assert "error" not in result, result
    status, body = result["resp"]  # type: ignore[misc]
    assert status == 200 and body.startswith(b"slow done")
    assert "Shutting down: Master" in srv.log()


def test_term_refuses_connections_once_the_queue_is_taken(server: Start) -> None:
    """Issue 21: a connection made to a stopping server is either served or
    refused (a balancer retries a refused one elsewhere, even a POST); it is
    never queued on a listener still open in a leaving worker, only to be
    reset at its exit after the request was sent (the POSTs nginx answered
    502 in the fleet's undrained restarts). A gthread worker serving a slow
    request shows it: it takes its queue at the TERM, while the request runs.
    (A sync worker takes it after the request, bench/fleet.py scenario u.)"""
    srv = server("-k", "gthread", "--threads", "2", "-w", "1", "--graceful-timeout", "10", "testapp:app")
    post = b"POST /pid HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
    refused = False
    with slow_request_in_flight(srv, 3.0) as result:
        srv.signal(signal.SIGTERM)
        # Until the slow request ends (and the worker with it): every try
        # is answered 200 or refused, and some try is refused.
        while not refused and not result:
            try:
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
            except ConnectionRefusedError:
                refused = True
                break
            with s:
                s.sendall(post)
                data = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := s.recv(65536):
                        data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK"), data
    assert refused
    assert "error" not in result, result


@ONE_BUSY_WORKER
def test_term_serves_the_requests_waiting_in_the_accept_queue(
    server: Start, worker: list[str]
) -> None:
    """Gunicorn #2529: requests sent while the only worker was busy wait in
    the listener's accept queue; on TERM they are served before the worker
    exits, not reset with the listener."""
    srv = server(*worker, "-w", "1", "--graceful-timeout", "20", "testapp:app")
    with slow_request_in_flight(srv, 1.5) as result, contextlib.ExitStack() as queued:
        socks = []
        for i in range(3):  # the worker is busy (or at its cap): nobody accepts these
            s = queued.enter_context(socket.create_connection(("127.0.0.1", srv.port), timeout=20))
            s.sendall(f"GET /pid?n={i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            socks.append(s)
        srv.signal(signal.SIGTERM)
        answers = []
        for s in socks:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
            answers.append(data.split(b"\r\n", 1)[0])
        assert answers == [b"HTTP/1.1 200 OK"] * 3
        assert srv.wait_exit(20) == 0
    assert "error" not in result, result
    status, body = result["resp"]  # type: ignore[misc]
    assert status == 200 and body.startswith(b"slow done")


@ONE_BUSY_WORKER
def test_term_serves_the_requests_waiting_in_a_unix_socket_accept_queue(
    server: Start, worker: list[str], tmp_path: Path
) -> None:
    """As above on a unix socket, whose queue length the kernel does not
    report: the leaving worker still takes what is queued there."""
    path = tmp_path / "q.sock"
    srv = server(*worker, "-w", "1", "-b", f"unix:{path}", "--graceful-timeout", "20",
                 "testapp:app")
    with slow_request_in_flight(srv, 1.5) as result, contextlib.ExitStack() as queued:
        socks = []
        for i in range(3):  # the worker is busy (or at its cap): nobody accepts these
            s = queued.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            s.settimeout(20)
            s.connect(str(path))
            s.sendall(f"GET /pid?n={i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            socks.append(s)
        srv.signal(signal.SIGTERM)
        answers = []
        for s in socks:
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
            answers.append(data.split(b"\r\n", 1)[0])
        assert answers == [b"HTTP/1.1 200 OK"] * 3
        assert srv.wait_exit(20) == 0
    assert "error" not in result, result


@ONE_BUSY_WORKER
def test_a_silent_connection_in_the_accept_queue_does_not_hold_the_stop(
    server: Start, worker: list[str]
) -> None:
    # A preconnect or a TCP health check queued behind a busy worker: closed
    # a moment after the worker gets to it, not waited on for the 30 s
    # header timeout (which would outlast this graceful_timeout).
    srv = server(*worker, "-w", "1", "--graceful-timeout", "60", "testapp:app")
    with (
        slow_request_in_flight(srv, 1) as result,
        socket.create_connection(("127.0.0.1", srv.port), timeout=20) as silent,
    ):
        srv.signal(signal.SIGTERM)
        assert silent.recv(1) == b""  # closed, without an answer
        assert srv.wait_exit(20) == 0
    assert "error" not in result, result
    status, _ = result["resp"]  # type: ignore[misc]
    assert status == 200


@pytest.mark.parametrize("kind", ["sync", "gthread"])
def test_a_worker_whose_master_died_stops_within_a_tick(server: Start, kind: str) -> None:
    """A SIGKILLed master leaves its worker orphaned; the worker sees its
    parent change within one tick (at most 1 s), not after timeout / 2 (60 s
    here), and leaves. The deadline is generous for a loaded machine."""
    srv = server("-k", kind, "-w", "1", "--timeout", "120", "testapp:app")
    (worker,) = srv.wait_workers(1)
    mark = srv.mark()
    srv.signal(signal.SIGKILL)
    srv.wait_exit(10)
    wait_until_gone(worker, 15)
    srv.wait_for_log(r"Parent changed, shutting down", timeout=5, after=mark)


def test_term_kills_requests_that_outlive_graceful_timeout(server: Start) -> None:
    srv = server(*WORKER, "-w", "1", "--graceful-timeout", "1", "testapp:app")
    (worker,) = srv.wait_workers(1)
    errors: list[Exception] = []

    def client() -> None:
        try:
            srv.get("/slow?s=30", timeout=30)
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=client)
    t.start()
    try:
        srv.wait_for_log(r"slow request started")
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
    finally:
        t.join(30)
    assert errors, "the 30 s request cannot have completed"
    assert f"Worker (pid:{worker}) outlived graceful_timeout" in srv.log()
    assert not pid_alive(worker)


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGINT])
def test_quit_and_int_stop_fast(server: Start, sig: int) -> None:
    srv = server(*WORKER, "-w", "2", "--graceful-timeout", "30", "testapp:app")
    workers = srv.wait_workers(2)
    t = threading.Thread(target=lambda: _swallow(lambda: srv.get("/slow?s=20", timeout=25)))
    t.start()
    try:
        srv.wait_for_log(r"slow request started")
        srv.signal(sig)
        # Far below the 20 s request and the 30 s graceful timeout.
        assert srv.wait_exit(10) == 0
    finally:
        t.join(30)
    for pid in workers:
        assert not pid_alive(pid)


def test_int_during_a_graceful_stop_makes_it_fast(server: Start) -> None:
    srv = server(*WORKER, "-w", "1", "--graceful-timeout", "30", "testapp:app")
    (worker,) = srv.wait_workers(1)
    t = threading.Thread(target=lambda: _swallow(lambda: srv.get("/slow?s=20", timeout=25)))
    t.start()
    try:
        srv.wait_for_log(r"slow request started")
        srv.signal(signal.SIGTERM)
        srv.wait_for_log(r"Handling signal: term")
        srv.signal(signal.SIGINT)
        assert srv.wait_exit(10) == 0
    finally:
        t.join(30)
    assert "Fast shutdown requested during graceful stop" in srv.log()
    assert not pid_alive(worker)


def test_workers_leave_when_the_master_is_killed(server: Start) -> None:
    srv = server(*WORKER, "-w", "2", "-t", "2", "testapp:app")
    workers = srv.wait_workers(2)
    srv.signal(signal.SIGKILL)
    srv.wait_exit(10)
    # Each notices its parent changed within a heartbeat tick (timeout / 2).
    for pid in workers:
        wait_until_gone(pid)


def _swallow(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        pass


def test_usr1_reopens_log_files_in_master_and_workers(server: Start, tmp_path: Path) -> None:
    logfile = tmp_path / "error.log"
    rotated = tmp_path / "error.log.1"
    srv = server(*WORKER, "-w", "1", "--error-logfile", str(logfile), "testapp:app")
    srv.wait_for_log(r"Booting worker", path=logfile)
    os.rename(logfile, rotated)
    srv.signal(signal.SIGUSR1)
    wait_for_text(rotated, r"Handling signal: usr1")
    # The next master line lands in a fresh file at the original path.
    srv.signal(signal.SIGTTIN)
    wait_for_text(logfile, r"Handling signal: ttin")
    srv.wait_workers(2)
    # So do the lines the old worker writes after its own USR1.
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    text = logfile.read_text()
    assert text.count("Worker exiting") == 2, text
    assert "Worker exiting" not in rotated.read_text()


def test_usr1_with_the_log_directory_gone_keeps_the_server_up(server: Start, tmp_path: Path) -> None:
    # Gunicorn's master and workers die of the FileNotFoundError.
    logs = tmp_path / "logs"
    logs.mkdir()
    srv = server(*WORKER, "-w", "1", "--error-logfile", str(logs / "error.log"),
                 "--access-logfile", str(logs / "access.log"), "testapp:app")
    srv.wait_for_log(r"Booting worker", path=logs / "error.log")
    (worker,) = srv.wait_workers(1)
    moved = tmp_path / "moved"
    os.rename(logs, moved)
    srv.signal(signal.SIGUSR1)
    wait_for_text(moved / "error.log", r"Cannot reopen log file .*access\.log: .*; still writing")
    status, body = srv.get("/pid")
    assert status == 200 and int(body) == worker  # the same worker, still serving
    wait_for_text(moved / "access.log", r'"GET /pid HTTP/1\.1" 200')
    assert pid_alive(srv.pid) and pid_alive(worker)


def test_usr2_starts_a_new_master_and_the_old_one_drains_on_term(
    server: Start, tmp_path: Path
) -> None:
    pidfile = tmp_path / "app.pid"
    srv = server(*WORKER, "-w", "2", "--pid", str(pidfile), "testapp:app")
    old_workers = srv.wait_workers(2)
    assert int(pidfile.read_text()) == srv.pid
    mark = srv.mark()
    srv.signal(signal.SIGUSR2)
    m = srv.wait_for_log(r"Listening at: .* \((\d+)\)$", after=mark)
    new_master = int(m.group(1))
    try:
        assert new_master != srv.pid
        new_workers = srv.wait_workers(2, master=new_master)
        # Both generations serve; the old pidfile moved aside.
        assert int((tmp_path / "app.pid.oldbin").read_text()) == srv.pid
        assert int((tmp_path / "app.pid.2").read_text()) == new_master
        assert srv.workers() == old_workers
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        srv.wait_for_log(r"Master has been promoted", after=mark)
        wait_for_text(pidfile, rf"^{new_master}$")
        status, body = srv.get("/pid")
        assert status == 200 and int(body) in new_workers
        for pid in old_workers:
            assert not pid_alive(pid)
    finally:
        if pid_alive(new_master):
            os.kill(new_master, signal.SIGTERM)
            wait_until_gone(new_master)


def test_usr2_to_broken_code_keeps_the_old_master(server: Start, tmp_path: Path) -> None:
    (tmp_path / "usr2app.py").write_text((HERE / "testapp.py").read_text())
    pidfile = tmp_path / "app.pid"
    srv = server(*WORKER, "-w", "1", "--pid", str(pidfile), "usr2app:app")
    (worker,) = srv.wait_workers(1)
    (tmp_path / "usr2app.py").unlink()  # the upgrade lost the app
    mark = srv.mark()
    srv.signal(signal.SIGUSR2)
    srv.wait_for_log(r"New master \(pid:\d+\) exited \(code 1\); keeping the old one", after=mark)
    wait_for_text(pidfile, rf"^{srv.pid}$")
    assert not (tmp_path / "app.pid.oldbin").exists()
    assert srv.get("/pid") == (200, str(worker).encode())
    # And a later USR2 is allowed again.
    (tmp_path / "usr2app.py").write_text((HERE / "testapp.py").read_text())
    mark = srv.mark()
    srv.signal(signal.SIGUSR2)
    m = srv.wait_for_log(r"Listening at: .* \((\d+)\)$", after=mark)
    new_master = int(m.group(1))
    try:
        srv.wait_workers(1, master=new_master)
    finally:
        os.kill(new_master, signal.SIGTERM)
        wait_until_gone(new_master)


def test_usr2_with_a_relative_chdir(server: Start, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "cdapp.py").write_text((HERE / "testapp.py").read_text())
    srv = server(*WORKER, "-w", "1", "--chdir", "site", "cdapp:app")
    mark = srv.mark()
    srv.signal(signal.SIGUSR2)
    m = srv.wait_for_log(r"Listening at: .* \((\d+)\)$", after=mark)
    new_master = int(m.group(1))
    try:
        (new_worker,) = srv.wait_workers(1, master=new_master)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        assert srv.get("/pid") == (200, str(new_worker).encode())
    finally:
        if pid_alive(new_master):
            os.kill(new_master, signal.SIGTERM)
            wait_until_gone(new_master)


def test_sigkill_of_a_worker_is_reported_and_the_worker_replaced(server: Start) -> None:
    srv = server(*WORKER, "-w", "1", "testapp:app")
    (victim,) = srv.wait_workers(1)
    os.kill(victim, signal.SIGKILL)
    srv.wait_for_log(rf"Worker \(pid:{victim}\) was sent SIGKILL! Perhaps out of memory\?")
    (fresh,) = srv.wait_workers(1, exclude=[victim])
    status, body = srv.get("/pid")
    assert status == 200 and int(body) == fresh


def test_worker_exit_status_is_reported(server: Start) -> None:
    srv = server(*WORKER, "-w", "1", "testapp:app")
    (victim,) = srv.wait_workers(1)
    os.kill(victim, signal.SIGSEGV)
    srv.wait_for_log(rf"Worker \(pid:{victim}\) was sent SIGSEGV!")
    srv.wait_workers(1, exclude=[victim])


def test_a_signal_sent_before_the_worker_installed_its_handlers_is_not_lost(
    server: Start, tmp_path: Path
) -> None:
    """The master may TERM or QUIT a worker it has only just forked (a stop or
    HUP right after a spawn). Before the worker's own handlers are in place
    the signal must wait for them, not run the master's handler copy in the
    child and vanish. A post_fork hook that waits for a go-ahead file holds
    the new worker in that window."""
    gate = tmp_path / "go"
    conf = tmp_path / "slow_post_fork.py"
    conf.write_text(
        "import os, time\n"
        "def post_fork(server, worker):\n"
        "    print('post_fork holding', worker.pid, flush=True)\n"
        "    deadline = time.monotonic() + 30\n"
        f"    while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:\n"
        "        time.sleep(0.02)\n"
    )
    gate.write_text("")
    srv = server(*WORKER, "-w", "1", "-c", str(conf), "testapp:app")
    (first,) = srv.wait_workers(1)
    gate.unlink()
    mark = srv.mark()
    srv.signal(signal.SIGTTIN)
    young = int(srv.wait_for_log(r"post_fork holding (\d+)", after=mark).group(1))
    os.kill(young, signal.SIGTERM)  # what the master sends on HUP/TTOU/stop
    gate.write_text("")
    # The held TERM reaches the worker's own handler once it has installed it:
    # it leaves (gracefully, status 0) instead of serving on.
    wait_until_gone(young, timeout=30)
    assert f"Worker (pid:{young}) exited" not in srv.log() and f"Worker (pid:{young}) was sent" not in srv.log()
    srv.wait_workers(2, exclude=[young])
    assert pid_alive(first)
