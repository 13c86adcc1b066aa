"""One hierarchy for every error fastwsgi raises on purpose.

Protocol errors carry the HTTP status and reason the worker answers with, so
the worker's error path is one line (``exc.status``, ``exc.reason``) and never
an ``isinstance`` ladder. After any ``ParseError`` the connection is answered
and closed; the parser refuses further input.

Class names follow Gunicorn's ``gunicorn/http/errors.py`` where Gunicorn has
the same error, so the shared conformance corpus can name them directly.
"""

from __future__ import annotations


class FastWSGIError(Exception):
    """Base of every fastwsgi error."""


# --- HTTP request parsing -------------------------------------------------


class ParseError(FastWSGIError):
    """The request cannot be parsed; answer ``status`` and close."""

    status: int | None = 400
    reason: str = "Bad Request"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail


class NoMoreData(ParseError):
    """The peer closed before a complete request head: close, answer nothing."""

    status = None
    reason = ""


class InvalidRequestLine(ParseError):
    pass


class InvalidRequestMethod(ParseError):
    pass


class InvalidHTTPVersion(ParseError):
    pass


class InvalidHeader(ParseError):
    pass


class InvalidHeaderName(ParseError):
    pass


class ObsoleteFolding(ParseError):
    pass


class InvalidSchemeHeaders(ParseError):
    pass


class InvalidProxyLine(ParseError):
    pass


class InvalidProxyHeader(InvalidProxyLine):
    """A malformed PROXY protocol v2 binary header (Gunicorn's name)."""


class ForbiddenProxyRequest(ParseError):
    status = 403
    reason = "Forbidden"


class InvalidChunkSize(ParseError):
    pass


class InvalidChunkExtension(ParseError):
    pass


class ChunkMissingTerminator(ParseError):
    pass


class MissingHost(InvalidHeader):
    """HTTP/1.1 without Host (RFC 9112 section 3.2: a server MUST answer 400)."""


class LimitRequestLine(ParseError):
    status = 414
    reason = "URI Too Long"


class LimitRequestHeaders(ParseError):
    status = 431
    reason = "Request Header Fields Too Large"


class RequestBodyTooLarge(ParseError):
    status = 413
    reason = "Content Too Large"


class ExpectationFailed(ParseError):
    status = 417
    reason = "Expectation Failed"


class UnsupportedTransferCoding(ParseError):
    status = 501
    reason = "Not Implemented"


class RequestTimeout(ParseError):
    """The client was too slow sending the head or body (a worker decision)."""

    status = 408
    reason = "Request Timeout"


# --- What the application hands back ---------------------------------------


class ResponseError(FastWSGIError):
    """The app broke the WSGI or HTTP rules (bad status or header, CR/LF/NUL,
    start_response twice without exc_info). Answered with 500 if nothing was
    sent yet, else the connection is closed."""

    status = 500
    reason = "Internal Server Error"


# --- Configuration and start-up ---------------------------------------------


class ConfigError(FastWSGIError):
    """A setting is unknown or malformed (usage error: exit status 2)."""

    exit_status = 2


class AppImportError(FastWSGIError):
    """The APP argument cannot be found or loaded (exit status 1)."""

    exit_status = 1


class BindError(FastWSGIError):
    """A listener cannot be created (address in use, bad path; exit status 1)."""

    exit_status = 1
