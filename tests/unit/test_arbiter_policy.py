"""The arbiter's policy, driven through a fake ProcOps (no process is forked).

The fake records every signal sent and scripts what ``waitpid`` reports, and
owns the clock, so timeouts are tested by moving time, not by waiting.
"""

from __future__ import annotations

import os
import signal
import struct
import time
from pathlib import Path
from typing import Any, NoReturn

import pytest

from fastwsgi.arbiter import ABORT_GRACE, SIG_QUEUE_MAX, Arbiter, HaltServer, Pidfile
from fastwsgi.config import ArbiterSettings, Groups, Hooks, LogSettings, WorkerSettings
from fastwsgi.errors import AppImportError
from fastwsgi.procops import ProcOps


def exited(code: int) -> int:
    """A wait status for a normal exit with ``code``."""
    return code << 8


def killed(sig: int) -> int:
    """A wait status for death by ``sig``."""
    return sig


class FakeProcOps(ProcOps):
    def __init__(self) -> None:
        self.next_pid = 1000
        self.forked: list[int] = []
        self.kills: list[tuple[int, int]] = []
        self.exits: list[tuple[int, int]] = []
        self.now = time.monotonic()
        self.ppid = 1
        # pid -> wait status reap_pid reports once the child "exited"; a
        # SIGKILL makes a child exit. Each look moves the clock 0.5 s on.
        self.child_status: dict[int, int] = {}

    def fork(self) -> int:
        self.next_pid += 1
        self.forked.append(self.next_pid)
        return self.next_pid

    def kill(self, pid: int, sig: int) -> bool:
        self.kills.append((pid, sig))
        if sig == signal.SIGKILL:
            self.child_status.setdefault(pid, killed(sig))
        return True

    def reap(self) -> tuple[int, int] | None:
        return self.exits.pop(0) if self.exits else None

    def reap_pid(self, pid: int) -> int | None:
        self.now += 0.5
        return self.child_status.pop(pid, None)

    def execve(self, path: str, args: list[str], env: dict[str, str]) -> NoReturn:
        raise AssertionError("the policy tests never exec")

    def getpid(self) -> int:
        return 999

    def getppid(self) -> int:
        return self.ppid

    def monotonic(self) -> float:
        return self.now


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.reopened = 0

    def _add(self, level: str, msg: str, *args: Any, **kw: Any) -> None:
        self.lines.append((level, msg % args if args else msg))

    def debug(self, msg: str, *args: Any, **kw: Any) -> None:
        self._add("debug", msg, *args)

    def info(self, msg: str, *args: Any, **kw: Any) -> None:
        self._add("info", msg, *args)

    def warning(self, msg: str, *args: Any, **kw: Any) -> None:
        self._add("warning", msg, *args)

    def error(self, msg: str, *args: Any, **kw: Any) -> None:
        self._add("error", msg, *args)

    def critical(self, msg: str, *args: Any, **kw: Any) -> None:
        self._add("critical", msg, *args)

    def exception(self, msg: str, *args: Any, **kw: Any) -> None:
        self._add("exception", msg, *args)

    def reopen_files(self) -> None:
        self.reopened += 1

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def make_groups(workers: int = 2, hooks: Hooks | None = None, **arbiter: Any) -> Groups:
    return Groups(
        app_uri="testapp:app",
        arbiter=ArbiterSettings(workers=workers, timeout=2.0, graceful_timeout=5.0, **arbiter),
        # The base class itself: the fake never runs a worker's code.
        worker=WorkerSettings(worker_class="fastwsgi.workers.base.Worker", timeout=2.0),
        log=LogSettings(),
        hooks=hooks or Hooks(),
    )


def never_called() -> Any:
    raise AssertionError("the master must not load the app without --preload")


@pytest.fixture
def ops() -> FakeProcOps:
    return FakeProcOps()


@pytest.fixture
def log() -> RecordingLog:
    return RecordingLog()


