"""Listeners: address parsing, binding every kind, adopting inherited fds."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

from fastwsgi import systemd
from fastwsgi.errors import BindError
from fastwsgi.sock import (
    FD_ENV,
    TCP_INFO_LEN,
    TCP_INFO_UNACKED,
    bind_one,
    close_listeners,
    create_listeners,
    from_fd,
    inherited_fds,
    parse_address,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost", ("localhost", 8000)),
        (":9000", ("0.0.0.0", 9000)),
        ("tcp://10.0.0.1:81", ("10.0.0.1", 81)),
        ("[::1]:8000", ("::1", 8000)),
        ("[::]", ("::", 8000)),
        ("::1", ("::1", 8000)),
        ("unix:/tmp/x.sock", "/tmp/x.sock"),
        ("unix:///run/app.sock", "/run/app.sock"),
        ("fd://5", 5),
    ],
)
def test_parse_address(text: str, expected: object) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text", ["127.0.0.1:http", "127.0.0.1:70000", "[::1", "[::1]x", "unix:", "fd://x"]
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(BindError):
        parse_address(text)


def _roundtrip(lnr_sock: socket.socket, family: int, addr: object) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        c.connect(addr)
        conn, _ = lnr_sock.accept()
        with conn:
            c.sendall(b"ping")
            assert conn.recv(4) == b"ping"


def test_bind_ipv4_and_accept() -> None:
    lnr = bind_one("127.0.0.1:0", retries=1)
    try:
        port = lnr.sock.getsockname()[1]
        assert str(lnr) == f"http://127.0.0.1:{port}"
        assert lnr.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert lnr.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert not lnr.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        _roundtrip(lnr.sock, socket.AF_INET, ("127.0.0.1", port))
    finally:
        lnr.close()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
def test_bind_ipv6_bracketed() -> None:
    lnr = bind_one("[::1]:0", retries=1)
    try:
        port = lnr.sock.getsockname()[1]
        assert lnr.sock.family == socket.AF_INET6
        assert str(lnr) == f"http://[::1]:{port}"
        _roundtrip(lnr.sock, socket.AF_INET6, ("::1", port))
    finally:
        lnr.close()


def test_reuse_port_and_backlog() -> None:
    lnr = bind_one("127.0.0.1:0", backlog=7, reuse_port=True, retries=1)
    try:
        assert lnr.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # On a listening socket Linux reports the accept queue's limit, the
        # listen() backlog, in tcpi_sacked (the word after tcpi_unacked).
        info = lnr.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
        at = TCP_INFO_UNACKED + 4
        assert int.from_bytes(info[at : at + 4], sys.byteorder) == 7
        # Two SO_REUSEPORT listeners may share the port.
        port = lnr.sock.getsockname()[1]
        twin = bind_one(f"127.0.0.1:{port}", reuse_port=True, retries=1)
        twin.close()
    finally:
        lnr.close()


def test_backlog_counts_connections_not_yet_accepted(tmp_path: Path) -> None:
    lnr = bind_one("127.0.0.1:0", retries=1)
    clients: list[socket.socket] = []
    try:
        assert lnr.backlog() == 0
        for _ in range(3):  # the kernel completes each handshake and queues it
            clients.append(socket.create_connection(lnr.sock.getsockname(), timeout=10))
        assert lnr.backlog() == 3
        conn, _ = lnr.sock.accept()
        conn.close()
        assert lnr.backlog() == 2
    finally:
        for c in clients:
            c.close()
        lnr.close()
    unix = bind_one(f"unix:{tmp_path / 's.sock'}", retries=1)
    try:
        assert unix.backlog() is None  # no TCP_INFO: not reported
    finally:
        unix.close()


def test_address_in_use_is_a_bind_error() -> None:
    lnr = bind_one("127.0.0.1:0", retries=1)
    try:
        port = lnr.sock.getsockname()[1]
        with pytest.raises(BindError, match="cannot bind"):
            bind_one(f"127.0.0.1:{port}", retries=1)
    finally:
        lnr.close()


def test_unix_socket_replaces_a_stale_one_and_unlinks_on_close(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # leaves the path behind, like a crashed server
    lnr = bind_one(f"unix:{path}", umask=0o077, retries=1)
    assert str(lnr) == f"unix:{path}"
    assert (path.stat().st_mode & 0o777) == 0o700  # umask applied at bind
    _roundtrip(lnr.sock, socket.AF_UNIX, str(path))
    lnr.close(unlink=True)
    assert not path.exists()


def test_unix_path_that_is_not_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "precious.txt"
    path.write_text("data")
    with pytest.raises(BindError, match="not a socket"):
        bind_one(f"unix:{path}", retries=1)
    assert path.read_text() == "data"


def test_fd_url_and_inherited_fds_adopt_a_listening_socket() -> None:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.bind(("127.0.0.1", 0))
    raw.listen(8)
    port = raw.getsockname()[1]
    fd = os.dup(raw.fileno())
    raw.close()
    lnr = bind_one(f"fd://{fd}")
    try:
        assert lnr.fileno() == fd and str(lnr) == f"http://127.0.0.1:{port}"
        _roundtrip(lnr.sock, socket.AF_INET, ("127.0.0.1", port))
    finally:
        lnr.close()


def test_from_fd_refuses_a_datagram_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(BindError, match="not a stream socket"):
            from_fd(udp.fileno())
        udp.getsockname()  # still open: from_fd did not close it


def test_create_listeners_closes_the_first_when_the_second_fails(tmp_path: Path) -> None:
    path = tmp_path / "a.sock"
    (tmp_path / "b.txt").write_text("x")
    with pytest.raises(BindError):
        create_listeners([f"unix:{path}", f"unix:{tmp_path / 'b.txt'}"], retries=1)
    assert not path.exists()


def test_create_listeners_prefers_given_fds() -> None:
    first = create_listeners(["127.0.0.1:0"], retries=1)
    fd = os.dup(first[0].fileno())
    try:
        adopted = create_listeners(["255.255.255.255:1"], fds=[fd])
        assert adopted[0].sock.getsockname() == first[0].sock.getsockname()
        close_listeners(adopted)
    finally:
        close_listeners(first)


def test_inherited_fds_consumes_the_variable() -> None:
    env = {FD_ENV: "3,4,7"}
    assert inherited_fds(env) == [3, 4, 7]
    assert FD_ENV not in env
    assert inherited_fds(env) is None
    with pytest.raises(BindError):
        inherited_fds({FD_ENV: "3,x"})


def test_systemd_listen_fds_only_for_this_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_FDS", "2")
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert systemd.listen_fds() == 0
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    assert systemd.listen_fds() == 2
    assert "LISTEN_FDS" not in os.environ and "LISTEN_PID" not in os.environ


def test_sd_notify_sends_one_datagram(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind(str(path))
        sink.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.sd_notify("READY=1\nSTATUS=up")
        assert sink.recv(1024) == b"READY=1\nSTATUS=up"


def test_sd_notify_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"fastwsgi-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sink:
        sink.bind("\0" + name)
        sink.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.sd_notify("READY=1")
        assert sink.recv(64) == b"READY=1"


def test_sd_notify_without_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.sd_notify("READY=1") is False
