"""The gthread worker's scheduling policy with real threads and sockets.

JobQueue: FIFO jobs, exactly one thread woken per job, the last idle thread
first, and no job left behind when a batch arrives faster than threads wake.
The linger: a pool thread stops waiting on a client that pauses longer than
LINGER between requests, and starts again once it answers quickly."""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fastwsgi._conn import Connection, WorkerContext
from fastwsgi.config import WorkerSettings
from fastwsgi.workers.gthread import JobQueue, ThreadWorker

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


def _hello(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "2")])
    return [b"hi"]


HEAD = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def _client_conn() -> tuple[Connection, socket.socket]:
    """A server-side Connection over a socketpair, and the client's end."""
    ctx = WorkerContext(WorkerSettings(header_timeout=5.0, timeout=5.0), None, None, None)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.settimeout(WAIT)
    return Connection(ctx, a, ("10.1.2.3", 40000), ("127.0.0.1", 80)), b


def test_linger_stops_for_a_client_that_pauses_and_resumes_when_it_is_quick() -> None:
    w = object.__new__(ThreadWorker)  # the policy only: no selector, no pool
    w.slow, w.waiting, w.deadline, w.busy, w.jobs = {}, {}, {}, set(), JobQueue()
    conn, b = _client_conn()

    def serve_one() -> None:
        assert conn.handle_request(_hello) is True
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")

    def send_later() -> threading.Thread:
        t = threading.Timer(0.1, b.sendall, (HEAD,))
        t.start()
        return t

    try:
        # Nothing comes within the linger: it times out and marks the client.
        w.linger = 0.05
        assert w._linger_or_poll(conn) == 0
        assert conn in w.slow
        # Marked: no more lingering (a 30 s linger would be noticed), only a
        # look at what is buffered.
        w.linger = 30.0
        started = time.monotonic()
        assert w._linger_or_poll(conn) == 0
        assert time.monotonic() - started < w.linger / 2
        # Its next head reaches the selector long after the hand-back: still slow.
        w.slow[conn] = time.monotonic() - 2 * w.linger
        w.waiting[conn.fd] = conn
        b.sendall(HEAD)
        w._readable(conn)
        assert conn in w.slow and len(w.jobs) == 1  # submitted all the same
        serve_one()
        # The next one arrives within the linger of the hand-back: unmarked.
        w.slow[conn] = time.monotonic()
        w.waiting[conn.fd] = conn
        b.sendall(HEAD)
        w._readable(conn)
        assert conn not in w.slow and len(w.jobs) == 2
        serve_one()
        # And the thread lingers again: a head sent 0.1 s later is caught.
        sender = send_later()
        assert w._linger_or_poll(conn) == 1
        sender.join(WAIT)
        assert conn not in w.slow
    finally:
        conn.close()
        b.close()


def _finishing_worker() -> ThreadWorker:
    """The state _finish and _close_here touch, with a real wake-up pipe."""
    w = object.__new__(ThreadWorker)
    w.busy, w.slow, w.returned = set(), {}, deque()
    w.fdmap, w._registered, w.waiting, w.deadline = {}, set(), {}, {}
    w.early = set()
    w._nlock = threading.Lock()
    w.nconns, w.paused, w.alive = 1, False, True
    w._wake_pending = False
    w.wake_r, w.wake_w = os.pipe()
    os.set_blocking(w.wake_r, False)
    w.log = logging.getLogger("test")
    return w


def _release(w: ThreadWorker, *others: Connection | socket.socket) -> None:
    """Close ``others``, then what _finishing_worker and _selector_worker opened."""
    for x in others:
        x.close()
    if hasattr(w, "ep"):
        w.ep.close()
    os.close(w.wake_r)
    os.close(w.wake_w)


def _wake_bytes(w: ThreadWorker) -> int:
    try:
        return len(os.read(w.wake_r, 64))
    except BlockingIOError:
        return 0


def test_a_connection_not_kept_is_closed_by_its_pool_thread_at_once() -> None:
    # Served with "Connection: close": the thread that answered closes it, so
    # the client sees EOF now (the server closes first, as sync does) with no
    # selector thread running, and the selector's bookkeeping for that fd
    # (it was armed in epoll once) is gone before the fd number is reused.
    w = _finishing_worker()
    conn, b = _client_conn()
    fd = conn.fd
    w.busy.add(conn)
    w.fdmap[fd], w.slow[conn] = conn, 0.0
    w._registered.add(fd)
    w.early.add(fd)
    try:
        b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert conn.poll_head() == 1
        keep = conn.handle_request(_hello)
        assert keep is False
        w._finish(conn, keep, False)
        data = b""
        while chunk := b.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK") and data.endswith(b"\r\n\r\nhi")
        assert fd not in w.fdmap and fd not in w._registered and conn not in w.slow
        assert fd not in w.early
        assert not w.busy and not w.returned and w.nconns == 0
        assert _wake_bytes(w) == 0  # nothing for the selector to do
    finally:
        _release(w, b)


