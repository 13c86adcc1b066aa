"""Run a command under strace, for tests that must see HOW bytes moved
(sendfile against read-and-send), not only that they arrived.

strace starts the command itself (``strace_prefix(out, "sendfile") +
argv``), so it traces its own descendants: no ptrace attach, which a
container or Yama's ptrace_scope may refuse. ``--seccomp-bpf`` stops the
tracee only on the named calls, so the rest runs at full speed.
``calls(path, "sendfile")`` counts the calls that started (an
``<unfinished ...>`` line and its ``resumed`` line count once). A missing
strace fails the test: an absent observer must not read as "no such call".
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path


def strace_prefix(out: Path, syscalls: str) -> list[str]:
    strace = shutil.which("strace")
    assert strace, "strace is not installed (.ci/run installs it: apt-get install strace)"
    return [
        strace, "-f", "--seccomp-bpf", "-qq", "-e", f"trace={syscalls}", "-e", "signal=none",
        "-o", str(out),
    ]


def calls(out: Path, name: str) -> int:
    text = out.read_text(errors="replace") if out.exists() else ""
    return len(re.findall(rf"(?:^|\s){re.escape(name)}\(", text, re.MULTILINE))
