"""The sync worker: one connection at a time, every response ``Connection: close``.

Theory of operation
-------------------
The loop waits on the listeners with ``epoll`` and ``EPOLLEXCLUSIVE``: when a
connection arrives the kernel wakes one waiting worker, not all of them
(Gunicorn's sync worker uses ``select()`` on a shared socket and wakes every
idle worker for each connection: the thundering herd). The worker accepts
a connection (``_conn.accept``: ``accept4`` on the raw fd, no Python socket
object), serves its single request through the compiled ``Connection`` and
closes it, then accepts again while connections are queued, and waits when
none is. Per request that is accept4, recv, send (``MSG_MORE``), shutdown
(the FIN leaves in the response's segment, see ``Connection._send_final``),
close and, when the queue ran dry, epoll_wait.

The wait is bounded by the worker's ``tick`` (``timeout / 2``, at most 1 s;
``base.py``) so the heartbeat (``notify``) is stamped even when idle, and the signal wake-up pipe is in the wait set so
TERM (``alive = False``) ends the loop at once. A request runs to completion
in the worker's only thread, and the heartbeat keeps going while it moves
bytes: the compiled connection stamps it on every send and receive, and at
least every tick while it waits on the client (each wait
bounded by its own deadline: ``header_timeout``, ``body_timeout``, and
``timeout`` for a client that stops reading). So a request is killed by the
arbiter when its app is silent for ``timeout`` (stuck in a query, a lock,
a loop), never in the middle of a long download or upload that is moving.
Gunicorn's sync worker stamps only between requests and is killed
mid-transfer once a response takes longer than ``timeout`` to send
(Gunicorn #1186, #1736, #3259; the advice there is ``--timeout 0``, which
turns the stuck-worker check off altogether).

Keep-alive is off by design: a sync worker that waited on an idle client
would serve nobody else meanwhile.

Leaving gracefully (TERM, a reload, max_requests), the worker first serves
the connections that were already waiting in the accept queue: their
clients sent a request before the stop, and when the whole server stops,
nobody else would take them (closing the listener resets them: Gunicorn
#2529). At most the queue's length at that moment
(``Worker.queued_snapshot``), and only those whose request is there within ``QUEUED_HEAD_WAIT``: a silent one
(a browser's preconnect, a TCP health check) is closed rather than waited
for; ``graceful_timeout`` still bounds the whole exit.
"""

from __future__ import annotations

import select
import time

from fastwsgi._conn import Connection, WorkerContext, accept
from fastwsgi.app import WSGIApp
from fastwsgi.workers.base import (
    ACCEPT_BACKOFF,
    ACCEPT_BATCH,
    Worker,
    close_listeners_copies,
    register_listener,
)

# Leaving: how long a connection taken from the accept queue may take to
# show its request (ours, gthread's STOP_GRACE: a proxy sends it with the
# connection; nothing within a second means nobody is about to).
QUEUED_HEAD_WAIT = 1.0


class SyncWorker(Worker):
    """One request per connection, one connection at a time."""

    # The connection being served, for the abort line (in_flight).
    current: Connection | None = None

    def run(self) -> None:
        ctx = WorkerContext(
            self.settings,
            self.log,
            self.hooks,
            self,
            multithread=False,
            multiprocess=True,
            keepalive=False,
        )
        app = self.wsgi
        assert app is not None  # init_process loaded it before run()
        tick = self.tick()
        if self.timeout > 0:
            # Bytes moving to or from the client keep the heartbeat going
            # while a request runs (see the module docstring).
            ctx.stamp_heartbeat(self.heartbeat, tick)
        ep = select.epoll()
        servers = {fd: server for fd, (_lsock, server) in self.open_listeners().items()}
        try:
            for fd in servers:
                register_listener(ep, fd)
            wake = self.wakeup_fd
            if wake >= 0:
                ep.register(wake, select.EPOLLIN)
            # The parent check (a getppid() syscall) runs once a tick, not per
            # connection; the heartbeat (a store into shared memory) per request.
            next_check = 0.0
            while self.alive:
                self.notify()
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + tick
                    if not self.is_parent_alive():
                        break
                try:
                    events = ep.poll(tick)
                except InterruptedError:
                    continue
                for fd, _ev in events:
                    if fd == wake:
                        self.drain_wakeup()
                        continue
                    self._accept_and_serve(ctx, app, fd, servers[fd])
            self._serve_queued(ctx, app, servers)
        finally:
            ep.close()

    def _serve_queued(self, ctx: WorkerContext, app: WSGIApp, servers: dict[int, object]) -> None:
        """Leaving: take what waits in the accept queue, close our copies of
        the listeners, then serve what was taken (see above)."""
        taken: list[Connection] = []
        snapshot = self.queued_snapshot()
        for lfd in servers:
            # The snapshot plus what arrives while we take it, bounded.
            for _ in range(snapshot.get(lfd, 0) + ACCEPT_BATCH):
                try:
                    conn = accept(ctx, lfd, servers[lfd])
                except OSError:
                    break  # out of fds: nothing more to do on the way out
                if conn is None:
                    break  # taken by another worker, or the queue is empty
                taken.append(conn)
        # Closed right after the last accept, not at exit: when the server
        # stops, the last close stops the listening, so a connection that
        # comes later is refused (nginx retries even a POST on it) instead
        # of queued for seconds and reset after its request was sent.
        close_listeners_copies(self.listeners)
        for conn in taken:
            if self._head_soon(conn):
                self.serve(app, conn)
            else:
                conn.close()
            self.notify()

    @staticmethod
    def _head_soon(conn: Connection) -> bool:
        """A complete head (or a protocol error to answer) within
        QUEUED_HEAD_WAIT; False for a connection closed or silent."""
        deadline = time.monotonic() + QUEUED_HEAD_WAIT
        while True:
            r: int = conn.wait_head(max(deadline - time.monotonic(), 0.0))
            if r != 0 or time.monotonic() >= deadline:
                return r == 1

    def _accept_and_serve(self, ctx: WorkerContext, app: WSGIApp, lfd: int, server: object) -> None:
        # No "if not self.alive: return" before the first accept: with
        # EPOLLEXCLUSIVE the kernel woke only us for this connection, so a
        # worker that is leaving must still take it or it waits in the queue
        # until the next arrival wakes someone (seen as a failed request
        # during HUP/TTOU/USR2 under load). Then keep accepting while
        # connections are queued (as Gunicorn's sync worker does): under load
        # that saves an epoll_wait per request; when idle it costs one accept4
        # that finds nothing, in place of the epoll_wait it saves.
        for _ in range(ACCEPT_BATCH):
            try:
                conn = accept(ctx, lfd, server)
            except OSError as exc:
                if self.accept_failed(exc):
                    # Nothing else needs this thread meanwhile.
                    time.sleep(ACCEPT_BACKOFF)
                    return
                raise
            if conn is None:
                return
            self.serve(app, conn)
            self.notify()
            if not self.alive:
                return

    def serve(self, app: WSGIApp, conn: Connection) -> None:
        self.current = conn
        try:
            conn.handle_request(app)
        except Exception:
            self.log.exception("Error handling a connection")
        finally:
            self.current = None
            conn.close()
            if conn.requests:
                self.request_done()

    def in_flight(self) -> str:
        conn = self.current
        if conn is None or not conn.request_started:
            return ""
        took = time.monotonic() - conn.request_started
        return f"{conn.request_line} from {conn.remote_addr or '-'} for {took:.1f}s"
