"""Operating the master: listeners of every kind, systemd, daemon mode, preload,
hooks, process titles, and the sync worker's freedom from the thundering herd."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from server import (
    HERE,
    SRC_DIR,
    Server,
    children,
    cmdline,
    default_worker,
    pid_alive,
    wait_for_text,
    wait_until_gone,
)

WORKER = ["-k", default_worker()]
Start = Callable[..., Server]


def _listening_socket() -> tuple[socket.socket, int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s, s.getsockname()[1]


def test_fd_url_serves_an_inherited_socket(server: Start) -> None:
    lsock, port = _listening_socket()
    with lsock:
        fd = lsock.fileno()
        srv = server(
            *WORKER, "-b", f"fd://{fd}", "testapp:app", bind=False, port=port, pass_fds=(fd,)
        )
        assert f"Listening at: http://127.0.0.1:{port}" in srv.log()
        assert srv.get("/pid")[0] == 200


def test_unix_socket_serves_and_is_removed_on_exit(server: Start, tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    srv = server(*WORKER, "-b", f"unix:{path}", "testapp:app", bind=False, ready=False)
    srv.wait_for_log(r"Booting worker")
    srv.wait_for_log(rf"Listening at: unix:{re.escape(str(path))}")
    with socket.socket(socket.AF_UNIX) as c:
        c.settimeout(10)
        c.connect(str(path))
        c.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.") and b" 200 " in data.split(b"\r\n", 1)[0]
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    assert not path.exists()


# Plays systemd: puts the socket on fd 3 and names this process in LISTEN_PID.
# A USR2 re-exec runs the same command line again; then (FASTWSGI_PID set) it
# must not touch anything, so what the new master sees comes from the arbiter.
_SD_LAUNCHER = (
    "import os, sys\n"
    "if 'FASTWSGI_PID' not in os.environ:\n"
    "    os.dup2(int(sys.argv[1]), 3)\n"
    "    os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'fastwsgi', *sys.argv[2:]])"
)


def test_systemd_socket_activation_and_ready_notification(server: Start, tmp_path: Path) -> None:
    lsock, port = _listening_socket()
    notify = tmp_path / "notify"
    with lsock, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(str(notify))
        sink.settimeout(30)
        fd = lsock.fileno()
        srv = server(
            *WORKER,
            "testapp:app",
            bind=False,
            port=port,
            pass_fds=(fd,),
            command=[sys.executable, "-c", _SD_LAUNCHER, str(fd)],
            env={"NOTIFY_SOCKET": str(notify)},
        )
        assert sink.recv(4096).startswith(b"READY=1\n")
        assert f"Listening at: http://127.0.0.1:{port}" in srv.log()
        (worker,) = srv.wait_workers(1)
        assert srv.get("/pid") == (200, str(worker).encode())


def test_usr2_under_systemd_hands_the_sockets_on_as_listen_fds(
    server: Start, tmp_path: Path
) -> None:
    lsock, port = _listening_socket()
    with lsock:
        fd = lsock.fileno()
        srv = server(
            *WORKER,
            "testapp:app",
            bind=False,
            port=port,
            pass_fds=(fd,),
            command=[sys.executable, "-c", _SD_LAUNCHER, str(fd)],
        )
        lsock.close()  # only the servers hold the socket now
        (old_worker,) = srv.wait_workers(1)
        mark = srv.mark()
        srv.signal(signal.SIGUSR2)
        m = srv.wait_for_log(r"Listening at: .* \((\d+)\)$", after=mark)
        new_master = int(m.group(1))
        try:
            assert m.group(0).startswith(f"Listening at: http://127.0.0.1:{port}")
            env = Path(f"/proc/{new_master}/environ").read_bytes().split(b"\0")
            assert b"LISTEN_FDS=1" in env and f"LISTEN_PID={new_master}".encode() in env
            (new_worker,) = srv.wait_workers(1, master=new_master)
            srv.signal(signal.SIGTERM)
            assert srv.wait_exit(20) == 0
            assert srv.get("/pid") == (200, str(new_worker).encode())
            assert not pid_alive(old_worker)
        finally:
            if pid_alive(new_master):
                os.kill(new_master, signal.SIGTERM)
                wait_until_gone(new_master)


def test_daemon_mode_detaches_and_winch_stops_the_workers(tmp_path: Path) -> None:
    pidfile = tmp_path / "d.pid"
    logfile = tmp_path / "d.log"
    srv = Server(
        [
            *WORKER,
            "-D",
            "-w",
            "2",
            "--pid",
            str(pidfile),
            "--error-logfile",
            str(logfile),
            "testapp:app",
        ],
        tmp_path,
    )
    srv.start()
    daemon = 0
    workers: list[int] = []
    try:
        # The launching process returns at once; the daemon lives on.
        assert srv.wait_exit(30) == 0
        m = wait_for_text(logfile, r"Listening at: .* \((\d+)\)$")
        daemon = int(m.group(1))
        wait_for_text(pidfile, rf"^{daemon}$")
        assert daemon != srv.pid and os.getsid(daemon) != os.getsid(0)
        workers = srv.wait_workers(2, master=daemon)
        srv.wait_ready(daemon=True)
        srv.signal(signal.SIGWINCH, pid=daemon)
        wait_for_text(logfile, r"graceful stop of workers")
        for pid in workers:
            wait_until_gone(pid)
        assert pid_alive(daemon) and children(daemon) == []
        srv.signal(signal.SIGTERM, pid=daemon)
        wait_until_gone(daemon)
        assert not pidfile.exists()
    finally:
        for pid in [daemon, *workers]:
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_daemon_with_stdio_inheritance_keeps_the_launchers_stderr(tmp_path: Path) -> None:
    # -R: the error log (stderr by default) keeps going where the launching
    # shell redirected it; without it the daemon's stderr is /dev/null.
    pidfile = tmp_path / "r.pid"
    srv = Server([*WORKER, "-D", "-R", "--pid", str(pidfile), "testapp:app"], tmp_path)
    srv.start()
    daemon = 0
    workers: list[int] = []
    try:
        assert srv.wait_exit(30) == 0
        # From the pidfile (written with or without -R), so the daemon is
        # known, and cleaned up, even when the log assertion below fails.
        daemon = int(wait_for_text(pidfile, r"^(\d+)$").group(1))
        assert daemon != srv.pid
        workers = srv.wait_workers(1, master=daemon)
        m = wait_for_text(srv.log_path, r"Listening at: .* \((\d+)\)$")
        assert int(m.group(1)) == daemon
        srv.wait_ready(daemon=True)
        srv.signal(signal.SIGTERM, pid=daemon)
        wait_until_gone(daemon)
        wait_for_text(srv.log_path, r"Shutting down: ")
    finally:
        for pid in [daemon, *workers, *(children(daemon) if daemon else [])]:
            if pid and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_preload_imports_the_app_once_in_the_master(server: Start) -> None:
    srv = server(*WORKER, "-w", "2", "--preload", "preloadapp:app")
    srv.wait_workers(2)
    assert re.findall(r"preloadapp imported in (\d+)", srv.log()) == [str(srv.pid)]


@pytest.mark.parametrize("preload", [False, True])
def test_hup_picks_up_changed_code_only_without_preload(
    server: Start, tmp_path: Path, preload: bool
) -> None:
    """HUP starts workers that import the app anew; with --preload the app
    lives in the master, whose imported modules stay as they were."""
    app = tmp_path / "versionapp.py"
    source = "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [{!r}]\n"
    app.write_text(source.format(b"v1"))
    srv = server(*WORKER, "-w", "1", *(["--preload"] if preload else []), "versionapp:app")
    (old,) = srv.wait_workers(1)
    assert srv.get("/") == (200, b"v1")
    # Another size, so a cached .pyc of the same second cannot pass for it.
    app.write_text(source.format(b"version 2"))
    srv.signal(signal.SIGHUP)
    srv.wait_workers(1, exclude=[old])
    assert srv.get("/") == (200, b"v1" if preload else b"version 2")


def test_without_preload_each_worker_imports_the_app(server: Start) -> None:
    srv = server(*WORKER, "-w", "2", "preloadapp:app")
    workers = srv.wait_workers(2)
    srv.wait_for_log(r"(preloadapp imported in \d+\n(.|\n)*){2}preloadapp imported in \d+")
    imported = sorted(int(p) for p in re.findall(r"preloadapp imported in (\d+)", srv.log()))
    # Each worker, plus the master's start-up probe child (never the master itself).
    (probe,) = set(imported) - set(workers)
    assert len(imported) == 3 and set(workers) < set(imported) and probe != srv.pid


def test_every_hook_is_called_with_gunicorn_arguments(server: Start, tmp_path: Path) -> None:
    hook_log = tmp_path / "hooks.log"
    srv = server(
        *WORKER,
        "-w",
        "1",
        "-c",
        str(HERE / "hooks_conf.py"),
        "testapp:app",
        env={"HOOK_LOG": str(hook_log)},
    )
    (first,) = srv.wait_workers(1)
    wait_for_text(hook_log, rf"post_worker_init {first} True")
    srv.signal(signal.SIGTTIN)
    wait_for_text(hook_log, r"nworkers_changed 2 1")
    both = srv.wait_workers(2)
    srv.signal(signal.SIGHUP)
    wait_for_text(hook_log, r"on_reload")
    wait_for_text(hook_log, rf"child_exit {first}")
    # Like Gunicorn, a reload goes back to the configured count (-w 1).
    srv.wait_workers(1, exclude=both)
    srv.signal(signal.SIGQUIT)
    assert srv.wait_exit(20) == 0
    text = hook_log.read_text()
    assert text.startswith(f"on_starting {srv.pid} 1 1\nwhen_ready 1\npre_fork 1\n"), text
    assert f"post_fork {first} 1 True" in text
    assert f"worker_exit {first}" in text
    assert "worker_int" in text  # QUIT reaches the workers
    assert text.rstrip().endswith("on_exit")


def test_process_titles(server: Start) -> None:
    srv = server(*WORKER, "-n", "titletest", "--worker-tmp-dir", "/nonexistent", "testapp:app")
    (worker,) = srv.wait_workers(1)
    assert cmdline(srv.pid).startswith("fastwsgi: master [titletest]")
    assert cmdline(worker).startswith("fastwsgi: worker [titletest]")


def test_setproctitle_is_a_dependency() -> None:
    """Installed with fastwsgi (pyproject's dependencies), so titles are the default."""
    text = (HERE.parent.parent / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)\]", text, re.M | re.S)
    assert deps is not None and '"setproctitle"' in deps.group(1)


