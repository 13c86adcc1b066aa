"""The gthread worker: one selector thread, a pool of ``threads`` threads, keep-alive.

Theory of operation
-------------------
The selector thread (the worker's main thread) owns every connection that is
not being served: it accepts, waits for bytes with ``epoll`` and feeds them to
the connection's parser without blocking (``Connection.poll_head``). Only a
connection whose request head is complete (or whose bytes are already known to
be an error to answer) goes to the pool, so a slow or idle client never
occupies a thread (Gunicorn's gthread hands the socket over as soon as it is
readable, and the thread then blocks on the rest of the head).

Connections ready to be served wait in a ``JobQueue`` (FIFO), which wakes one
idle pool thread at a time. A pool thread runs ``handle_request`` and, while
the connection stays alive, looks at what to do with it next:

* other connections are queued: it goes to the back of the line (straight
  back into the queue if its next head is already buffered), so a client
  that sends its next request at once cannot jump ahead of ones that have
  waited (p50/p99 under saturation: FIFO across connections, as Gunicorn);
* nobody is queued and its next head is already there (a pipelined request,
  or a client that sent its next request straight away): the thread serves
  it at once, in order, without a round trip through the selector (at most
  ``INLINE_REQUESTS`` in a row, so the selector thread gets its turn);
* otherwise, when the pool is not saturated (the worker holds fewer
  connections than threads, nothing queued) it lingers: it waits up to
  ``LINGER`` seconds in ``poll()`` on that one connection, GIL released, and
  serves the next request itself. That is the case of one or a few
  keep-alive clients, where the hand-back costs most: pool thread to
  selector thread and back again is about nine context switches and GIL
  hand-overs per request, the linger one wake-up, as in a C event loop.
  Under load the pool is busy, nobody lingers and the selector batches.

A connection that is not kept alive is closed by its pool thread right
after the response, so the server closes first, as the sync worker does
(behind a proxy that opens a connection per request, the TIME_WAIT then
stays on our side instead of on the proxy's ephemeral ports; see
``_finish``). In every other case (and when the linger times out) the
thread hands the connection back through a deque and a wake-up pipe (the
selector thread owns all epoll registration).

Timeouts, all enforced by the selector thread:

* ``keepalive`` seconds for an idle connection between requests (Gunicorn);
* ``header_timeout`` for a connection that has sent part of a head (answered
  408) or nothing yet after accept;
* ``timeout`` for a request stuck in a pool thread, i.e. one that has not
  moved a byte for that long (Gunicorn #2086: the
  selector thread keeps the heartbeat going, so the arbiter would never see a
  stuck thread). As the sync worker's abort does, its client gets a 500 when
  no head went out yet (``Connection.abort``), the access log its line, and
  the error log ``WORKER TIMEOUT (pid:N)`` naming the request and where the
  threads were; then the worker stops accepting, lets the other requests
  finish within ``graceful_timeout`` and exits, and the arbiter starts a
  fresh worker.

``worker_connections`` caps open connections: at the cap the listeners are
taken out of the epoll set, so new connections wait in the kernel backlog
(where another worker can take them) instead of being accepted and starved.
Listeners are registered with ``EPOLLEXCLUSIVE`` so a new connection wakes
one worker, not all of them.

Graceful shutdown (TERM, or retired by HUP/TTOU/USR2 or ``max_requests``):
stop accepting and keep serving -- requests in progress, connections
accepted whose first request has not arrived or not been dispatched yet
(their client is waiting on an answer), and keep-alive connections idle
between requests, until ``STOP_GRACE`` seconds after their last answer
(never past their keep-alive timeout) -- until done or ``graceful_timeout``.
Answers given while leaving say ``Connection: close``, so a busy keep-alive
client's next request is answered and its connection then closed; one idle
longer than that is closed at once.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections import deque

from fastwsgi._conn import Connection, WorkerContext, accept
from fastwsgi._selector import epoll_arm, pipe_drain, pipe_wake
from fastwsgi.workers.base import (
    ACCEPT_BACKOFF,
    ACCEPT_BATCH,
    Worker,
    close_listeners_copies,
    register_listener,
)

# Requests served back to back on one connection while nobody is queued,
# before the selector thread gets its turn (ours: the selector may have
# readable connections it has not seen yet while a pool thread holds the GIL).
INLINE_REQUESTS = 16
# Seconds a pool thread keeps a keep-alive connection after answering it,
# waiting for the next request, while the pool is not saturated (_may_linger;
# ours: a keep-alive client on loopback or a LAN sends its next request well
# within a millisecond; when it does not, the price is one poll timeout on a
# thread nobody needed). Never longer than 2 ms, so a burst that finds every
# other thread busy waits at most that for this one.
LINGER = 0.002
# Seconds after its last answer that a leaving worker keeps an idle
# keep-alive connection open (never past its keep-alive timeout), for a
# request its client may already be sending: that request is answered
# "Connection: close" instead of being reset. Closing them all at once lost
# about three requests per retired worker under keep-alive load (wrk, 16
# clients, 2 workers, a HUP a second: 32 read errors in 5 HUPs). Gunicorn 27
# keeps every one for 2 s from the stop (STOP_KEEPALIVE_LINGER), so cold
# connections in a proxy's pool hold every leaving worker (and its memory,
# and with Gunicorn's arbiter the start of its replacement) for the whole
# 2 s. Counted from the last answer, a busy client's connection gets its
# next request in (ours: 1 s covers a client's round trip and a short think
# time), while a connection idle for longer is closed at once: its client
# is not in the middle of sending, and proxies and HTTP client pools drop a
# connection they see closed before reusing it.
STOP_GRACE = 1.0

# A connection's registration: edge-triggered, added once and kept while the
# connection goes to the pool and back, so parking it again between
# requests costs no syscall (with EPOLLONESHOT every request paid an
# epoll_ctl to re-arm). See _wait_for_head and _unregister_busy.
ARM = select.EPOLLIN | select.EPOLLET

class JobQueue:
    """Connections from the selector thread to the pool: FIFO for the jobs,
    at most one idle thread being woken at a time, and the one woken is the
    one that went idle last.

    The selector thread usually puts several jobs in one round while holding
    the GIL. Waking a thread per job would only line them all up on the GIL;
    instead one is woken, and when it takes its job and more are waiting it
    wakes the next (a chain, so a batch still spreads over the pool for apps
    that block). ``queue.SimpleQueue`` chains too, but one step too far: a
    get() that had to wait always wakes another idle thread on its way out,
    which finds the queue empty and sleeps again (two context switches and a
    GIL round trip per dispatched job, counted with strace). Each idle thread
    here sleeps on a lock of its own, so exactly the thread chosen wakes.
    Last idle, first woken: its stack and the app's data are the likeliest to
    be in cache, and under light load one or two threads do all the work.
    """

    def __init__(self) -> None:
        self._items: deque[Connection | None] = deque()
        self._idle: list[threading.Lock] = []
        self._mutex = threading.Lock()
        # True from the moment a sleeping thread is released until it has
        # looked at the queue: no second wake while one is on its way.
        self._waking = False

    def __len__(self) -> int:
        return len(self._items)

    def idle(self) -> int:
        """Threads asleep in get() (for tests and diagnostics)."""
        return len(self._idle)

    def put(self, item: Connection | None) -> None:
        waiter = None
        with self._mutex:
            self._items.append(item)
            if self._idle and not self._waking:
                waiter = self._idle.pop()
                self._waking = True
        if waiter is not None:
            waiter.release()

    def get(self, wake: threading.Lock) -> Connection | None:
        """Next job, sleeping while there is none. ``wake`` is the calling
        thread's own lock, held (acquired) by it whenever it is not asleep
        here: put() or another get() releases it, the acquire below takes it
        back."""
        woken = False
        item: object
        while True:
            waiter = None
            with self._mutex:
                if woken:
                    self._waking = False
                if self._items:
                    item = self._items.popleft()
                    if self._items and self._idle and not self._waking:
                        waiter = self._idle.pop()
                        self._waking = True
                else:
                    self._idle.append(wake)
                    item = wake  # marker: sleep
            if item is not wake:
                if waiter is not None:
                    waiter.release()
                return item  # type: ignore[return-value]
            wake.acquire()
            woken = True


_LISTENER = object()
_WAKE = object()
_SIGNAL = object()


class ThreadWorker(Worker):
    """Keep-alive worker: selector thread plus a thread pool."""

    threaded = True

    def run(self) -> None:
        s = self.settings
        self.nthreads = max(1, s.threads)
        self.ctx = WorkerContext(
            s,
            self.log,
            self.hooks,
            self,
            multithread=self.nthreads > 1,
            multiprocess=True,
            keepalive=s.keepalive > 0,
        )
        self._done_lock = threading.Lock()
        self.jobs = JobQueue()
        # Kept-alive connections a pool thread hands back, and whether their
        # next head was already buffered (those not kept are closed there).
        self.returned: deque[tuple[Connection, bool]] = deque()
        self.busy: set[Connection] = set()
        self.stuck_logged: set[Connection] = set()
        # Connections whose client paused longer than LINGER before its last
        # request, and when they were last handed back (see _linger_or_poll).
        self.slow: dict[Connection, float] = {}
        self.linger = LINGER
        # fd -> Connection parked for its next head, and its deadline.
        self.waiting: dict[int, Connection] = {}
        self.deadline: dict[int, float] = {}
        self._registered: set[int] = set()
        # fds with an event this round while not waiting (see _readable).
        self.early: set[int] = set()
        self.nconns = 0
        # Changed by the selector (accept, close) and by pool threads
        # (_close_here), so under a lock.
        self._nlock = threading.Lock()
        self.paused = False
        self.resume_at = 0.0
        self.ep = select.epoll()
        self.epfd = self.ep.fileno()
        self._wake_pending = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.fdmap: dict[int, object] = {self.wake_r: _WAKE}
        self.ep.register(self.wake_r, select.EPOLLIN)
        if self.wakeup_fd >= 0:
            self.fdmap[self.wakeup_fd] = _SIGNAL
            self.ep.register(self.wakeup_fd, select.EPOLLIN)
        self.lsocks = self.open_listeners()
        for fd in self.lsocks:
            self.fdmap[fd] = _LISTENER
        self._listen(True)
        self.threads = [
            threading.Thread(target=self._pool_thread, name=f"fastwsgi-{i}", daemon=True)
            for i in range(self.nthreads)
        ]
        for t in self.threads:
            t.start()
        try:
            self._loop()
            self._shutdown()
        finally:
            for _ in self.threads:
                self.jobs.put(None)
            self.ep.close()
            os.close(self.wake_r)
            os.close(self.wake_w)

    # --- selector thread ---------------------------------------------------------

    def _listen(self, on: bool) -> None:
        for fd in self.lsocks:
            if on:
                register_listener(self.ep, fd)
            else:
                try:
                    self.ep.unregister(fd)
                except (OSError, ValueError):
                    pass
        self.paused = not on

    def _loop(self) -> None:
        s = self.settings
        tick = self.tick()
        next_beat = 0.0
        next_sweep = 0.0
        while self.alive:
            now = time.monotonic()
            if now >= next_beat:
                self.notify()
                next_beat = now + tick
                if not self.is_parent_alive():
                    break
            try:
                events = self.ep.poll(tick)
            except InterruptedError:
                continue
            for fd, _ev in events:
                self._on_event(fd)
            self._take_returned()
            if self.early:
                self._unregister_busy()
            now = time.monotonic()
            if now >= next_sweep:
                next_sweep = now + min(tick, 0.5)
                self._sweep(now)
                self._check_stuck(now)
            if (
                self.paused
                and self.nconns < s.worker_connections
                and self.alive
                and now >= self.resume_at
            ):
                self._listen(True)

    def _drain_pipe(self) -> None:
        pipe_drain(self.wake_r)
        # Cleared after the drain, before the returned deque is read: a
        # thread that appends later sees False and writes again.
        self._wake_pending = False

    def _accept(self, lfd: int, limit: int = ACCEPT_BATCH, wait: float | None = None) -> int:
        """Accept and dispatch up to ``limit`` queued connections, each given
        ``wait`` (default header_timeout) for its request; returns how many
        (fewer: the queue ran dry, the cap or an fd shortage)."""
        server = self.lsocks[lfd][1]
        cap = self.settings.worker_connections
        taken = 0
        for _ in range(limit):
            if self.nconns >= cap:
                self._listen(False)
                return taken
            try:
                conn = accept(self.ctx, lfd, server)
            except OSError as exc:
                if self.accept_failed(exc):
                    # Stop polling the listeners for a moment; the others are served.
                    self._listen(False)
                    self.resume_at = time.monotonic() + ACCEPT_BACKOFF
                    return taken
                raise
            if conn is None:
                return taken
            taken += 1
            with self._nlock:
                self.nconns += 1
            # The request usually arrives with (or right after) the handshake:
            # look before paying for an epoll registration.
            self._dispatch(conn, self.settings.header_timeout if wait is None else wait)
        return taken

    def _on_event(self, fd: int) -> None:
        kind = self.fdmap.get(fd)
        if kind is _LISTENER:
            # Even when leaving: EPOLLEXCLUSIVE woke only us for this
            # connection, so it is ours to take (see sync.py).
            if not self.paused:
                self._accept(fd)
        elif kind is _WAKE:
            self._drain_pipe()
        elif kind is _SIGNAL:
            self.drain_wakeup()
        elif isinstance(kind, Connection):
            self._readable(kind)

    def _dispatch(self, conn: Connection, wait: float, check: bool = True) -> None:
        # check=False: nothing can be there that epoll will not report (see
        # _take_returned).
        r = conn.poll_head() if check else 0
        if r == 1:
            self._submit(conn)
        elif r < 0:
            self._close(conn)
        else:
            fd = conn.fd
            if conn.buffered > 0:
                wait = self.settings.header_timeout  # part of a head is here
            self.fdmap[fd] = conn
            self._wait_for_head(conn, time.monotonic() + wait)

    def _readable(self, conn: Connection) -> None:
        fd = conn.fd
        if self.waiting.pop(fd, None) is None:
            # Not waiting here: a pool thread has it, or it is on its way
            # back (see _take_returned and _unregister_busy).
            self.early.add(fd)
            return
        if self.slow:
            since = self.slow.get(conn)
            if since is not None and time.monotonic() - since < self.linger:
                del self.slow[conn]  # it answered quickly again: linger next time
        had = conn.buffered
        deadline = self.deadline.pop(fd, None)
        r = conn.poll_head()
        if r == 1:
            self._submit(conn)
        elif r < 0:
            self._close(conn)
        else:
            # The head deadline runs from its first byte and is never pushed
            # back by more bytes (else one byte a second would hold the
            # connection forever: slowloris).
            if deadline is None or (had == 0 and conn.buffered > 0):
                deadline = time.monotonic() + self.settings.header_timeout
            self._wait_for_head(conn, deadline)

    def _wait_for_head(self, conn: Connection, deadline: float) -> None:
        """Park ``conn`` in the selector until readable or ``deadline``.

        Edge-triggered epoll reports bytes that arrive after it was last
        told; bytes already there when a connection is added are reported
        at once (epoll_ctl ADD looks). A connection still registered is
        parked without a syscall: every caller has either just read it dry
        (``poll_head`` returned 0) or checked ``drained`` (_take_returned),
        so whatever comes next raises an event."""
        fd = conn.fd
        self.waiting[fd] = conn
        self.deadline[fd] = deadline
        if conn.buffered == 0:
            # Idle: its parser's ~7 KiB of buffers go back to the pool
            # until bytes come (10,000 idle connections: 85 MiB less).
            conn.release_idle()
        if fd in self._registered:
            return
        try:
            epoll_arm(self.epfd, fd, ARM, True)
        except OSError:
            self._close(conn)  # also forgets waiting/deadline
            return
        self._registered.add(fd)

    def _unregister_busy(self) -> None:
        """Bytes arrived for connections a pool thread still has (a request
        body, a pipelined or lingered-for request): take them out of the
        epoll set, so a long upload does not wake this thread for every
        segment. One that comes back is added again, and that ADD reports
        the bytes still unread."""
        # Swapped, not iterated in place: a pool thread closing a connection
        # discards its fd from self.early (_close).
        early, self.early = self.early, set()
        for fd in early:
            # (A waiting fd is a new connection on a number just freed.)
            if fd in self._registered and fd not in self.waiting:
                self._registered.discard(fd)
                try:
                    self.ep.unregister(fd)
                except (OSError, ValueError):
                    pass  # closed by its pool thread meanwhile

    def _submit(self, conn: Connection) -> None:
        self.busy.add(conn)
        self.jobs.put(conn)

    def _close(self, conn: Connection, wait: bool = False) -> None:
        """Forget ``conn`` and close it. Also called from a pool thread for a
        connection in the pool (``_close_here``): the selector then holds no
        event, deadline or wait for it (those keys are absent, so the pops
        change nothing the selector may be iterating), only its fd in
        ``fdmap`` and ``_registered`` if it was ever armed in epoll. Those go
        first, before the fd number is freed for the selector's next accept
        (closing the fd also drops it from the epoll set)."""
        fd = conn.fd
        self.fdmap.pop(fd, None)
        self.waiting.pop(fd, None)
        self.deadline.pop(fd, None)
        self._registered.discard(fd)
        self.early.discard(fd)
        self.slow.pop(conn, None)
        try:
            conn.close(wait)
        except Exception:
            self.log.exception("Error closing a connection")
        with self._nlock:
            self.nconns -= 1

    def _take_returned(self) -> None:
        while self.returned:
            conn, ready = self.returned.popleft()
            # Look before parking it when its next request is known to be
            # there (its event came in the same round, before it did) or
            # may be (registered but not read dry: bytes that were already
            # there when the selector last heard raise no edge).
            fd = conn.fd
            check = ready or fd in self.early or (not conn.drained and fd in self._registered)
            self.early.discard(fd)
            wait = max(self.settings.keepalive, 0.0)
            if not self.alive:
                # Leaving: kept a moment, for a next request already on its
                # way (answered "Connection: close"; see STOP_GRACE).
                wait = min(wait, max(conn.last_progress + STOP_GRACE - time.monotonic(), 0.0))
            self._dispatch(conn, wait, check=check)

    def _sweep(self, now: float) -> None:
        expired = [fd for fd, dl in self.deadline.items() if dl <= now]
        for fd in expired:
            conn = self.waiting.get(fd)
            if conn is None:
                self.deadline.pop(fd, None)
                continue
            conn.timeout_response()
            self._close(conn)

    def _check_stuck(self, now: float) -> None:
        if self.timeout <= 0:
            return
        for conn in list(self.busy):
            started = conn.request_started
            # Stuck = the app has had the thread for `timeout` seconds without
            # moving a byte. A long download to a client that keeps reading is
            # not stuck, nor is a wait on a slow client (io_wait: bounded by
            # the header/body/send timeouts of the connection itself).
            if (
                started
                and not conn.io_wait
                and now - conn.last_progress > self.timeout
                and conn not in self.stuck_logged
            ):
                self.stuck_logged.add(conn)
                # As the sync worker's abort: the client gets a 500 when no
                # head went out yet, the access log its line, and the error
                # log the WORKER TIMEOUT line that Gunicorn users alert on,
                # naming the request (the selector keeps the heartbeat going,
                # so the arbiter would never write it: Gunicorn #2086).
                request = f"{conn.request_line} from {conn.remote_addr or '-'}"
                status = conn.abort()
                self.log.critical(
                    "WORKER TIMEOUT (pid:%s): %s stuck in a worker thread for %.1fs "
                    "(timeout %ss), %s; stopping this worker so the arbiter replaces it; "
                    "where it was stuck:\n%s",
                    os.getpid(),
                    request,
                    now - started,
                    self.timeout,
                    "answered 500" if status == "500 Internal Server Error"
                    else "its response cut short",
                    self.format_stacks(),
                )
                self.retire("a request stuck in a thread")

    def _shutdown(self) -> None:
        """Graceful exit: take what waits in the accept queue, stop
        accepting, serve everything that is owed an answer, give idle
        keep-alive connections a short linger.

        A connection accepted but not yet through its first request is a
        request in flight from the client's side (it connected to be served;
        closing it shows up as ``RemoteDisconnected``), so it is served,
        bounded by its header deadline and ``graceful_timeout``. A
        keep-alive connection between requests with nothing buffered stays
        open until STOP_GRACE after its last answer (never past its
        keep-alive timeout): a busy client's next request is usually on its
        way, and closing under it resets it (RFC 9112 section 9.3.1 lets a
        client retry an idempotent request then, not a POST). Requests
        served from here on answer ``Connection: close`` (``handle_request``
        sees ``alive`` False), so such a connection closes after one more
        answer; one idle longer than that is closed at once (the race that
        remains is inherent to keep-alive)."""
        # What already waits in the accept queue is owed an answer too
        # (Worker.queued_snapshot): as worker_connections allows, the rest
        # as connections close.
        queued = self.queued_snapshot()
        self._listen(False)
        self._take_queued(queued)
        if not queued:
            self._close_listeners()
        idle = 0
        for fd, conn in list(self.waiting.items()):
            if conn.requests > 0 and conn.buffered == 0:
                grace = conn.last_progress + STOP_GRACE
                self.deadline[fd] = min(self.deadline.get(fd, grace), grace)
                idle += 1
        self.log.debug(
            "Stopping: %d connection(s) open, %d idle keep-alive", self.nconns, idle
        )
        deadline = time.monotonic() + self.settings.graceful_timeout
        while self.nconns > 0 or queued:
            now = time.monotonic()
            if now >= deadline:
                break
            self._sweep(now)  # idle keep-alive ones past their grace, first of all
            if queued:
                self._take_queued(queued)  # room made by connections closed since
                if not queued:
                    self._close_listeners()
            self.notify()
            live = [c for c in self.busy if c not in self.stuck_logged]
            if not live and not self.returned and not self.waiting and not queued:
                break
            # Wake for the next connection due to close, not a round later.
            nearest = min(self.deadline.values(), default=deadline)
            try:
                events = self.ep.poll(max(min(0.2, deadline - now, nearest - now), 0.0))
            except InterruptedError:
                events = []
            for fd, _ev in events:
                self._on_event(fd)
            self._take_returned()
            if self.early:
                self._unregister_busy()

    def _take_queued(self, queued: dict[int, int]) -> None:
        """Leaving: accept what is left of each listener's queue snapshot
        (fd -> count), within worker_connections; a listener whose queue ran
        dry (other workers took them, clients gave up) is done."""
        for lfd in list(queued):
            want = min(queued[lfd], self.settings.worker_connections - self.nconns)
            if want <= 0:
                return
            # STOP_GRACE for the request: a silent connection (a preconnect,
            # a TCP health check) must not hold the leaving worker.
            got = self._accept(lfd, want, STOP_GRACE)
            queued[lfd] -= got
            if got < want or queued[lfd] <= 0:
                del queued[lfd]

    def _close_listeners(self) -> None:
        """Leaving, the queue snapshot taken: take what arrived since (as
        worker_connections allows), then close our copies of the listeners
        at once rather than at exit (see base.close_listeners_copies)."""
        for lfd in list(self.lsocks):
            self._accept(lfd, ACCEPT_BATCH, STOP_GRACE)
        self.paused = True  # never registered again (_loop's resume)
        for lfd in list(self.lsocks):
            self.fdmap.pop(lfd, None)
        close_listeners_copies([lsock for lsock, _server in self.lsocks.values()])
        self.lsocks.clear()

    # --- pool threads ------------------------------------------------------------------

    def _may_linger(self) -> bool:
        """True when this pool thread may keep its connection waiting for the
        next request: the worker holds fewer connections than it has threads
        (so another thread is always free for the selector, even if every
        connection's thread lingers) and nothing is queued. With more
        connections the pool is busy and the selector's batching is cheaper
        than a sleep in poll() per request (measured at 16 clients on 8
        threads: 25 against 30 us per request). A single-thread pool never
        lingers."""
        return self.nconns < self.nthreads and self.alive and not self.jobs

    def _linger_or_poll(self, conn: Connection) -> int:
        """The pool is not saturated: wait up to LINGER for ``conn``'s next
        head, unless this client was seen to pause longer than that between
        requests (a browser, a client with think time). Lingering on such a
        client costs a poll() timeout on top of the hand-back it was meant to
        save (measured: 4 clients each sending 50 requests/s, 142-146 against
        187-191 us per request). Such a connection is marked slow with its
        hand-back time, and the selector thread clears the mark when a head
        arrives within LINGER of that time."""
        if conn not in self.slow:
            r: int = conn.wait_head(self.linger)
        else:
            r = conn.buffered_head()
        if r == 0:
            self.slow[conn] = time.monotonic()
        return r

    def _finish(self, conn: Connection, keep: bool, ready: bool) -> None:
        """A pool thread is done with ``conn``: one that is kept goes back to
        the selector thread; one that is not is closed here and now.

        Closing at once makes the server the side that closes first, as the
        sync worker does. Handed back, the close waited for the selector
        thread, and a proxy that already had the whole response closed
        first and kept the TIME_WAIT on its own ephemeral ports (measured
        behind nginx: 5279 of 8070 TIME_WAITs on nginx's side, now 957 of
        6514). With a proxy opening thousands of upstream connections a
        second, that is what its connect() searches through. On a 16-CPU
        machine, hello behind nginx (4 workers), before and after: 1 worker
        14.8k -> 17.4k requests/s, p99 9.7 -> 1.6 ms, nginx CPU 122 -> 70 us
        per request; 2 workers 16.1k -> 36.4k requests/s, p99 32 -> 2.0 ms;
        4 workers 27.9k -> 54.0k, p99 30 -> 2.6 ms."""
        self.busy.discard(conn)
        if not keep:
            self._close_here(conn)
            return
        self.returned.append((conn, ready))
        self._wake_selector()

    def _close_here(self, conn: Connection) -> None:
        """Close from a pool thread (see ``_close``), which may wait out a
        lingering close (``Connection.close``); the selector thread never
        does."""
        self._close(conn, wait=True)
        if self.paused or not self.alive:
            # At worker_connections it may accept again; when leaving, it
            # may be waiting for the last connection to go.
            self._wake_selector()

    def _wake_selector(self) -> None:
        # One wake-up byte per selector round, not per connection.
        if not self._wake_pending:
            self._wake_pending = True
            pipe_wake(self.wake_w)

    def _pool_thread(self) -> None:
        app = self.wsgi
        assert app is not None  # init_process loaded it before run()
        wake = threading.Lock()
        wake.acquire()
        while True:
            conn: Connection | None = self.jobs.get(wake)
            if conn is None:
                return
            keep = False
            # True when the last look found a head waiting (the inline budget
            # ran out): the selector must submit it again, not wait for bytes.
            ready = False
            try:
                inline = 0
                while True:
                    before = conn.requests
                    keep = conn.handle_request(app)
                    if conn.requests != before:
                        with self._done_lock:
                            self.request_done()
                    if not keep or not self.alive:
                        break
                    if self.jobs:
                        # Other connections are queued: serving this one's
                        # next request now would jump the line (and a busy
                        # client would hold the thread while they wait: p99
                        # under load). It goes to the back instead.
                        r = conn.buffered_head()
                        if r == 1:
                            ready = True
                        else:
                            keep = r == 0
                        break
                    r = self._linger_or_poll(conn) if self._may_linger() else conn.buffered_head()
                    if r != 1:
                        keep = r == 0
                        break
                    inline += 1
                    if inline >= INLINE_REQUESTS and not self._may_linger():
                        ready = True
                        break
            except BaseException:
                keep = False
                try:
                    self.log.exception("Error handling a connection")
                except Exception:
                    pass
            finally:
                self._finish(conn, keep, ready)
            # Not kept while this thread waits for the next job: once the
            # selector has closed it, its buffers go back to the pool.
            conn = None
