"""Prometheus metrics: workers count into shared memory, the master serves /metrics.

Theory of operation
-------------------
Each worker slot (the index of its heartbeat slot, ``heartbeat.py``) has a
page of shared anonymous memory, mapped by the master before the fork like
the heartbeat pages, holding 64-bit words: counters (requests by status,
response bytes, histogram buckets and sums) and gauges (requests in flight,
open connections). The compiled connection core adds to them once per
request where the response's status and byte count are final (the access
log's place, ``Connection._log_access``): a few adds through a pointer, under
the GIL a worker's threads share, so no lock, no syscall and no allocation;
one writer per word at a time, and an aligned 8-byte load in the master
never sees a torn value.

The master reads them only when scraped: it sums the live slots, the totals
it retained from workers that are gone, and what it knows itself (workers,
restarts by reason, the listeners' accept queues, each worker's RSS). When
it reaps a worker (whatever ended it, SIGKILL included) it adds the slot's
counters to the retained totals and zeroes the slot before the index can be
handed out again, so no counter goes down; a HUP keeps the master and its
totals. A USR2 re-exec starts a new master with new totals: Prometheus sees
a counter reset, which ``rate()`` and ``increase()`` handle.

The endpoint (``MetricsEndpoint``) is a listening socket in the master's
own wait set (``Arbiter.sleep``): non-blocking accept, a request head of at
most ``REQUEST_MAX`` bytes, one response, close. Nothing in it waits, so it
answers while every worker is busy or stuck and never holds the master's
loop; a client that stays silent is closed after ``CLIENT_DEADLINE``.
"""

from __future__ import annotations

import errno
import mmap
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

# Histogram bounds in seconds, for request duration and queue time alike:
# from 0.5 ms (a small response on a LAN) to 30 s (Gunicorn's default
# timeout); Prometheus's client libraries use the same 1-2.5-5 steps.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0)
NBUCKETS = len(BUCKETS) + 1  # and +Inf

