"""The master's Prometheus endpoint (--metrics-bind), over real sockets.

Counts are compared as the difference between two scrapes around the
traffic a test sends, so they are exact whatever else (readiness checks)
went before. The real Prometheus server and ``promtool`` come from the
Debian ``prometheus`` package (``.ci/run`` installs it); the tests that need
them skip with that reason when it is missing.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server import (
    POLL,
    Server,
    free_port,
    pid_alive,
    wait_until,
    wait_until_gone,
    worker_classes,
)

from bench import nginx as bench_nginx
from bench import strace as bench_strace

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
NO_PROMETHEUS = "needs the prometheus package (/usr/bin/prometheus, promtool): apt-get install prometheus"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Samples:
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(_LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def scrape_text(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read().decode()
    finally:
        conn.close()


def scrape(port: int) -> Samples:
    status, _, text = scrape_text(port)
    assert status == 200
    return parse(text)


def wait_for(port: int, check: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
    """Until a scrape of ``port`` satisfies ``check``; that scrape."""

    last: Samples = {}

    def scraped() -> Samples | None:
        nonlocal last
        try:
            last = scrape(port)
        except OSError:
            last = {}
        return last if last and check(last) else None

    try:
        return wait_until("metrics that match", scraped, timeout)
    except AssertionError:
        raise AssertionError(f"metrics never matched; last scrape: {last}") from None


def request(port: int, raw: bytes, timeout: float = 10.0, source: str = "") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0) if source else None) as s:
        s.sendall(raw)
        chunks = []
        while True:
            d = s.recv(65536)
            if not d:
                break
            chunks.append(d)
    return b"".join(chunks)


def get(port: int, path: str, *headers: str, source: str = "") -> int:
    return int(get_raw(port, path, *headers, source=source).split(b" ", 2)[1])


def get_raw(port: int, path: str, *headers: str, source: str = "") -> bytes:
    head = "".join(h + "\r\n" for h in headers)
    raw = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}\r\n".encode()
    return request(port, raw, source=source)


def body_len(response: bytes) -> int:
    return len(response.partition(b"\r\n\r\n")[2])


def leave_before_response(port: int) -> None:
    """A POST whose client goes away with most of its body unsent (a 499)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /read HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n0123456789")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        while s.recv(4096):
            pass


@pytest.fixture
def metrics_server(server: Callable[..., Server]) -> Callable[..., tuple[Server, int]]:
    """A server whose only requests are the test's: ready once /metrics
    answers (requests sent before its workers boot wait in the backlog)."""

    def start(*args: str) -> tuple[Server, int]:
        mport = free_port()
        srv = server("--metrics-bind", f"127.0.0.1:{mport}", *args, ready=False)
        wait_for(mport, lambda s: True)
        return srv, mport

    return start


def worker_args(worker: str) -> list[str]:
    return ["-k", worker, "--threads", "4"] if worker == "gthread" else ["-k", worker]


# --- exact counts ---------------------------------------------------------------------


