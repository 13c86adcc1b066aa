"""Syscalls per request: attach ``strace -c -f`` to a running server tree.

Attaching to the already-warm master and workers (every thread of each, via
``-f``) counts only the syscalls made while the load runs, not the thousands
an interpreter makes while importing. strace slows the server a lot, so the
counted run is an extra short one whose timings are thrown away; only
calls / requests is kept.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field


def available() -> bool:
    return shutil.which("strace") is not None


@dataclass
class SyscallCount:
    total: int
    errors: int
    by_name: dict[str, int] = field(default_factory=dict)


def parse_summary(text: str) -> SyscallCount | None:
    """Read the table ``strace -c`` prints; None if there is none."""
    by_name: dict[str, int] = {}
    total: SyscallCount | None = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[0].replace(".", "", 1).isdigit():
            continue
        # % time, seconds, usecs/call, calls, [errors], name
        name = parts[-1]
        calls = int(parts[3])
        errors = int(parts[4]) if len(parts) == 6 else 0
        if name == "total":
            total = SyscallCount(calls, errors, by_name)
        else:
            by_name[name] = calls
    return total


class Tracer:
    """``with Tracer(pids): run load`` → ``.result`` after the block."""

    def __init__(self, pids: list[int], attach_deadline_s: float = 10.0) -> None:
        self.pids = pids
        self.deadline = attach_deadline_s
        self.dir = tempfile.mkdtemp(prefix="fastwsgi-strace-")
        self.out = os.path.join(self.dir, "summary.txt")
        self.err = os.path.join(self.dir, "stderr.txt")
        self.proc: subprocess.Popen[bytes] | None = None
        self.result: SyscallCount | None = None

    def __enter__(self) -> Tracer:
        argv = ["strace", "-c", "-f", "-o", self.out]
        for pid in self.pids:
            argv += ["-p", str(pid)]
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err,
                                         stdin=subprocess.DEVNULL)
        # strace reports "Process N attached" once per thread it seized; wait
        # for one line per process we asked for (bounded), so the load does
        # not start before tracing does.
        end = time.monotonic() + self.deadline
        while time.monotonic() < end and self.proc.poll() is None:
            with open(self.err, errors="replace") as f:
                if f.read().count("attached") >= len(self.pids):
                    break
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # detach and print the summary
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        try:
            with open(self.out, errors="replace") as f:
                self.result = parse_summary(f.read())
        except OSError:
            self.result = None
        shutil.rmtree(self.dir, ignore_errors=True)
