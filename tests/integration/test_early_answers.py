"""Early answers through a real nginx, and the bound on the lingering close
(issue 18, item 1).

An app that answers before reading the request body (401 from an auth check,
413 from a size limit) behind a default ``proxy_pass`` nginx: the server must
close the way nginx itself does (a lingering close, ``Connection.close``) or
the RST its close provokes reaches nginx while nginx is still sending the
body, and nginx answers its own ``502 Bad Gateway`` instead of the app's
status. The race is lost in some requests only, so each case is repeated: on
the code before the fix this matrix lost 7 to 24 of its 46 requests per
worker class, in each of six runs; the full 200-request matrix, with Gunicorn
beside, is ``bench/early_reply.py``.

The lingering close waits for the peer's close for at most ``LINGER_TIME``
(2 s): a client that keeps sending after the answer is cut off then, and the
one sync worker serves the next client.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from bench import nginx

CURL = shutil.which("curl")
needs_nginx = pytest.mark.skipif(CURL is None or not nginx.available(),
                                 reason="needs curl and nginx (apt-get install curl nginx-light)")

KIB, MIB = 1024, 1024 * 1024
# (body size, repeats): small bodies that fit the socket buffers, and bodies
# that are still on their way when the answer goes out, where the race is.
CASES = ((1 * KIB, 2), (1 * MIB, 3), (10 * MIB, 6))


def _post(port: int, status: str, body: Path, expect: bool) -> str:
    proc = subprocess.run(
        [CURL or "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60",
         "-H", "Content-Type: application/octet-stream",
         "-H", "Expect: 100-continue" if expect else "Expect:",
         "--data-binary", f"@{body}", f"http://127.0.0.1:{port}/reject?status={status}"],
        capture_output=True, text=True, timeout=120,
    )
    return proc.stdout.strip() or f"curl exit {proc.returncode}"


def _body(tmp_path: Path, size: int) -> Path:
    path = tmp_path / f"body-{size}"
    path.write_bytes(os.urandom(min(size, MIB)) * max(size // MIB, 1))
    assert path.stat().st_size == size
    return path


@pytest.mark.needs_tools
@needs_nginx
@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_early_answer_reaches_the_client_through_nginx(server, tmp_path: Path, worker: str) -> None:
    # (--threads > 1 would turn sync into gthread, as in Gunicorn.)
    threads = ["--threads", "4"] if worker == "gthread" else []
    srv = server("-k", worker, *threads, "apps.behave:app")
    bodies = [(_body(tmp_path, size), n) for size, n in CASES]
    outcomes: Counter[str] = Counter()
    for buffering in ("on", "off"):
        extra = f"client_max_body_size 200m;\nproxy_request_buffering {buffering};\n"
        with nginx.Nginx(("127.0.0.1", srv.port), location_extra=extra) as proxy:
            for expect in (False, True):
                for body, repeats in bodies:
                    for i in range(repeats):
                        want = "401" if i % 2 else "413"
                        got = _post(proxy.port, want, body, expect)
                        case = (f"{got} for {want} (buffering {buffering}, "
                                f"expect {expect}, {body.stat().st_size} B)")
                        outcomes["ok" if got == want else case] += 1
            # One 100 MiB body per buffering mode: the drain must end with
            # nginx's close, well inside the budget, even this far.
            big = tmp_path / "body-100m"
            if not big.exists():
                big.write_bytes(os.urandom(MIB) * 100)
            got = _post(proxy.port, "413", big, False)
            outcomes["ok" if got == "413" else f"{got} for 413 (100 MiB, {buffering})"] += 1
            big.unlink()
    lost = {k: v for k, v in outcomes.items() if k != "ok"}
    assert not lost, f"{sum(lost.values())} of {sum(outcomes.values())} lost: {lost}"
    assert "Traceback" not in srv.log()


def test_a_client_that_keeps_sending_is_cut_off_and_the_worker_serves_on(server) -> None:
    # One sync worker; the client announces a huge body, gets the early 413,
    # and goes on sending as fast as it can. The lingering close reads for
    # at most LINGER_TIME, then closes: the client's sends fail. The 60 s
    # cap on the client is only this test's own bound (a server without a
    # budget would hold the worker that long).
    srv = server("-k", "sync", "-w", "1", "apps.behave:app")
    block = b"x" * 65536
    received = b""
    cut_off = False
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(b"POST /reject HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000000\r\n\r\n")
        s.setblocking(False)
        end = time.monotonic() + 60
        answered_at = None
        while time.monotonic() < end:
            readable, writable, _ = select.select([s], [s], [], 1.0)
            try:
                if readable:
                    data = s.recv(65536)
                    received += data
                    if answered_at is None and data:
                        answered_at = time.monotonic()
                if writable:
                    s.send(block)
            except (BrokenPipeError, ConnectionResetError):
                cut_off = True
                break
            except BlockingIOError:
                pass
    assert received.startswith(b"HTTP/1.1 413 Content Too Large\r\n"), received[:200]
    assert received.endswith(b"\r\n\r\nrejected")
    assert cut_off, "the server never closed on a client that kept sending"
    assert answered_at is not None and time.monotonic() - answered_at < 30
    status, _ = srv.get("/")  # the only worker is free again
    assert status == 200
