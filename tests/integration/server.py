"""Run a real ``python -m fastwsgi`` for a test, and talk to it.

Theory of operation
-------------------
``Server`` starts the CLI in a new session (so the master, its workers and a
USR2-re-executed master form one process group), with stdout and stderr going
to one log file the test can read. Everything that waits does so on an
observable fact with a deadline, polling in short steps: a successful
connect-and-request (``wait_ready``), a log line (``wait_for_log``), a set of
worker pids (``wait_workers``), the process's exit (``wait_exit``). There is no
bare sleep.

Teardown (``close``, called by the fixture in a ``finally``) sends TERM to the
master it started and, after a grace period, KILL to that process group; it
never touches anything else.

Use through the ``server`` fixture of ``conftest.py``::

    def test_x(server):
        srv = server("-w", "2", "testapp:app")     # binds 127.0.0.1:<free port>
        status, body = srv.get("/pid")

The test directory is on the server's ``PYTHONPATH``, so ``testapp:app``
(``testapp.py``) and ``-k pyworker.PyWorker`` resolve; the server runs in the
test's ``tmp_path``. ``Server(..., bind=False)`` leaves ``-b`` to the test,
``command=[...]`` replaces ``python -m fastwsgi`` (e.g. a launcher that plays
systemd), ``pass_fds`` hands sockets down, ``env`` adds variables.

Other helpers: ``free_port()``, ``wait_until(what, check)`` (the one
poll-until-true-or-fail loop), ``wait_for_text(path, regex)``,
``wait_until_gone(pid)`` (for processes that are not our children),
``pid_alive``, ``children``, ``cmdline``, and ``default_worker()`` /
``worker_classes()``, which pick the worker classes under test: the compiled
``sync``/``gthread``, or the one ``FASTWSGI_TEST_WORKER`` names (e.g. the
pure-Python ``pyworker.PyWorker``).
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import fastwsgi

HERE = Path(__file__).resolve().parent
SRC_DIR = str(Path(fastwsgi.__file__).resolve().parent.parent)
POLL = 0.05  # seconds between two looks at a condition


def default_worker() -> str:
    """``$FASTWSGI_TEST_WORKER``, else the real sync worker.

    There is no silent fallback: without the compiled extensions the run
    stops at start-up (``tests/conftest.py``); ``FASTWSGI_TEST_WORKER=
    pyworker.PyWorker`` asks for the pure-Python test worker explicitly.
    """
    return os.environ.get("FASTWSGI_TEST_WORKER") or "sync"


def worker_classes() -> list[str]:
    """Every worker class a process-level behaviour should hold for (for parametrize)."""
    chosen = os.environ.get("FASTWSGI_TEST_WORKER")
    return [chosen] if chosen else ["sync", "gthread"]


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    parts = [SRC_DIR, str(HERE)]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env.pop("FASTWSGI_CMD_ARGS", None)
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


_T = TypeVar("_T")


def wait_until(what: str, check: Callable[[], _T], timeout: float = 30.0) -> _T:
    """Until ``check()`` returns something truthy, which is returned; an
    AssertionError naming ``what`` after ``timeout`` seconds. ``check`` may
    raise to fail early (a server that exited, say)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def wait_for_text(path: Path, pattern: str, timeout: float = 20.0, after: int = 0) -> re.Match[str]:
    """Until ``pattern`` (a multi-line regex) matches the file's text past offset ``after``."""
    rx = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(read_text(path), after)
        if m:
            return m
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"no line matching {pattern!r} in {path} after {timeout}s:\n{read_text(path)}"
            )
        time.sleep(POLL)


