"""A tiny HTTP/1.1 response reader over one socket, for tests that need to see
the wire: pipelined responses, truncated bodies, connection closes.

``http.client`` cannot read several responses from one socket (each response
object buffers its own reads), so this reads from a single buffered file.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = True  # False: the connection closed before the framed end

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_response(f, head_only: bool = False) -> RawResponse | None:  # type: ignore[no-untyped-def]
    """One response from the buffered file ``f``; None at a clean EOF."""
    line = f.readline(65537)
    if not line:
        return None
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    resp = RawResponse(int(code), reason)
    for _ in range(200):
        h = f.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        name, _, value = h.decode("latin-1").rstrip("\r\n").partition(":")
        resp.headers.append((name, value.strip()))
    if head_only or resp.status < 200 or resp.status in (204, 304):
        return resp
    cl = resp.header("Content-Length")
    if resp.header("Transfer-Encoding") == "chunked":
        parts = []
        for _ in range(1_000_000):
            size_line = f.readline(1000)
            if not size_line:
                resp.complete = False
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                f.readline(1000)
                break
            data = f.read(size + 2)
            parts.append(data[:size])
            if len(data) < size + 2:
                resp.complete = False
                break
        resp.body = b"".join(parts)
    elif cl is not None:
        resp.body = f.read(int(cl))
        resp.complete = len(resp.body) == int(cl)
    else:
        resp.body = f.read()
    return resp


def at_eof(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True when the server closed the connection (EOF or reset) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
