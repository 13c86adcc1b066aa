"""Type stubs for the compiled per-connection I/O core."""

import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from fastwsgi._response import Response
from fastwsgi.config import Hooks, WorkerSettings

DRAIN_LIMIT: int

def monotonic() -> float: ...
def accept(ctx: WorkerContext, lfd: int, server: Any) -> Connection | None: ...
def epoll_arm(epfd: int, fd: int, events: int, add: bool) -> None: ...
def pipe_wake(fd: int) -> None: ...
def pipe_drain(fd: int) -> None: ...

class WorkerContext:
    settings: WorkerSettings
    log: Any
    hooks: Hooks | None
    worker: Any
    base_env: dict[str, Any]
    keepalive: bool
    use_sendfile: bool
    def __init__(
        self,
        settings: WorkerSettings,
        log: Any = None,
        hooks: Hooks | None = None,
        worker: Any = None,
        *,
        multithread: bool = False,
        multiprocess: bool = True,
        keepalive: bool = True,
    ) -> None: ...

class Input:
    done: bool
    def read(self, size: int | None = -1) -> bytes: ...
    def readline(self, size: int | None = -1) -> bytes: ...
    def readlines(self, hint: int | None = -1) -> list[bytes]: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...

class Connection:
    sock: socket.socket | None
    fd: int
    closed: bool
    request_started: float
    last_progress: float
    io_wait: bool
    requests: int
    def __init__(
        self,
        ctx: WorkerContext,
        sock: socket.socket,
        client: Any,
        server: Any = None,
    ) -> None: ...
    def fileno(self) -> int: ...
    @property
    def request_line(self) -> str: ...
    @property
    def buffered(self) -> int: ...
    @property
    def peer_closed(self) -> bool: ...
    @property
    def response(self) -> Response | None: ...
    def poll_head(self) -> int: ...
    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]: ...
    def write(self, data: bytes) -> None: ...
    def handle_request(self, app: Callable[..., Iterable[bytes]]) -> bool: ...
    def timeout_response(self) -> None: ...
    def close(self) -> None: ...