def make_arbiter(ops: FakeProcOps, log: RecordingLog, **kw: Any) -> Arbiter:
    reloader = kw.pop("reloader", None)
    return Arbiter(make_groups(**kw), never_called, log, reloader=reloader, procops=ops)  # type: ignore[arg-type]


def test_manage_workers_spawns_the_configured_number(ops: FakeProcOps, log: RecordingLog) -> None:
    seen: list[tuple[Any, Any]] = []
    arb = make_arbiter(ops, log, workers=3, hooks=Hooks(pre_fork=lambda s, w: seen.append((s, w))))
    arb.manage_workers()
    assert sorted(arb.WORKERS) == ops.forked and len(ops.forked) == 3
    assert [w.age for w in arb.WORKERS.values()] == [1, 2, 3]
    assert [w.pid for w in arb.WORKERS.values()] == ops.forked
    assert all(server is arb for server, _ in seen) and len(seen) == 3
    # Nothing more to do on the next turn.
    arb.manage_workers()
    assert len(ops.forked) == 3 and ops.kills == []


def test_a_dead_worker_is_reaped_reported_and_replaced(ops: FakeProcOps, log: RecordingLog) -> None:
    exits: list[int] = []
    arb = make_arbiter(ops, log, hooks=Hooks(child_exit=lambda s, w: exits.append(w.pid)))
    arb.manage_workers()
    victim = ops.forked[0]
    ops.exits.append((victim, killed(signal.SIGKILL)))
    arb.reap_workers()
    assert victim not in arb.WORKERS and exits == [victim]
    assert f"Worker (pid:{victim}) was sent SIGKILL! Perhaps out of memory?" in log.text()
    arb.manage_workers()
    assert len(arb.WORKERS) == 2 and ops.forked[-1] in arb.WORKERS


def test_exit_codes_and_signals_are_named(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log)
    arb.manage_workers()
    a, b = ops.forked
    ops.exits += [(a, exited(1)), (b, killed(signal.SIGSEGV))]
    arb.reap_workers()
    assert f"Worker (pid:{a}) exited with code 1" in log.text()
    assert f"Worker (pid:{b}) was sent SIGSEGV!" in log.text()


@pytest.mark.parametrize(
    ("code", "reason"), [(3, "Worker failed to boot."), (4, "App failed to load.")]
)
def test_boot_errors_halt_instead_of_respawning(
    ops: FakeProcOps, log: RecordingLog, code: int, reason: str
) -> None:
    arb = make_arbiter(ops, log)
    arb.manage_workers()
    ops.exits.append((ops.forked[0], exited(code)))
    with pytest.raises(HaltServer) as info:
        arb.reap_workers()
    assert info.value.exit_status == code and info.value.reason == reason
    # The dead worker was still accounted for before halting.
    assert ops.forked[0] not in arb.WORKERS


def test_the_halt_reason_is_the_workers_own_line(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log)
    arb.manage_workers()
    line = "Failed to load application 'm:app': RuntimeError: no DB (m.py:3)"
    arb.WORKERS[ops.forked[0]].heartbeat.set_note(line)
    ops.exits.append((ops.forked[0], exited(4)))
    with pytest.raises(HaltServer) as info:
        arb.reap_workers()
    assert info.value.exit_status == 4 and info.value.reason == line


def test_ttin_and_ttou_change_the_count(ops: FakeProcOps, log: RecordingLog) -> None:
    changes: list[tuple[int, int]] = []
    arb = make_arbiter(
        ops, log, hooks=Hooks(nworkers_changed=lambda s, new, old: changes.append((new, old)))
    )
    arb.manage_workers()
    arb.handle_ttin()
    assert arb.num_workers == 3 and len(arb.WORKERS) == 3 and changes == [(3, 2)]
    oldest = ops.forked[0]
    arb.handle_ttou()
    # The oldest worker is asked to leave gracefully; it is not replaced.
    assert ops.kills == [(oldest, signal.SIGTERM)] and changes[-1] == (2, 3)
    arb.manage_workers()
    assert len(ops.forked) == 3 and ops.kills == [(oldest, signal.SIGTERM)]
    ops.exits.append((oldest, exited(0)))
    arb.reap_workers()
    arb.manage_workers()
    assert len(arb.WORKERS) == 2 and len(ops.forked) == 3


