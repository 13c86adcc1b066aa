"""The kernel's floor: the system calls of a response and nothing else.

What does a scenario cost when a server does nothing but the system calls
that put its response on the wire? This server answers ``hello`` and
``file1m`` with exactly fastwsgi's calls for them and no HTTP parsing, no
WSGI, no threads, no application: one thread in an ``epoll`` loop, blocking
sends, the file opened once at start. Whatever fastwsgi costs above it in
the same run is ours (Python, WSGI, the app's own ``open()`` and the
worker's design); below it a server on this kernel gets only by sending
differently, e.g. leaving more of the transmission to the client's ACKs,
which the server's own CPU figure then does not show (bench/README.md,
"The floor").

* ``hello``: one ``recv`` and one ``send`` of head and body per request;
  the Python loop around them is a few microseconds of that.
* ``file1m``: the same calls as fastwsgi's ``wsgi.file_wrapper`` path
  (``_conn.pyx``: LEAD_BLOCK): the head and the file's first bytes, 64 KiB
  together, in one ``writev`` (the bytes read with ``pread``), then one
  blocking ``sendfile`` of the rest. With ``--lead 0`` the head goes out
  alone and ``sendfile`` sends the whole file (uWSGI's calls).

For a 1 MiB file the Python here is a rounding error: the figure is what
the transmit path of loopback TCP costs the sender, together with the
receiver's half of it, which runs in the sender's softirq context (see
"who is charged for TCP" in bench/README.md).

Behind nginx (HTTP/1.0 upstream, a connection per request) it answers as
fastwsgi does a response that ends its connection: the last bytes with
``MSG_MORE``, then ``shutdown(SHUT_WR)``, so the FIN rides the last segment,
then ``close``. The request is read straight after ``accept`` (nginx sends
it with the connect), so such a connection never enters the epoll set, as
with fastwsgi's sync worker; the loop's ``epoll_wait`` and the ``accept``
that finds the queue empty come on top.

Requests are taken to be GETs without a body (the bench's ``hello`` and
``file1m`` scenarios): each ``\\r\\n\\r\\n`` in the stream is one request,
answered in order; one whose request line says HTTP/1.0 ends its
connection. Run as ``python -m bench.floor --port P --app
bench.apps:file1m``; SIGTERM or SIGINT stops it.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
import types

from bench import apps

# What fastwsgi sends in one writev ahead of sendfile (_conn.pyx LEAD_BLOCK).
LEAD_BLOCK = 65536
HEAD_END = b"\r\n\r\n"

# Scenario app -> (Content-Type, whether the body is the bench file).
SCENARIO_BODY = {
    "bench.apps:hello": ("text/plain", False),
    "bench.apps:file1m": ("application/octet-stream", True),
}


class Floor:
    """One epoll loop; every connection blocking for its sends."""

    def __init__(self, port: int, app: str, lead: int) -> None:
        ctype, is_file = SCENARIO_BODY[app]
        self.fd = -1
        if is_file:
            path = apps.ensure_file(os.environ.get(apps.FILE_ENV))
            self.fd = os.open(path, os.O_RDONLY)
            self.size = os.fstat(self.fd).st_size
            self.body = b""
        else:
            self.body = apps.HELLO
            self.size = len(self.body)
        self.head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {self.size}\r\n\r\n"
        ).encode()
        self.lead = max(0, min(lead - len(self.head), self.size)) if is_file and lead else 0
        self.listener = socket.create_server(("127.0.0.1", port), backlog=4096)
        # Accepted sockets inherit TCP_NODELAY (Linux): no setsockopt each.
        self.listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.listener.setblocking(False)
        self.ep = select.epoll()
        self.ep.register(self.listener.fileno(), select.EPOLLIN)
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}
        self.registered: set[int] = set()
        self.running = True

    def stop(self, signum: int, frame: types.FrameType | None) -> None:
        self.running = False

    def serve(self) -> None:
        lfd = self.listener.fileno()
        while self.running:
            try:
                events = self.ep.poll(0.5)
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == lfd:
                    self._accept()
                else:
                    self._readable(fd, 0)
        for s, _ in self.conns.values():
            s.close()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                # From a non-blocking listener Python leaves the accepted
                # socket blocking (no fcntl): sends block, and recv runs only
                # with MSG_DONTWAIT or after epoll said readable.
                s, _ = self.listener.accept()
            except BlockingIOError:
                return
            fd = s.fileno()
            self.conns[fd] = (s, bytearray())
            # Its request may be there already (nginx sends it with the
            # connect): answered without an epoll_ctl, as fastwsgi's sync
            # worker does; registered only when it has to wait.
            if self._readable(fd, socket.MSG_DONTWAIT):
                self.registered.add(fd)
                self.ep.register(fd, select.EPOLLIN)

    def _readable(self, fd: int, flags: int) -> bool:
        """Answer what ``fd`` has sent; False once it is closed."""
        s, buf = self.conns[fd]
        try:
            data = s.recv(65536, flags)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            self._close(fd)
            return False
        buf += data
        try:
            while (end := buf.find(HEAD_END)) >= 0:
                line_end = buf.find(b"\r\n")
                closing = buf[line_end - 8 : line_end] == b"HTTP/1.0"
                del buf[: end + len(HEAD_END)]
                self._respond(s, closing)
                if closing:
                    s.shutdown(socket.SHUT_WR)
                    self._close(fd)
                    return False
        except OSError:  # the client went away mid-response
            self._close(fd)
            return False
        return True

    def _respond(self, s: socket.socket, closing: bool) -> None:
        last = socket.MSG_MORE if closing else 0  # closing: the FIN joins it
        if self.fd < 0:
            s.sendall(self.head + self.body, last)
            return
        if self.lead:
            first = os.pread(self.fd, self.lead, 0)
            sent = s.sendmsg([self.head, first])
            total = len(self.head) + len(first)
            if sent < total:  # rare: finish what writev left
                s.sendall((self.head + first)[sent:])
        else:
            s.sendall(self.head)
        off = self.lead
        while off < self.size:
            n = os.sendfile(s.fileno(), self.fd, off, self.size - off)
            if n == 0:
                raise OSError("file shrank")
            off += n

    def _close(self, fd: int) -> None:
        s, _ = self.conns.pop(fd)
        if fd in self.registered:
            self.registered.discard(fd)
            self.ep.unregister(fd)
        s.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--app", required=True)
    p.add_argument("--lead", type=int, default=LEAD_BLOCK,
                   help="bytes of head + file sent by writev before sendfile (0: head alone)")
    ns = p.parse_args(argv)
    if ns.app not in SCENARIO_BODY:
        print(f"floor: cannot answer {ns.app} (only: {', '.join(SCENARIO_BODY)})",
              file=sys.stderr)
        return 2
    floor = Floor(ns.port, ns.app, ns.lead)
    signal.signal(signal.SIGTERM, floor.stop)
    signal.signal(signal.SIGINT, floor.stop)
    floor.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