@pytest.mark.parametrize(
    "failure", ["raise ImportError('hidden by the test')", "raise OSError('libc mismatch')"]
)
def test_without_setproctitle_one_warning_and_carry_on(
    server: Start, tmp_path: Path, failure: str
) -> None:
    # A module that shadows the real one and fails to import, as a wheel for
    # another libc would: the master and both workers import it.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "setproctitle.py").write_text(failure + "\n")
    # Started the way pip installs it: a `fastwsgi` script run by Python.
    script = tmp_path / "bin" / "fastwsgi"
    script.parent.mkdir()
    script.write_text(f"#!{sys.executable}\nfrom fastwsgi.cli import main\nmain()\n")
    script.chmod(0o755)
    path = os.pathsep.join([str(blocker), SRC_DIR, str(HERE)])
    srv = server(*WORKER, "-w", "2", "testapp:app", env={"PYTHONPATH": path},
                 command=[str(script)])
    workers = srv.wait_workers(2)
    assert srv.get("/")[0] == 200
    assert srv.log().count("setproctitle cannot be imported") == 1, srv.log()
    assert failure.split("'")[1] in srv.log()
    # The processes keep what they were started as: `ps` shows the command
    # line, `top` and `ps -e` the script's name (docs/faq.md).
    for pid in [srv.pid, *workers]:
        assert "fastwsgi: master" not in cmdline(pid)
        assert f"{script} -b 127.0.0.1:{srv.port}" in cmdline(pid)
        assert Path(f"/proc/{pid}/comm").read_text() == "fastwsgi\n"


