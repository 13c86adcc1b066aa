"""The master process: binds listeners, forks workers, keeps their number right.

Theory of operation
-------------------
The arbiter is policy. It decides when to fork, signal, reap and re-exec;
``procops.ProcOps`` performs those syscalls, so the policy can be driven by a
fake in unit tests. All state lives on the instance.

Signals (Gunicorn's set and meanings). The handlers only append to
``SIG_QUEUE`` and write a byte to a wake-up pipe; the main loop pops one
signal at a time and calls ``handle_<name>``:

* HUP   -- reload: ask ``reloader()`` for fresh settings, start a new set of
  workers (which load the app afresh) and, once all of them have booted,
  retire the old ones gracefully. Old and new share the listening sockets, so
  no request fails and none waits for the new app's import.
* TTIN / TTOU -- one worker more / fewer (never below one).
* TERM  -- graceful stop: close listeners, TERM workers, wait up to
  ``graceful_timeout`` for in-flight requests, KILL stragglers, exit 0.
* INT / QUIT -- fast stop (workers get QUIT).
* USR1  -- reopen log files, here and in every worker.
* USR2  -- re-exec a new master that inherits the listening sockets through
  ``$FASTWSGI_FD``; the pidfile moves aside to ``<pidfile>.oldbin`` and the
  new master writes ``<pidfile>.2`` until it is promoted (its parent, the old
  master, exits), when it takes the plain name. The old master keeps serving
  until it receives TERM (or WINCH then TERM).
* WINCH -- when daemonized, retire all workers (the master stays).
* CHLD  -- not queued; it only wakes the loop, which reaps. A worker that
  retires by itself (``max_requests``, a stuck thread) sends one too, after
  marking its heartbeat slot "leaving": the loop then starts its
  replacement at once (``note_leaving_workers``).

Every loop turn reaps exited children, checks heartbeats and tops the worker
count up. A worker whose heartbeat (``heartbeat.py``) is older than
``timeout`` gets SIGABRT (it logs where it was stuck and exits), and SIGKILL
``ABORT_GRACE`` seconds later if it is still there. A worker retired by HUP,
TTOU or WINCH that is still alive ``graceful_timeout`` seconds after its TERM
gets SIGKILL.

Never crash-loop: a worker that exits 3 (boot error) or 4 (app load error)
halts the master with one message and that exit status, instead of being
respawned forever.

An app that cannot be imported is found before any worker is forked: at
start-up (not on HUP or respawn) the master forks one short-lived probe child
that loads the app as a worker would (same directory, ``sys.path``,
environment and ``--user``/``--group``) and exits; a failure comes back
through a pipe as the worker's one line (``Failed to load application
'mod:app': ...``), the master prints it as ``fastwsgi: error: ...`` and exits
1 (a runtime failure, as the CLI's other errors). The probe is bounded by
``timeout`` and SIGKILLed by pid after it; no ``pre_fork``/``post_fork`` hook
runs for it (``on_starting`` runs before). The import happens in a child, not
the master, so the master stays free of the app's modules and state and a HUP
still imports fresh code. Skipped with ``--preload`` (the master itself loads
the app and fails the same way) and with ``--reload`` (development: a worker
serves the load error as a 500 page and watches for the fix).

The Arbiter object is what hooks receive as ``server``: ``pid``,
``num_workers``, ``log``, ``cfg`` (the arbiter settings), ``WORKERS``,
``LISTENERS``, ``proc_name``, ``master_name``, ``reexec_pid`` and
``master_pid`` carry Gunicorn's names.
"""

from __future__ import annotations

import errno
import gc
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NoReturn

from fastwsgi import SERVER_SOFTWARE, __version__, systemd
from fastwsgi.app import WSGIApp, describe_exception
from fastwsgi.errors import AppImportError, BindError, FastWSGIError
from fastwsgi.heartbeat import HeartbeatPool
from fastwsgi.metrics import (
    METRICS_FD_ENV,
    MetricsEndpoint,
    MetricsPool,
    process_rss,
    render,
    restart_reason,
)
from fastwsgi.procops import ProcOps, describe_status
from fastwsgi.settings import ArbiterSettings, Groups
from fastwsgi.sock import (
    FD_ENV,
    Listener,
    accept_queue,
    bind_one,
    close_listeners,
    create_listeners,
    from_fd,
    inherited_fds,
    parse_address,
)
from fastwsgi.workers import APP_LOAD_ERROR, WORKER_BOOT_ERROR, Worker, load_worker_class
from fastwsgi.workers.base import HELD_UNTIL_HANDLERS, set_proctitle

if TYPE_CHECKING:
    from fastwsgi.glogging import Logger

AppLoaderFn = Callable[[], WSGIApp]
# reloader() re-reads the configuration for HUP: new Groups, optionally with a
# new app loader (when the APP argument itself changed).
Reloader = Callable[[], "Groups | tuple[Groups, Any]"]

PID_ENV = "FASTWSGI_PID"  # Gunicorn's GUNICORN_PID: set in a USR2-re-executed master
# Gunicorn waits one loop tick (up to 1 s) between SIGABRT and SIGKILL.
ABORT_GRACE = 1.0
# Gunicorn's main loop sleeps at most 1 s between heartbeat checks.
LOOP_TICK = 1.0
# Gunicorn drops signals beyond 5 queued ones ("rapid signaling").
SIG_QUEUE_MAX = 5

_HANDLED = ("HUP", "QUIT", "INT", "TERM", "TTIN", "TTOU", "USR1", "USR2", "WINCH")
SIGNALS: tuple[int, ...] = tuple(getattr(signal, "SIG" + name) for name in _HANDLED)
SIG_NAMES: Mapping[int, str] = MappingProxyType(
    {getattr(signal, "SIG" + n): n.lower() for n in _HANDLED}
)


