# cython: language_level=3
"""Sans-IO response writer: WSGI status and headers in, framed bytes out.

Theory of operation
-------------------
One ``Response`` per request. ``start()`` receives what the application gave
``start_response`` and validates it at once, so a bad header raises
``ResponseError`` inside the app's own call (and the worker can still answer
500): the status must be three digits then an optional reason, header names
must be RFC 9110 tokens, and no status or header may contain CR, LF, NUL or any
other control byte except HTAB. Nothing the application says can split the
response.

Hop-by-hop headers are the server's business (PEP 3333 forbids applications
to send them). Like Gunicorn's ``Response.process_headers`` we drop
``Connection``, ``Keep-Alive``, ``Transfer-Encoding``, ``TE``, ``Trailer(s)``,
``Upgrade`` and ``Proxy-Authenticate/-Authorization`` from the app, with one
addition: an app that says ``Connection: close`` gets it (closing is always
safe). ``Content-Length`` is parsed (digits only) and emitted by us.

Framing is decided when the head is built, i.e. at the first body write:

* no body on the wire for HEAD, 1xx, 204 and 304 (RFC 9110 section 6.4.1);
* the app's Content-Length, if any; we never send more (excess is cut and
  flagged ``overflow``) and a body that ends short is not ``complete``;
  either way the worker closes the connection;
* when the whole body is known before the head goes out (the app returned a
  one-item list, or nothing, or a file) we set Content-Length ourselves;
* else chunked for an HTTP/1.1 request, also when the connection closes
  afterwards (the sync worker, ``Connection: close``): only the terminating
  chunk tells the client the body is complete, so an app that fails
  mid-stream leaves a response the client sees is truncated (curl exits 18,
  http.client raises IncompleteRead), as with Gunicorn; close-delimited, it
  would look complete;
* else close-delimited: an HTTP/1.0 request, which has no other framing
  (nginx talks HTTP/1.0 to its upstream by default).

The status line always says HTTP/1.1: RFC 9110 section 2.5 asks a server to
answer with the highest minor version it supports.

The head and a small first body chunk are built into ONE bytes object so a
small response leaves in one ``send()``. "Small" is up to ``SMALL_BODY`` =
16 KiB, Linux's default initial TCP send buffer (``net.ipv4.tcp_wmem``
default 16384), so the combined write normally completes without blocking;
above that, copying costs more than the ``writev`` the connection does with
the tuple we return instead.

This module never touches a socket. It reads the wall clock only for the
``Date`` header, which is cached per second (as nginx does).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdio cimport snprintf
from libc.string cimport memcpy
from libc.time cimport gmtime_r, time, time_t, tm

from fastwsgi.includes.http cimport (
    CONN_CLOSE,
    TCHAR,
    connection_tokens,
    field_value_class,
    http_tables_init,
    ieq,
)

from fastwsgi.errors import ResponseError
from fastwsgi.http_rules import TCHARS

SMALL_BODY = 16384
cdef Py_ssize_t C_SMALL_BODY = 16384

# The byte rules (TCHAR, the CTL check, the case-insensitive compare, the
# Connection tokens) are shared with the parser: includes/http.pxd.
http_tables_init(TCHARS.encode("ascii"))

# RFC 9110 section 5.6.7 IMF-fixdate, "Sun, 06 Nov 1994 08:49:37 GMT": always
# English names and GMT, so it is formatted here rather than by strftime (whose
# %a and %b follow LC_TIME) or email.utils.formatdate (whose imports, email,
# calendar, datetime..., cost every worker about 1 MiB of memory).
cdef const char* _DAY_NAMES = b"SunMonTueWedThuFriSat"
cdef const char* _MONTH_NAMES = b"JanFebMarAprMayJunJulAugSepOctNovDec"

cdef time_t _date_t = 0
cdef bytes _date_line = b""


cdef bytes _format_date_header(time_t t):
    cdef tm parts
    cdef char buf[64]
    cdef int n
    if gmtime_r(&t, &parts) == NULL:
        raise OverflowError("timestamp out of range for a Date header")
    n = snprintf(
        buf, sizeof(buf), b"Date: %.3s, %02d %.3s %04d %02d:%02d:%02d GMT\r\n",
        _DAY_NAMES + 3 * parts.tm_wday, parts.tm_mday, _MONTH_NAMES + 3 * parts.tm_mon,
        parts.tm_year + 1900, parts.tm_hour, parts.tm_min, parts.tm_sec,
    )
    if n < 0 or n >= <int>sizeof(buf):
        raise OverflowError("timestamp out of range for a Date header")
    return PyBytes_FromStringAndSize(buf, n)


cdef bytes _date_header():
    global _date_t, _date_line
    cdef time_t now = time(NULL)
    if now != _date_t:
        _date_line = _format_date_header(now)
        _date_t = now
    return _date_line


def http_date_header(t=None):
    """The ``Date: ...\\r\\n`` line: for the current second (cached) or, given a
    Unix timestamp ``t`` (seconds), for that time."""
    if t is None:
        return _date_header()
    return _format_date_header(<time_t>t)


cdef bytes _latin1(object s, str what):
    if type(s) is not str:
        raise ResponseError(f"{what} must be a str, not {type(s).__name__}: {s!r}")
    try:
        return (<str>s).encode("latin-1")
    except UnicodeEncodeError:
        raise ResponseError(f"{what} is not latin-1: {s!r}") from None


cdef const char* _HEX = b"0123456789abcdef"


cdef Py_ssize_t _put_num_line(char* dst, unsigned long long v, unsigned int base) noexcept:
    """Digits of ``v`` in ``base`` (10 or 16, lower case) then CRLF into
    ``dst``; the length (at most 22). By hand: snprintf's format machinery
    was ~1 % of a request's CPU for two small numbers per response head."""
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    while True:
        tmp[n] = _HEX[v % base]
        n += 1
        v //= base
        if v == 0:
            break
    for i in range(n):
        dst[i] = tmp[n - 1 - i]
    dst[n] = 13
    dst[n + 1] = 10
    return n + 2


