"""The worker process: what every worker class shares.

Theory of operation
-------------------
The arbiter forks, then calls :meth:`Worker.init_process` in the child, which
never returns. It installs the worker's own signal handlers (replacing the
master's), loads the application, runs the ``post_worker_init`` hook and hands
control to :meth:`run`, the loop a subclass provides (``SyncWorker``,
``ThreadWorker``). When ``run()`` returns the process exits 0.

How a worker ends, and what the arbiter learns from its exit status:

* 0 -- normal: TERM (graceful), QUIT/INT (fast), ``max_requests``,
  ``max_worker_memory`` or a changed parent.
* 3 (``WORKER_BOOT_ERROR``) -- anything failed before the worker booted.
* 4 (``APP_LOAD_ERROR``) -- the application could not be loaded: one error
  line naming the app and the exception (and the app's file:line), the
  traceback only with ``--log-level debug``.

The arbiter stops the whole server on 3 or 4 instead of respawning in a loop
(Gunicorn's codes and behaviour). (At start-up the arbiter's probe child has
loaded the app already, so 4 means the app broke after start-up.)

Signals (Gunicorn's worker semantics): TERM sets ``alive = False`` so the loop
finishes in-flight work and returns; QUIT and INT run ``worker_int`` and exit
at once; ABRT (sent by the master when the heartbeat is older than
``timeout``) logs where every thread was stuck, runs ``worker_abort`` and
exits 1; USR1 reopens log files. Python handlers only run between bytecodes,
so a worker blocked in ``epoll_wait``/``poll`` would not notice them; the
handlers' wake-up goes to ``self.PIPE`` through ``signal.set_wakeup_fd``, and a
loop that waits on sockets adds ``self.wakeup_fd`` to its wait set and calls
:meth:`drain_wakeup` when it fires.

The ABRT dump runs as a Python signal handler, so it needs the main thread
to reach a bytecode boundary: an app blocked in a C call that retries on
EINTR or holds the GIL never runs it, and the master's SIGKILL follows
``ABORT_GRACE`` later without a dump.

Liveness: a loop calls :meth:`notify` at least every ``timeout / 2`` seconds
(even when idle), which stamps this worker's shared-memory heartbeat slot.
Recycling: the loop calls :meth:`request_done` after every response; it
flips ``alive`` when ``max_requests`` (plus a random jitter, so workers do
not all restart together) or ``max_worker_memory`` is reached. At
``max_requests`` (and for a gthread pool thread stuck past ``timeout``) the
worker also says so in its heartbeat slot and wakes the master (SIGCHLD,
which the master takes as "look at your children": :meth:`retire`), so its
replacement starts accepting while it finishes its requests; Gunicorn's
arbiter learns only when it exits, and with one worker nothing accepts
meanwhile. Over ``max_worker_memory`` it does not: memory is what is short,
and the replacement waits until this process has gone.

What the two loops share lives here too: the accept batch and back-off, the
answer to ``accept()`` running out of fds or memory (:meth:`accept_failed`),
the listeners' set-up (:meth:`open_listeners`, :func:`register_listener`),
the tick that bounds every wait (:meth:`tick`) and the snapshot of the accept
queues a leaving worker serves (:meth:`queued_snapshot`). The differences are
deliberate: ``sync`` registers its listeners once and, on an fd shortage,
sleeps the back-off in its only thread, and on the way out waits for each
queued connection's head with a blocking ``wait_head`` (nothing else needs
the thread); ``gthread`` unregisters its listeners for the back-off (or at
``worker_connections``) and keeps serving, and leaving, parks queued
connections in its selector like any other.
"""

from __future__ import annotations

import errno
import os
import random
import select
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from fastwsgi.app import WSGIApp, describe_exception
from fastwsgi.errors import AppImportError
from fastwsgi.heartbeat import HeartbeatSlot
from fastwsgi.settings import Hooks, WorkerSettings
from fastwsgi.sock import accept_queue_length

if TYPE_CHECKING:
    import socket

    from fastwsgi.glogging import Logger

WORKER_BOOT_ERROR = 3  # Gunicorn Arbiter.WORKER_BOOT_ERROR
APP_LOAD_ERROR = 4  # Gunicorn Arbiter.APP_LOAD_ERROR

# Signals the master handles; a worker resets them so it never runs the
# master's handlers (fork copies the handler table).
MASTER_SIGNALS = (
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGCHLD,
)