class HaltServer(FastWSGIError):
    """Raised inside the loop to stop the master with a reason and exit status."""

    def __init__(self, reason: str, exit_status: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_status = exit_status


# exit_reason of the workers of a HUP generation retired because one of them
# could not boot (_abort_reload).
RELOAD_FAILED = "reload failed"


def _reason(what: str, note: str) -> str:
    """The worker's own line (``Failed to load application 'm:app': ...``) when it left one."""
    return note or what


class Pidfile:
    """A pid file written atomically (temp file + rename), Gunicorn semantics."""

    def __init__(self, path: str) -> None:
        self.path = path

    def create(self, pid: int) -> None:
        old = self.validate()
        if old and old != pid:
            raise HaltServer(f"Already running on PID {old} (or pid file {self.path!r} is stale)")
        directory = os.path.dirname(os.path.abspath(self.path))
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{pid}.tmp")
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)

    def rename(self, path: str) -> None:
        try:
            os.replace(self.path, path)
        except FileNotFoundError:
            pass
        self.path = path

    def unlink(self) -> None:
        """Remove the file if it still names this process (a successor may own it now)."""
        try:
            with open(self.path) as f:
                pid = int(f.read().strip() or 0)
            if pid == os.getpid():
                os.unlink(self.path)
        except (OSError, ValueError):
            pass

    def validate(self) -> int | None:
        """The pid in the file if that process is alive, else None."""
        try:
            with open(self.path) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid


def _warn_no_setproctitle(log: Any) -> None:
    # A dependency, so this means a broken install (a wheel for another libc,
    # a failed build): say why, once, and serve anyway.
    try:
        import setproctitle  # noqa: F401
    except (ImportError, OSError) as exc:
        log.warning("setproctitle cannot be imported (%s): process titles stay unchanged", exc)


def share_openssl() -> bool:
    """Import ``ssl`` in the master, before the first fork; False if Python has no ssl.

    Most applications reach OpenSSL (Flask and Django through werkzeug,
    hashlib or secrets; any HTTPS client). Initialising it costs a process
    about 1.4 MiB of libcrypto and libssl pages that it touches itself, and
    Linux ``fork()`` does not copy page-table entries of file mappings, so a
    worker that runs the initialisation after the fork counts all of them in
    its own RSS. Done once here, the state OpenSSL builds is inherited
    (anonymous pages are shared copy-on-write) and the workers run little of
    that code again. Gunicorn gets the same effect from ``gunicorn.config``
    importing ``ssl``; a worker of an app that never uses OpenSSL pays about
    1.2 MiB for it (the module's objects), as a Gunicorn worker does."""
    try:
        import ssl  # noqa: F401
    except ImportError:
        return False
    return True