def _voluntary_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                total += int(line.split()[1])
    return total


def _wakeups_per_connection(srv: Server, workers: int, connections: int) -> float:
    pids = srv.wait_workers(workers)
    for _ in range(20):  # every worker settles into its wait
        srv.get("/pid")
    before = sum(_voluntary_switches(p) for p in pids)
    for _ in range(connections):
        assert srv.get("/pid")[0] == 200
    after = sum(_voluntary_switches(p) for p in pids)
    return (after - before) / connections


@pytest.mark.skipif(default_worker() != "sync", reason="needs the compiled sync worker")
def test_sync_worker_has_no_thundering_herd(server: Start) -> None:
    """8 idle sync workers; each connection should wake about one of them.

    A wake-up shows as a voluntary context switch when the woken process goes
    back to waiting. With EPOLLEXCLUSIVE one worker wakes per connection (plus
    the serving worker's own blocking reads); a poll()-based worker wakes all
    eight, which the control test below demonstrates with the same measure.
    The long timeout keeps idle heartbeat ticks out of the count.
    """
    srv = server("-k", "sync", "-w", "8", "-t", "60", "testapp:app")
    per_conn = _wakeups_per_connection(srv, 8, 200)
    assert per_conn < 3, f"{per_conn:.2f} wake-ups per connection"


