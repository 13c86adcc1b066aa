"""systemd integration: socket activation and ``sd_notify``.

Theory of operation
-------------------
With socket activation systemd binds the sockets and starts us with them open
from fd 3 (``SD_LISTEN_FDS_START``) on, announcing how many in ``LISTEN_FDS``
and for which process in ``LISTEN_PID`` (so a child that inherits the
environment does not take them for its own). ``sd_notify`` sends state lines
(``READY=1``, ``STATUS=...``) as one datagram to the unix socket named in
``NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract namespace.
Both are no-ops when the variables are absent. See sd_listen_fds(3) and
sd_notify(3); Gunicorn's ``gunicorn/systemd.py`` does the same.
"""

from __future__ import annotations

import os
import socket
from typing import Any

SD_LISTEN_FDS_START = 3


def listen_fds(unset_environment: bool = True) -> int:
    """How many sockets systemd passed us (0 if none, or not for this process)."""
    fds = int(os.environ.get("LISTEN_FDS", "0") or 0)
    listen_pid = int(os.environ.get("LISTEN_PID", "0") or 0)
    if listen_pid != os.getpid():
        return 0
    if unset_environment:
        os.environ.pop("LISTEN_PID", None)
        os.environ.pop("LISTEN_FDS", None)
        os.environ.pop("LISTEN_FDNAMES", None)
    return fds


def sd_notify(state: str, log: Any = None, unset_environment: bool = False) -> bool:
    """Send ``state`` to ``$NOTIFY_SOCKET``; True if a datagram was sent."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if unset_environment:
        os.environ.pop("NOTIFY_SOCKET", None)
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError as exc:
        if log is not None:
            log.debug("sd_notify(%r) to %s failed: %s", state, addr, exc)
        return False
    return True