cdef inline Py_ssize_t _put(char* dst, Py_ssize_t pos, const char* src, Py_ssize_t n):
    if n > 0:
        memcpy(dst + pos, src, n)
    return pos + n


def error_response(int status, str reason, bytes server=b"", bint keep_alive=False):
    """A complete small response for errors the server answers itself
    (400/408/413/431/500...): plain-text body, ``Connection: close`` unless
    ``keep_alive``."""
    body = f"{status} {reason}\n".encode("latin-1")
    parts = [f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")]
    if server:
        parts.append(b"Server: " + server + b"\r\n")
    parts.append(_date_header())
    parts.append(b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n")
    parts.append(b"Content-Type: text/plain; charset=utf-8\r\n")
    parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
    parts.append(body)
    return b"".join(parts)


@cython.final
@cython.freelist(16)
@cython.auto_pickle(False)
cdef class Response:
    """Framing and head serialisation for one response (see module docstring)."""

    def __init__(self, bint is_head=False, bint keep_alive=True, bint http11=True,
                 bytes server=b""):
        self.is_head = is_head
        self.want_keep_alive = keep_alive
        self.http11 = http11
        if server and field_value_class(server, len(server)) == 0:
            raise ValueError("server header value contains control characters")
        self.server = server
        self.status = None
        self.status_code = 0
        self.headers = None
        self.content_length = -1
        self.framing = FRAME_UNSET

    cpdef start(self, object status, object headers):
        """Record (and validate) the app's status and headers. May be called
        again before the head is sent (start_response with exc_info)."""
        cdef bytes sb, bname, bval
        cdef const char* p
        cdef Py_ssize_t n, a, b
        cdef long long cl = -1, v
        cdef bint app_server = False, app_date = False, app_close = False
        cdef int code
        if self.headers_sent:
            raise ResponseError("response head already sent")
        sb = _latin1(status, "status")
        p = sb
        n = len(sb)
        if n < 3 or not (48 <= p[0] <= 57 and 48 <= p[1] <= 57 and 48 <= p[2] <= 57):
            raise ResponseError(f"status must start with a 3-digit code: {status!r}")
        if n > 3 and p[3] != 32:
            raise ResponseError(f"status code must be followed by a space: {status!r}")
        if field_value_class(p, n) == 0:
            raise ResponseError(f"control character in status: {status!r}")
        code = (p[0] - 48) * 100 + (p[1] - 48) * 10 + (p[2] - 48)
        if code < 100:
            raise ResponseError(f"status code below 100: {status!r}")
        if n == 3:
            sb = sb + b" "
        if not isinstance(headers, list):
            raise ResponseError(f"headers must be a list, not {type(headers).__name__}")
        parts = []
        for item in headers:
            try:
                name, value = item
            except (TypeError, ValueError):
                raise ResponseError(f"header must be a (name, value) pair: {item!r}") from None
            bname = _latin1(name, "header name")
            p = bname
            n = len(bname)
            if n == 0:
                raise ResponseError("empty header name")
            for a in range(n):
                if not TCHAR[<unsigned char>p[a]]:
                    raise ResponseError(f"invalid header name: {name!r}")
            bval = _latin1(value, "header value")
            if field_value_class(bval, len(bval)) == 0:
                raise ResponseError(f"control character in header {name!r}: {value!r}")
            # Strip optional whitespace (RFC 9110 section 5.5), like Gunicorn.
            p = bval
            a = 0
            b = len(bval)
            while a < b and (p[a] == 32 or p[a] == 9):
                a += 1
            while b > a and (p[b - 1] == 32 or p[b - 1] == 9):
                b -= 1
            if a != 0 or b != len(bval):
                bval = bval[a:b]
            p = bname
            if ieq(p, n, "content-length", 14):
                if not bval or not bval.isdigit() or len(bval) > 18:
                    raise ResponseError(f"invalid Content-Length: {value!r}")
                # At most 18 ASCII digits (checked above): fits, no int().
                p = bval
                v = 0
                for a in range(len(bval)):
                    v = v * 10 + (p[a] - 48)
                if cl >= 0 and v != cl:
                    raise ResponseError("conflicting Content-Length headers")
                cl = v
                continue
            if ieq(p, n, "connection", 10):
                if connection_tokens(bval, len(bval)) & CONN_CLOSE:
                    app_close = True
                continue
            if (ieq(p, n, "transfer-encoding", 17) or ieq(p, n, "keep-alive", 10)
                    or ieq(p, n, "te", 2) or ieq(p, n, "trailer", 7)
                    or ieq(p, n, "trailers", 8) or ieq(p, n, "upgrade", 7)
                    or ieq(p, n, "proxy-authenticate", 18)
                    or ieq(p, n, "proxy-authorization", 19)):
                continue
            if ieq(p, n, "server", 6):
                app_server = True
            elif ieq(p, n, "date", 4):
                app_date = True
            parts.append(bname + b": " + bval + b"\r\n")
        self.status = status
        self.status_code = code
        self.headers = headers
        self._status_b = sb
        self._block = b"".join(parts)
        self._app_server = app_server
        self._app_date = app_date
        self._app_close = app_close
        self.content_length = cl

    cdef void _decide(self, bint last, long long n):
        cdef int code = self.status_code
        if self.is_head or code < 200 or code == 204 or code == 304:
            self.framing = FRAME_NONE
        elif self.content_length >= 0:
            self.framing = FRAME_LENGTH
        elif last:
            self.content_length = n
            self.framing = FRAME_LENGTH
        elif self.http11:
            self.framing = FRAME_CHUNKED
        else:
            self.framing = FRAME_CLOSE

    cdef bytes _build_head(self, const char* body, Py_ssize_t body_len, bint chunk):
        cdef char clbuf[64]
        cdef char chbuf[32]
        cdef Py_ssize_t cllen = 0, chlen = 0, total, pos = 0
        cdef bytes date = b"" if self._app_date else _date_header()
        cdef bytes server = b"" if self._app_server else self.server
        cdef bint conn_keep = self._conn_keep()
        cdef bint chunked = self.framing == FRAME_CHUNKED
        cdef int code = self.status_code
        cdef bytes out
        cdef char* dst
        if self.framing == FRAME_LENGTH or (
                self.framing == FRAME_NONE and self.content_length >= 0
                and code >= 200 and code != 204):
            memcpy(clbuf, b"Content-Length: ", 16)
            cllen = 16 + _put_num_line(clbuf + 16, <unsigned long long>self.content_length, 10)
        if chunk:
            chlen = _put_num_line(chbuf, <unsigned long long>body_len, 16)
        total = 9 + len(self._status_b) + 2
        if server:
            total += 8 + len(server) + 2
        total += len(date)
        total += 24 if conn_keep else 19
        total += cllen + (28 if chunked else 0) + len(self._block) + 2
        total += chlen + body_len + (2 if chunk else 0)
        out = PyBytes_FromStringAndSize(NULL, total)
        dst = PyBytes_AS_STRING(out)
        pos = _put(dst, pos, "HTTP/1.1 ", 9)
        pos = _put(dst, pos, self._status_b, len(self._status_b))
        pos = _put(dst, pos, "\r\n", 2)
        if server:
            pos = _put(dst, pos, "Server: ", 8)
            pos = _put(dst, pos, server, len(server))
            pos = _put(dst, pos, "\r\n", 2)
        pos = _put(dst, pos, date, len(date))
        if conn_keep:
            pos = _put(dst, pos, "Connection: keep-alive\r\n", 24)
        else:
            pos = _put(dst, pos, "Connection: close\r\n", 19)
        pos = _put(dst, pos, clbuf, cllen)
        if chunked:
            pos = _put(dst, pos, "Transfer-Encoding: chunked\r\n", 28)
        pos = _put(dst, pos, self._block, len(self._block))
        pos = _put(dst, pos, "\r\n", 2)
        pos = _put(dst, pos, chbuf, chlen)
        pos = _put(dst, pos, body, body_len)
        if chunk:
            pos = _put(dst, pos, "\r\n", 2)
        assert pos == total
        self.headers_sent = True
        return out

    cdef void refuse_keep_alive(self) noexcept:
        """The connection will carry no other request (its reasons are
        _conn's: a body it cannot drain, a dead parser): the head, when it
        is built, says ``Connection: close``."""
        self.want_keep_alive = False

    cdef bint _conn_keep(self):
        return (self.want_keep_alive and not self._app_close
                and self.framing != FRAME_CLOSE)

    cdef bint body_done_and_closing(self):
        """Is everything the body will put on the wire already framed, and
        will the connection carry no other request? Then what is sent now
        is the last the connection carries (``_conn``: the FIN goes with
        it). Only for framings whose end is known without a terminator."""
        if self.framing == FRAME_LENGTH:
            if self.sent != self.content_length:
                return False
        elif self.framing != FRAME_NONE:
            return False
        return not (self.want_keep_alive and not self._app_close and not self.overflow)

    @property
    def keep_alive_header(self):
        """What the ``Connection`` header says (decided with the framing)."""
        return self._conn_keep()

    @property
    def keep_alive(self):
        """May the connection carry another request after this response?"""
        return (self.want_keep_alive and not self._app_close and not self.overflow
                and self.framing != FRAME_CLOSE and self.framing != FRAME_UNSET
                and self.complete)

    @property
    def complete(self):
        """False when a Content-Length body ended short (or is still going)."""
        if self.framing == FRAME_LENGTH:
            return self.sent == self.content_length
        return self._finished

    @property
    def finished(self):
        return self._finished

    @property
    def chunked(self):
        return self.framing == FRAME_CHUNKED

    @property
    def framing_name(self):
        return ("unset", "none", "length", "chunked", "close")[self.framing]

    cpdef object frame(self, object data, bint last=False):
        """Bytes to send for one body item: a ``bytes`` (one send) or a tuple
        of buffers (one writev). Includes the head the first time. ``last``
        says no more body follows, which lets an unframed response get a
        Content-Length instead of chunked encoding."""
        cdef Py_ssize_t n
        cdef long long left
        cdef bytes prefix, out
        cdef char chbuf[32]
        cdef Py_ssize_t chlen, pos
        cdef char* dst
        if self.status is None:
            raise ResponseError("body written before start_response()")
        if self._finished:
            raise ResponseError("body written after the response finished")
        if type(data) is not bytes:
            if isinstance(data, str):
                raise ResponseError(f"body items must be bytes, not str: {data[:40]!r}")
            try:
                data = bytes(memoryview(data))
            except TypeError:
                raise ResponseError(
                    f"body items must be bytes, not {type(data).__name__}") from None
        n = PyBytes_GET_SIZE(data)
        if not self.headers_sent:
            self._decide(last, n)
        if self.framing == FRAME_NONE:
            n = 0
        elif self.framing == FRAME_LENGTH:
            left = self.content_length - self.sent
            if n > left:
                n = <Py_ssize_t>left
                data = data[:n]
                self.overflow = True
        self.sent += n
        if not self.headers_sent:
            if n <= C_SMALL_BODY:
                return self._build_head(PyBytes_AS_STRING(data), n,
                                        self.framing == FRAME_CHUNKED and n > 0)
            head = self._build_head(NULL, 0, False)
            if self.framing == FRAME_CHUNKED:
                return (head + b"%x\r\n" % n, data, b"\r\n")
            return (head, data)
        if n == 0:
            return b""
        if self.framing == FRAME_CHUNKED:
            prefix = b"\r\n" if self._pending_crlf else b""
            self._pending_crlf = False
            if n <= C_SMALL_BODY:
                chlen = _put_num_line(chbuf, <unsigned long long>n, 16)
                out = PyBytes_FromStringAndSize(NULL, len(prefix) + chlen + n + 2)
                dst = PyBytes_AS_STRING(out)
                pos = _put(dst, 0, prefix, len(prefix))
                pos = _put(dst, pos, chbuf, chlen)
                pos = _put(dst, pos, PyBytes_AS_STRING(data), n)
                _put(dst, pos, "\r\n", 2)
                return out
            return (prefix + b"%x\r\n" % n, data, b"\r\n")
        return data

    cpdef expect_length(self, long long n):
        """The caller knows the whole body is ``n`` bytes (e.g. a list of
        bytes): frame with Content-Length unless the app declared one."""
        if self.status is None:
            raise ResponseError("body written before start_response()")
        if not self.headers_sent and self.content_length < 0:
            self.content_length = n

    cpdef tuple frame_file(self, long long avail):
        """Before sending ``avail`` file bytes with sendfile(2): returns
        ``(prefix, n)``; send ``prefix`` (head and/or chunk-size line) then
        exactly ``n`` bytes of the file, then report them with ``file_sent``."""
        cdef long long n = avail
        cdef bytes prefix = b""
        if self.status is None:
            raise ResponseError("body written before start_response()")
        if not self.headers_sent:
            self._decide(True, avail)
            # HEAD of a file: its size is what the GET would send.
            if (self.framing == FRAME_NONE and self.is_head and self.content_length < 0
                    and self.status_code >= 200 and self.status_code != 204
                    and self.status_code != 304):
                self.content_length = avail
        if self.framing == FRAME_NONE:
            n = 0
        elif self.framing == FRAME_LENGTH:
            n = min(avail, self.content_length - self.sent)
        if not self.headers_sent:
            prefix = self._build_head(NULL, 0, False)
        if self.framing == FRAME_CHUNKED and n > 0:
            if self._pending_crlf:
                prefix += b"\r\n"
            prefix += b"%x\r\n" % n
            self._pending_crlf = True
        return (prefix, n)

    cpdef file_sent(self, long long n):
        self.sent += n

    cpdef bytes finish(self):
        """The last bytes of the response: the whole head (with
        Content-Length: 0) if nothing was written, the chunked terminator, or
        b""."""
        if self._finished:
            return b""
        if self.status is None:
            raise ResponseError("the application never called start_response()")
        if not self.headers_sent:
            self._decide(True, 0)
            self._finished = True
            return self._build_head(NULL, 0, False)
        self._finished = True
        if self.framing == FRAME_CHUNKED:
            if self._pending_crlf:
                self._pending_crlf = False
                return b"\r\n0\r\n\r\n"
            return b"0\r\n\r\n"
        return b""
