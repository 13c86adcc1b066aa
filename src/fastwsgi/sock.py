"""Listeners: parse ``-b`` addresses, bind them, or adopt inherited sockets.

Theory of operation
-------------------
The master creates every listening socket before it forks; workers inherit
them and all accept on the same kernel queue. A listener comes from one of
three places, checked in this order by the arbiter:

1. systemd socket activation (``LISTEN_FDS``, see ``systemd.py``);
2. a re-executed master (USR2) inheriting the old master's sockets, whose fd
   numbers arrive in ``$FASTWSGI_FD`` (Gunicorn's ``GUNICORN_FD``);
3. ``-b/--bind`` addresses, bound here.

Address forms (Gunicorn's): ``HOST:PORT``, ``HOST`` (port 8000), ``:PORT``
(all IPv4 interfaces), ``[IPV6]:PORT``, ``tcp://HOST:PORT``, ``unix:/path``
or ``unix:///path``, and ``fd://N`` for a socket already open on fd N.

TCP listeners get ``SO_REUSEADDR`` (restart while old connections sit in
TIME_WAIT) and ``TCP_NODELAY`` (inherited by accepted sockets on Linux), plus
``SO_REUSEPORT`` with ``--reuse-port``. A unix socket path that holds a stale
socket is unlinked first; any other file there is an error. Binding retries
on EADDRINUSE 5 times, 1 s apart, as Gunicorn does, so a quick restart rides
out the old process's exit.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastwsgi.errors import BindError

FD_ENV = "FASTWSGI_FD"
DEFAULT_PORT = 8000  # Gunicorn
BIND_RETRIES = 5  # Gunicorn
BIND_RETRY_DELAY = 1.0  # Gunicorn
# struct tcp_info (include/uapi/linux/tcp.h): 8 one-byte fields, then u32s;
# tcpi_unacked is the fifth u32. 104 bytes cover it on every kernel since 2.6.
TCP_INFO_LEN = 104
TCP_INFO_UNACKED = 8 + 4 * 4
# On a listening socket tcpi_sacked, the next u32, is the backlog limit.
TCP_INFO_SACKED = TCP_INFO_UNACKED + 4

Address = tuple[str, int] | str | int  # (host, port), unix path, or fd


def parse_address(addr: str, default_port: int = DEFAULT_PORT) -> Address:
    """``-b`` text → ``(host, port)``, a unix path (str), or an fd (int)."""
    addr = addr.strip()
    if addr.startswith("unix://"):
        path = addr[len("unix://") :]
        if not path:
            raise BindError(f"empty unix socket path in {addr!r}")
        return path
    if addr.startswith("unix:"):
        path = addr[len("unix:") :]
        if not path:
            raise BindError(f"empty unix socket path in {addr!r}")
        return path
    if addr.startswith("fd://"):
        text = addr[len("fd://") :]
        if not text.isdigit():
            raise BindError(f"fd:// needs a file descriptor number: {addr!r}")
        return int(text)
    if addr.startswith("tcp://"):
        addr = addr[len("tcp://") :]
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]")
        if not sep:
            raise BindError(f"unclosed '[' in IPv6 address {addr!r}")
        if rest and not rest.startswith(":"):
            raise BindError(f"junk after IPv6 address in {addr!r}")
        port_text = rest[1:]
    elif addr.count(":") > 1:
        # A bare IPv6 address without brackets has no port.
        host, port_text = addr, ""
    else:
        host, _, port_text = addr.partition(":")
    if not host:
        host = "0.0.0.0"
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or int(port_text) > 65535:
        raise BindError(f"invalid port in {addr!r}")
    return host, int(port_text)


@dataclass
class Listener:
    """One listening socket plus how it was described."""

    sock: socket.socket
    address: Address
    # We bound a unix path ourselves: unlink it on a final shutdown.
    owns_path: bool = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def __str__(self) -> str:
        name: Any = self.sock.getsockname()
        if self.sock.family == socket.AF_UNIX:
            if isinstance(name, bytes):
                name = name.decode("utf-8", "replace")
            return f"unix:{name}"
        if self.sock.family == socket.AF_INET6:
            return f"http://[{name[0]}]:{name[1]}"
        return f"http://{name[0]}:{name[1]}"

    def backlog(self) -> int | None:
        return accept_queue_length(self.sock)

    def close(self, unlink: bool = False) -> None:
        if unlink and self.owns_path and isinstance(self.address, str):
            try:
                os.unlink(self.address)
            except OSError:
                pass
        self.sock.close()


def accept_queue_length(sock: socket.socket) -> int | None:
    """Connections in a listening socket's accept queue, not yet taken by a
    worker (Linux TCP: ``tcpi_unacked`` of TCP_INFO is the queue length on a
    listening socket); None for a unix socket or when the kernel does not
    say."""
    queue = accept_queue(sock)
    return None if queue is None else queue[0]


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(length, limit) of a listening TCP socket's accept queue, from one
    TCP_INFO (``tcpi_unacked`` and ``tcpi_sacked`` there); None for a unix
    socket or when the kernel does not say."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
    except OSError:
        return None
    if len(info) < TCP_INFO_SACKED + 4:
        return None
    return (
        int.from_bytes(info[TCP_INFO_UNACKED : TCP_INFO_UNACKED + 4], sys.byteorder),
        int.from_bytes(info[TCP_INFO_SACKED : TCP_INFO_SACKED + 4], sys.byteorder),
    )


def _tcp_socket(host: str, port: int, backlog: int, reuse_port: bool) -> socket.socket:
    infos = socket.getaddrinfo(
        host, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )
    if not infos:
        raise BindError(f"cannot resolve {host!r}")
    family, socktype, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def _unix_socket(
    path: str, backlog: int, umask: int, uid: int | None, gid: int | None
) -> socket.socket:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise BindError(f"{path!r} exists and is not a socket")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(umask)
    try:
        sock.bind(path)
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    return sock


def from_fd(fd: int) -> Listener:
    """Adopt an already-listening socket on ``fd`` (family and type are detected)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise BindError(f"fd {fd} is not a usable socket: {exc}") from exc
    if sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise BindError(f"fd {fd} is not a stream socket")
    name = sock.getsockname()
    address: Address = name if isinstance(name, str) else (name[0], name[1])
    return Listener(sock, address)


