"""The Worker base class (recycling decisions, signals) and -k lookup, in-process."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from fastwsgi.config import Hooks, WorkerSettings
from fastwsgi.errors import ConfigError
from fastwsgi.heartbeat import HeartbeatPool
from fastwsgi.workers import Worker, load_worker_class, worker_class_name
from fastwsgi.workers.base import rss_bytes


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.reopened = 0

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    critical = error = warning = debug = exception = info

    def reopen_files(self) -> None:
        self.reopened += 1


def make_worker(**settings: Any) -> tuple[Worker, Log]:
    log = Log()
    w = Worker(
        1,
        # The "master" is this process: a worker that retires by itself
        # wakes its master with SIGCHLD, which must not reach pytest's parent.
        os.getpid(),
        [],
        lambda: None,
        WorkerSettings(**settings),
        log,  # type: ignore[arg-type]
        Hooks(),
        HeartbeatPool().acquire(),
    )
    return w, log


def test_max_requests_retires_after_the_nth_request() -> None:
    w, log = make_worker(max_requests=3)
    woken: list[int] = []
    previous = signal.signal(signal.SIGCHLD, lambda sig, frame: woken.append(sig))
    try:
        for _ in range(2):
            w.request_done()
            assert w.alive and not w.heartbeat.leaving()
        w.request_done()
        assert not w.alive and w.nr == 3
        assert any("max_requests 3 reached" in line for line in log.lines)
        # The master learns now, not when this process exits: the slot says
        # why, and SIGCHLD wakes its loop to start the replacement.
        assert w.heartbeat.leaving() and w.heartbeat.note() == "max_requests"
        assert woken == [signal.SIGCHLD]
        w.request_done()  # a request already in hand when it retired
        assert woken == [signal.SIGCHLD]  # told once
    finally:
        signal.signal(signal.SIGCHLD, previous)


def test_no_max_requests_means_never() -> None:
    w, _ = make_worker()
    for _ in range(1000):
        w.request_done()
    assert w.alive


def test_jitter_stays_in_range() -> None:
    limits = {
        make_worker(max_requests=10, max_requests_jitter=5)[0].max_requests for _ in range(200)
    }
    assert limits <= set(range(10, 16)) and len(limits) > 1


def test_memory_limit_retires_a_worker_over_it() -> None:
    # Any Python process is far above 1 MiB resident.
    w, log = make_worker(max_worker_memory=1)
    assert rss_bytes() > 1024 * 1024
    woken: list[int] = []
    previous = signal.signal(signal.SIGCHLD, lambda sig, frame: woken.append(sig))
    try:
        w.request_done()
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert not w.alive
    assert any("exceeds max_worker_memory 1 MiB" in line for line in log.lines)
    # Memory is what is short: no replacement before this process has gone.
    assert not w.heartbeat.leaving() and woken == []


def test_memory_limit_reads_through_a_kept_fd() -> None:
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        a, b = rss_bytes(fd), rss_bytes(fd)
        assert a > 0 and b > 0 and abs(a - b) < 64 * 1024 * 1024
    finally:
        os.close(fd)


def test_generous_memory_limit_keeps_the_worker() -> None:
    w, _ = make_worker(max_worker_memory=1024 * 1024)
    w.request_done()
    assert w.alive


def test_term_clears_alive_and_wakes_the_loop() -> None:
    w, log = make_worker()
    saved = {
        s: signal.getsignal(s)
        for s in (
            signal.SIGTERM,
            signal.SIGUSR1,
            signal.SIGQUIT,
            signal.SIGINT,
            signal.SIGWINCH,
            signal.SIGABRT,
        )
    }
    old_wakeup = signal.set_wakeup_fd(-1)
    try:
        w.init_signals()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert log.reopened == 1
        os.kill(os.getpid(), signal.SIGTERM)
        assert not w.alive
        # Both signals left a byte on the wake-up pipe a poll loop would see.
        assert len(os.read(w.wakeup_fd, 64)) == 2
        w.drain_wakeup()
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for s, h in saved.items():
            signal.signal(s, h)
        for fd in w.PIPE:
            os.close(fd)


def test_stack_dump_names_this_function() -> None:
    assert "test_stack_dump_names_this_function" in Worker.format_stacks()


def test_worker_class_lookup() -> None:
    assert load_worker_class("fastwsgi.workers.base.Worker") is Worker
    assert load_worker_class("fastwsgi.workers.base:Worker") is Worker
    assert worker_class_name("sync", threads=4) == "gthread"
    assert worker_class_name("egg:gunicorn#gthread") == "gthread"
    assert worker_class_name("gunicorn.workers.sync.SyncWorker") == "sync"
    with pytest.raises(ConfigError, match="unknown worker class"):
        load_worker_class("eventlet")
    with pytest.raises(ConfigError, match="cannot import"):
        load_worker_class("no_such_module_here.Worker")
    with pytest.raises(ConfigError, match="not a fastwsgi"):
        load_worker_class("socket.socket")
