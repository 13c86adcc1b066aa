"""The sync worker: one connection at a time, every response ``Connection: close``.

Theory of operation
-------------------
The loop waits on the listeners with ``epoll`` and ``EPOLLEXCLUSIVE``: when a
connection arrives the kernel wakes one waiting worker, not all of them
(Gunicorn's sync worker uses ``select()`` on a shared socket and wakes every
idle worker for each connection: the thundering herd). The worker accepts
one connection, serves its single request through the compiled
``Connection`` and closes it, then waits again; level-triggered epoll wakes it
straight away if more connections are queued.

The wait is bounded by ``timeout / 2`` so the heartbeat (``notify``) is
stamped even when idle, and the signal wake-up pipe is in the wait set so
TERM (``alive = False``) ends the loop at once. A request runs to completion
in the worker's only thread: like Gunicorn's sync worker, a request longer
than ``timeout`` gets the worker killed by the arbiter.

Keep-alive is off by design: a sync worker that waited on an idle client
would serve nobody else meanwhile.
"""

from __future__ import annotations

import errno
import select
import socket
import time

from fastwsgi._conn import Connection, WorkerContext
from fastwsgi.workers.base import Worker

# Seconds to wait after accept() ran out of fds or memory (ours).
ACCEPT_BACKOFF = 0.5


class SyncWorker(Worker):
    """One request per connection, one connection at a time."""

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
        ep = select.epoll()
        by_fd: dict[int, tuple[socket.socket, object]] = {}
        try:
            for lsock in self.listeners:
                lsock.setblocking(False)
                by_fd[lsock.fileno()] = (lsock, lsock.getsockname())
                ep.register(lsock.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
            wake = self.wakeup_fd
            if wake >= 0:
                ep.register(wake, select.EPOLLIN)
            tick = max(self.timeout / 2.0, 0.1) if self.timeout > 0 else 1.0
            while self.alive:
                self.notify()
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
                    # No "if not self.alive: break" here: with EPOLLEXCLUSIVE the
                    # kernel woke only us for this connection, so a worker that is
                    # leaving must still take it or it waits in the queue until the
                    # next arrival wakes someone (seen as a failed request during
                    # HUP/TTOU/USR2 under load). accept() is non-blocking.
                    lsock, server = by_fd[fd]
                    try:
                        csock, client = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        if exc.errno in (
                            errno.ECONNABORTED,
                            errno.EPROTO,
                            errno.EMFILE,
                            errno.ENFILE,
                            errno.ENOBUFS,
                            errno.ENOMEM,
                        ):
                            # Out of fds or memory: the listener stays readable;
                            # back off instead of spinning (the other workers,
                            # and this one's open files, may free up).
                            self.log.warning("accept() failed: %s; backing off", exc)
                            time.sleep(ACCEPT_BACKOFF)
                            continue
                        raise
                    self.handle(ctx, app, csock, client, server)
                    self.notify()
        finally:
            ep.close()

    def handle(
        self, ctx: WorkerContext, app: object, csock: socket.socket, client: object, server: object
    ) -> None:
        conn = Connection(ctx, csock, client, server)
        try:
            conn.handle_request(app)
        except Exception:
            self.log.exception("Error handling a connection")
        finally:
            conn.close()
            if conn.requests:
                self.request_done()