def test_ttou_stops_at_one_worker(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log, workers=1)
    arb.manage_workers()
    arb.handle_ttou()
    assert arb.num_workers == 1 and ops.kills == []


def test_silent_worker_gets_abrt_then_kill(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log, workers=1)
    arb.manage_workers()
    (pid,) = ops.forked
    ops.now += 1.5  # within the 2 s timeout
    arb.murder_workers()
    assert ops.kills == []
    ops.now += 1.0
    arb.murder_workers()
    assert ops.kills == [(pid, signal.SIGABRT)]
    assert f"WORKER TIMEOUT (pid:{pid})" in log.text()
    arb.murder_workers()  # no second ABRT while it has its grace
    assert ops.kills == [(pid, signal.SIGABRT)]
    ops.now += ABORT_GRACE
    arb.murder_workers()
    assert ops.kills == [(pid, signal.SIGABRT), (pid, signal.SIGKILL)]
    ops.now += 10
    arb.murder_workers()  # KILL once is enough
    assert len(ops.kills) == 2
    ops.exits.append((pid, killed(signal.SIGKILL)))
    arb.reap_workers()
    assert f"Worker (pid:{pid}) was sent SIGKILL! (timeout)" in log.text()
    arb.manage_workers()
    assert len(arb.WORKERS) == 1 and pid not in arb.WORKERS


def test_worker_that_beats_is_left_alone(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log, workers=1)
    arb.manage_workers()
    worker = next(iter(arb.WORKERS.values()))
    for _ in range(5):
        ops.now = time.monotonic() + 1.0
        worker.notify()
        arb.murder_workers()
    assert ops.kills == []


@pytest.mark.parametrize("overwritten", [0.0, 5.0])
def test_a_stamp_older_than_the_spawn_restarts_the_clock(
    ops: FakeProcOps, log: RecordingLog, overwritten: float
) -> None:
    # CI twice saw a fresh worker aborted for "no heartbeat for <uptime>s":
    # its stamp read 0. A stamp older than the one acquire() wrote cannot be
    # a beat, so it restarts the clock instead of aborting a healthy worker.
    arb = make_arbiter(ops, log, workers=1)
    arb.manage_workers()
    ((pid, worker),) = arb.WORKERS.items()
    mem, offset = worker.heartbeat.stamp_location()
    struct.pack_into("d", mem, offset, overwritten)
    ops.now = time.monotonic() + 1.0
    arb.murder_workers()
    assert ops.kills == []
    assert f"Worker (pid:{pid}): heartbeat stamp {overwritten!r} is older than its spawn" in log.text()
    # A worker that really is stuck is still caught, a timeout later.
    ops.now = time.monotonic() + 2.5
    arb.murder_workers()
    assert ops.kills == [(pid, signal.SIGABRT)]


def test_timeout_zero_disables_the_heartbeat_check(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log, workers=1)
    arb.timeout = 0
    arb.manage_workers()
    ops.now += 3600
    arb.murder_workers()
    assert ops.kills == []


def test_retired_worker_is_killed_after_graceful_timeout(
    ops: FakeProcOps, log: RecordingLog
) -> None:
    arb = make_arbiter(ops, log, workers=2)
    arb.manage_workers()
    oldest = ops.forked[0]
    arb.handle_ttou()
    for w in arb.WORKERS.values():
        w.notify()
    ops.now = time.monotonic() + 1.0
    arb.murder_workers()
    assert ops.kills == [(oldest, signal.SIGTERM)]
    ops.now += arb.graceful_timeout
    arb.murder_workers()
    assert [k for k in ops.kills if k[0] == oldest] == [
        (oldest, signal.SIGTERM),
        (oldest, signal.SIGKILL),
    ]
    assert f"Worker (pid:{oldest}) still busy" in log.text()


