"""Process operations: the only door from arbiter policy to the kernel.

Theory of operation
-------------------
The arbiter decides *when* to fork, signal, reap or re-exec; this object does
it. Keeping every such syscall behind one small object means the policy
(spawn, reap, replace, TTIN/TTOU counting, timeout escalation, boot-error
halt, the start-up probe that loads the app once before any worker) can be
unit-tested with a fake that records calls and scripts results,
while the real thing is exercised by integration tests with real processes
(Gunicorn patches ``os.fork``/``os.kill`` dozens of times in its tests
instead).

The clock lives here too, so a fake can move time forward by hand.
"""

from __future__ import annotations

import os
import time
from typing import NoReturn


class ProcOps:
    """Real process operations (POSIX)."""

    def fork(self) -> int:
        return os.fork()

    def kill(self, pid: int, sig: int) -> bool:
        """Send ``sig``; False if the process is already gone."""
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def reap(self) -> tuple[int, int] | None:
        """One exited child as ``(pid, wait status)``, or None if none is waiting."""
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return None
        if pid == 0:
            return None
        return pid, status

    def reap_pid(self, pid: int) -> int | None:
        """The wait status of child ``pid`` once it has exited, else None (never blocks)."""
        got, status = os.waitpid(pid, os.WNOHANG)
        return status if got == pid else None

    def execve(self, path: str, args: list[str], env: dict[str, str]) -> NoReturn:
        os.execve(path, args, env)

    def getpid(self) -> int:
        return os.getpid()

    def getppid(self) -> int:
        return os.getppid()

    def monotonic(self) -> float:
        return time.monotonic()


def describe_status(status: int) -> tuple[int | None, int | None]:
    """Split a wait status into ``(exit code, signal number)``; one of them is None."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), None
    return None, None