def wait_until_gone(pid: int, timeout: float = 20.0) -> None:
    """Until ``pid`` has exited (for processes that are not our children)."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            raise AssertionError(f"pid {pid} still alive after {timeout}s")
        time.sleep(POLL)


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc/<pid>/task/<pid>/children``)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Server:
    """One fastwsgi master started by a test."""

    def __init__(
        self,
        args: Iterable[str],
        tmp_path: Path,
        *,
        port: int | None = None,
        bind: bool = True,
        env: dict[str, str] | None = None,
        name: str = "server",
        command: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
        split_output: bool = False,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.args = list(args)
        if bind:
            self.args = ["-b", f"127.0.0.1:{self.port}", *self.args]
        self.tmp_path = tmp_path
        self.log_path = tmp_path / f"{name}.log"
        # split_output: stdout to its own file (a test of what goes where,
        # like accesslog "-"), the log file keeps stderr.
        self.out_path = tmp_path / f"{name}.out" if split_output else None
        self.env = server_env(env)
        # What runs the server; the default is the real CLI.
        self.command = command if command is not None else [sys.executable, "-m", "fastwsgi"]
        self.pass_fds = pass_fds
        self.proc: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> Server:
        out_path = self.out_path or os.devnull
        with open(self.log_path, "ab") as log, open(out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*self.command, *self.args],
                stdin=subprocess.DEVNULL,
                stdout=out if self.out_path else log,
                stderr=log,
                env=self.env,
                cwd=str(self.tmp_path),
                start_new_session=True,
                pass_fds=self.pass_fds,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "server not started"
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0, path: str = "/", daemon: bool = False) -> None:
        """Until a request to ``path`` is answered; fails early if the master exits
        (unless ``daemon``: then the process we started is expected to be gone)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not daemon and self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} before it was ready:\n{self.log()}"
                )
            try:
                self.get(path, timeout=2.0)
                return
            except OSError as exc:
                last = exc
            time.sleep(POLL)
        raise AssertionError(f"server not ready after {timeout}s ({last}):\n{self.log()}")

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"server still running after {timeout}s:\n{self.log()}") from None

    def signal(self, sig: int, pid: int | None = None) -> None:
        os.kill(self.pid if pid is None else pid, sig)

    def close(self, grace: float = 10.0) -> None:
        """TERM the master, then KILL its process group if anything is left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
                self.proc.wait(grace)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait(5)

    # --- observing -----------------------------------------------------------------

    def log(self) -> str:
        return read_text(self.log_path)

    def mark(self) -> int:
        """Log offset: pass to ``wait_for_log(after=...)`` to look only at newer lines."""
        return len(self.log())

    def wait_for_log(
        self, pattern: str, timeout: float = 20.0, after: int = 0, path: Path | None = None
    ) -> re.Match[str]:
        """Until ``pattern`` appears in the log (or in the file ``path``) past offset ``after``."""
        return wait_for_text(path or self.log_path, pattern, timeout, after)

    def count_log(self, pattern: str, after: int = 0) -> int:
        return len(re.findall(pattern, self.log()[after:], re.MULTILINE))

    def masters(self) -> list[int]:
        """Pids that announced themselves as masters ("Listening at: ... (pid)")."""
        return [int(p) for p in re.findall(r"Listening at: .* \((\d+)\)$", self.log(), re.M)]

    def workers(self, master: int | None = None) -> list[int]:
        """Live worker pids of ``master`` (default: the master we started).

        A child counts once it logged "Booting worker with pid: N" (in the
        captured output, or in the ``--error-logfile`` or a rotated copy):
        the start-up probe that test-loads the app is a child of the master
        too, and must not be mistaken for a worker.
        """
        master = self.pid if master is None else master
        log = self.log() + self._error_logfile_text()
        masters = set(self.masters())
        booted = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", log)}
        return sorted(
            pid
            for pid in children(master)
            if pid not in masters
            and pid in booted
            and pid_alive(pid)
            and "fastwsgi" in cmdline(pid)
        )

    def _error_logfile_text(self) -> str:
        for flag in ("--error-logfile", "--log-file"):
            for i, arg in enumerate(self.args):
                if arg == flag and i + 1 < len(self.args):
                    path = Path(self.args[i + 1])
                elif arg.startswith(flag + "="):
                    path = Path(arg.split("=", 1)[1])
                else:
                    continue
                if not path.is_absolute():
                    path = self.tmp_path / path
                # The file and its rotated copies (tests rename it for USR1).
                return "".join(read_text(p) for p in sorted(path.parent.glob(path.name + "*")))
        return ""

    def wait_workers(
        self,
        count: int,
        timeout: float = 30.0,
        master: int | None = None,
        exclude: Iterable[int] = (),
    ) -> list[int]:
        """Until exactly ``count`` workers run, none of them in ``exclude``."""
        excluded = set(exclude)
        deadline = time.monotonic() + timeout
        pids: list[int] = []
        while time.monotonic() < deadline:
            pids = self.workers(master)
            if len(pids) == count and not excluded.intersection(pids):
                return pids
            time.sleep(POLL)
        raise AssertionError(
            f"wanted {count} workers (not {sorted(excluded)}), have {pids}:\n{self.log()}"
        )

    # --- talking -------------------------------------------------------------------

    def get(self, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()