def test_a_kept_connection_goes_back_to_the_selector_with_one_wake_up() -> None:
    w = _finishing_worker()
    ctx = WorkerContext(WorkerSettings(header_timeout=5.0, timeout=5.0), None, None, None)
    pairs = [socket.socketpair() for _ in range(2)]
    conns = [Connection(ctx, a, ("10.1.2.3", 40000), ("127.0.0.1", 80)) for a, _ in pairs]
    w.nconns = 2
    try:
        for c in conns:
            w.busy.add(c)
            w._finish(c, True, False)
        assert [c for c, _ready in w.returned] == conns
        assert w.nconns == 2 and not w.busy
        assert _wake_bytes(w) == 1  # one byte per selector round, not per connection
        # While the selector is not accepting (at worker_connections), a close
        # from a pool thread wakes it so it can take new connections again.
        w._wake_pending, w.paused = False, True
        w.returned.clear()
        w.busy.add(conns[0])
        w._finish(conns[0], False, False)
        assert w.nconns == 1 and _wake_bytes(w) == 1
    finally:
        for c in conns:
            c.close()
        for _a, b in pairs:
            b.close()
        _release(w)


def _selector_worker() -> ThreadWorker:
    """The selector's state with a real epoll set, for driving its rounds by
    hand: _on_event for what ep.poll reports, then _take_returned."""
    w = _finishing_worker()
    w.settings = WorkerSettings(header_timeout=5.0, timeout=5.0, keepalive=5.0)
    w.jobs = JobQueue()
    w.ep = select.epoll()
    w.epfd = w.ep.fileno()
    return w


def _round(w: ThreadWorker, wait: float) -> list[int]:
    """One selector round; the fds epoll reported."""
    fds = [fd for fd, _ev in w.ep.poll(wait)]
    for fd in fds:
        w._on_event(fd)
    w._take_returned()
    if w.early:
        w._unregister_busy()
    return fds


def _serve(w: ThreadWorker, app: Callable[..., Any] = _hello) -> Connection:
    """What a pool thread does with the job at the head of the queue."""
    conn = w.jobs._items.popleft()
    assert conn is not None
    keep = conn.handle_request(app)
    ready = conn.buffered_head() == 1
    w._finish(conn, keep, ready)
    return conn


def test_a_kept_connection_stays_in_the_edge_triggered_set_and_no_request_is_missed() -> None:
    # Registered once (epoll_ctl ADD), parked again after each request with
    # no syscall, and still every next request is seen: the ones that come
    # after it is parked (a fresh edge), the ones that came while a pool
    # thread had it (its event that round, before the hand-back), and the
    # bytes of a long upload (taken out of the set meanwhile, so its
    # segments do not wake the selector; ADD reports what is left).
    w = _selector_worker()
    conn, b = _client_conn()
    fd = conn.fd
    try:
        w._dispatch(conn, 5.0)  # accepted, nothing sent yet: parked, added
        assert w.waiting == {fd: conn} and fd in w._registered
        for _ in range(3):
            b.sendall(HEAD)
            assert _round(w, WAIT) == [fd] and len(w.jobs) == 1 and not w.waiting
            _serve(w)
            assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
            _round(w, 0)  # the hand-back, read dry: parked as it is
            assert w.waiting == {fd: conn} and fd in w._registered and conn.drained
        # The next request arrives before the hand-back reaches the selector:
        # its edge comes in the same round, ahead of the hand-back.
        b.sendall(HEAD)
        assert _round(w, WAIT) == [fd] and len(w.jobs) == 1
        conn = _serve(w)
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
        b.sendall(HEAD)
        _until(lambda: select.select([fd], [], [], 0)[0] != [], "the next request")
        assert _round(w, WAIT) == [fd]
        assert not w.waiting and len(w.jobs) == 1 and fd in w._registered
        # A busy connection's bytes: reported once, then it leaves the set.
        conn = w.jobs._items.popleft()
        b.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n")
        assert _round(w, WAIT) == [fd]
        assert fd not in w._registered and not w.early
        b.sendall(b"ab")
        assert _round(w, 0.05) == []  # out of the set: no wake-up for these
        w.jobs._items.appendleft(conn)
        _serve(w)  # the GET queued before the POST
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
        assert _round(w, 0) == []  # the hand-back: parked, added again
        assert w.waiting == {fd: conn} and fd in w._registered
        # The POST's head and first body bytes were waiting in the kernel,
        # with no new edge since: the ADD reported them.
        assert _round(w, WAIT) == [fd] and len(w.jobs) == 1
        b.sendall(b"cd")
        _serve(w)
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
    finally:
        _release(w, conn, b)


def test_a_connection_not_read_dry_is_looked_at_before_it_is_parked() -> None:
    # The selector's first recv() fills the parser's buffer (4 KiB, or up to
    # 64 KiB when it comes from the pool of a closed connection's buffers)
    # and leaves the rest in the kernel, and the app reads its body straight
    # into its own bytes, exactly to the end: the next request is already in
    # the kernel, its edge long consumed. Parking the connection without a
    # look would leave that request unanswered until the keep-alive timeout.
    w = _selector_worker()
    conn, b = _client_conn()
    fd = conn.fd
    body = b"x" * 100_000  # more than any parser buffer holds at first
    got: list[int] = []

    def reader(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        got.append(len(environ["wsgi.input"].read()))
        return _hello(environ, start_response)

    try:
        w._dispatch(conn, 5.0)
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        b.sendall(head + body + HEAD)
        assert _round(w, WAIT) == [fd] and len(w.jobs) == 1
        assert not conn.drained  # the buffer is full, the rest is unread
        _serve(w, reader)
        assert got == [len(body)]
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
        assert not conn.drained and conn.buffered == 0  # the GET is in the kernel
        _round(w, 0)
        assert len(w.jobs) == 1 and not w.waiting  # looked, found, submitted
        _serve(w)
        assert b.recv(1000).startswith(b"HTTP/1.1 200 OK")
    finally:
        _release(w, conn, b)