@pytest.mark.parametrize("worker", worker_classes())
def test_every_request_is_counted_once_through_a_kill_and_a_hup(
    metrics_server: Callable[..., tuple[Server, int]], worker: str
) -> None:
    srv, mport = metrics_server("-w", "2", *worker_args(worker), "--graceful-timeout", "5",
                                "--limit-request-body", "64", "metricsapp:app")
    before = scrape(mport)
    sent = {"200": 12, "404": 5, "500": 3, "499": 2, "413": 2}
    for _ in range(sent["200"]):
        assert get(srv.port, "/status/200") == 200
    for _ in range(sent["404"]):
        assert get(srv.port, "/status/404") == 404
    # Body bytes as the access log counts them: the server's own answers too.
    nbytes = 4 * (sent["200"] + sent["404"])
    for _ in range(sent["500"]):
        out = get_raw(srv.port, "/boom")
        assert out.startswith(b"HTTP/1.1 500")
        nbytes += body_len(out)
    for _ in range(sent["499"]):
        leave_before_response(srv.port)
    body = b"80\r\n" + b"x" * 128 + b"\r\n0\r\n\r\n"  # chunked: over the limit only when read
    for _ in range(sent["413"]):
        out = request(srv.port, b"POST /read HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n" + body)
        assert out.startswith(b"HTTP/1.1 413"), out
        nbytes += body_len(out)
    n = sum(sent.values())

    def delta(s: Samples, name: str, **labels: str) -> float:
        return val(s, name, **labels) - val(before, name, **labels)

    after = wait_for(mport, lambda s: total(s, "fastwsgi_requests_total")
                     - total(before, "fastwsgi_requests_total") >= n)
    for status, count in sent.items():
        assert delta(after, "fastwsgi_requests_total", status=status) == count, status
    assert total(after, "fastwsgi_requests_total") - total(before, "fastwsgi_requests_total") == n
    for hist in ("fastwsgi_request_duration_seconds",):
        assert delta(after, f"{hist}_count") == n
        assert delta(after, f"{hist}_bucket", le="+Inf") == n
    assert delta(after, "fastwsgi_response_bytes_total") == nbytes
    assert val(after, "fastwsgi_requests_in_flight") == 0
    assert val(after, "fastwsgi_workers") == 2
    check_with_promtool(scrape_text(mport)[2])

    # A worker SIGKILLed: its counts stay; the restart is counted as killed.
    victim = srv.wait_workers(2)[0]
    os.kill(victim, signal.SIGKILL)
    srv.wait_workers(2, exclude=[victim])
    killed = wait_for(mport, lambda s: val(s, "fastwsgi_worker_restarts_total",
                                           reason="killed") == 1)
    assert killed_counts(killed) == killed_counts(after)
    assert val(killed, "fastwsgi_connections_active") == 0

    # HUP: every worker replaced, the totals kept.
    old = srv.wait_workers(2)
    srv.signal(signal.SIGHUP)
    srv.wait_workers(2, exclude=old)
    hup = wait_for(mport, lambda s: val(s, "fastwsgi_worker_restarts_total",
                                        reason="reload") == 2)
    assert killed_counts(hup) == killed_counts(after)
    for _ in range(3):
        assert get(srv.port, "/status/200") == 200
    more = wait_for(mport, lambda s: delta(s, "fastwsgi_requests_total", status="200") >= 15)
    assert delta(more, "fastwsgi_requests_total", status="200") == 15
    assert delta(more, "fastwsgi_request_duration_seconds_count") == n + 3


