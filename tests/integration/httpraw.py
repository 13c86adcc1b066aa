"""HTTP/1.1 responses read off the wire, for tests that need to see it:
pipelined responses, truncated bodies, connection closes. The integration
tests' only response readers.

``http.client`` cannot read several responses from one socket (each response
object buffers its own reads). ``read_response(f)`` reads one from a single
buffered file (``sock.makefile("rb")``), which keeps what follows;
``recv_response(sock, deadline)`` reads from the socket with a deadline on
every read and returns the bytes that follow, for hostile tests that must
not hang and want to see the raw head; ``parse_responses`` splits bytes
already read.
"""

from __future__ import annotations

import socket
import time
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


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes
    framed: bool = True  # False: close-delimited (body runs to the end of the stream)
    complete: bool = True  # False: the stream ended inside a framed body
    end: int = 0  # offset just past this response in the parsed bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def parse_responses(data: bytes) -> tuple[list[Response], bytes]:
    """Split a byte stream into responses; return them and the unparsed rest.

    Content-Length and chunked responses end where their framing says; a
    response with neither (and a status that may have a body) is
    close-delimited and takes everything to the end. A framed response cut
    short by the end of ``data`` is returned with ``complete=False``.
    """
    out: list[Response] = []
    pos = 0
    for _ in range(100):
        end = data.find(b"\r\n\r\n", pos)
        if pos >= len(data) or end < 0:
            break
        lines = data[pos:end].split(b"\r\n")
        version, _, tail = lines[0].partition(b" ")
        code, _, reason = tail.partition(b" ")
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            break
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        resp = Response(int(code), reason.decode("latin-1"), headers, b"", data[pos:end])
        body_start = end + 4
        cl = resp.header("content-length")
        te = resp.header("transfer-encoding")
        if resp.status in (204, 304) or 100 <= resp.status < 200:
            resp.end = body_start
        elif te is not None and "chunked" in te.lower():
            body, used = _dechunk(data[body_start:])
            resp.body = body
            if used < 0:
                resp.complete = False
                resp.end = len(data)
                out.append(resp)
                break
            resp.end = body_start + used
        elif cl is not None:
            n = int(cl)
            resp.body = data[body_start : body_start + n]
            resp.complete = len(resp.body) == n
            resp.end = body_start + len(resp.body)
        else:
            resp.framed = False
            resp.body = data[body_start:]
            resp.end = len(data)
        out.append(resp)
        pos = resp.end
        if not resp.complete:
            break
    return out, data[pos:]


def _dechunk(data: bytes) -> tuple[bytes, int]:
    """Decode a chunked body; return it and the bytes used (-1: incomplete)."""
    pos = 0
    body = b""
    for _ in range(100000):
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return body, -1
        size = int(data[pos:eol].split(b";")[0], 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            return body, (end + 4) if end >= 0 else -1
        if len(data) < pos + size + 2:
            return body + data[pos : pos + size], -1
        body += data[pos : pos + size]
        pos += size + 2
    return body, -1


def recv_response(
    sock: socket.socket, deadline: float, buf: bytes = b""
) -> tuple[Response | None, bytes]:
    """Read one framed response from ``sock``; return it and any bytes after it.

    ``buf`` is what an earlier call left over. ``None`` when the deadline
    passes or the server closes before a whole framed response arrived (the
    bytes read so far come back instead).
    """
    for _ in range(100000):
        resps, _rest = parse_responses(buf)
        if resps and resps[0].framed and resps[0].complete:
            return resps[0], buf[resps[0].end :]
        left = deadline - time.monotonic()
        if left <= 0:
            return None, buf
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            return None, buf
        if not chunk:
            return None, buf
        buf += chunk
    return None, buf