# Held (blocked) by the master from just before fork until the child has
# installed its own handlers (init_process unblocks them): a TERM or QUIT sent
# to a worker that has just been forked would otherwise run the master's
# handler copy in the child and be lost, and the master would wait
# graceful_timeout for a worker that never heard it. A held signal stays
# pending and reaches the worker's own handler.
HELD_UNTIL_HANDLERS = (*MASTER_SIGNALS, signal.SIGABRT)

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# Connections accepted per wake-up before looking at signals and, in gthread,
# serving the others (ours).
ACCEPT_BATCH = 64
# Seconds without accepting after accept() ran out of fds or memory (ours;
# Gunicorn retries at once and spins).
ACCEPT_BACKOFF = 0.5
# accept() errors that say the process or the system is out of fds or memory:
# the listener stays readable, so the loop must back off, not spin or die.
ACCEPT_SHORTAGE = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def set_proctitle(title: str) -> None:
    """Set the process title when setproctitle imports (the arbiter warns once if not)."""
    try:
        from setproctitle import setproctitle
    except (ImportError, OSError):
        return
    setproctitle(title)


def close_listeners_copies(listeners: list[socket.socket]) -> None:
    """A leaving worker's copies of the listening sockets, closed once it has
    taken their queues: the master closed its own first, so the last
    worker's close stops the listening (new connections are refused, which
    a balancer retries) and nothing is left queued to be reset at exit."""
    for sock in listeners:
        try:
            sock.close()
        except OSError:
            pass


def register_listener(ep: select.epoll, fd: int) -> None:
    """Watch a listening socket so that a new connection wakes one worker.

    ``EPOLLEXCLUSIVE`` (Linux 4.5+) is what keeps N idle workers from all
    waking for each connection (Gunicorn #792). Kernels and sandboxes that
    refuse the flag (EINVAL: older kernels, some gVisor versions) get a plain
    registration: the herd comes back but the server still serves.
    """
    try:
        ep.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
    except OSError:
        ep.register(fd, select.EPOLLIN)


def rss_bytes(statm_fd: int | None = None) -> int:
    """Resident set size of this process, from ``/proc/self/statm`` (field 2, in pages)."""
    if statm_fd is not None:
        data = os.pread(statm_fd, 128, 0)
    else:
        with open("/proc/self/statm", "rb") as f:
            data = f.read(128)
    return int(data.split()[1]) * _PAGE_SIZE


