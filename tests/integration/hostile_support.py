"""Shared machinery for the hostile-client suites (no tests of its own).

Theory of operation
-------------------
Each suite starts a real ``python -m fastwsgi`` on 127.0.0.1 with a free port,
serving a small recording app written into a temporary directory. The app
appends one JSON line per request it sees to the file named by
``HOSTILE_RECORD`` *before* it answers, so once a client has read a response
(or seen the connection close) the record says exactly which requests reached
the application. Every hostile payload carries a unique token in its paths
(``/t/<token>/...``); an assertion on "nothing smuggled" is an assertion that
no recorded path contains the token of a request the server had to reject.

The process itself is handled by ``server.Server`` (the integration suite's
runner): readiness is a real request (``GET /__ready``) polled with a deadline,
never a sleep, and teardown sends TERM to the master and, after a grace
period, KILL to the process group it leads (started with
``start_new_session``, so the group is exactly the server and its workers).

Client I/O is raw sockets with a deadline on every read: ``exchange()`` sends
bytes and reads until the server closes; ``httpraw.recv_response()`` reads
one response and leaves the rest.
"""

from __future__ import annotations

import contextlib
import json
import socket
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from server import Server as ProcServer  # tests/integration/server.py

READY_DEADLINE = 60.0  # generous: the machine is shared and has 2 cores
CLOSE_DEADLINE = 5.0  # "promptly": a rejected connection must close within this
IO_DEADLINE = 10.0

APP_SOURCE = textwrap.dedent(
    '''
    """Recording app for the hostile-client tests."""
    import json
    import os

    RECORD = os.environ["HOSTILE_RECORD"]


    def _record(environ, body):
        line = json.dumps(
            {
                "method": environ["REQUEST_METHOD"],
                "path": environ["PATH_INFO"],
                "query": environ.get("QUERY_STRING", ""),
                "body": body.decode("latin-1"),
                "pid": os.getpid(),
            }
        )
        fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("latin-1") + b"\\n")
        finally:
            os.close(fd)


    def app(environ, start_response):
        path = environ["PATH_INFO"]
        # /noread/... leaves the request body unread: the server must discard
        # it (or close), never parse it as the next request.
        if "/swallow" in path:
            # An app that catches the body error and answers anyway: the
            # connection must still end (the parser is dead).
            try:
                body = environ["wsgi.input"].read()
            except Exception as exc:
                body = ("ERROR " + type(exc).__name__).encode()
        elif "/noread" in path:
            body = b""
        else:
            body = environ["wsgi.input"].read()
        _record(environ, body)
        if path.endswith("/bad-status-crlf"):
            start_response("200 OK\\r\\nX-Injected: status", [("Content-Type", "text/plain")])
            return [b"never sent"]
        if path.endswith("/bad-header-lf"):
            start_response("200 OK", [("X-Ok", "a\\nX-Injected: value")])
            return [b"never sent"]
        if path.endswith("/bad-header-cr"):
            start_response("200 OK", [("X-Ok", "a\\rX-Injected: value")])
            return [b"never sent"]
        if path.endswith("/bad-header-nul"):
            start_response("200 OK", [("X-Ok", "a\\x00X-Injected: value")])
            return [b"never sent"]
        if path.endswith("/bad-header-name"):
            start_response("200 OK", [("X-Injected\\r\\nX-Name", "v")])
            return [b"never sent"]
        if path.endswith("/no-content"):
            # A body with 204 must never reach the wire (RFC 9110 15.3.5).
            start_response("204 No Content", [("Content-Length", "17")])
            return [b"SHOULD-NOT-APPEAR"]
        if path.endswith("/not-modified"):
            start_response("304 Not Modified", [])
            return [b"SHOULD-NOT-APPEAR"]
        if path.endswith("/big"):
            # 64 MiB, far more than the socket buffers hold: a client that
            # stops reading leaves the server blocked in send().
            start_response("200 OK", [("Content-Length", str(64 << 20))])
            return (b"x" * (1 << 20) for _ in range(64))
        if path.endswith("/too-long"):
            start_response("200 OK", [("Content-Length", "5")])
            return [b"01234", b"SMUGGLED-TAIL"]
        if path.endswith("/too-short"):
            start_response("200 OK", [("Content-Length", "10")])
            return [b"01234"]
        out = json.dumps(
            {
                "path": path,
                "body_len": len(body),
                "scheme": environ["wsgi.url_scheme"],
                "script_name": environ.get("SCRIPT_NAME", ""),
                "remote_addr": environ.get("REMOTE_ADDR", ""),
                "http": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(out)))])
        return [out]
    '''
)


