"""Run ``wrk`` and parse its ``--latency`` text output, without Lua.

wrk keeps ``-c`` connections open across ``-t`` threads for ``-d`` seconds
and is cheaper per request than hey, so it drives keep-alive servers harder
on a small machine. We read its summary lines:

    Latency Distribution / 50% 180.00us / 90% ... / 99% ...
    90000 requests in 2.00s, 10.00MB read
    Socket errors: connect 0, read 0, write 0, timeout 0
    Non-2xx or 3xx responses: 5

wrk cannot tell 2xx from 3xx without a Lua ``done()`` callback, so status
counts are the two buckets ``2xx/3xx`` and ``non-2xx/3xx``; any non-2xx or
socket error marks the run failed. A Lua script is used only to *send* a
request body (``wrk.body``), never to report.

Every run is bounded by ``-d`` and ``--timeout`` inside wrk and a subprocess
timeout outside it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence

from bench.loadresult import LoadResult

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DUR_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PCT = re.compile(r"^\s*(\d+)%\s+([0-9.]+)(us|ms|s|m|h)\s*$", re.M)
_REQS = re.compile(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h),", re.M)
_SOCK = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"
)
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def available() -> bool:
    return shutil.which("wrk") is not None


def parse(text: str, exit_status: int = 0) -> LoadResult:
    pct: dict[int, float] = {}
    if "Latency Distribution" in text:
        tail = text.split("Latency Distribution", 1)[1]
        for p, v, unit in _PCT.findall(tail):
            pct[int(p)] = float(v) * _UNIT_MS[unit]
    m = _REQS.search(text)
    requests = int(m.group(1)) if m else 0
    duration = float(m.group(2)) * _DUR_S[m.group(3)] if m else 0.0
    errors: dict[str, int] = {}
    sm = _SOCK.search(text)
    if sm:
        for kind, n in zip(("connect", "read", "write", "timeout"), sm.groups(), strict=True):
            if int(n):
                errors[kind] = int(n)
    nm = _NON2XX.search(text)
    bad = int(nm.group(1)) if nm else 0
    status: dict[str, int] = {}
    if requests - bad:
        status["2xx/3xx"] = requests - bad
    if bad:
        status["non-2xx/3xx"] = bad
    if not m:
        last = (text.strip().splitlines() or ["(no output)"])[-1]
        errors["tool: " + last.strip()] = 1
    return LoadResult(
        tool="wrk",
        requests=requests,
        duration_s=duration,
        rps=requests / duration if duration > 0 else 0.0,
        p50_ms=pct.get(50),
        p90_ms=pct.get(90),
        p99_ms=pct.get(99),
        status_counts=status,
        errors=errors,
        exit_status=exit_status,
        raw=text,
    )


def body_script(path: str, body_size: int, method: str = "POST",
                content_type: str = "application/octet-stream") -> str:
    """Write a Lua script that makes every wrk request carry a body."""
    with open(path, "w") as f:
        f.write(
            f'wrk.method = "{method}"\n'
            f'wrk.body = string.rep("x", {int(body_size)})\n'
            f'wrk.headers["Content-Type"] = "{content_type}"\n'
        )
    return path


def command(
    url: str,
    *,
    duration_s: float,
    connections: int = 10,
    threads: int = 1,
    timeout_s: int = 10,
    script: str | None = None,
) -> list[str]:
    threads = max(1, min(threads, connections))
    argv = [
        "wrk",
        "-t", str(threads),
        "-c", str(connections),
        "-d", f"{max(1, round(duration_s))}s",
        "--timeout", f"{max(1, int(timeout_s))}s",
        "--latency",
    ]
    if script is not None:
        argv += ["-s", script]
    argv.append(url)
    return argv


def run(
    url: str,
    *,
    duration_s: float,
    connections: int = 10,
    threads: int = 1,
    timeout_s: int = 10,
    body_size: int | None = None,
    prefix: Sequence[str] = (),
    wall_timeout_s: float | None = None,
) -> LoadResult:
    """Run wrk once. ``body_size`` makes every request a POST with that body."""
    with tempfile.TemporaryDirectory(prefix="fastwsgi-wrk-") as tmp:
        script = None
        if body_size is not None:
            script = body_script(os.path.join(tmp, "body.lua"), body_size)
        argv = list(prefix) + command(
            url,
            duration_s=duration_s,
            connections=connections,
            threads=threads,
            timeout_s=timeout_s,
            script=script,
        )
        if wall_timeout_s is None:
            wall_timeout_s = max(1, round(duration_s)) + timeout_s + 10
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=wall_timeout_s, check=False
            )
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            res = parse(out, exit_status=124)
            res.errors[f"wrk ran past {wall_timeout_s:.0f}s and was killed"] = 1
            return res
    return parse(proc.stdout + proc.stderr, exit_status=proc.returncode)