def killed_counts(s: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The counters (not the gauges) of a scrape."""
    keep = ("fastwsgi_requests_total", "fastwsgi_request_duration_seconds_",
            "fastwsgi_response_bytes_total")
    return {k: v for k, v in s.items() if k[0].startswith(keep)}


def check_with_promtool(text: str) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip(NO_PROMETHEUS)
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout + proc.stderr == "", proc.stdout + proc.stderr  # not even a lint


def test_a_parser_rejection_is_counted_by_its_status(
    metrics_server: Callable[..., tuple[Server, int]],
) -> None:
    srv, mport = metrics_server("-w", "1", "metricsapp:app")
    before = scrape(mport)
    out = request(srv.port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400")
    after = wait_for(mport, lambda s: val(s, "fastwsgi_requests_total", status="400")
                     > val(before, "fastwsgi_requests_total", status="400"), timeout=2)
    assert val(after, "fastwsgi_requests_total", status="400") == 1


# --- restarts by reason -----------------------------------------------------------------


@pytest.mark.parametrize("worker", worker_classes())
def test_restart_reasons_timeout_max_memory_and_error(
    metrics_server: Callable[..., tuple[Server, int]], worker: str
) -> None:
    srv, mport = metrics_server("-w", "1", *worker_args(worker), "--timeout", "2",
                                "--max-worker-memory", "100", "--graceful-timeout", "1",
                                "metricsapp:app")
    first = srv.wait_workers(1)
    assert get(srv.port, "/grow?mb=120") == 200
    grown = wait_for(mport, lambda s: val(s, "fastwsgi_worker_restarts_total",
                                          reason="max_memory") == 1)
    second = srv.wait_workers(1, exclude=first)
    with pytest.raises(OSError):  # aborted (sync) or retired (gthread): a 500 then a close
        request(srv.port, b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n", timeout=0.5)
    srv.wait_for_log(r"WORKER TIMEOUT")
    timed = wait_for(mport, lambda s: val(s, "fastwsgi_worker_restarts_total",
                                          reason="timeout") == 1)
    third = srv.wait_workers(1, exclude=second)
    for reason in ("killed", "max_requests", "error", "reload"):
        assert val(timed, "fastwsgi_worker_restarts_total", reason=reason) == 0, reason
    assert val(grown, "fastwsgi_worker_restarts_total", reason="timeout") == 0
    # The aborted request was answered 500, and counted (both workers).
    assert val(timed, "fastwsgi_requests_total", status="500") == 1
    assert request(srv.port, b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    crashed = wait_for(mport, lambda s: val(s, "fastwsgi_worker_restarts_total",
                                            reason="error") == 1)
    srv.wait_workers(1, exclude=third)
    assert total(crashed, "fastwsgi_worker_restarts_total") == 3


def test_restart_reason_max_requests(metrics_server: Callable[..., tuple[Server, int]]) -> None:
    srv, mport = metrics_server("-w", "1", "--max-requests", "3", "metricsapp:app")
    first = srv.wait_workers(1)
    for _ in range(3):
        assert get(srv.port, "/status/200") == 200
    done = wait_for(mport, lambda s: val(s, "fastwsgi_worker_restarts_total",
                                         reason="max_requests") == 1)
    srv.wait_workers(1, exclude=first)
    assert val(done, "fastwsgi_requests_total", status="200") == 3
    assert total(done, "fastwsgi_worker_restarts_total") == 1


# --- answers while the workers are busy ----------------------------------------------


@pytest.mark.parametrize("worker", worker_classes())
def test_the_master_answers_while_every_worker_is_stuck(
    metrics_server: Callable[..., tuple[Server, int]], worker: str
) -> None:
    threads = 2 if worker == "gthread" else 1
    srv, mport = metrics_server("-w", "1", *(["-k", "gthread", "--threads", "2"]
                                             if worker == "gthread" else ["-k", worker]),
                                "--timeout", "60", "--graceful-timeout", "1", "metricsapp:app")
    clients = []
    try:
        for _ in range(threads):
            c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            c.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
            clients.append(c)
        deadline = time.monotonic() + 20
        while srv.count_log(r"hang request started") < threads and time.monotonic() < deadline:
            time.sleep(POLL)
        s = scrape(mport)  # the only worker is stuck: the master answers anyway
        assert val(s, "fastwsgi_requests_in_flight") == threads
        if worker == "gthread":
            assert val(s, "fastwsgi_threads_busy") == 2
            assert val(s, "fastwsgi_workers_busy") == 0
        else:
            assert val(s, "fastwsgi_workers_busy") == 1
            assert val(s, "fastwsgi_threads_busy") == 0
        assert val(s, "fastwsgi_connections_active") == threads
        (slot,) = [dict(k[1])["worker"] for k in s if k[0] == "fastwsgi_worker_memory_bytes"]
        assert val(s, "fastwsgi_worker_memory_bytes", worker=slot) > 1024 * 1024
        name = f"http://127.0.0.1:{srv.port}"
        assert val(s, "fastwsgi_listen_queue_limit", listener=name) == 2048
        assert ("fastwsgi_listen_queue_length", frozenset({("listener", name)})) in s
        assert val(s, "fastwsgi_build_info", version=_version(s),
                   python=".".join(map(str, __import__("sys").version_info[:3]))) == 1
    finally:
        for c in clients:
            c.close()


def _version(s: Samples) -> str:
    (labels,) = [dict(k[1]) for k in s if k[0] == "fastwsgi_build_info"]
    return labels["version"]


def test_listen_queue_length_counts_connections_no_worker_took(
    metrics_server: Callable[..., tuple[Server, int]],
) -> None:
    srv, mport = metrics_server("-w", "1", "--timeout", "60", "--graceful-timeout", "1",
                                "--backlog", "16", "metricsapp:app")
    name = f"http://127.0.0.1:{srv.port}"
    hang = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    waiting = []
    try:
        hang.sendall(b"GET /hang HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_for_log(r"hang request started")
        waiting = [socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                   for _ in range(3)]
        s = wait_for(mport, lambda s: val(s, "fastwsgi_listen_queue_length", listener=name) == 3)
        assert val(s, "fastwsgi_listen_queue_limit", listener=name) == 16
    finally:
        for c in (hang, *waiting):
            c.close()


def test_only_get_metrics_is_served(metrics_server: Callable[..., tuple[Server, int]]) -> None:
    _, mport = metrics_server("-w", "1", "metricsapp:app")
    status, ctype, text = scrape_text(mport)
    assert (status, ctype) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "# TYPE fastwsgi_requests_total counter" in text
    assert scrape_text(mport, "/")[0] == 404
    assert scrape_text(mport, "/metrics?x=1")[0] == 200
    out = request(mport, b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405")
    out = request(mport, b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 9000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")
    # A client that connects and says nothing does not hold the endpoint.
    with socket.create_connection(("127.0.0.1", mport), timeout=10):
        assert scrape_text(mport)[0] == 200


def test_a_metrics_address_that_is_a_bind_address_stops_the_start(tmp_path: Path) -> None:
    port = free_port()
    srv = Server(["--metrics-bind", f"0.0.0.0:{port}", "metricsapp:app"], tmp_path, port=port)
    srv.start()
    assert srv.wait_exit(30) == 2
    lines = srv.log().strip().splitlines()
    assert lines == [f"fastwsgi: error: --metrics-bind 0.0.0.0:{port} is also a --bind "
                     f"address (127.0.0.1:{port})"]


def test_usr2_hands_the_endpoint_to_the_new_master(
    metrics_server: Callable[..., tuple[Server, int]],
) -> None:
    srv, mport = metrics_server("-w", "1", "metricsapp:app")
    for _ in range(3):
        assert get(srv.port, "/status/200") == 200
    wait_for(mport, lambda s: val(s, "fastwsgi_requests_total", status="200") == 3)
    mark = srv.mark()
    srv.signal(signal.SIGUSR2)
    new_master = int(srv.wait_for_log(r"Listening at: .* \((\d+)\)$", after=mark).group(1))
    try:
        srv.wait_workers(1, master=new_master)
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(20) == 0
        srv.wait_for_log(r"Master has been promoted", after=mark)
        # The same address, now the new master's, whose counts start from zero.
        assert get(srv.port, "/status/404") == 404
        s = wait_for(mport, lambda s: val(s, "fastwsgi_requests_total", status="404") == 1)
        assert val(s, "fastwsgi_requests_total", status="200") == 0
    finally:
        if pid_alive(new_master):
            os.kill(new_master, signal.SIGTERM)
            wait_until_gone(new_master)


def test_hup_moves_the_endpoint_to_a_new_address_and_keeps_the_counts(
    server: Callable[..., Server], tmp_path: Path
) -> None:
    first, second = free_port(), free_port()
    conf = tmp_path / "conf.py"
    conf.write_text(f"metrics_bind = '127.0.0.1:{first}'\n")
    srv = server("-c", str(conf), "-w", "1", "metricsapp:app", ready=False)
    old = srv.wait_workers(1)
    assert get(srv.port, "/status/200") == 200
    wait_for(first, lambda s: val(s, "fastwsgi_requests_total", status="200") == 1)
    conf.write_text(f"metrics_bind = '127.0.0.1:{second}'\n")
    srv.signal(signal.SIGHUP)
    srv.wait_workers(1, exclude=old)
    s = wait_for(second, lambda s: val(s, "fastwsgi_worker_restarts_total", reason="reload") == 1)
    assert val(s, "fastwsgi_requests_total", status="200") == 1
    with pytest.raises(ConnectionRefusedError):
        scrape(first)


def test_statsd_workers_gauge_follows_the_worker_count(server: Callable[..., Server]) -> None:
    """Gunicorn's ``gunicorn.workers`` gauge, under the configured prefix,
    sent by the master when the count changes (TTIN, TTOU)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(30)
        srv = server("--statsd-host", f"127.0.0.1:{udp.getsockname()[1]}",
                     "--statsd-prefix", "web", "-w", "1", "metricsapp:app")

        def wait_datagram(want: str) -> None:
            seen: list[str] = []
            deadline = time.monotonic() + 30
            while want not in seen:
                assert time.monotonic() < deadline, seen
                seen.append(udp.recv(512).decode())

        wait_datagram("web.gunicorn.workers:1|g")
        srv.signal(signal.SIGTTIN)
        wait_datagram("web.gunicorn.workers:2|g")
        srv.signal(signal.SIGTTOU)
        wait_datagram("web.gunicorn.workers:1|g")


@pytest.mark.skipif(not bench_strace.available(), reason="needs strace (apt-get install strace)")
def test_metrics_add_no_system_call_to_a_request(
    server: Callable[..., Server], metrics_server: Callable[..., tuple[Server, int]]
) -> None:
    """Counting is stores into shared memory: with metrics on, a sync
    worker serving the same requests (stamped by a trusted proxy) makes the
    same system calls, none more."""
    stamp = "X-Request-Start: t={:.3f}"

    def traced(srv: Server) -> dict[str, int]:
        (worker,) = srv.wait_workers(1)
        assert get(srv.port, "/status/200", stamp.format(time.time())) == 200  # warm
        with bench_strace.Tracer([worker]) as tracer:
            for _ in range(50):
                assert get(srv.port, "/status/200", stamp.format(time.time())) == 200
        assert tracer.result is not None, "strace gave no summary"
        return tracer.result.by_name

    off = traced(server("-w", "1", "metricsapp:app"))
    on_srv, mport = metrics_server("-w", "1", "metricsapp:app")
    on = traced(on_srv)
    assert val(scrape(mport), "fastwsgi_request_queue_seconds_count") == 51
    # Per call name, the same count give or take the requests strace caught
    # half-way at attach and detach; the waits (epoll_wait, an accept4 that
    # finds the queue empty) depend on timing, and so does recvfrom: the
    # look for a client that left (a MSG_PEEK recv) is made only for a
    # request the worker took 1 ms or more over (CLIENT_LEFT_AFTER), which
    # a busy machine makes of a few. One call more per request would be 50
    # more, so half of that is the bound there.
    for name, calls in on.items():
        if name in ("epoll_wait", "accept4"):
            continue
        slack = 25 if name == "recvfrom" else 3
        assert calls <= off.get(name, 0) + slack, (name, on, off)


# --- queue time through nginx -----------------------------------------------------------


@pytest.mark.skipif(not bench_nginx.available(), reason="needs nginx (apt-get install nginx-light)")
def test_queue_time_from_a_trusted_proxy_only(
    metrics_server: Callable[..., tuple[Server, int]],
) -> None:
    srv, mport = metrics_server("-w", "1", "metricsapp:app")
    before = scrape(mport)
    proxy = bench_nginx.Nginx(("127.0.0.1", srv.port), queue_start=True)
    proxy.start()
    try:
        for _ in range(5):
            assert get(proxy.port, "/status/200") == 200
    finally:
        proxy.stop()
    # 127.0.0.2 is not in forwarded_allow_ips (127.0.0.1, ::1): its stamp is ignored.
    now = f"t={time.time() - 3:.3f}"
    assert get(srv.port, "/status/200", f"X-Request-Start: {now}", source="127.0.0.2") == 200
    # A trusted peer's unparsable stamp is skipped, never an error.
    assert get(srv.port, "/status/200", "X-Request-Start: t=soon") == 200
    after = wait_for(mport, lambda s: val(s, "fastwsgi_requests_total", status="200")
                     - val(before, "fastwsgi_requests_total", status="200") >= 7)
    queued = (val(after, "fastwsgi_request_queue_seconds_count")
              - val(before, "fastwsgi_request_queue_seconds_count"))
    assert queued == 5
    took = (val(after, "fastwsgi_request_queue_seconds_sum")
            - val(before, "fastwsgi_request_queue_seconds_sum"))
    assert 0 <= took < 5 * 2.0  # nginx to the worker on loopback: well under 2 s each
    # Heroku's milliseconds and New Relic's microseconds, 3 s ago, from a trusted peer.
    ms = f"{(time.time() - 3) * 1000:.0f}"
    us = f"t={(time.time() - 3) * 1e6:.0f}"
    assert get(srv.port, "/status/200", f"X-Request-Start: {ms}") == 200
    assert get(srv.port, "/status/200", f"X-Queue-Start: {us}") == 200
    late = wait_for(mport, lambda s: val(s, "fastwsgi_request_queue_seconds_count")
                    - val(after, "fastwsgi_request_queue_seconds_count") >= 2)
    slow = (val(late, "fastwsgi_request_queue_seconds_sum")
            - val(after, "fastwsgi_request_queue_seconds_sum"))
    assert 6 <= slow < 6 + 2 * 2.0
    assert (val(late, "fastwsgi_request_queue_seconds_bucket", le="5.0")
            - val(late, "fastwsgi_request_queue_seconds_bucket", le="2.5")) == 2


# --- the real Prometheus ----------------------------------------------------------------


def deploy_rules() -> str:
    """The alert rules shown in docs/deploy.md (its ```yaml block after "groups:")."""
    text = (REPO / "docs" / "deploy.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    rules = [b for b in blocks if b.startswith("groups:")]
    assert len(rules) == 1, "docs/deploy.md should show one rules file"
    return rules[0]


def test_the_alert_rules_in_the_docs_pass_promtool(tmp_path: Path) -> None:
    if not os.access(PROMTOOL, os.X_OK):
        pytest.skip(NO_PROMETHEUS)
    path = tmp_path / "rules.yml"
    path.write_text(deploy_rules())
    proc = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 4 rules found" in proc.stdout


class Prometheus:
    """A Prometheus server of our own: temp config and storage, a free port."""

    def __init__(self, tmp_path: Path, target: int) -> None:
        self.port = free_port()
        self.dir = tmp_path / "prometheus"
        self.dir.mkdir()
        (self.dir / "rules.yml").write_text(deploy_rules())
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files: [rules.yml]\n"
            "scrape_configs:\n  - job_name: fastwsgi\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{target}']}}]\n"
        )
        log = open(self.dir / "log.txt", "wb")  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.dir)
        finally:
            log.close()

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as resp:
            out: dict = json.load(resp)
        return out

    def query(self, expr: str) -> float | None:
        result = self.api("/api/v1/query", query=expr)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.dir / "log.txt").read_text()
            try:
                if check():
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"Prometheus: {what} not within {timeout}s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(5)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[int], Prometheus]]:
    if not os.access(PROMETHEUS, os.X_OK):
        pytest.skip(NO_PROMETHEUS)
    started: list[Prometheus] = []

    def start(target: int) -> Prometheus:
        p = Prometheus(tmp_path, target)
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in started:
            p.close()