def test_control_a_poll_worker_does_show_the_herd(server: Start) -> None:
    srv = server("-k", "pyworker.PyWorker", "-w", "8", "-t", "60", "testapp:app")
    per_conn = _wakeups_per_connection(srv, 8, 200)
    assert per_conn > 5, f"{per_conn:.2f} wake-ups per connection"


def _ids(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(re.search(r"^Uid:\s+\d+\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    gid = int(re.search(r"^Gid:\s+\d+\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return uid, gid


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_drop_to_user_and_group_the_master_keeps_root(server: Start) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    # A worker imports the app after it dropped to "nobody". Where this
    # interpreter's stdlib lies under a directory others cannot enter
    # (/root/.pyenv), the app's stdlib imports would fail there for any
    # server; the app is then imported in the master (--preload), which is
    # how such an install has to be run. Python 3.11 happens to have the
    # app's imports loaded already, 3.13 does not.
    def private(path: str) -> bool:
        while path != os.path.dirname(path):
            if not os.stat(path).st_mode & 0o001:
                return True
            path = os.path.dirname(path)
        return False

    extra = ["--preload"] if private(os.path.dirname(os.__file__)) else []
    srv = server(*WORKER, *extra, "-u", "nobody", "-g", str(nobody.pw_gid), "testapp:app")
    (worker,) = srv.wait_workers(1)
    assert _ids(worker) == (nobody.pw_uid, nobody.pw_gid)
    assert _ids(srv.pid) == (0, 0)
    assert srv.get("/pid") == (200, str(worker).encode())


def test_reuse_port_lets_two_servers_share_a_port(server: Start) -> None:
    first = server(*WORKER, "--reuse-port", "testapp:app")
    second = server(*WORKER, "--reuse-port", "testapp:app", port=first.port)
    (a,) = first.wait_workers(1)
    (b,) = second.wait_workers(1)
    # The kernel spreads new connections over both listeners; each answers.
    seen = {int(first.get("/pid")[1]) for _ in range(60)}
    assert seen == {a, b}