class Worker:
    """Base worker. Subclasses implement :meth:`run`."""

    # Its requests run in a pool of threads (the metrics count busy threads
    # for these, busy workers for the others).
    threaded = False

    def __init__(
        self,
        age: int,
        ppid: int,
        listeners: list[socket.socket],
        app_loader: Callable[[], WSGIApp],
        settings: WorkerSettings,
        log: Logger,
        hooks: Hooks,
        heartbeat: HeartbeatSlot,
    ) -> None:
        self.age = age
        self.ppid = ppid
        self.listeners = listeners
        self.app_loader = app_loader
        self.settings = settings
        self.log = log
        self.hooks = hooks
        self.heartbeat = heartbeat
        # The master sets pid after fork (both sides); Gunicorn does the same.
        self.pid = 0
        self.alive = True
        self.booted = False
        self.aborted = False
        self.nr = 0
        self.timeout = settings.timeout
        self.wsgi: WSGIApp | None = None
        # Set by the master on a worker it decided to kill (timeout, TTOU, HUP).
        self.exit_reason: str | None = None
        # The master's copy of the stamp HeartbeatPool.acquire() wrote at
        # spawn: a real beat is never older (see Arbiter.murder_workers).
        self.spawn_stamp = 0.0
        # The arbiter sets itself here before fork, for worker_exit(server, worker).
        self.server: Any = None
        jitter = (
            random.randint(0, settings.max_requests_jitter)
            if settings.max_requests_jitter > 0
            else 0
        )
        self.max_requests = (
            settings.max_requests + jitter if settings.max_requests > 0 else sys.maxsize
        )
        self.max_rss = settings.max_worker_memory * 1024 * 1024
        self._statm_fd: int | None = None
        self.PIPE: tuple[int, int] = (-1, -1)
        # The shared page this worker counts its requests into
        # (metrics.MetricsPool.slot), set by the master before fork when
        # --metrics-bind is on; WorkerContext picks it up.
        self.metrics: Any = None

    # --- Gunicorn-compatible names that hooks and user code reach for -------

    @property
    def sockets(self) -> list[socket.socket]:
        return self.listeners

    @property
    def cfg(self) -> WorkerSettings:
        return self.settings

    @property
    def tmp(self) -> HeartbeatSlot:
        return self.heartbeat

    @property
    def wakeup_fd(self) -> int:
        """Readable when a signal arrived; add it to the loop's wait set."""
        return self.PIPE[0]

    def __str__(self) -> str:
        return f"<Worker {self.pid}>"

    # --- lifecycle -----------------------------------------------------------

    def init_process(self) -> NoReturn:
        """Run in the child after fork; never returns."""
        status = 0
        try:
            self.pid = os.getpid()
            # Reseed: every child would otherwise share the master's random state.
            random.seed()
            self.init_signals()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_UNTIL_HANDLERS)
            for sock in self.listeners:
                os.set_inheritable(sock.fileno(), False)
            if self.max_rss > 0:
                self._statm_fd = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
            self.notify()
            try:
                self.wsgi = self.load_wsgi()
            except SystemExit as exc:
                if not self.alive:  # our own QUIT/INT/ABRT handler, mid-import
                    raise
                # The app called sys.exit() at import: a load error, not a
                # normal exit the master would answer with a new worker (a
                # crash loop).
                self.app_load_failed(exc)
                self._exit(APP_LOAD_ERROR)
            except BaseException as exc:
                self.app_load_failed(exc)
                self._exit(APP_LOAD_ERROR)
            self.call_hook("post_worker_init", self)
            self.booted = True
            self.heartbeat.mark_booted()
            self.notify()
            self.run()
        except SystemExit as exc:
            code = exc.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException as exc:
            if self.booted:  # a crash while serving: the traceback is the report
                self.log.exception("Exception in worker process")
                status = 1
            else:
                self.boot_failed(exc)
                status = WORKER_BOOT_ERROR
        self._exit(status)

    def _exit(self, status: int) -> NoReturn:
        try:
            if getattr(self.log, "invalid_suppressed", 0):
                self.log.flush_invalid(force=True)  # nothing unlogged at exit
            self.log.info("Worker exiting (pid: %s)", os.getpid())
            if self.server is not None:
                self.call_hook("worker_exit", self.server, self)
        except BaseException:
            pass
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            # os._exit: never run the master's atexit handlers or unwind into
            # the arbiter's frames in the child.
            os._exit(status)

    def app_load_failed(self, exc: BaseException) -> None:
        """One line naming the app and the error (``AppImportError`` messages
        are that line already), left in the heartbeat slot for the master's
        last line too; the traceback only at debug level."""
        if isinstance(exc, AppImportError):
            line = str(exc)
        else:  # sys.exit() in the app, or a load_wsgi() override raised
            loader = getattr(self.app_loader, "__self__", self.app_loader)
            uri = getattr(loader, "uri", None)
            what = f"application {uri!r}" if isinstance(uri, str) else "the application"
            line = f"Failed to load {what}: {describe_exception(exc)}"
        self.log.error("%s", line)
        self.log.debug("Traceback of the failed application load:", exc_info=exc)
        try:
            self.heartbeat.set_note(line)
        except (AttributeError, ValueError):  # a stand-in slot, or a closed map
            pass

    def boot_failed(self, exc: BaseException) -> None:
        """Before the app loaded (signals, a custom worker's set-up): one line,
        also for the master's last line; the traceback only at debug level."""
        line = f"Worker failed to boot: {describe_exception(exc)}"
        self.log.error("%s", line)
        self.log.debug("Traceback of the failed worker boot:", exc_info=exc)
        try:
            self.heartbeat.set_note(line)
        except (AttributeError, ValueError):
            pass

    def load_wsgi(self) -> WSGIApp:
        return self.app_loader()

    def run(self) -> None:
        """The worker loop: serve until ``alive`` is False. Subclasses implement it."""
        raise NotImplementedError

    # --- signals ---------------------------------------------------------------

    def init_signals(self) -> None:
        for sig in MASTER_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        rfd, wfd = os.pipe()
        for fd in (rfd, wfd):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self.PIPE = (rfd, wfd)
        signal.signal(signal.SIGQUIT, self.handle_quit)
        signal.signal(signal.SIGTERM, self.handle_exit)
        signal.signal(signal.SIGINT, self.handle_quit)
        signal.signal(signal.SIGWINCH, self.handle_winch)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.signal(signal.SIGABRT, self.handle_abort)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)

    def drain_wakeup(self) -> None:
        try:
            while os.read(self.PIPE[0], 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def handle_usr1(self, sig: int, frame: FrameType | None) -> None:
        self.log.reopen_files()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.alive = False

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        self.alive = False
        self.call_hook("worker_int", self)
        sys.exit(0)

    def handle_winch(self, sig: int, frame: FrameType | None) -> None:
        # Only the master reacts to WINCH (Gunicorn's workers ignore it).
        return

    def handle_abort(self, sig: int, frame: FrameType | None) -> None:
        self.alive = False
        serving = self.in_flight()
        self.log.critical(
            "Worker (pid:%s) aborted after %ss without a heartbeat%s; where it was stuck:\n%s",
            os.getpid(),
            self.timeout,
            f", serving {serving}" if serving else "",
            self.format_stacks(),
        )
        self.call_hook("worker_abort", self)
        sys.exit(1)

    def in_flight(self) -> str:
        """The request this worker is in the middle of, for the abort line
        (Gunicorn's WORKER TIMEOUT names only the pid: its #765, #1243);
        empty when it knows of none. The sync worker tells."""
        return ""

    @staticmethod
    def format_stacks() -> str:
        names = {t.ident: t.name for t in threading.enumerate()}
        parts = []
        for ident, frame in sys._current_frames().items():
            parts.append(f"Thread {names.get(ident, ident)} (most recent call last):\n")
            parts.extend(traceback.format_stack(frame))
        return "".join(parts)

    # --- liveness and recycling ------------------------------------------------

    def tick(self) -> float:
        """Seconds that bound every wait of the loop: it stamps the heartbeat
        and looks for its parent at least this often. Half of ``timeout`` (the
        heartbeat's deadline) but at most 1 s, so a worker whose master died
        stops within a second rather than after ``timeout / 2``, and at least
        50 ms, so a tiny ``timeout`` does not spin; 1 s with no timeout."""
        if self.timeout <= 0:
            return 1.0
        return max(min(self.timeout / 2.0, 1.0), 0.05)

    def open_listeners(self) -> dict[int, tuple[socket.socket, object]]:
        """fd -> (listener, its address for the environ), each non-blocking;
        the loop registers them (:func:`register_listener`)."""
        out: dict[int, tuple[socket.socket, object]] = {}
        for lsock in self.listeners:
            lsock.setblocking(False)
            out[lsock.fileno()] = (lsock, lsock.getsockname())
        return out

    def accept_failed(self, exc: OSError) -> bool:
        """True, with one warning, when ``accept()`` failed for want of fds or
        memory and the loop should stop accepting for ``ACCEPT_BACKOFF`` (the
        other workers, and this one's open files, may free up); False for an
        error the caller re-raises."""
        if exc.errno not in ACCEPT_SHORTAGE:
            return False
        self.log.warning("accept() failed: %s; pausing accepts for %ss", exc, ACCEPT_BACKOFF)
        return True

    def queued_snapshot(self) -> dict[int, int]:
        """Leaving: listener fd -> connections waiting in its accept queue now
        (``TCP_INFO``; ``ACCEPT_BATCH`` for a unix socket, whose queue the
        kernel does not show), those with none left out. Their clients sent a
        request before the stop, and when the whole server stops nobody else
        would take them (closing the listener resets them: Gunicorn #2529);
        a snapshot, so connections that keep arriving cannot hold the worker."""
        out: dict[int, int] = {}
        for lsock in self.listeners:
            n = accept_queue_length(lsock)
            n = ACCEPT_BATCH if n is None else n
            if n > 0:
                out[lsock.fileno()] = n
        return out

    def notify(self) -> None:
        """Stamp the heartbeat; call at least every ``timeout / 2`` seconds."""
        self.heartbeat.beat()
        if getattr(self.log, "invalid_suppressed", 0):
            self.log.flush_invalid()  # the count of rate-limited warnings

    def is_parent_alive(self) -> bool:
        """False (and ``alive`` cleared) when the master that forked us is gone."""
        if self.ppid != os.getppid():
            self.log.info("Parent changed, shutting down: %s", self)
            self.alive = False
            return False
        return True

    def request_done(self) -> None:
        """Count a finished request; decide whether this worker should retire."""
        self.nr += 1
        if self.nr >= self.max_requests:
            if self.alive:
                self.log.info(
                    "Autorestarting worker after current request: max_requests %s reached (pid:%s)",
                    self.max_requests,
                    os.getpid(),
                )
                self.retire("max_requests")
            return
        if self.max_rss > 0:
            rss = rss_bytes(self._statm_fd)
            if rss > self.max_rss:
                if self.alive:
                    self.log.info(
                        "Autorestarting worker after current request: RSS %d MiB exceeds "
                        "max_worker_memory %d MiB (pid:%s)",
                        rss // (1024 * 1024),
                        self.settings.max_worker_memory,
                        os.getpid(),
                    )
                    # Not retire(): a replacement started now would add a
                    # process while memory is what is short; it starts when
                    # this one has exited. The note tells the master why.
                    self.heartbeat.set_note("max_worker_memory")
                    self.alive = False

    def retire(self, why: str) -> None:
        """Leave by our own decision: stop accepting, finish the requests in
        hand (the loop sees ``alive`` False), and have the master start a
        replacement now rather than when this process exits."""
        self.alive = False
        self.heartbeat.mark_leaving(why)
        try:
            os.kill(self.ppid, signal.SIGCHLD)
        except OSError:
            pass  # the master is gone; the loop's parent check ends us

    # --- hooks ---------------------------------------------------------------------

    def call_hook(self, name: str, *args: Any) -> None:
        """Run a server hook if set; a failing hook is logged, never fatal."""
        self.hooks.call(name, self.log, *args)
