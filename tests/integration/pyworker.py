"""A small pure-Python worker used to test the arbiter on its own.

It speaks just enough HTTP/1.0-style request/response (one request per
connection) to drive ``testapp.app``, and uses only the ``Worker`` base class
contract: ``listeners``, ``wsgi``, ``alive``, ``notify()``,
``request_done()``, ``wakeup_fd``. Selected with ``-k pyworker.PyWorker``
when the tests' directory is on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import select
import signal
import socket
from typing import Any

from fastwsgi.workers.base import Worker


class PyWorker(Worker):
    def run(self) -> None:
        for sock in self.listeners:
            sock.setblocking(False)
        poller = select.poll()
        by_fd = {sock.fileno(): sock for sock in self.listeners}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        poller.register(self.wakeup_fd, select.POLLIN)
        interval_ms = int(min(1.0, self.timeout / 2 if self.timeout else 1.0) * 1000)
        while self.alive:
            self.notify()
            if not self.is_parent_alive():
                break
            for fd, _ in poller.poll(interval_ms):
                if fd == self.wakeup_fd:
                    self.drain_wakeup()
                    continue
                if not self.alive:
                    break
                try:
                    conn, _ = by_fd[fd].accept()
                except (BlockingIOError, InterruptedError):
                    continue
                with conn:
                    self.handle(conn)
                self.request_done()

    def handle(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        conn.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _ = line.split(" ", 2)
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "0",
            "SERVER_PROTOCOL": "HTTP/1.0",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": None,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }
        state: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            state["head"] = (status, headers)
            return conn.sendall

        assert self.wsgi is not None
        body = b"".join(self.wsgi(environ, start_response))
        status, headers = state["head"]
        head = f"HTTP/1.0 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
        head += f"X-Worker-Pid: {os.getpid()}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode("latin-1") + body)


class BootFailWorker(PyWorker):
    """Fails before it has booted: the worker exits 3 (WORKER_BOOT_ERROR)."""

    def init_signals(self) -> None:
        raise RuntimeError("BootFailWorker cannot set up its signals")


class DeafWorker(PyWorker):
    """Ignores SIGABRT, like a worker stuck in C code: the master must SIGKILL it."""

    def init_signals(self) -> None:
        super().init_signals()
        signal.signal(signal.SIGABRT, signal.SIG_IGN)
