"""The gthread worker's JobQueue with real threads: FIFO jobs, exactly one
thread woken per job, the last idle thread first, and no job left behind when
a batch arrives faster than threads wake."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fastwsgi.workers.gthread import JobQueue

WAIT = 10.0  # seconds: generous bound for a busy 2-core machine


def _until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


class _CountingLock:
    """A thread's wake lock that counts how often its owner was woken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self.wakeups = 0

    def acquire(self) -> bool:
        self._lock.acquire()
        self.wakeups += 1
        return True

    def release(self) -> None:
        self._lock.release()


class _Getter:
    """A thread that takes jobs from q until it gets None, recording each."""

    def __init__(self, q: JobQueue, name: str, got: list[tuple[str, object]]) -> None:
        self.q, self.name, self.got = q, name, got
        self.wake = _CountingLock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        wake = self.wake
        while True:
            item = self.q.get(wake)  # type: ignore[arg-type]
            if item is None:
                return
            self.got.append((self.name, item))


def _stop(q: JobQueue, getters: list[_Getter]) -> None:
    for _ in getters:
        q.put(None)
    for g in getters:
        g.thread.join(WAIT)
        assert not g.thread.is_alive()


def test_jobs_come_out_in_order() -> None:
    q = JobQueue()
    for i in range(5):
        q.put(i)  # type: ignore[arg-type]
    assert len(q) == 5
    wake = threading.Lock()
    wake.acquire()
    assert [q.get(wake) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(q) == 0 and q.idle() == 0


def test_one_job_wakes_exactly_one_thread_the_last_idle() -> None:
    q = JobQueue()
    got: list[tuple[str, object]] = []
    getters = []
    for name in ("first", "second", "third"):
        getters.append(_Getter(q, name, got))
        _until(lambda n=len(getters): q.idle() == n, f"{name} to go idle")  # noqa: B008
    q.put("job")  # type: ignore[arg-type]
    _until(lambda: len(got) == 1, "the job to be taken")
    _until(lambda: q.idle() == 3, "the taker to go idle again")
    # Taken by the thread that went idle last, and nobody else woke up
    # (queue.SimpleQueue would also wake a second thread for nothing).
    assert got == [("third", "job")]
    assert [g.wake.wakeups for g in getters] == [0, 0, 1]
    _stop(q, getters)


def test_a_burst_reaches_every_job_and_spreads_over_idle_threads() -> None:
    # Jobs put faster than threads wake: one wake at a time, each woken
    # thread wakes the next while jobs remain, and none is left in the queue.
    q = JobQueue()
    got: list[tuple[str, object]] = []
    release = threading.Event()

    def blocking_app(name: str) -> None:
        wake = threading.Lock()
        wake.acquire()
        while True:
            item = q.get(wake)  # type: ignore[arg-type]
            if item is None:
                return
            got.append((name, item))
            release.wait(WAIT)  # a job that blocks: the others need other threads

    threads = [threading.Thread(target=blocking_app, args=(f"t{i}",), daemon=True)
               for i in range(4)]
    for t in threads:
        t.start()
    _until(lambda: q.idle() == 4, "four idle threads")
    for i in range(4):
        q.put(i)  # type: ignore[arg-type]
    _until(lambda: len(got) == 4, "all four jobs taken")
    assert sorted(item for _, item in got) == [0, 1, 2, 3]  # type: ignore[type-var]
    assert len({name for name, _ in got}) == 4  # four jobs that block, four threads
    release.set()
    for _ in threads:
        q.put(None)
    for t in threads:
        t.join(WAIT)
        assert not t.is_alive()
    assert len(q) == 0


def test_many_jobs_many_threads_none_lost() -> None:
    q = JobQueue()
    got: list[tuple[str, object]] = []
    getters = [_Getter(q, f"g{i}", got) for i in range(8)]
    n = 5000
    for i in range(n):
        q.put(i)  # type: ignore[arg-type]
        if i % 97 == 0:
            time.sleep(0)  # let threads go idle and be woken mid-stream
    _until(lambda: len(got) == n, "every job taken")
    assert sorted(item for _, item in got) == list(range(n))  # type: ignore[type-var]
    _stop(q, getters)
