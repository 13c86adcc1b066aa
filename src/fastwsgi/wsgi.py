"""The pure-Python pieces of the WSGI glue.

The request/response cycle itself (environ, ``wsgi.input``,
``start_response``, ``write()``) lives in the compiled ``_conn`` module. What
is here is what an application or a hook sees as a Python object:

* :class:`FileWrapper` -- ``environ["wsgi.file_wrapper"]`` (PEP 3333 "Optional
  Platform-Specific File Handling"). When the app returns one over a regular
  file with a real ``fileno()``, the connection sends it with ``sendfile(2)``
  from the compiled core; otherwise it is an ordinary iterable.
* :class:`ClientDisconnected` -- raised into the app by ``write()`` or
  ``wsgi.input`` when the peer has gone or stalled past the timeout. It is an
  ``OSError`` so frameworks that catch I/O errors treat it as one.
* :class:`WSGIErrors` -- ``environ["wsgi.errors"]``: what the app writes goes
  to the error log's streams (stderr, or the ``--error-logfile`` file), like
  Gunicorn's ``WSGIErrorsWrapper``. The streams are looked up at each write,
  so a log reopened on USR1 is followed. Writes are flushed at once.
* :class:`RequestInfo` -- the ``req`` argument of the ``pre_request`` and
  ``post_request`` hooks (Gunicorn passes its ``Request``; hooks read
  ``method``, ``path``, ``query``, ``uri``, ``version`` and ``headers``). Built
  only when such a hook is configured.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO


class ClientDisconnected(OSError):
    """The client closed the connection (or stopped reading) mid-request."""


class ClientStoppedReading(ClientDisconnected):
    """A write to the client made no progress for ``--timeout`` seconds."""


class FileWrapper:
    """Iterate a file-like in blocks; the server may use sendfile(2) instead."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        data: bytes = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class WSGIErrors:
    """``wsgi.errors`` bound to the error logger's stream handlers."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _streams(self) -> list[TextIO]:
        out: list[TextIO] = []
        for h in self._logger.handlers:
            stream = getattr(h, "stream", None)
            if stream is not None and stream not in out:
                out.append(stream)
        return out or [sys.stderr]

    def write(self, s: str) -> None:
        for stream in self._streams():
            stream.write(s)
            stream.flush()

    def writelines(self, seq: Iterable[str]) -> None:
        for s in seq:
            self.write(s)

    def flush(self) -> None:
        for stream in self._streams():
            stream.flush()


class RequestInfo:
    """What the ``pre_request``/``post_request`` hooks get as ``req``."""

    __slots__ = ("method", "uri", "path", "query", "version", "headers")

    def __init__(
        self,
        method: str,
        uri: str,
        path: str,
        query: str,
        version: tuple[int, int],
        headers: list[tuple[str, str]],
    ) -> None:
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.version = version
        self.headers = headers

    def __repr__(self) -> str:
        return f"<RequestInfo {self.method} {self.uri}>"