def bind_one(
    addr: str,
    backlog: int = 2048,
    reuse_port: bool = False,
    umask: int = 0,
    uid: int | None = None,
    gid: int | None = None,
    retries: int = BIND_RETRIES,
    retry_delay: float = BIND_RETRY_DELAY,
    log: Any = None,
) -> Listener:
    address = parse_address(addr)
    if isinstance(address, int):
        return from_fd(address)
    for attempt in range(max(1, retries)):
        try:
            if isinstance(address, str):
                return Listener(_unix_socket(address, backlog, umask, uid, gid), address, True)
            host, port = address
            return Listener(_tcp_socket(host, port, backlog, reuse_port), address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and attempt + 1 < retries:
                if log is not None:
                    log.error("Connection in use: %s; retrying in %ss", addr, retry_delay)
                time.sleep(retry_delay)
                continue
            raise BindError(f"cannot bind {addr}: {exc.strerror or exc}") from exc
    raise BindError(f"cannot bind {addr}")  # pragma: no cover - loop always returns/raises


def create_listeners(
    binds: Iterable[str],
    backlog: int = 2048,
    reuse_port: bool = False,
    umask: int = 0,
    uid: int | None = None,
    gid: int | None = None,
    fds: Iterable[int] | None = None,
    retries: int = BIND_RETRIES,
    log: Any = None,
) -> list[Listener]:
    """Adopt ``fds`` when given (systemd, USR2), else bind every address in ``binds``."""
    if fds is not None:
        return [from_fd(fd) for fd in fds]
    listeners: list[Listener] = []
    try:
        for addr in binds:
            listeners.append(
                bind_one(addr, backlog, reuse_port, umask, uid, gid, retries=retries, log=log)
            )
    except BaseException:
        for lnr in listeners:
            lnr.close(unlink=True)
        raise
    return listeners


def close_listeners(listeners: Iterable[Listener], unlink: bool = True) -> None:
    for lnr in listeners:
        lnr.close(unlink=unlink)


def inherited_fds(environ: dict[str, str] | None = None) -> list[int] | None:
    """The fd list a re-executed master received in ``$FASTWSGI_FD`` (consumed), or None."""
    env = os.environ if environ is None else environ
    text = env.pop(FD_ENV, None)
    if not text:
        return None
    try:
        return [int(part) for part in text.split(",") if part]
    except ValueError as exc:
        raise BindError(f"malformed ${FD_ENV}: {text!r}") from exc
