"""Run ``hey`` and parse its text summary.

hey (github.com/rakyll/hey) opens ``-c`` workers that each send requests in a
loop; with ``-n`` it stops after that many, with ``-z`` after a duration. Its
summary is plain text in fixed sections (``Summary``, ``Latency
distribution``, ``Status code distribution``, ``Error distribution``) that we
read line by line. Two quirks shape the parser:

* hey exits 0 even when every request failed, so failure is decided from the
  status and error counts (see ``LoadResult.failed``), never the exit status
  alone.
* Its ``Requests/sec`` counts failed requests too, and with fewer than 100
  samples its 99th percentile line reads ``0% in 0.0000 secs``; we compute
  requests/s from the responses and keep only percentile lines whose label we
  asked for.

Every run is bounded twice: by ``-n`` or ``-z`` and a per-request ``-t``
timeout inside hey, and by a subprocess timeout outside it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from bench.loadresult import LoadResult

_TOTAL = re.compile(r"^\s*Total:\s+([0-9.]+) secs", re.M)
_PCT = re.compile(r"^\s*(\d+)% in ([0-9.]+) secs", re.M)
_STATUS = re.compile(r"^\s*\[(\d{3})\]\s+(\d+) responses", re.M)
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.+?)\s*$")


def available() -> bool:
    return shutil.which("hey") is not None


def parse(text: str, exit_status: int = 0) -> LoadResult:
    m = _TOTAL.search(text)
    duration = float(m.group(1)) if m else 0.0
    pct = {int(p): float(s) * 1000.0 for p, s in _PCT.findall(text) if p != "0"}
    status = {code: int(n) for code, n in _STATUS.findall(text)}
    errors: dict[str, int] = {}
    in_errors = False
    for line in text.splitlines():
        if line.startswith("Error distribution:"):
            in_errors = True
            continue
        if in_errors:
            em = _ERROR.match(line)
            if em:
                msg = em.group(2)
                errors[msg] = errors.get(msg, 0) + int(em.group(1))
            elif line.strip() and not line.startswith(" "):
                in_errors = False
    if "Summary:" not in text:
        errors["hey produced no summary: " + (text.strip().splitlines() or ["(no output)"])[-1]] = 1
    requests = sum(status.values())
    return LoadResult(
        tool="hey",
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


def command(
    url: str,
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 10,
    timeout_s: int = 10,
    method: str = "GET",
    body_file: str | None = None,
    content_type: str | None = None,
    keepalive: bool = True,
    qps: float | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    if (requests is None) == (duration_s is None):
        raise ValueError("give exactly one of requests or duration_s")
    argv = ["hey", "-c", str(concurrency), "-t", str(max(1, int(timeout_s))), "-m", method]
    if requests is not None:
        # hey refuses n < c; keep the count honest rather than silently raising it.
        if requests < concurrency:
            raise ValueError(f"hey needs requests ({requests}) >= concurrency ({concurrency})")
        argv += ["-n", str(requests)]
    else:
        assert duration_s is not None
        argv += ["-z", f"{max(duration_s, 0.1):g}s"]
    if body_file is not None:
        argv += ["-D", body_file]
    if content_type is not None:
        argv += ["-T", content_type]
    if not keepalive:
        argv.append("-disable-keepalive")
    if qps is not None:
        if qps <= 0:
            raise ValueError(f"qps must be positive, not {qps}")
        argv += ["-q", f"{qps:g}"]  # per client: the offered rate is qps x concurrency
    argv += list(extra)
    argv.append(url)
    return argv


def run(
    url: str,
    *,
    requests: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 10,
    timeout_s: int = 10,
    method: str = "GET",
    body_file: str | None = None,
    content_type: str | None = None,
    keepalive: bool = True,
    qps: float | None = None,
    prefix: Sequence[str] = (),
    wall_timeout_s: float | None = None,
) -> LoadResult:
    """Run hey once; ``prefix`` is prepended (e.g. ``taskset -c 1``).

    ``wall_timeout_s`` bounds the subprocess; by default it is the duration
    (or a generous per-request allowance for ``-n``) plus the request timeout.
    """
    argv = list(prefix) + command(
        url,
        requests=requests,
        duration_s=duration_s,
        concurrency=concurrency,
        timeout_s=timeout_s,
        method=method,
        body_file=body_file,
        content_type=content_type,
        keepalive=keepalive,
        qps=qps,
    )
    if wall_timeout_s is None:
        if duration_s is not None:
            wall_timeout_s = duration_s + timeout_s + 10
        else:
            assert requests is not None
            wall_timeout_s = 60 + timeout_s + requests / 100
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=wall_timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        res = parse(out, exit_status=124)
        res.errors[f"hey ran past {wall_timeout_s:.0f}s and was killed"] = 1
        return res
    return parse(proc.stdout + proc.stderr, exit_status=proc.returncode)