class Arbiter:
    """The master. ``Arbiter(groups, app_loader, log).run()`` returns the exit status."""

    WORKER_BOOT_ERROR = WORKER_BOOT_ERROR
    APP_LOAD_ERROR = APP_LOAD_ERROR

    def __init__(
        self,
        groups: Groups,
        app_loader: Any,
        log: Logger,
        reloader: Reloader | None = None,
        procops: ProcOps | None = None,
        start_cwd: str | None = None,
    ) -> None:
        self.log = log
        self.reloader = reloader
        self.procops = procops if procops is not None else ProcOps()
        self.pid = self.procops.getpid()
        self.WORKERS: dict[int, Worker] = {}
        self.LISTENERS: list[Listener] = []
        self.SIG_QUEUE: list[int] = []
        self.PIPE: tuple[int, int] = (-1, -1)
        self.master_pid = 0  # set in a USR2 child: the old master's pid
        self.reexec_pid = 0  # set in the old master: the USR2 child's pid
        self.master_name = "Master"
        self.systemd = False
        self.pidfile: Pidfile | None = None
        self.worker_age = 0
        self._last_worker_count = -1  # the statsd gauge is sent on change
        self._next_backlog = 0.0  # --enable-backlog-metric
        self.preloaded_app: WSGIApp | None = None
        # pid -> deadline for workers we TERMed on purpose (HUP, TTOU, WINCH).
        self.retiring: dict[int, float] = {}
        # HUP: old workers to retire once every worker of the new generation booted.
        self.pending_retire: set[int] = set()
        self.generation: set[int] = set()
        # pid -> when SIGABRT was sent for a heartbeat timeout.
        self.aborted_at: dict[int, float] = {}
        self.killed: set[int] = set()
        # --metrics-bind: the workers' counters, and the endpoint (metrics.py).
        self.metrics: MetricsPool | None = None
        self.metrics_endpoint: MetricsEndpoint | None = None
        self.metrics_address: str | None = None  # the --metrics-bind it serves
        self.stopping = False  # workers reaped from here on were not restarts
        self._apply(groups, app_loader)
        self._num_workers = self.cfg.workers
        self.heartbeats = HeartbeatPool(max(1, self._num_workers * 2))
        self.proc_name = self._default_proc_name()
        argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
        # Re-exec the interpreter with its original options (``-m fastwsgi``
        # included) from the directory it was started in (``start_cwd``, given
        # by the CLI before ``--chdir``), so relative arguments mean the same.
        self.START_CTX: dict[Any, Any] = {
            "args": [sys.executable, *argv[1:]],
            "cwd": start_cwd or os.getcwd(),
            0: sys.executable,
        }

    # --- configuration ---------------------------------------------------------------

    def _apply(self, groups: Groups, app_loader: Any) -> None:
        # The one step that can fail goes first, so a failure changes nothing.
        self.worker_class = load_worker_class(groups.worker.worker_class, groups.worker.threads)
        self.groups = groups
        self.cfg: ArbiterSettings = groups.arbiter
        self.worker_settings = groups.worker
        self.hooks = groups.hooks
        load = getattr(app_loader, "load", None)
        self.app_loader: AppLoaderFn = load if callable(load) else app_loader
        self.timeout = self.cfg.timeout
        self.graceful_timeout = self.cfg.graceful_timeout

    def _default_proc_name(self) -> str:
        name = self.cfg.proc_name or self.groups.app_uri or "fastwsgi"
        return name + ".2" if self.master_pid else name

    @property
    def num_workers(self) -> int:
        return self._num_workers

    @num_workers.setter
    def num_workers(self, value: int) -> None:
        old = self._num_workers
        self._num_workers = value
        if value != old:
            self.call_hook("nworkers_changed", self, value, old)

    def call_hook(self, name: str, *args: Any) -> None:
        """Run a server hook if set; a failing hook is logged, never fatal."""
        self.hooks.call(name, self.log, *args)

    # --- start-up ------------------------------------------------------------------

    def run(self) -> int:
        """Start, serve until told to stop, and return the process exit status."""
        if self.cfg.daemon and not os.environ.get(PID_ENV):
            self.daemonize()
        try:
            self.start()
        except AppImportError as exc:  # the probe or --preload: no worker was forked
            self._startup_failed(str(exc))
            return self._finish(exc.exit_status)
        except HaltServer as exc:
            self.log.error("%s", exc.reason)
            self._tell_stderr(exc.reason)
            return self._finish(exc.exit_status)
        except BindError as exc:
            self.log.error("%s", exc)
            self._tell_stderr(str(exc))
            return self._finish(exc.exit_status)
        except Exception:
            self.log.exception("Cannot start the master")
            self.stop(False)
            return self._finish(1)
        set_proctitle(f"fastwsgi: master [{self.proc_name}]")
        try:
            self.manage_workers()
            while True:
                self.maybe_promote_master()
                self.reap_workers()
                sig = self.SIG_QUEUE.pop(0) if self.SIG_QUEUE else None
                if sig is None:
                    # Look again soon while a HUP waits for new workers to boot.
                    self.sleep(0.1 if self.pending_retire else LOOP_TICK)
                    self.reap_workers()
                    self.murder_workers()
                    self.manage_workers()
                    self.send_backlog_metric()
                    continue
                name = SIG_NAMES.get(sig)
                handler = getattr(self, f"handle_{name}", None) if name else None
                if handler is None:
                    self.log.error("Unhandled signal: %s", sig)
                    continue
                self.log.info("Handling signal: %s", name)
                handler()
                self.reap_workers()
                self.manage_workers()
        except (StopIteration, KeyboardInterrupt):
            return self.halt()
        except HaltServer as exc:
            return self.halt(exc.reason, exc.exit_status)
        except SystemExit:
            raise
        except Exception:
            self.log.exception("Unhandled exception in main loop")
            self.stop(False)
            return self._finish(1)

    def start(self) -> None:
        self.log.info("Starting %s", SERVER_SOFTWARE)
        _warn_no_setproctitle(self.log)
        if os.environ.get(PID_ENV):
            self.master_pid = int(os.environ[PID_ENV])
            self.master_name = "Master.2"
            self.proc_name = self._default_proc_name()
        self.pid = self.procops.getpid()
        if self.cfg.chdir and os.path.isabs(self.cfg.chdir):
            os.chdir(self.cfg.chdir)
        if self.cfg.pidfile is not None:
            name = self.cfg.pidfile + (".2" if self.master_pid else "")
            self.pidfile = Pidfile(name)
            self.pidfile.create(self.pid)
        share_openssl()
        if self.cfg.preload_app:
            self.preload()
        self.call_hook("on_starting", self)
        if not self.cfg.preload_app and not self.cfg.reload:
            self.probe_app()
        self.init_signals()
        if not self.LISTENERS:
            self.LISTENERS = self.open_listeners()
        self.log.info(
            "Listening at: %s (%s)", ",".join(str(lnr) for lnr in self.LISTENERS), self.pid
        )
        self.open_metrics(self.cfg.metrics_bind)
        self.log.info("Using worker: %s", self.groups.worker.worker_class)
        systemd.sd_notify(f"READY=1\nSTATUS={SERVER_SOFTWARE} arbiter booted\n", self.log)
        self.call_hook("when_ready", self)

    def open_listeners(self) -> list[Listener]:
        fds: list[int] | None = None
        count = systemd.listen_fds()
        if count:
            self.systemd = True
            fds = list(range(systemd.SD_LISTEN_FDS_START, systemd.SD_LISTEN_FDS_START + count))
        elif self.master_pid:
            fds = inherited_fds()
        return create_listeners(
            self.cfg.bind,
            backlog=self.cfg.backlog,
            reuse_port=self.cfg.reuse_port,
            umask=self.cfg.umask,
            uid=self.cfg.user,
            gid=self.cfg.group,
            fds=fds,
            log=self.log,
        )

    def preload(self) -> None:
        """Load the app once in the master and share its pages with the workers."""
        try:
            self.preloaded_app = self.app_loader()
        except (Exception, SystemExit) as exc:  # SystemExit: sys.exit() in the app
            # One line (AppImportError messages name the app and the error);
            # the traceback only at debug level. Exit 1, as the probe's.
            self.log.debug("Traceback of the failed application load:", exc_info=exc)
            raise AppImportError(self._load_failure_line(exc)) from exc
        # Move everything allocated so far out of the collector's reach: the
        # collector would otherwise touch (and so copy) every shared page.
        gc.freeze()

    def _load_failure_line(self, exc: BaseException) -> str:
        if isinstance(exc, AppImportError):
            return str(exc)
        return f"Failed to load application {self.groups.app_uri!r}: {describe_exception(exc)}"

    def probe_app(self) -> None:
        """Load the app once in a throw-away child before any worker is forked.

        Raises ``AppImportError`` with the child's one line when it failed, or
        did not finish within ``timeout`` (then it is SIGKILLed by pid)."""
        rfd, wfd = os.pipe()
        try:
            pid = self.procops.fork()
        except BaseException:
            os.close(rfd)
            os.close(wfd)
            raise
        if pid == 0:
            self._run_probe(rfd, wfd)
        os.close(wfd)
        status: int | None = None
        line = ""
        try:
            status, data = self._wait_probe(pid, rfd)
            line = data.decode("utf-8", "replace").strip().splitlines()[-1] if data.strip() else ""
        finally:
            os.close(rfd)
            if status is None or status == -1:  # timed out, or interrupted (Ctrl-C)
                self.procops.kill(pid, signal.SIGKILL)
                self._reap_probe(pid)
        if status == -1:
            raise AppImportError(
                f"Failed to load application {self.groups.app_uri!r}: the import did not "
                f"finish within the {self.timeout:g}s timeout (--timeout)"
            )
        assert status is not None  # else _wait_probe raised, and that is on its way
        code, sig = describe_status(status)
        if code == 0:
            return
        if line:
            raise AppImportError(line)
        how = f"exit code {code}" if sig is None else signal.Signals(sig).name
        raise AppImportError(
            f"Failed to load application {self.groups.app_uri!r}: "
            f"the process loading it died ({how})"
        )

    def _wait_probe(self, pid: int, rfd: int) -> tuple[int | None, bytes]:
        """``(wait status, what the probe wrote)``; status -1 on timeout (the
        probe still runs: the caller kills it)."""
        limit = self.procops.monotonic() + self.timeout if self.timeout > 0 else None
        chunks: list[bytes] = []
        eof = False
        while True:
            status = self.procops.reap_pid(pid)
            if status is not None:
                if not eof:  # what it wrote before exiting, without waiting on
                    os.set_blocking(rfd, False)  # a grandchild holding the pipe
                    try:
                        while chunk := os.read(rfd, 4096):
                            chunks.append(chunk)
                    except BlockingIOError:
                        pass
                return status, b"".join(chunks)
            now = self.procops.monotonic()
            if limit is not None and now >= limit:
                return -1, b"".join(chunks)
            wait = 0.2 if limit is None else max(0.0, min(0.2, limit - now))
            if eof:
                time.sleep(min(wait, 0.01))
                continue
            try:
                ready, _, _ = select.select([rfd], [], [], wait)
            except InterruptedError:
                continue
            if ready:
                chunk = os.read(rfd, 4096)
                if chunk:
                    chunks.append(chunk)
                else:
                    eof = True

    def _reap_probe(self, pid: int) -> None:
        """After SIGKILL: collect the probe (bounded, KILL cannot be caught)."""
        limit = self.procops.monotonic() + 5.0
        while self.procops.monotonic() < limit:
            try:
                if self.procops.reap_pid(pid) is not None:
                    return
            except ChildProcessError:
                return
            time.sleep(0.01)

    def _run_probe(self, rfd: int, wfd: int) -> NoReturn:
        """In the probe child: load the app as a worker would, report, exit."""
        status = 0
        try:
            os.close(rfd)
            line = ""
            try:
                self._drop_privileges()
            except Exception as exc:
                line = f"Worker failed to boot: {describe_exception(exc)}"
            if not line:
                try:
                    self.app_loader()
                except (Exception, SystemExit) as exc:
                    self.log.debug("Traceback of the failed application load:", exc_info=exc)
                    line = self._load_failure_line(exc)
            if line:
                status = 1
                os.write(wfd, line.replace("\n", " ").encode("utf-8", "replace") + b"\n")
        except BaseException:
            status = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            # Never unwind into the master's frames or run its atexit handlers.
            os._exit(status)

    def worker_app_loader(self) -> AppLoaderFn:
        app = self.preloaded_app
        if app is not None:
            return lambda: app
        return self.app_loader

    def daemonize(self) -> None:
        """Detach: double fork, new session, stdio to /dev/null (Gunicorn's
        util.daemonize); with --enable-stdio-inheritance only stdin, so
        output the launcher redirected to a file keeps going there."""
        if self.procops.fork():
            os._exit(0)
        os.setsid()
        if self.procops.fork():
            os._exit(0)
        os.umask(0o22)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0,) if self.cfg.enable_stdio_inheritance else (0, 1, 2):
            os.dup2(devnull, fd)
        if devnull > 2:
            os.close(devnull)
        self.pid = self.procops.getpid()

    # --- signals -------------------------------------------------------------------------

    def init_signals(self) -> None:
        for fd in self.PIPE:
            if fd >= 0:
                os.close(fd)
        rfd, wfd = os.pipe()
        for fd in (rfd, wfd):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self.PIPE = (rfd, wfd)
        for sig in SIGNALS:
            signal.signal(sig, self.signal)
        signal.signal(signal.SIGCHLD, self.handle_chld)

    def signal(self, sig: int, frame: Any) -> None:
        if len(self.SIG_QUEUE) < SIG_QUEUE_MAX:
            self.SIG_QUEUE.append(sig)
        self.wakeup()

    def handle_chld(self, sig: int, frame: Any) -> None:
        self.wakeup()

    def wakeup(self) -> None:
        try:
            os.write(self.PIPE[1], b".")
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EINTR, errno.EBADF):
                raise

    def sleep(self, timeout: float = LOOP_TICK) -> None:
        """Wait for a signal, a child's exit, or ``timeout`` seconds; serve
        the metrics endpoint meanwhile (it never blocks)."""
        endpoint = self.metrics_endpoint
        rlist, wlist = endpoint.wait_sets() if endpoint is not None else ([], [])
        try:
            ready, writable, _ = select.select([self.PIPE[0], *rlist], wlist, [], timeout)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EINTR):
                raise
            return
        if endpoint is not None:
            endpoint.handle([fd for fd in ready if fd != self.PIPE[0]], writable)
        if self.PIPE[0] in ready:
            try:
                while os.read(self.PIPE[0], 4096):
                    pass
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EINTR):
                    raise

    def handle_hup(self) -> None:
        self.log.info("Hang up: %s", self.master_name)
        self.reload()

    def handle_term(self) -> NoReturn:
        raise StopIteration

    def handle_int(self) -> NoReturn:
        self.stop(False)
        raise StopIteration

    def handle_quit(self) -> NoReturn:
        self.stop(False)
        raise StopIteration

    def handle_ttin(self) -> None:
        self.num_workers += 1
        self.manage_workers()

    def handle_ttou(self) -> None:
        if self.num_workers <= 1:
            return
        self.num_workers -= 1
        self.manage_workers()

    def handle_usr1(self) -> None:
        self.log.reopen_files()
        self.kill_workers(signal.SIGUSR1)

    def handle_usr2(self) -> None:
        self.reexec()

    def handle_winch(self) -> None:
        if self.cfg.daemon:
            self.log.info("graceful stop of workers")
            self.num_workers = 0
            self.manage_workers()
        else:
            self.log.debug("SIGWINCH ignored. Not daemonized")

    # --- reload and re-exec --------------------------------------------------------

    def reload(self) -> None:
        """HUP. Everything that can fail (config, worker class, preload, the
        new logging, new listeners) is prepared first; if any of it fails
        nothing changes (the logging is set back) and the running workers
        keep serving."""
        old_pidfile = self.cfg.pidfile
        old_log = self.groups.log
        setup = getattr(self.log, "setup", None)
        log_switched = False
        try:
            groups, loader = self.groups, self.app_loader
            if self.reloader is not None:
                result = self.reloader()
                groups, loader = result if isinstance(result, tuple) else (result, loader)
            load = getattr(loader, "load", None)
            app_loader: AppLoaderFn = load if callable(load) else loader
            load_worker_class(groups.worker.worker_class, groups.worker.threads)
            preloaded = app_loader() if groups.arbiter.preload_app else None
            # New logging (a file that cannot be opened, a TCP syslog that
            # does not answer) is part of what can fail: tried here, before
            # anything is committed, and undone below if it or a later step
            # fails. Gunicorn's master dies of it.
            if callable(setup) and groups.log != old_log:
                log_switched = True
                setup(groups.log)
            listeners, retired = self._rebind(groups.arbiter)
        except Exception:
            if log_switched:
                try:
                    setup(old_log)  # type: ignore[misc]
                except Exception:
                    pass  # logging's last resort (stderr) still reports the failure
            self.log.exception("Reload failed; the running workers keep serving")
            return
        self._apply(groups, app_loader)
        self.preloaded_app = preloaded
        if preloaded is not None:
            gc.freeze()
        if retired or listeners != self.LISTENERS:
            close_listeners(retired, unlink=True)
            self.LISTENERS = listeners
            self.log.info("Listening at: %s", ",".join(str(lnr) for lnr in self.LISTENERS))
        if not log_switched:
            self.log.reopen_files()
        self.call_hook("on_reload", self)
        if self.cfg.pidfile != old_pidfile:
            if self.pidfile is not None:
                self.pidfile.unlink()
                self.pidfile = None
            if self.cfg.pidfile is not None:
                pidfile = Pidfile(self.cfg.pidfile)
                try:
                    pidfile.create(self.pid)
                    self.pidfile = pidfile
                except (HaltServer, OSError) as exc:
                    self.log.error("Cannot write the new pidfile: %s", exc)
        self.proc_name = self._default_proc_name()
        set_proctitle(f"fastwsgi: master [{self.proc_name}]")
        self._rebind_metrics()
        self.num_workers = self.cfg.workers
        # New workers first; the old ones keep serving until every new one has
        # loaded the app (its heartbeat slot says booted), then retire
        # gracefully. The listening sockets are shared, so connections keep
        # being accepted throughout, even when the app takes long to import.
        for pid in sorted(self.pending_retire):
            self.retire_worker(pid, "reload")
        self.pending_retire = {pid for pid, _ in self.active_workers()}
        self.generation = {self.spawn_worker() for _ in range(self.num_workers)}
        self.retire_replaced_generation()

    def _rebind(self, cfg: ArbiterSettings) -> tuple[list[Listener], list[Listener]]:
        """Listeners for ``cfg.bind``: unchanged addresses keep their socket (no
        connection is dropped), new ones are bound. Returns (listeners, to close)."""
        if self.systemd or tuple(cfg.bind) == tuple(self.cfg.bind):
            return self.LISTENERS, []
        keep: list[Listener] = []
        fresh: list[str] = []
        for addr in cfg.bind:
            parsed = parse_address(addr)
            match = next(
                (lnr for lnr in self.LISTENERS if lnr.address == parsed and lnr not in keep), None
            )
            if match is not None:
                keep.append(match)
            else:
                fresh.append(addr)
        new = create_listeners(
            fresh,
            backlog=cfg.backlog,
            reuse_port=cfg.reuse_port,
            umask=cfg.umask,
            uid=cfg.user,
            gid=cfg.group,
            log=self.log,
        )
        return keep + new, [lnr for lnr in self.LISTENERS if lnr not in keep]

    def _previous_generation_alive(self) -> bool:
        return any(pid in self.WORKERS and pid not in self.retiring for pid in self.pending_retire)

    def _abort_reload(self, why: str) -> None:
        """A worker of the generation a HUP started could not boot (the code
        just deployed does not import, say) while the previous generation
        still serves: the reload fails as a whole, as it does for a broken
        configuration. The rest of the new generation is retired, the
        previous workers stay and are no longer due to retire, and the
        worker count is theirs, so nothing is spawned from the broken code
        (no crash loop). Gunicorn's master halts, taking the working
        workers down with it. A worker that has to be replaced later (it
        crashed, reached max_requests) meets the broken code again, and that
        failure halts the master as at any other time."""
        self.log.error(
            "Reload failed: %s; the %d previous worker(s) keep serving (fix it and send HUP again)",
            why,
            len([pid for pid in self.pending_retire if pid in self.WORKERS]),
        )
        for pid in sorted(self.generation):
            self.retire_worker(pid, RELOAD_FAILED)
        self.generation.clear()
        self.pending_retire.clear()
        self.num_workers = len(self.active_workers())

    def retire_replaced_generation(self) -> None:
        """After HUP: once the new workers have all booted, retire the old ones."""
        if not self.pending_retire:
            return
        self.generation &= set(self.WORKERS)
        if all(self.WORKERS[pid].heartbeat.booted() for pid in self.generation):
            for pid in sorted(self.pending_retire):
                self.retire_worker(pid, "reload")
            self.pending_retire.clear()
            self.generation.clear()

    def reexec(self) -> None:
        """USR2: fork and exec a new master that inherits our listening sockets."""
        if self.reexec_pid:
            self.log.warning("USR2 signal ignored. Child exists.")
            return
        if self.master_pid:
            self.log.warning("USR2 signal ignored. Parent exists.")
            return
        master_pid = self.procops.getpid()
        if self.pidfile is not None and self.cfg.pidfile is not None:
            self.pidfile.rename(self.cfg.pidfile + ".oldbin")
        pid = self.procops.fork()
        if pid != 0:
            self.reexec_pid = pid
            self.log.info("Re-executing: new master has pid %s", pid)
            return
        try:
            self.call_hook("pre_exec", self)
            env = dict(os.environ)
            env[PID_ENV] = str(master_pid)
            if self.systemd:
                env["LISTEN_PID"] = str(os.getpid())
                env["LISTEN_FDS"] = str(len(self.LISTENERS))
            else:
                env[FD_ENV] = ",".join(str(lnr.fileno()) for lnr in self.LISTENERS)
            for lnr in self.LISTENERS:
                os.set_inheritable(lnr.fileno(), True)
            if self.metrics_endpoint is not None:
                # The new master serves the same endpoint (with its own totals).
                env[METRICS_FD_ENV] = str(self.metrics_endpoint.sock.fileno())
                os.set_inheritable(self.metrics_endpoint.sock.fileno(), True)
            os.chdir(self.START_CTX["cwd"])
            self.procops.execve(self.START_CTX[0], self.START_CTX["args"], env)
        except BaseException:
            self.log.exception("Re-exec failed")
        os._exit(1)

    def maybe_promote_master(self) -> None:
        """A USR2 child becomes the master when its parent (the old master) is gone."""
        if self.master_pid == 0:
            return
        if self.master_pid != self.procops.getppid():
            self.log.info("Master has been promoted.")
            self.master_name = "Master"
            self.master_pid = 0
            os.environ.pop(PID_ENV, None)
            self.proc_name = self._default_proc_name()
            if self.pidfile is not None and self.cfg.pidfile is not None:
                self.pidfile.rename(self.cfg.pidfile)
            set_proctitle(f"fastwsgi: master [{self.proc_name}]")

    # --- workers ---------------------------------------------------------------------------

    def active_workers(self) -> list[tuple[int, Worker]]:
        """Workers not on their way out, oldest first."""
        items = [
            (pid, w)
            for pid, w in self.WORKERS.items()
            if pid not in self.retiring and pid not in self.pending_retire
        ]
        return sorted(items, key=lambda item: item[1].age)

    def manage_workers(self) -> None:
        self.retire_replaced_generation()
        self.note_leaving_workers()
        active = self.active_workers()
        for _ in range(self.num_workers - len(active)):
            self.spawn_worker()
        excess = len(active) - self.num_workers
        for pid, _ in active[: max(0, excess)]:
            self.retire_worker(pid, "too many workers")
        # Gunicorn's worker-count gauge (statsd ``gunicorn.workers``), sent
        # when the count changes; dashboards built for Gunicorn plot it.
        count = len(self.active_workers())
        if count != self._last_worker_count:
            self._last_worker_count = count
            self.log.debug(
                "%d workers",
                count,
                extra={"metric": "gunicorn.workers", "value": count, "mtype": "gauge"},
            )

    def send_backlog_metric(self) -> None:
        """--enable-backlog-metric: Gunicorn's ``gunicorn.backlog`` statsd
        histogram, the connections waiting in the TCP listeners' accept
        queues, at most once per LOOP_TICK."""
        if not self.cfg.enable_backlog_metric:
            return
        now = self.procops.monotonic()
        if now < self._next_backlog:
            return
        self._next_backlog = now + LOOP_TICK
        queued = [b for b in (lnr.backlog() for lnr in self.LISTENERS) if b is not None]
        if queued:
            total = sum(queued)
            self.log.debug(
                "socket backlog: %d",
                total,
                extra={"metric": "gunicorn.backlog", "value": total, "mtype": "histogram"},
            )

    def note_leaving_workers(self) -> None:
        """Workers retiring by themselves (``max_requests``, a stuck thread)
        say so in their heartbeat slot and wake us: count them as retiring
        from now, so manage_workers starts their replacements while they
        finish their requests, and the usual ``graceful_timeout`` bound
        applies. No TERM: they are leaving already."""
        for pid, worker in self.WORKERS.items():
            if pid in self.retiring or pid in self.pending_retire:
                continue
            if worker.heartbeat.leaving():
                worker.exit_reason = worker.heartbeat.note() or "leaving"
                self.retiring[pid] = self.procops.monotonic() + self.graceful_timeout
                self.log.debug(
                    "Worker (pid:%s) is leaving (%s): starting its replacement",
                    pid,
                    worker.exit_reason,
                )

    def retire_worker(self, pid: int, reason: str) -> None:
        """Graceful TERM; SIGKILL if still alive after ``graceful_timeout``."""
        worker = self.WORKERS.get(pid)
        if worker is None or pid in self.retiring:
            return
        worker.exit_reason = reason
        self.retiring[pid] = self.procops.monotonic() + self.graceful_timeout
        self.kill_worker(pid, signal.SIGTERM)

    def spawn_worker(self) -> int:
        self.worker_age += 1
        worker = self.worker_class(
            self.worker_age,
            self.pid,
            [lnr.sock for lnr in self.LISTENERS],
            self.worker_app_loader(),
            self.worker_settings,
            self.log,
            self.hooks,
            self.heartbeats.acquire(),
        )
        worker.server = self
        worker.spawn_stamp = worker.heartbeat.last_beat()
        if self.metrics is not None:
            worker.metrics = self.metrics.slot(worker.heartbeat.index)
        self.call_hook("pre_fork", self, worker)
        # The child inherits the mask; Worker.init_process unblocks once its
        # own handlers are in place (see HELD_UNTIL_HANDLERS).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_UNTIL_HANDLERS)
        try:
            pid = self.procops.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid != 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            worker.pid = pid
            self.WORKERS[pid] = worker
            return pid
        self._run_worker(worker)

    def _run_worker(self, worker: Worker) -> NoReturn:
        """In the child: never return into the master's loop."""
        status = WORKER_BOOT_ERROR
        try:
            worker.pid = os.getpid()
            for fd in self.PIPE:
                if fd >= 0:
                    os.close(fd)
            set_proctitle(f"fastwsgi: worker [{self.proc_name}]")
            self.log.info("Booting worker with pid: %s", worker.pid)
            self._drop_privileges()
            self.call_hook("post_fork", self, worker)
            worker.init_process()
        except SystemExit as exc:
            code = exc.code
            status = code if isinstance(code, int) else (0 if code is None else 1)
        except BaseException as exc:
            try:
                if worker.booted:
                    self.log.exception("Exception in worker process")
                else:  # e.g. --user/--group the master may not switch to
                    worker.boot_failed(exc)
            except BaseException:
                traceback.print_exc()
            status = 1 if worker.booted else WORKER_BOOT_ERROR
        os._exit(status)

    def _drop_privileges(self) -> None:
        uid, gid = self.cfg.user, self.cfg.group
        if gid is not None and gid != os.getegid():
            if uid is not None:
                try:
                    import pwd

                    os.initgroups(pwd.getpwuid(uid).pw_name, gid)
                except KeyError:
                    pass
            os.setgid(gid)
        if uid is not None and uid != os.geteuid():
            os.setuid(uid)

    def kill_workers(self, sig: int) -> None:
        for pid in list(self.WORKERS):
            self.kill_worker(pid, sig)

    def kill_worker(self, pid: int, sig: int) -> None:
        self.procops.kill(pid, sig)

    def murder_workers(self) -> None:
        """Heartbeat check: SIGABRT after ``timeout``, SIGKILL after the grace or a missed deadline."""
        now = self.procops.monotonic()
        for pid, worker in list(self.WORKERS.items()):
            if pid in self.killed:
                continue
            aborted = self.aborted_at.get(pid)
            if aborted is not None:
                if now - aborted >= ABORT_GRACE:
                    self.log.error(
                        "Worker (pid:%s) still alive %ss after SIGABRT: sending SIGKILL",
                        pid,
                        ABORT_GRACE,
                    )
                    self.killed.add(pid)
                    self.kill_worker(pid, signal.SIGKILL)
                continue
            deadline = self.retiring.get(pid)
            if deadline is not None and now >= deadline:
                self.log.error(
                    "Worker (pid:%s) still busy %ss after it was retired (%s): sending SIGKILL",
                    pid,
                    self.graceful_timeout,
                    worker.exit_reason,
                )
                self.killed.add(pid)
                self.kill_worker(pid, signal.SIGKILL)
                continue
            if not self.timeout:
                continue
            stamp = worker.heartbeat.last_beat()
            if stamp < worker.spawn_stamp:
                # CLOCK_MONOTONIC never goes back, so a stamp older than the
                # one acquire() wrote is not a beat: something overwrote it
                # (CI saw 0 twice, right after a spawn). Restart the clock
                # rather than abort a healthy worker for the machine's
                # uptime; a stuck one is still caught a timeout later.
                self.log.warning(
                    "Worker (pid:%s): heartbeat stamp %r is older than its spawn (%r); "
                    "restarting its clock",
                    pid,
                    stamp,
                    worker.spawn_stamp,
                )
                worker.heartbeat.beat()
                continue
            silent = worker.heartbeat.age(now)
            if silent <= self.timeout:
                continue
            self.log.critical(
                "WORKER TIMEOUT (pid:%s): no heartbeat for %.1fs (timeout %ss), sending SIGABRT",
                pid,
                silent,
                self.timeout,
            )
            worker.aborted = True
            worker.exit_reason = "timeout"
            self.aborted_at[pid] = now
            self.kill_worker(pid, signal.SIGABRT)

    def reap_workers(self, halt_on_boot_error: bool = True) -> None:
        """Collect exited children, say why each one went, and halt on boot errors."""
        halt: HaltServer | None = None
        while True:
            reaped = self.procops.reap()
            if reaped is None:
                break
            pid, status = reaped
            code, sig = describe_status(status)
            if pid == self.reexec_pid:
                self.reexec_pid = 0
                self.log.error(
                    "New master (pid:%s) exited (%s); keeping the old one",
                    pid,
                    f"code {code}" if sig is None else signal.Signals(sig).name,
                )
                if self.pidfile is not None and self.cfg.pidfile is not None:
                    self.pidfile.rename(self.cfg.pidfile)
                continue
            worker = self.WORKERS.pop(pid, None)
            if worker is None:
                continue
            self.retiring.pop(pid, None)
            self.pending_retire.discard(pid)
            self.aborted_at.pop(pid, None)
            self.killed.discard(pid)
            note = worker.heartbeat.note() if code in (WORKER_BOOT_ERROR, APP_LOAD_ERROR) else ""
            if not worker.exit_reason and sig is None and code == 0:
                worker.exit_reason = worker.heartbeat.note() or None  # max_worker_memory
            self._fold_metrics(worker, code, sig)
            self.heartbeats.release(worker.heartbeat)
            reason = f" ({worker.exit_reason})" if worker.exit_reason else ""
            if sig is not None:
                name = signal.Signals(sig).name
                if sig == signal.SIGKILL and not worker.exit_reason:
                    self.log.error("Worker (pid:%s) was sent SIGKILL! Perhaps out of memory?", pid)
                else:
                    self.log.error("Worker (pid:%s) was sent %s!%s", pid, name, reason)
            elif code:
                self.log.error("Worker (pid:%s) exited with code %s%s", pid, code, reason)
            self.call_hook("child_exit", self, worker)
            if code in (WORKER_BOOT_ERROR, APP_LOAD_ERROR):
                if worker.exit_reason == RELOAD_FAILED:
                    continue  # retired by _abort_reload, which told why
                if pid in self.generation and self._previous_generation_alive():
                    self._abort_reload(_reason("a new worker failed to boot", note))
                    continue
            if halt is None and halt_on_boot_error:
                # The worker's own one-line reason, when it left one, makes
                # the master's last line say what is wrong.
                if code == WORKER_BOOT_ERROR:
                    halt = HaltServer(_reason("Worker failed to boot.", note), WORKER_BOOT_ERROR)
                elif code == APP_LOAD_ERROR:
                    halt = HaltServer(_reason("App failed to load.", note), APP_LOAD_ERROR)
        if halt is not None:
            raise halt

    # --- metrics -------------------------------------------------------------------

    def open_metrics(self, address: str | None) -> None:
        """Start serving --metrics-bind (a USR2 master adopts its parent's
        socket from ``$FASTWSGI_METRICS_FD``). BindError when it cannot."""
        inherited = os.environ.pop(METRICS_FD_ENV, "")
        if not address:
            if inherited.isdigit():
                os.close(int(inherited))  # the new configuration turned them off
            return
        if self.metrics is None:
            self.metrics = MetricsPool()
        if inherited.isdigit():
            lnr = from_fd(int(inherited))
            lnr.sock.set_inheritable(False)
        else:
            lnr = bind_one(address, backlog=64, retries=1)
        path = lnr.address if lnr.owns_path and isinstance(lnr.address, str) else None
        self.metrics_endpoint = MetricsEndpoint(lnr.sock, self.collect_metrics, self.log, path)
        self.metrics_address = address
        self.log.info("Serving metrics at: %s", self.metrics_endpoint.address)

    def _rebind_metrics(self) -> None:
        """HUP: a changed --metrics-bind moves the endpoint (the totals stay);
        an address that cannot be bound keeps the old one."""
        new = self.cfg.metrics_bind
        old = self.metrics_address if self.metrics_endpoint else None
        if new == old:
            return
        previous = self.metrics_endpoint
        self.metrics_endpoint = None
        try:
            self.open_metrics(new)
        except (BindError, OSError) as exc:
            self.log.error("Cannot serve metrics at %s: %s; keeping %s", new, exc, old)
            self.metrics_endpoint = previous
            return
        if previous is not None:
            previous.close()

    def _fold_metrics(self, worker: Worker, code: int | None, sig: int | None) -> None:
        """A reaped worker: keep its counters, count why it went (a restart
        unless the master is stopping)."""
        if self.metrics is None:
            return
        self.metrics.fold(worker.heartbeat.index)
        reason = restart_reason(worker.exit_reason, code, sig)
        if reason is not None and not self.stopping:
            self.metrics.restarts[reason] += 1

    def collect_metrics(self) -> bytes:
        """The scrape: live slots plus retained totals, and the master's own view."""
        assert self.metrics is not None
        workers = sorted(self.WORKERS.values(), key=lambda w: w.heartbeat.index)
        values, flights = self.metrics.totals(w.heartbeat.index for w in workers)
        busy = sum(1 for w, n in zip(workers, flights, strict=True) if n and not w.threaded)
        threads = sum(n for w, n in zip(workers, flights, strict=True) if w.threaded)
        listeners = []
        for lnr in self.LISTENERS:
            queue = accept_queue(lnr.sock)
            if queue is not None:
                listeners.append((str(lnr), *queue))
        memory = [(w.heartbeat.index, rss) for w in workers if (rss := process_rss(w.pid))]
        return render(
            values,
            workers=len(workers),
            workers_busy=busy,
            threads_busy=threads,
            threads=sum(max(1, w.settings.threads) for w in workers if w.threaded),
            in_flight=sum(flights),
            restarts=self.metrics.restarts,
            listeners=listeners,
            memory=memory,
            version=__version__,
        )

    # --- shutdown ----------------------------------------------------------------

    def stop(self, graceful: bool = True) -> None:
        """Close listeners, stop workers (TERM or QUIT), KILL what outlives graceful_timeout."""
        unlink = (
            self.reexec_pid == 0
            and self.master_pid == 0
            and not self.systemd
            and not self.cfg.reuse_port
        )
        close_listeners(self.LISTENERS, unlink)
        self.LISTENERS = []
        self.stopping = True
        self.kill_workers(signal.SIGTERM if graceful else signal.SIGQUIT)
        limit = self.procops.monotonic() + self.graceful_timeout
        while self.WORKERS and self.procops.monotonic() < limit:
            self.reap_workers(halt_on_boot_error=False)
            if graceful and any(s in (signal.SIGINT, signal.SIGQUIT) for s in self.SIG_QUEUE):
                # A second, impatient signal (Ctrl-C during a graceful stop).
                self.log.info("Fast shutdown requested during graceful stop")
                graceful = False
                self.kill_workers(signal.SIGQUIT)
            if self.WORKERS:
                self.sleep(0.1)
        if self.WORKERS:
            for pid in self.WORKERS:
                self.log.error("Worker (pid:%s) outlived graceful_timeout: sending SIGKILL", pid)
                self.killed.add(pid)
            self.kill_workers(signal.SIGKILL)
            # KILL cannot be caught; the reap is bounded anyway.
            limit = self.procops.monotonic() + 5.0
            while self.WORKERS and self.procops.monotonic() < limit:
                self.reap_workers(halt_on_boot_error=False)
                if self.WORKERS:
                    self.sleep(0.05)

    def halt(self, reason: str | None = None, exit_status: int = 0) -> int:
        self.stop()
        self.log.info("Shutting down: %s", self.master_name)
        if reason is not None:
            self.log.error("Reason: %s", reason)
            if exit_status:
                self._tell_stderr(reason)
        return self._finish(exit_status)

    def _tell_stderr(self, reason: str) -> None:
        """A fatal reason also goes to stderr as the CLI's one line
        (``fastwsgi: error: ...``) when the error log is somewhere else, so
        whoever started the server sees why it stopped."""
        log = self.groups.log
        to_stderr = log.errorlog == "-" and not log.logconfig and not log.logconfig_dict
        if to_stderr or log.capture_output or self.cfg.daemon:
            return
        try:
            sys.stderr.write(f"fastwsgi: error: {reason}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def _startup_failed(self, line: str) -> None:
        """The app could not be loaded before any worker ran: the CLI's one
        line on stderr (``fastwsgi: error: ...``, exit 1); the error log gets
        it too when it is a file."""
        log = self.groups.log
        to_stderr = log.errorlog == "-" and not log.logconfig and not log.logconfig_dict
        if not to_stderr and not log.capture_output:
            self.log.error("%s", line)
        try:
            sys.stderr.write(f"fastwsgi: error: {line}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def _finish(self, exit_status: int) -> int:
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.close(unlink=self.reexec_pid == 0 and self.master_pid == 0)
            self.metrics_endpoint = None
        if self.pidfile is not None:
            self.pidfile.unlink()
        self.call_hook("on_exit", self)
        return exit_status
