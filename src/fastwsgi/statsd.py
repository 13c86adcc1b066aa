"""Request metrics to statsd over UDP, with Gunicorn's metric names.

Theory of operation
-------------------
One unconnected-then-connected UDP socket per process (created lazily, so a
socket made in the master is never shared by forked workers); each metric is
one datagram, sent non-blocking and dropped on any error: metrics must never
slow down or fail a request. Names are Gunicorn's (``gunicorn.requests``,
``gunicorn.request.duration`` in ms, ``gunicorn.request.status.<code>``,
``gunicorn.log.critical``, and the master's ``gunicorn.workers`` gauge, sent
when the worker count changes) so existing dashboards keep working; a log
call with ``extra={"metric": ..., "value": ..., "mtype": ...}`` sends that
metric too, as Gunicorn's statsd logger does. The prefix is
``--statsd-prefix`` followed by a dot; ``--dogstatsd-tags`` are appended to
every metric as ``|#TAGS`` (DogStatsD's extension, Gunicorn's format).
"""

from __future__ import annotations

import os
import socket
from typing import Any


class Statsd:
    def __init__(self, host: str, prefix: str = "", log: Any = None, tags: str = "") -> None:
        self.host = host
        self.prefix = prefix.rstrip(".") + "." if prefix else ""
        self.suffix = f"|#{tags}" if tags else ""
        self.log = log
        self._sock: socket.socket | None = None
        self._pid = -1

    def _socket(self) -> socket.socket | None:
        if self._sock is not None and self._pid == os.getpid():
            return self._sock
        try:
            if self.host.startswith("unix:"):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.connect(self.host[5:])
            else:
                host, _, port = self.host.rpartition(":")
                host = host.strip("[]")
                info = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
                sock = socket.socket(info[0], socket.SOCK_DGRAM)
                sock.connect(info[4])
            sock.setblocking(False)
        except OSError:
            return None
        self._sock, self._pid = sock, os.getpid()
        return sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, metric: str) -> None:
        sock = self._socket()
        if sock is None:
            return
        try:
            sock.send((self.prefix + metric + self.suffix).encode("ascii", "replace"))
        except OSError:
            pass  # metrics are best effort

    def increment(self, name: str, value: int = 1) -> None:
        self._send(f"{name}:{value}|c")

    def gauge(self, name: str, value: float) -> None:
        self._send(f"{name}:{value}|g")

    def histogram(self, name: str, value_ms: float) -> None:
        self._send(f"{name}:{value_ms:.3f}|ms")

    def access(self, status: int | str, duration_s: float) -> None:
        code = status if isinstance(status, int) else str(status).split(None, 1)[0]
        self.histogram("gunicorn.request.duration", duration_s * 1000.0)
        self.increment("gunicorn.requests")
        self.increment(f"gunicorn.request.status.{code}")
