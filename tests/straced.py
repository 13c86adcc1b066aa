"""Watch a process's system calls with strace, for tests that must see HOW
bytes moved (sendfile against read-and-send), not only that they arrived.

``traced(pid, "sendfile")`` attaches ``strace -f`` to every thread of ``pid``
(and threads it starts later), waits until strace says each is attached, and
on exit detaches and fills ``Trace.text``. ``Trace.calls("sendfile")`` counts
the calls that started (an ``<unfinished ...>`` line and its ``resumed`` line
count once). A missing strace or a refused attach fails the test: an absent
observer must not read as "no such call".
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL = 0.02


class Trace:
    def __init__(self) -> None:
        self.text = ""

    def calls(self, name: str) -> int:
        return len(re.findall(rf"(?:^|\s){re.escape(name)}\(", self.text, re.MULTILINE))


@contextmanager
def traced(pid: int, syscalls: str, timeout: float = 20.0) -> Iterator[Trace]:
    strace = shutil.which("strace")
    assert strace, "strace is not installed (.ci/run installs it: apt-get install strace)"
    threads = len(os.listdir(f"/proc/{pid}/task"))
    trace = Trace()
    with tempfile.TemporaryDirectory(prefix="straced") as tmp:
        out, err = Path(tmp, "out"), Path(tmp, "err")
        with open(err, "wb") as errf:
            proc = subprocess.Popen(
                [strace, "-f", "-e", f"trace={syscalls}", "-o", str(out), "-p", str(pid)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errf,
            )
        try:
            deadline = time.monotonic() + timeout
            while err.read_text(errors="replace").count(" attached") < threads:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"strace did not attach to {pid}: {err.read_text()}")
                time.sleep(POLL)
            yield trace
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # detach; the tracee runs on
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        trace.text = out.read_text(errors="replace") if out.exists() else ""