@dataclass
class Server:
    """A running fastwsgi with the recording app (process handling: ``server.Server``)."""

    proc: ProcServer
    record: Path
    kind: str

    @property
    def port(self) -> int:
        return self.proc.port

    def recorded(self) -> list[dict[str, str]]:
        try:
            text = self.record.read_text("latin-1")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def recorded_paths(self, token: str) -> list[str]:
        return [r["path"] for r in self.recorded() if token in r["path"]]

    def log_text(self) -> str:
        return self.proc.log()

    def connect(self, timeout: float = IO_DEADLINE) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def assert_alive(self) -> None:
        code = self.proc.proc.poll() if self.proc.proc is not None else None
        assert code is None, f"server exited {code}:\n{self.log_text()}"


def new_token() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def run_server(
    tmp: Path, kind: str, *extra: str, workers: int = 1, env_extra: dict[str, str] | None = None
) -> Iterator[Server]:
    """Start fastwsgi serving the recording app; stop it (by pid) afterwards.

    The app file sits in ``tmp``, the server's working directory, which
    ``python -m`` puts on ``sys.path``.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "hostile_app.py").write_text(APP_SOURCE)
    record = tmp / "record.jsonl"
    # Pin the settings that read the environment, whatever the caller's shell has.
    env = {"HOSTILE_RECORD": str(record), "SCRIPT_NAME": "", "FORWARDED_ALLOW_IPS": "127.0.0.1,::1"}
    env.update(env_extra or {})
    proc = ProcServer(["-k", kind, "-w", str(workers), *extra, "hostile_app:app"], tmp, env=env)
    try:
        proc.start()
        proc.wait_ready(READY_DEADLINE, path="/__ready")
        yield Server(proc=proc, record=record, kind=kind)
    finally:
        proc.close()


# --- client side -------------------------------------------------------------


@dataclass
class Received:
    data: bytes
    closed: bool  # the server closed (EOF or reset) before the deadline
    reset: bool  # the close was a TCP reset


def recv_until_close(sock: socket.socket, deadline: float, limit: int = 1 << 22) -> Received:
    """Read until EOF, reset or the deadline; never more than ``limit`` bytes."""
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return Received(b"".join(chunks), closed=False, reset=False)
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return Received(b"".join(chunks), closed=False, reset=False)
        except ConnectionResetError:
            return Received(b"".join(chunks), closed=True, reset=True)
        if not chunk:
            return Received(b"".join(chunks), closed=True, reset=False)
        chunks.append(chunk)
        total += len(chunk)
    return Received(b"".join(chunks), closed=False, reset=False)


def exchange(server: Server, payload: bytes, deadline: float = CLOSE_DEADLINE) -> Received:
    """Send ``payload`` on a fresh connection and read until the server closes."""
    with server.connect() as s:
        reset = False
        try:
            s.sendall(payload)
        except BrokenPipeError:
            # The server may answer and close before taking everything.
            pass
        except ConnectionResetError:
            # Reported once: the reads after it would see a plain EOF.
            reset = True
        got = recv_until_close(s, time.monotonic() + deadline)
        got.reset = got.reset or reset
        return got