def test_prometheus_scrapes_exact_totals_and_a_sane_rate_across_a_kill(
    metrics_server: Callable[..., tuple[Server, int]],
    prometheus: Callable[[int], Prometheus],
) -> None:
    srv, mport = metrics_server("-w", "2", "metricsapp:app")
    srv.wait_workers(2)
    prom = prometheus(mport)
    prom.wait(lambda: prom.query('up{job="fastwsgi"}') == 1, "first scrape")
    sent = 0
    for _ in range(40):
        assert get(srv.port, "/status/200") == 200
        sent += 1
    prom.wait(lambda: prom.query("sum(fastwsgi_requests_total)") == sent, f"{sent} requests")
    victim = srv.wait_workers(2)[0]
    os.kill(victim, signal.SIGKILL)
    srv.wait_workers(2, exclude=[victim])
    for _ in range(20):
        assert get(srv.port, "/status/200") == 200
        sent += 1
    prom.wait(lambda: prom.query("sum(fastwsgi_requests_total)") == sent, f"{sent} requests")
    prom.wait(lambda: prom.query('fastwsgi_worker_restarts_total{reason="killed"}') == 1,
              "the kill")
    # The kill is no counter reset: the rate never goes negative or spikes.
    assert prom.query("sum(resets(fastwsgi_requests_total[5m]))") == 0
    rate = prom.query("sum(rate(fastwsgi_requests_total[1m]))")
    assert rate is not None and 0 < rate <= sent
    assert prom.query("fastwsgi_workers") == 2
    # The documented alert rules load and evaluate cleanly against real series.
    def rules_ok() -> bool:
        groups = prom.api("/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return len(rules) == 4 and all(r["health"] == "ok" for r in rules)

    prom.wait(rules_ok, "the alert rules evaluated")
