"""Fixtures for tests that run real fastwsgi processes (see ``server.py``).

``server(*args, **kw)`` builds and starts a :class:`server.Server` bound to a
free 127.0.0.1 port and waits until it answers ``GET /`` (pass ``ready=False``
to skip that, e.g. for a server expected to fail). Every server started
through the fixture is stopped at teardown, even when the test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from server import Server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(*args: str, ready: bool = True, ready_timeout: float = 30.0, **kw: Any) -> Server:
        srv = Server(args, tmp_path, name=f"server{len(started)}", **kw)
        started.append(srv)
        srv.start()
        if ready:
            srv.wait_ready(ready_timeout)
        return srv

    try:
        yield start
    finally:
        for srv in reversed(started):
            srv.close()