def test_a_worker_leaving_by_itself_is_replaced_at_once(
    ops: FakeProcOps, log: RecordingLog
) -> None:
    # max_requests, max_worker_memory or a stuck thread: the worker marks its
    # slot and the master starts the replacement while the old one finishes
    # its requests, instead of when it exits (one worker: nothing accepting
    # meanwhile). It gets no TERM, and the graceful_timeout bound holds.
    arb = make_arbiter(ops, log, workers=1)
    arb.manage_workers()
    (old,) = ops.forked
    arb.WORKERS[old].heartbeat.mark_booted()
    arb.WORKERS[old].heartbeat.mark_leaving("max_requests")
    arb.manage_workers()
    assert len(ops.forked) == 2 and sorted(arb.WORKERS) == ops.forked
    assert ops.kills == []
    assert f"Worker (pid:{old}) is leaving (max_requests)" in log.text()
    new = ops.forked[1]
    arb.manage_workers()  # counted once
    assert len(ops.forked) == 2
    ops.now += arb.graceful_timeout
    arb.murder_workers()
    # Never a TERM (it was leaving already), a KILL once graceful_timeout ran out.
    assert [k for k in ops.kills if k[0] == old] == [(old, signal.SIGKILL)]
    assert f"Worker (pid:{old}) still busy 5.0s after it was retired (max_requests)" in log.text()
    ops.exits.append((old, killed(signal.SIGKILL)))
    arb.reap_workers()
    arb.manage_workers()
    assert sorted(arb.WORKERS) == [new] and len(ops.forked) == 2


def test_hup_retires_the_old_workers_once_the_new_have_booted(
    ops: FakeProcOps, log: RecordingLog
) -> None:
    reloaded: list[Any] = []
    new_groups = make_groups(workers=3, hooks=Hooks(on_reload=reloaded.append))
    arb = make_arbiter(ops, log, workers=2, reloader=lambda: new_groups)
    arb.manage_workers()
    old = list(ops.forked)
    arb.handle_hup()
    new = ops.forked[2:]
    assert len(new) == 3 and all(pid in arb.WORKERS for pid in new)
    assert reloaded == [arb] and arb.num_workers == 3 and log.reopened == 1
    # The old generation serves on while the new one loads the app.
    arb.manage_workers()
    assert ops.kills == [] and len(ops.forked) == 5
    arb.WORKERS[new[0]].heartbeat.mark_booted()
    arb.WORKERS[new[1]].heartbeat.mark_booted()
    arb.manage_workers()
    assert ops.kills == []
    # A new worker that dies before booting does not hold the reload up.
    ops.exits.append((new[2], killed(signal.SIGKILL)))
    arb.reap_workers()
    arb.manage_workers()
    assert sorted(ops.kills) == sorted((pid, signal.SIGTERM) for pid in old)
    # Its replacement was spawned; the retiring workers are not counted.
    assert len(ops.forked) == 6
    arb.manage_workers()
    assert len(ops.forked) == 6 and len(ops.kills) == 2


def test_second_hup_retires_the_previous_old_generation_at_once(
    ops: FakeProcOps, log: RecordingLog
) -> None:
    arb = make_arbiter(ops, log, workers=1, reloader=lambda: make_groups(workers=1))
    arb.manage_workers()
    (first,) = ops.forked
    arb.handle_hup()
    assert ops.kills == []
    arb.handle_hup()
    # The first generation goes now; the second waits for the third to boot.
    assert ops.kills == [(first, signal.SIGTERM)]
    third = ops.forked[-1]
    arb.WORKERS[third].heartbeat.mark_booted()
    arb.manage_workers()
    assert ops.kills == [(first, signal.SIGTERM), (ops.forked[1], signal.SIGTERM)]