# Word offsets in a slot (8 bytes each). Gauges first, then counters.
IN_FLIGHT = 0
CONNECTIONS = 1
GAUGES = 2
BYTES = 2
DURATION_SUM = 3  # a double
QUEUE_SUM = 4  # a double
DURATION = 8  # NBUCKETS per-bucket (not cumulative) counts
QUEUE = DURATION + NBUCKETS
STATUS = QUEUE + NBUCKETS  # one word per status 100..599, then one for any other
STATUS_OTHER = 500
WORDS = STATUS + STATUS_OTHER + 1
SLOT_BYTES = -(-WORDS * 8 // mmap.PAGESIZE) * mmap.PAGESIZE
_DOUBLES = (DURATION_SUM, QUEUE_SUM)

RESTART_REASONS = ("timeout", "killed", "max_requests", "max_memory", "error", "reload")

# The endpoint (ours): a scrape request is one short head; more than this
# many bytes, or a client silent for CLIENT_DEADLINE seconds, is closed; at
# most MAX_CLIENTS at once (the rest wait in the listen backlog).
REQUEST_MAX = 8192
CLIENT_DEADLINE = 10.0
MAX_CLIENTS = 16
BACKLOG = 64
METRICS_FD_ENV = "FASTWSGI_METRICS_FD"  # the endpoint's socket across a USR2 re-exec
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def restart_reason(exit_reason: str | None, code: int | None, sig: int | None) -> str | None:
    """The ``reason`` label for a reaped worker: what the master decided
    (``exit_reason``), else what the worker said, else how it ended; None
    for a worker that left cleanly for no known reason (nothing to count).
    The strings are the arbiter's (``retire_worker``, ``murder_workers``,
    ``RELOAD_FAILED``) and the workers' own notes (``Worker.retire`` from
    ``request_done`` and gthread's ``_check_stuck``)."""
    if exit_reason in ("timeout", "a request stuck in a thread"):
        return "timeout"
    if exit_reason in ("reload", "too many workers", "reload failed"):
        return "reload"
    if exit_reason in ("max_requests", "max_worker_memory"):
        return "max_requests" if exit_reason == "max_requests" else "max_memory"
    if sig is not None:
        return "killed"
    if code:
        return "error"
    return None


def process_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` (``/proc/PID/statm``), 0 when gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read(128).split()[1]) * mmap.PAGESIZE
    except (OSError, ValueError, IndexError):
        return 0


class MetricsPool:
    """The master's side: a slot per worker index, and the retained totals."""

    def __init__(self) -> None:
        self._maps: dict[int, mmap.mmap] = {}
        self._words: dict[int, Any] = {}
        self._doubles: dict[int, Any] = {}
        self.retained: list[float] = [0] * WORDS
        self.restarts: dict[str, int] = dict.fromkeys(RESTART_REASONS, 0)

    def slot(self, index: int) -> mmap.mmap:
        """The zeroed page for worker slot ``index`` (call before the fork);
        whatever a previous worker left there is kept, never dropped."""
        mm = self._maps.get(index)
        if mm is None:
            mm = mmap.mmap(-1, SLOT_BYTES)
            self._maps[index] = mm
            self._words[index] = memoryview(mm).cast("q")
            self._doubles[index] = memoryview(mm).cast("d")
        else:
            self.fold(index)
        return mm

    def fold(self, index: int) -> None:
        """A worker in this slot is gone: keep its counters, zero the slot."""
        words = self._words.get(index)
        if words is None:
            return
        doubles = self._doubles[index]
        kept = self.retained
        for i in range(GAUGES, WORDS):
            kept[i] += doubles[i] if i in _DOUBLES else words[i]
        self._maps[index][:] = bytes(SLOT_BYTES)

    def totals(self, indexes: Iterable[int]) -> tuple[list[float], list[int]]:
        """(counters summed over the retained totals and the live slots,
        each live slot's in-flight gauge, in ``indexes`` order)."""
        out = list(self.retained)
        flights = []
        for index in indexes:
            words = self._words.get(index)
            if words is None:
                flights.append(0)
                continue
            values = words.tolist()
            doubles = self._doubles[index]
            flights.append(max(values[IN_FLIGHT], 0))
            out[CONNECTIONS] += max(values[CONNECTIONS], 0)
            for i in range(GAUGES, WORDS):
                out[i] += doubles[i] if i in _DOUBLES else values[i]
        return out, flights

    def close(self) -> None:
        for view in (*self._words.values(), *self._doubles.values()):
            view.release()
        for mm in self._maps.values():
            mm.close()
        self._maps.clear()
        self._words.clear()
        self._doubles.clear()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def _histogram(out: list[str], name: str, help_: str, counts: list[float], total: float) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} histogram")
    running = 0
    for bound, count in zip(BUCKETS, counts, strict=False):
        running += int(count)
        out.append(f'{name}_bucket{{le="{bound}"}} {running}')
    running += int(counts[-1])
    out.append(f'{name}_bucket{{le="+Inf"}} {running}')
    out.append(f"{name}_sum {_num(float(total))}")
    out.append(f"{name}_count {running}")


def _metric(out: list[str], name: str, kind: str, help_: str,
            samples: Iterable[tuple[str, float]]) -> None:
    out.append(f"# HELP {name} {help_}")
    out.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        out.append(f"{name}{labels} {_num(value)}")


def render(
    values: list[float],
    *,
    workers: int,
    workers_busy: int,
    threads_busy: int,
    threads: int,
    in_flight: int,
    restarts: dict[str, int],
    listeners: Iterable[tuple[str, int, int]],
    memory: Iterable[tuple[int, int]],
    version: str,
) -> bytes:
    """The Prometheus text exposition format (0.0.4)."""
    out: list[str] = []
    statuses = [(f'{{status="{100 + i}"}}', values[STATUS + i])
                for i in range(STATUS_OTHER) if values[STATUS + i]]
    if values[STATUS + STATUS_OTHER]:
        statuses.append(('{status="other"}', values[STATUS + STATUS_OTHER]))
    _metric(out, "fastwsgi_requests_total", "counter",
            "Requests answered, by the status code sent (the server's own rejections "
            "included; 499: the client left before the response).", statuses)
    _histogram(out, "fastwsgi_request_duration_seconds",
               "From the request head complete to the last response byte handed to the kernel.",
               values[DURATION:DURATION + NBUCKETS], values[DURATION_SUM])
    _histogram(out, "fastwsgi_request_queue_seconds",
               "From a trusted proxy's X-Request-Start (or X-Queue-Start) to the worker "
               "reading the request.",
               values[QUEUE:QUEUE + NBUCKETS], values[QUEUE_SUM])
    _metric(out, "fastwsgi_response_bytes_total", "counter",
            "Response body bytes sent.", [("", values[BYTES])])
    _metric(out, "fastwsgi_requests_in_flight", "gauge",
            "Requests being served now.", [("", in_flight)])
    _metric(out, "fastwsgi_workers", "gauge", "Live worker processes.", [("", workers)])
    _metric(out, "fastwsgi_workers_busy", "gauge",
            "Sync workers serving a request now.", [("", workers_busy)])
    _metric(out, "fastwsgi_threads_busy", "gauge",
            "Threaded (gthread) worker threads serving a request now.", [("", threads_busy)])
    _metric(out, "fastwsgi_threads", "gauge",
            "Pool threads of the live threaded (gthread) workers.", [("", threads)])
    _metric(out, "fastwsgi_connections_active", "gauge",
            "Client connections open in the workers.", [("", values[CONNECTIONS])])
    lq = list(listeners)
    _metric(out, "fastwsgi_listen_queue_length", "gauge",
            "Connections in a listening socket's accept queue, not yet taken by a worker "
            "(Linux TCP).", [(f'{{listener="{_label(n)}"}}', q) for n, q, _ in lq])
    _metric(out, "fastwsgi_listen_queue_limit", "gauge",
            "The accept queue's limit (the listen backlog) of a listening socket.",
            [(f'{{listener="{_label(n)}"}}', lim) for n, _, lim in lq])
    _metric(out, "fastwsgi_worker_restarts_total", "counter",
            "Workers that ended and were replaced, by reason.",
            [(f'{{reason="{r}"}}', restarts.get(r, 0)) for r in RESTART_REASONS])
    _metric(out, "fastwsgi_worker_memory_bytes", "gauge",
            "Resident memory of the worker in each slot.",
            [(f'{{worker="{slot}"}}', rss) for slot, rss in memory])
    py = ".".join(str(p) for p in sys.version_info[:3])
    _metric(out, "fastwsgi_build_info", "gauge", "The fastwsgi and Python versions.",
            [(f'{{version="{_label(version)}",python="{py}"}}', 1)])
    out.append("")
    return "\n".join(out).encode()


# --- the endpoint ------------------------------------------------------------------------


class _Client:
    __slots__ = ("sock", "inbuf", "outbuf", "deadline")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.deadline = deadline


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8",
              head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head if head_only else head + body


class MetricsEndpoint:
    """``GET /metrics`` on a listening socket the master waits on (see above)."""

    def __init__(self, sock: socket.socket, collect: Callable[[], bytes], log: Any,
                 unlink_path: str | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.collect = collect
        self.log = log
        self.unlink_path = unlink_path
        self.clients: dict[int, _Client] = {}

    @property
    def address(self) -> str:
        name: Any = self.sock.getsockname()
        if self.sock.family == socket.AF_UNIX:
            return f"unix:{name.decode() if isinstance(name, bytes) else name}"
        if self.sock.family == socket.AF_INET6:
            return f"http://[{name[0]}]:{name[1]}/metrics"
        return f"http://{name[0]}:{name[1]}/metrics"

    def wait_sets(self) -> tuple[list[int], list[int]]:
        """fds to wait on for reading and for writing."""
        rlist = [fd for fd, c in self.clients.items() if not c.outbuf]
        wlist = [fd for fd, c in self.clients.items() if c.outbuf]
        if len(self.clients) < MAX_CLIENTS:
            rlist.append(self.sock.fileno())
        return rlist, wlist

    def handle(self, readable: Iterable[int], writable: Iterable[int]) -> None:
        """Serve what the wait found ready; never blocks."""
        lfd = self.sock.fileno()
        for fd in readable:
            if fd == lfd:
                self._accept()
            elif fd in self.clients:
                self._read(fd)
        for fd in writable:
            if fd in self.clients:
                self._write(fd)
        now = time.monotonic()
        for fd in [fd for fd, c in self.clients.items() if c.deadline <= now]:
            self._drop(fd)

    def _accept(self) -> None:
        while len(self.clients) < MAX_CLIENTS:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    self.log.warning("metrics endpoint: accept() failed: %s", exc)
                return
            conn.setblocking(False)
            self.clients[conn.fileno()] = _Client(conn, time.monotonic() + CLIENT_DEADLINE)

    def _read(self, fd: int) -> None:
        client = self.clients[fd]
        try:
            data = client.sock.recv(REQUEST_MAX + 1 - len(client.inbuf))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        client.inbuf += data
        end = client.inbuf.find(b"\r\n\r\n")
        if end < 0:
            end = client.inbuf.find(b"\n\n")
        if end < 0:
            if len(client.inbuf) > REQUEST_MAX:
                client.outbuf = _response("431 Request Header Fields Too Large", b"too large\n")
                self._write(fd)
            return
        client.outbuf = self._answer(client.inbuf[:end])
        self._write(fd)

    def _answer(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _response("400 Bad Request", b"bad request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != b"/metrics":
            return _response("404 Not Found", b"not found; try /metrics\n")
        if method not in (b"GET", b"HEAD"):
            return _response("405 Method Not Allowed", b"method not allowed\n")
        try:
            body = self.collect()
        except Exception:
            self.log.exception("metrics endpoint: cannot collect the metrics")
            return _response("500 Internal Server Error", b"error\n")
        return _response("200 OK", body, CONTENT_TYPE, head_only=method == b"HEAD")

    def _write(self, fd: int) -> None:
        client = self.clients[fd]
        try:
            n = client.sock.send(client.outbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        client.outbuf = client.outbuf[n:]
        if not client.outbuf:
            self._drop(fd, linger=True)

    def _drop(self, fd: int, linger: bool = False) -> None:
        client = self.clients.pop(fd, None)
        if client is None:
            return
        if linger:
            # What the client sent beyond what we read would make close()
            # answer with an RST that can destroy the response in flight:
            # FIN first, then discard what has arrived (never waiting).
            try:
                client.sock.shutdown(socket.SHUT_WR)
                for _ in range(4):
                    if not client.sock.recv(65536):
                        break
            except OSError:
                pass
        client.sock.close()

    def close(self, unlink: bool = True) -> None:
        for fd in list(self.clients):
            self._drop(fd)
        self.sock.close()
        if unlink and self.unlink_path:
            try:
                os.unlink(self.unlink_path)
            except OSError:
                pass
