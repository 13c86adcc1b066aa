"""Metrics slots across fork, the master's totals, restart reasons, the text format."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from fastwsgi import metrics
from fastwsgi.metrics import MetricsPool, render, restart_reason


@pytest.mark.parametrize(
    ("exit_reason", "code", "sig", "want"),
    [
        ("timeout", 1, None, "timeout"),  # SIGABRT'd by the master, exits 1
        ("timeout", None, signal.SIGKILL, "timeout"),  # ... or killed after the grace
        ("a request stuck in a thread", 0, None, "timeout"),  # gthread retires itself
        (None, None, signal.SIGKILL, "killed"),  # the OOM killer, kill -9
        (None, None, signal.SIGSEGV, "killed"),
        ("max_requests", 0, None, "max_requests"),
        ("max_worker_memory", 0, None, "max_memory"),
        (None, 1, None, "error"),
        (None, 3, None, "error"),  # failed to boot
        ("reload", 0, None, "reload"),
        ("reload", None, signal.SIGKILL, "reload"),  # outlived graceful_timeout
        ("too many workers", 0, None, "reload"),  # TTOU
        (None, 0, None, None),  # left cleanly for no reason we know: not counted
    ],
)
def test_restart_reason(exit_reason: str | None, code: int | None, sig: int | None,
                        want: str | None) -> None:
    assert restart_reason(exit_reason, code, sig) == want


def test_a_childs_counts_are_read_live_then_kept_when_it_is_gone() -> None:
    pool = MetricsPool()
    page = pool.slot(3)
    pid = os.fork()
    if pid == 0:  # the "worker": counts straight into the shared page
        words = memoryview(page).cast("q")
        words[metrics.STATUS + 100] = 7  # 200
        words[metrics.DURATION] = 7
        words[metrics.BYTES] = 70
        words[metrics.IN_FLIGHT] = 1
        memoryview(page).cast("d")[metrics.DURATION_SUM] = 0.25
        os._exit(0)
    os.waitpid(pid, 0)
    live, flights = pool.totals([3])
    assert (live[metrics.STATUS + 100], live[metrics.BYTES], flights) == (7, 70, [1])
    pool.fold(3)
    kept, flights = pool.totals([3])
    assert (kept[metrics.STATUS + 100], kept[metrics.BYTES], flights) == (7, 70, [0])
    assert kept[metrics.DURATION_SUM] == 0.25
    # The slot handed to the next worker starts from zero; the totals stay.
    assert bytes(pool.slot(3)) == bytes(metrics.SLOT_BYTES)
    assert pool.totals([3])[0][metrics.STATUS + 100] == 7
    pool.close()


def test_the_text_format() -> None:
    values: list[float] = [0] * metrics.WORDS
    values[metrics.STATUS + 399] = 2  # 499
    values[metrics.STATUS + metrics.STATUS_OTHER] = 1
    values[metrics.DURATION + 1] = 2
    values[metrics.DURATION + metrics.NBUCKETS - 1] = 1
    values[metrics.DURATION_SUM] = 31.5
    text = render(values, workers=2, workers_busy=1, threads_busy=0, threads=0, in_flight=1,
                  restarts={"killed": 1}, listeners=[('http://a"b', 3, 2048)],
                  memory=[(0, 1000)], version="1.0").decode()
    assert 'fastwsgi_requests_total{status="499"} 2\n' in text
    assert 'fastwsgi_requests_total{status="other"} 1\n' in text
    assert 'fastwsgi_request_duration_seconds_bucket{le="0.0005"} 0\n' in text
    assert 'fastwsgi_request_duration_seconds_bucket{le="0.001"} 2\n' in text
    assert 'fastwsgi_request_duration_seconds_bucket{le="30.0"} 2\n' in text
    assert 'fastwsgi_request_duration_seconds_bucket{le="+Inf"} 3\n' in text
    assert "fastwsgi_request_duration_seconds_count 3\n" in text
    assert "fastwsgi_request_duration_seconds_sum 31.5\n" in text
    assert 'fastwsgi_listen_queue_length{listener="http://a\\"b"} 3\n' in text
    assert 'fastwsgi_worker_restarts_total{reason="killed"} 1\n' in text
    assert 'fastwsgi_worker_restarts_total{reason="reload"} 0\n' in text
    assert text.endswith("\n")


# --- the compiled side: Connection counts into the worker's page --------------------------


class _Worker:
    alive = True

    def __init__(self, page: object) -> None:
        self.metrics = page


def _serve_one(page: object, client: tuple[str, int], *headers: str, path: str = "/") -> bytes:
    from fastwsgi._conn import Connection, WorkerContext
    from fastwsgi.config import WorkerSettings

    seen: dict[str, int] = {}

    def app(environ: dict, start_response: object) -> list[bytes]:
        words = memoryview(page).cast("q")  # type: ignore[arg-type]
        seen["in_flight"] = words[metrics.IN_FLIGHT]
        seen["connections"] = words[metrics.CONNECTIONS]
        start_response("203 Fine", [("Content-Length", "5")])  # type: ignore[operator]
        return [b"hello"]

    ctx = WorkerContext(WorkerSettings(), worker=_Worker(page), keepalive=False)
    a, b = socket.socketpair()
    with a, b:
        conn = Connection(ctx, a, client)
        head = "".join(h + "\r\n" for h in headers)
        b.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        conn.handle_request(app)
        conn.close()
        out = b.recv(65536)
    words = memoryview(page).cast("q")  # type: ignore[arg-type]
    assert seen == {"in_flight": 1, "connections": 1}  # while the app ran
    assert (words[metrics.IN_FLIGHT], words[metrics.CONNECTIONS]) == (0, 0)
    return out


def _queue(page: object) -> tuple[int, float]:
    words = memoryview(page).cast("q")  # type: ignore[arg-type]
    count = sum(words[metrics.QUEUE + i] for i in range(metrics.NBUCKETS))
    return count, memoryview(page).cast("d")[metrics.QUEUE_SUM]  # type: ignore[arg-type]


TRUSTED = ("127.0.0.1", 40000)


def test_a_request_is_counted_by_status_bytes_and_duration() -> None:
    page = MetricsPool().slot(0)
    assert _serve_one(page, TRUSTED).startswith(b"HTTP/1.1 203 Fine")
    words = memoryview(page).cast("q")
    assert words[metrics.STATUS + 103] == 1
    assert words[metrics.BYTES] == 5
    assert sum(words[metrics.DURATION + i] for i in range(metrics.NBUCKETS)) == 1
    assert 0 < memoryview(page).cast("d")[metrics.DURATION_SUM] < 5
    assert _queue(page) == (0, 0.0)  # no stamp, no queue time


@pytest.mark.parametrize(
    "header",
    [
        "X-Request-Start: t={s:.3f}",  # nginx t=${msec}
        "X-Request-Start: {ms:.0f}",  # Heroku
        "X-Request-Start: t={us:.0f}",  # New Relic
        "X-Queue-Start: t={us:.0f}",
    ],
)
def test_queue_time_in_every_unit_from_a_trusted_peer(header: str) -> None:
    page = MetricsPool().slot(0)
    t = time.time() - 3.0
    _serve_one(page, TRUSTED, header.format(s=t, ms=t * 1e3, us=t * 1e6))
    count, took = _queue(page)
    assert count == 1 and 2.9 <= took < 10
    words = memoryview(page).cast("q")
    assert words[metrics.QUEUE + metrics.BUCKETS.index(5.0)] == 1


@pytest.mark.parametrize("header", ["X-Request-Start: t=soon", "X-Request-Start: t=-5",
                                    "X-Request-Start: nan", "X-Request-Start: "])
def test_an_unparsable_stamp_is_skipped(header: str) -> None:
    page = MetricsPool().slot(0)
    assert _serve_one(page, TRUSTED, header).startswith(b"HTTP/1.1 203")
    assert _queue(page) == (0, 0.0)
    assert memoryview(page).cast("q")[metrics.STATUS + 103] == 1


def test_a_stamp_from_an_untrusted_peer_is_ignored() -> None:
    page = MetricsPool().slot(0)
    _serve_one(page, ("10.1.2.3", 40000), f"X-Request-Start: t={time.time() - 3:.3f}")
    assert _queue(page) == (0, 0.0)
    assert memoryview(page).cast("q")[metrics.STATUS + 103] == 1


def test_a_stamp_a_little_in_the_future_counts_as_no_wait() -> None:
    page = MetricsPool().slot(0)
    _serve_one(page, TRUSTED, f"X-Request-Start: t={time.time() + 0.5:.3f}")
    assert _queue(page) == (1, 0.0)


def test_the_duration_ends_with_the_last_byte_sent_not_the_iterables_close() -> None:
    from fastwsgi._conn import Connection, WorkerContext
    from fastwsgi.config import WorkerSettings

    class Body:
        def __iter__(self) -> object:
            return iter([b"hello"])

        def close(self) -> None:
            time.sleep(0.3)  # the app's clean-up, after the response went out

    def app(environ: dict, start_response: object) -> Body:
        start_response("200 OK", [("Content-Length", "5")])  # type: ignore[operator]
        return Body()

    page = MetricsPool().slot(0)
    ctx = WorkerContext(WorkerSettings(), worker=_Worker(page), keepalive=False)
    a, b = socket.socketpair()
    with a, b:
        conn = Connection(ctx, a, TRUSTED)
        b.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        conn.handle_request(app)
        conn.close()
    words = memoryview(page).cast("q")
    assert sum(words[metrics.DURATION + i] for i in range(metrics.NBUCKETS)) == 1
    assert memoryview(page).cast("d")[metrics.DURATION_SUM] < 0.25