def test_hup_with_a_broken_config_keeps_the_workers(ops: FakeProcOps, log: RecordingLog) -> None:
    def reloader() -> Groups:
        raise ValueError("bad config")

    arb = make_arbiter(ops, log, reloader=reloader)
    arb.manage_workers()
    arb.handle_hup()
    assert ops.kills == [] and len(ops.forked) == 2
    assert "Reload failed" in log.text()


@pytest.mark.parametrize("code", [3, 4])
def test_hup_whose_new_workers_cannot_boot_keeps_the_old_ones(
    ops: FakeProcOps, log: RecordingLog, code: int
) -> None:
    """The code deployed before HUP does not import: the reload fails, the
    previous generation keeps serving, nothing more is spawned from it."""
    arb = make_arbiter(ops, log, workers=2, reloader=lambda: make_groups(workers=3))
    arb.manage_workers()
    old = list(ops.forked)
    arb.WORKERS[old[0]].heartbeat.mark_booted()
    arb.WORKERS[old[1]].heartbeat.mark_booted()
    arb.handle_hup()
    new = ops.forked[2:]
    line = "Failed to load application 'm:app': SyntaxError: invalid syntax (m.py:9)"
    arb.WORKERS[new[0]].heartbeat.set_note(line)
    ops.exits.append((new[0], exited(code)))
    arb.reap_workers()  # no HaltServer
    assert f"Reload failed: {line}; the 2 previous worker(s) keep serving" in log.text()
    # The rest of the new generation is retired; the old workers are not.
    assert sorted(ops.kills) == sorted((pid, signal.SIGTERM) for pid in new[1:])
    assert [pid for pid, _ in arb.active_workers()] == old and arb.num_workers == 2
    # They fail the same way on their way out: told once, no halt.
    ops.exits += [(pid, exited(code)) for pid in new[1:]]
    arb.reap_workers()
    arb.manage_workers()
    assert len(ops.forked) == 5 and sorted(arb.WORKERS) == old
    assert log.text().count("Reload failed") == 1
    # A later boot failure outside a reload halts as at any other time.
    ops.exits.append((old[0], killed(signal.SIGKILL)))
    arb.reap_workers()
    arb.manage_workers()
    replacement = ops.forked[-1]
    ops.exits.append((replacement, exited(code)))
    with pytest.raises(HaltServer):
        arb.reap_workers()


def test_usr1_reopens_logs_and_forwards(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log)
    arb.manage_workers()
    arb.handle_usr1()
    assert log.reopened == 1
    assert sorted(ops.kills) == [(pid, signal.SIGUSR1) for pid in ops.forked]


def test_winch_only_acts_when_daemonized(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log)
    arb.manage_workers()
    arb.handle_winch()
    assert ops.kills == [] and arb.num_workers == 2
    arb = make_arbiter(ops, log, daemon=True)
    ops.forked.clear()
    arb.manage_workers()
    arb.handle_winch()
    assert arb.num_workers == 0
    assert sorted(ops.kills) == [(pid, signal.SIGTERM) for pid in ops.forked]


def test_signal_queue_is_bounded(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log)
    for _ in range(SIG_QUEUE_MAX + 3):
        arb.signal(signal.SIGTTIN, None)
    assert arb.SIG_QUEUE == [signal.SIGTTIN] * SIG_QUEUE_MAX


def test_usr2_moves_the_pidfile_and_refuses_twice(
    ops: FakeProcOps, log: RecordingLog, tmp_path: Path
) -> None:
    path = str(tmp_path / "app.pid")
    arb = make_arbiter(ops, log, pidfile=path)
    arb.pidfile = Pidfile(path)
    arb.pidfile.create(os.getpid())
    arb.handle_usr2()
    assert arb.reexec_pid == ops.forked[-1]
    assert not os.path.exists(path) and int(Path(path + ".oldbin").read_text()) == os.getpid()
    arb.handle_usr2()
    assert len(ops.forked) == 1 and "Child exists" in log.text()
    # The new master died: the old one keeps its pidfile name back.
    ops.exits.append((arb.reexec_pid, exited(1)))
    arb.reap_workers()
    assert arb.reexec_pid == 0 and int(Path(path).read_text()) == os.getpid()


def test_new_master_is_promoted_when_its_parent_goes(
    ops: FakeProcOps, log: RecordingLog, tmp_path: Path
) -> None:
    path = str(tmp_path / "app.pid")
    arb = make_arbiter(ops, log, pidfile=path)
    arb.master_pid = 500
    arb.master_name = "Master.2"
    arb.pidfile = Pidfile(path + ".2")
    arb.pidfile.create(os.getpid())
    ops.ppid = 500
    arb.maybe_promote_master()
    assert arb.master_pid == 500
    arb.handle_usr2()  # a child master cannot re-exec while its parent lives
    assert ops.forked == [] and "Parent exists" in log.text()
    ops.ppid = 1
    arb.maybe_promote_master()
    assert arb.master_pid == 0 and arb.master_name == "Master"
    assert int(Path(path).read_text()) == os.getpid() and not os.path.exists(path + ".2")


def test_pidfile_refuses_a_live_owner_and_replaces_a_stale_one(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text(f"{os.getppid()}\n")  # a live process that is not us
    with pytest.raises(HaltServer, match="Already running"):
        Pidfile(str(path)).create(os.getpid())
    path.write_text("2147483646\n")  # no such process
    pf = Pidfile(str(path))
    pf.create(os.getpid())
    assert path.read_text() == f"{os.getpid()}\n"
    pf.unlink()
    assert not path.exists()


def test_pidfile_unlink_leaves_a_successors_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text(f"{os.getppid()}\n")
    Pidfile(str(path)).unlink()
    assert path.exists()


def test_preload_loads_once_in_the_master(ops: FakeProcOps, log: RecordingLog) -> None:
    calls: list[int] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        return [b""]

    def loader() -> Any:
        calls.append(1)
        return app

    groups = make_groups(preload_app=True)
    arb = Arbiter(groups, loader, log, procops=ops)  # type: ignore[arg-type]
    arb.preload()
    arb.manage_workers()
    assert calls == [1]
    assert all(w.app_loader() is app for w in arb.WORKERS.values())
    assert calls == [1]


def test_failed_preload_is_a_runtime_failure_before_any_fork(ops: FakeProcOps, log: RecordingLog) -> None:
    def loader() -> Any:
        raise ImportError("nope")

    arb = Arbiter(make_groups(preload_app=True), loader, log, procops=ops)  # type: ignore[arg-type]
    with pytest.raises(AppImportError) as info:
        arb.preload()
    assert info.value.exit_status == 1
    assert str(info.value).startswith("Failed to load application 'testapp:app': ImportError: nope (")
    assert ops.forked == []


# The probe: the fake's fork returns a pid and no child runs, so the pipe is
# empty and what the master decides rests on the scripted wait status.


def test_probe_that_exits_0_lets_start_up_go_on_without_fork_hooks(
    ops: FakeProcOps, log: RecordingLog
) -> None:
    seen: list[str] = []
    hooks = Hooks(pre_fork=lambda s, w: seen.append("pre_fork"), post_fork=lambda s, w: seen.append("post_fork"))
    arb = make_arbiter(ops, log, hooks=hooks)
    ops.child_status[ops.next_pid + 1] = exited(0)
    arb.probe_app()
    assert len(ops.forked) == 1 and ops.kills == [] and ops.child_status == {}
    assert arb.WORKERS == {} and arb.worker_age == 0 and seen == []


@pytest.mark.parametrize(
    ("status", "how"), [(exited(1), "exit code 1"), (killed(signal.SIGSEGV), "SIGSEGV")]
)
def test_probe_that_fails_is_one_line_and_exit_1(
    ops: FakeProcOps, log: RecordingLog, status: int, how: str
) -> None:
    arb = make_arbiter(ops, log)
    ops.child_status[ops.next_pid + 1] = status
    with pytest.raises(AppImportError) as info:
        arb.probe_app()
    assert info.value.exit_status == 1
    assert str(info.value) == f"Failed to load application 'testapp:app': the process loading it died ({how})"
    assert arb.WORKERS == {} and ops.kills == []


def test_probe_that_hangs_is_killed_after_timeout(ops: FakeProcOps, log: RecordingLog) -> None:
    arb = make_arbiter(ops, log)  # timeout=2.0; each look at the child costs 0.5 s
    start = ops.now
    with pytest.raises(AppImportError) as info:
        arb.probe_app()
    (probe,) = ops.forked
    assert ops.kills == [(probe, signal.SIGKILL)]
    assert ops.child_status == {}  # reaped after the kill
    assert 2.0 <= ops.now - start <= 4.0
    assert "did not finish within the 2s timeout" in str(info.value)


def test_app_loader_object_with_load_method(ops: FakeProcOps, log: RecordingLog) -> None:
    class Loader:
        def load(self) -> str:
            return "the app"

    arb = Arbiter(make_groups(), Loader(), log, procops=ops)  # type: ignore[arg-type]
    assert arb.app_loader() == "the app"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_hup_with_new_binds_keeps_unchanged_sockets(
    ops: FakeProcOps, log: RecordingLog, tmp_path: Path
) -> None:
    from fastwsgi.sock import create_listeners

    p1, p2 = _free_port(), _free_port()
    groups = make_groups(bind=(f"127.0.0.1:{p1}",))
    later = make_groups(bind=(f"127.0.0.1:{p1}", f"unix:{tmp_path / 'b.sock'}"))
    arb = Arbiter(groups, never_called, log, reloader=lambda: later, procops=ops)  # type: ignore[arg-type]
    arb.LISTENERS = create_listeners(groups.arbiter.bind, retries=1)
    kept = arb.LISTENERS[0]
    arb.handle_hup()
    try:
        assert arb.LISTENERS[0] is kept and kept.sock.fileno() >= 0
        assert str(arb.LISTENERS[1]) == f"unix:{tmp_path / 'b.sock'}"
        # Dropping an address closes (and unlinks) only that one.
        arb.reloader = lambda: make_groups(bind=(f"127.0.0.1:{p2}",))
        unix = arb.LISTENERS[1]
        arb.handle_hup()
        assert kept.sock.fileno() == -1 and unix.sock.fileno() == -1
        assert not (tmp_path / "b.sock").exists()
        assert [str(lnr) for lnr in arb.LISTENERS] == [f"http://127.0.0.1:{p2}"]
    finally:
        for lnr in arb.LISTENERS:
            lnr.close()


@pytest.mark.parametrize("broken", ["worker_class", "bind", "preload"])
def test_a_failing_reload_changes_nothing(
    ops: FakeProcOps, log: RecordingLog, tmp_path: Path, broken: str
) -> None:
    from dataclasses import replace

    from fastwsgi.sock import create_listeners

    port = _free_port()
    groups = make_groups(bind=(f"127.0.0.1:{port}",))
    (tmp_path / "file").write_text("")
    if broken == "worker_class":
        later = replace(groups, worker=replace(groups.worker, worker_class="no.such.Worker"))
    elif broken == "bind":
        later = make_groups(workers=5, bind=(f"unix:{tmp_path / 'file'}",))
    else:
        later = make_groups(workers=5, preload_app=True)
    arb = Arbiter(groups, never_called, log, reloader=lambda: later, procops=ops)  # type: ignore[arg-type]
    arb.LISTENERS = create_listeners(groups.arbiter.bind, retries=1)
    before = list(arb.LISTENERS)
    try:
        arb.manage_workers()
        arb.handle_hup()
        assert arb.groups is groups and arb.LISTENERS == before
        assert before[0].sock.fileno() >= 0
        assert len(ops.forked) == 2 and ops.kills == []
        assert "Reload failed; the running workers keep serving" in log.text()
    finally:
        for lnr in before:
            lnr.close()
