# cython: language_level=3
"""Sans-IO HTTP/1.x request parser: bytes in, PEP 3333 environ and body out.

Theory of operation
-------------------
One ``RequestParser`` per connection. Bytes arrive through ``feed()`` (or,
from ``_conn.pyx``, ``recv_buffer()``/``recv_commit()``, which let the
connection ``recv()`` straight into our buffer). Nothing here touches a
socket, a clock or a logger: every call returns at once with one of

* ``None``: need more data;
* a complete head: ``next_head()`` returns the environ dict;
* body data: ``read_body()`` returns ``bytes``, ``b""`` at the end of the body;
* a ``ParseError`` subclass (``errors.py``), which carries the HTTP status.

After any error the parser is dead: every later call raises the same error
class again, so a connection can never be reused after a protocol error.

The buffer holds unconsumed bytes ``[pos, end)``. A head is scanned in place
with ``memchr`` for LF, line by line; the scan resumes where it stopped, so a
head received one byte at a time costs O(n), not O(n^2). Each check that can
fail before a line is complete (limits) is written so that the same input
gives the same error class however it is split: a limit is raised as soon as
the partial line proves it will be exceeded, and at the LF the limit checks
run before the bare-LF check. The request line is parsed as soon as it is
complete (like Gunicorn), the field lines once the empty line arrives.

When the head is complete its field lines are copied into a private block
(``hbuf``) so the ``headers`` list can be built lazily, after the buffer has
moved on to the body. The environ is built directly from the raw bytes:
common field names hit a static table of interned keys (matched
case-insensitively without building a string), so a typical request creates
only the value strings and the dict. A worker makes one parser per
connection; the buffers of dead parsers are pooled and the objects come from
a freelist, so a new connection's parser costs no malloc.

Body framing follows RFC 9112 section 6: Transfer-Encoding (only codings
ending in one ``chunked``), else Content-Length (digits only), else no body.
The rules of RFC 9112 and Gunicorn 27's ``gunicorn/http/message.py`` apply:
CL with TE, duplicate CL/Host/Content-Type, TE in HTTP/1.0, bare LF or CR,
obs-fold, whitespace before the colon, control bytes, non-token names and
methods are 400; ``gzip``/``deflate``/``compress`` before the final
``chunked`` pass through undecoded (as in Gunicorn) but close the
connection; empty list elements in Transfer-Encoding are ignored (RFC 9110
5.6.1: ``, chunked`` is chunked) but a field with no coding at all is 400;
an unknown transfer coding is 501; an Expect other than 100-continue is 417;
HTTP/1.1 without Host is 400 (RFC 9112 section 3.2) unless
``permit_missing_host``, and so is an empty Host unless the target carries
its own authority (RFC 9110 4.2.1). HTTP/1.2 to HTTP/1.9 are served as
HTTP/1.1 (RFC 9110 2.5).
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.object cimport PyObject
from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from fastwsgi.includes.python cimport (
    dict_presized,
    PyDict_SetDefault,
    PyUnicode_DATA,
    PyUnicode_DecodeLatin1,
    PyUnicode_New,
)
from fastwsgi.includes.http cimport (
    CONN_CLOSE,
    CONN_KEEPALIVE,
    FIELD_OK,
    TCHAR,
    connection_tokens,
    field_value_class,
    http_tables_init,
    ieq,
    is_ws,
)
from fastwsgi.includes.net cimport AF_INET, AF_INET6, inet_ntop, inet_pton

import sys

from fastwsgi.errors import (
    ChunkMissingTerminator,
    ExpectationFailed,
    ForbiddenProxyRequest,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidProxyHeader,
    InvalidProxyLine,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidSchemeHeaders,
    LimitRequestHeaders,
    LimitRequestLine,
    MissingHost,
    NoMoreData,
    ObsoleteFolding,
    RequestBodyTooLarge,
    UnsupportedTransferCoding,
)
from fastwsgi.http_rules import TCHARS


# --- Limits -----------------------------------------------------------------

cdef enum:
    # Gunicorn 27 caps limit_request_line at 8190 (MAX_REQUEST_LINE), uses
    # 8190 when limit_request_field_size is 0 (DEFAULT_MAX_HEADERFIELD_SIZE)
    # and caps limit_request_fields at 32768 (MAX_HEADERS).
    MAX_REQUEST_LINE = 8190
    DEFAULT_FIELD_SIZE = 8190
    MAX_FIELDS = 32768
    # A chunk-size line is a few hex digits; extensions are legal (RFC 9112
    # 7.1.1) but no real client sends long ones. Gunicorn 27 bounds the line
    # by limit_request_field_size (8190, body.py); h11 bounds any incomplete
    # event at 16 KiB. We allow 4096 bytes (one page), CRLF included.
    MAX_CHUNK_LINE = 4096
    # At most 16 hex digits (2**64 - 1), then checked against the signed
    # 64-bit range: overflow is an error, never a wrap-around.
    MAX_CHUNK_DIGITS = 16
    # Content-Length: 18 decimal digits always fit a signed 64-bit integer.
    MAX_CL_DIGITS = 18
    # PROXY protocol v1 lines are at most 107 bytes including CRLF (haproxy
    # proxy-protocol.txt section 2.1).
    PROXY_V1_MAX = 107
    # The buffer starts at 4 KiB and grows for a bigger head; the connection
    # always gets 4 KiB or more to recv into. Typical heads are under 1 KiB,
    # and large Content-Length bodies do not pass through it (body_direct:
    # the connection receives them straight into the app's bytes). Every
    # open connection holds one, so it is most of a busy worker's per-
    # connection memory: 16 KiB cost a gthread worker with 50 clients behind
    # nginx 0.6-0.8 MiB more peak RSS than 8 KiB (Gunicorn's read size), and
    # 8 KiB 0.4 MiB more than 4 KiB (30.9 against 30.5 MiB with Flask;
    # Gunicorn 30.8).
    INITIAL_CAP = 4096
    MIN_RECV = 4096

cdef enum:
    ST_HEAD = 0         # waiting for (or scanning) a head
    ST_BODY_CL = 1      # Content-Length body, body_left bytes to go
    ST_CHUNK_SIZE = 2   # at a chunk-size line
    ST_CHUNK_DATA = 3   # inside chunk data, body_left bytes to go
    ST_CHUNK_CRLF = 4   # at the CRLF after chunk data
    ST_TRAILERS = 5     # scanning the trailer section
    ST_DONE = 6         # body complete; finish() or next_head()

cdef enum:
    HM_DROP = 0
    HM_REFUSE = 1
    HM_DANGEROUS = 2
    PP_OFF = 0
    PP_V1 = 1
    PP_V2 = 2
    PP_AUTO = 3
    HF_HOST = 1
    HF_CLOSE = 2
    HF_KEEPALIVE = 4

cdef enum:
    ID_HOST = 0
    ID_CONTENT_TYPE = 1
    ID_CONTENT_LENGTH = 2
    ID_TRANSFER_ENCODING = 3
    ID_CONNECTION = 4
    ID_EXPECT = 5
    ID_TE = 6
    ID_TRAILER = 7
    ID_AUTHORIZATION = 8
    MAX_KNOWN = 64
    MAX_NAME_BUCKET = 32

cdef const char* PP_V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# --- Byte classes ---------------------------------------------------------------

# TCHAR (RFC 9110 5.6.2) and FIELD_OK (5.5) come from includes/http.pxd.
cdef unsigned char TARGET_OK[256]  # RFC 9112 3.2 / RFC 3986 2: printable ASCII only
cdef unsigned char HOST_OK[256]    # RFC 3986 3.2.2 reg-name: unreserved / pct-encoded / sub-delims
cdef signed char HEXVAL[256]


cdef void _init_tables():
    cdef int c
    for c in range(256):
        TARGET_OK[c] = 1 if 0x21 <= c <= 0x7E else 0
        HOST_OK[c] = 0
        HEXVAL[c] = -1
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~%!$&'()*+,;=":
        HOST_OK[c] = 1
    for c in range(10):
        HEXVAL[48 + c] = c
    for c in range(6):
        HEXVAL[97 + c] = 10 + c
        HEXVAL[65 + c] = 10 + c


http_tables_init(TCHARS.encode("ascii"))
_init_tables()


# --- Static table of common field names ----------------------------------------
# Matched case-insensitively on the raw bytes; a hit gives the interned environ
# key and upper-case name without building any string. The first entries have
# protocol meaning and fixed ids.


_KNOWN_NAMES = (
    b"host", b"content-type", b"content-length", b"transfer-encoding",
    b"connection", b"expect", b"te", b"trailer", b"authorization",
    b"user-agent", b"accept", b"accept-encoding", b"accept-language",
    b"accept-charset", b"cookie", b"referer", b"cache-control", b"pragma",
    b"upgrade-insecure-requests", b"origin", b"if-modified-since",
    b"if-none-match", b"if-match", b"if-unmodified-since", b"if-range",
    b"range", b"dnt", b"sec-fetch-site", b"sec-fetch-mode", b"sec-fetch-user",
    b"sec-fetch-dest", b"sec-ch-ua", b"sec-ch-ua-mobile", b"sec-ch-ua-platform",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
    b"x-forwarded-port", b"x-forwarded-ssl", b"x-forwarded-protocol",
    b"x-real-ip", b"x-requested-with", b"x-request-id", b"forwarded", b"via",
    b"upgrade", b"keep-alive", b"priority", b"content-encoding", b"purpose",
    b"sec-purpose", b"sec-websocket-key", b"sec-websocket-version",
    b"sec-websocket-extensions", b"sec-websocket-protocol", b"x-csrftoken",
)

cdef int NKNOWN = len(_KNOWN_NAMES)
cdef const char* KNOWN_LOWER[MAX_KNOWN]   # zero-padded to a multiple of 8 (+8)
cdef const char* KNOWN_MASK[MAX_KNOWN]    # 0x20 where the name has a letter
cdef Py_ssize_t KNOWN_LEN[MAX_KNOWN]
cdef PyObject* KNOWN_KEY[MAX_KNOWN]       # "HTTP_USER_AGENT" (CONTENT_TYPE / CONTENT_LENGTH unprefixed)
cdef PyObject* KNOWN_UPPER[MAX_KNOWN]     # "USER-AGENT"
# ids grouped by name length: BUCKET[len] .. BUCKET[len + 1] index BUCKET_IDS
cdef int BUCKET[MAX_NAME_BUCKET + 2]
cdef int BUCKET_IDS[MAX_KNOWN]
_keep_alive_refs = []


cdef void _init_known():
    cdef int i, n, k
    assert NKNOWN <= MAX_KNOWN
    for i in range(NKNOWN):
        name = _KNOWN_NAMES[i]
        n = len(name)
        assert n <= MAX_NAME_BUCKET
        upper = sys.intern(name.decode("ascii").upper())
        if i == ID_CONTENT_TYPE:
            key = "CONTENT_TYPE"
        elif i == ID_CONTENT_LENGTH:
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + upper.replace("-", "_")
        key = sys.intern(key)
        padded = name + bytes(8 + (-n) % 8)
        mask = bytes(0x20 if 97 <= c <= 122 else 0 for c in padded)
        _keep_alive_refs.extend((name, upper, key, padded, mask))
        KNOWN_LOWER[i] = <const char*>padded
        KNOWN_MASK[i] = <const char*>mask
        KNOWN_LEN[i] = n
        KNOWN_KEY[i] = <PyObject*>key
        KNOWN_UPPER[i] = <PyObject*>upper
    k = 0
    for n in range(MAX_NAME_BUCKET + 1):
        BUCKET[n] = k
        for i in range(NKNOWN):
            if KNOWN_LEN[i] == n:
                BUCKET_IDS[k] = i
                k += 1
    BUCKET[MAX_NAME_BUCKET + 1] = k


_init_known()

cdef tuple V10 = (1, 0)
cdef tuple V11 = (1, 1)
cdef str S_HTTP10 = sys.intern("HTTP/1.0")
cdef str S_HTTP11 = sys.intern("HTTP/1.1")
cdef str S_EMPTY = ""
cdef str S_HTTP = sys.intern("http")
cdef str S_HTTPS = sys.intern("https")
cdef str K_METHOD = sys.intern("REQUEST_METHOD")
cdef str K_PATH = sys.intern("PATH_INFO")
cdef str K_QUERY = sys.intern("QUERY_STRING")
cdef str K_RAW = sys.intern("RAW_URI")
cdef str K_PROTO = sys.intern("SERVER_PROTOCOL")
_METHODS = tuple(sys.intern(m) for m in (
    "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"))
cdef str M_OPTIONS = _METHODS[5]
cdef str M_CONNECT = _METHODS[7]


cdef object _known_method(const char* p, Py_ssize_t n):
    """The interned str of a common method spelled exactly p[:n], else None."""
    cdef Py_ssize_t i
    for i in range(N_METHODS):
        if METHOD_LEN[i] == n and memcmp(METHOD_PTR[i], p, n) == 0:
            return <str>(<tuple>_METHODS)[i]
    return None


cdef int N_METHODS = len(_METHODS)
cdef const char* METHOD_PTR[16]
cdef Py_ssize_t METHOD_LEN[16]
_METHOD_BYTES = tuple(m.encode("ascii") for m in _METHODS)


cdef void _init_methods():
    cdef int i
    cdef bytes mb
    for i in range(N_METHODS):
        mb = _METHOD_BYTES[i]
        METHOD_PTR[i] = <const char*>mb     # kept alive by _METHOD_BYTES
        METHOD_LEN[i] = len(mb)


_init_methods()


cdef inline int _known_id(const char* p, Py_ssize_t n) noexcept:
    """Index of the field name p[:n] in the static table, or -1.

    Eight bytes at a time against the lower-case name, OR-ing 0x20 only where
    the table has a letter, so a hit means every byte is that letter in either
    case or exactly the table's '-': the name is then a valid token too."""
    cdef int b, k
    cdef Py_ssize_t i, r
    cdef uint64_t a, lw, mw
    if n > MAX_NAME_BUCKET:
        return -1
    for b in range(BUCKET[n], BUCKET[n + 1]):
        k = BUCKET_IDS[b]
        i = 0
        while True:
            r = n - i
            if r <= 0:
                return k
            a = 0
            memcpy(&a, p + i, 8 if r >= 8 else r)
            memcpy(&lw, KNOWN_LOWER[k] + i, 8)
            memcpy(&mw, KNOWN_MASK[k] + i, 8)
            if (a | mw) != lw:
                break
            i += 8
    return -1


cdef inline object _ascii_str(const char* p, Py_ssize_t n):
    """A str from bytes already known to be ASCII: no decoder, no max-char scan."""
    s = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(s), p, n)
    return s


cdef object _upper_key(const char* p, Py_ssize_t n, bint prefix):
    """'HTTP_' + upper(name) with '-' -> '_' (prefix) or upper(name): name is ASCII."""
    cdef Py_ssize_t off = 5 if prefix else 0
    cdef Py_ssize_t i
    cdef unsigned char c
    s = PyUnicode_New(n + off, 127)
    cdef unsigned char* d = <unsigned char*>PyUnicode_DATA(s)
    if prefix:
        memcpy(d, b"HTTP_", 5)
    for i in range(n):
        c = <unsigned char>p[i]
        if 97 <= c <= 122:
            c -= 32
        elif prefix and c == 45:
            c = 95
        d[off + i] = c
    return s


cdef object _unquote_latin1(const char* p, Py_ssize_t n):
    """Percent-decode p[:n] (invalid escapes kept as is, like urllib's
    unquote_to_bytes) and decode the bytes as latin-1 (PEP 3333)."""
    if memchr(p, b'%', n) == NULL:
        return _ascii_str(p, n)                     # the target is printable ASCII
    cdef char* out = <char*>malloc(n if n > 0 else 1)
    if out == NULL:
        raise MemoryError()
    cdef Py_ssize_t i = 0, j = 0
    cdef int hi, lo
    try:
        while i < n:
            if p[i] == b'%' and i + 2 < n:
                hi = HEXVAL[<unsigned char>p[i + 1]]
                lo = HEXVAL[<unsigned char>p[i + 2]]
                if hi >= 0 and lo >= 0:
                    out[j] = <char>(hi * 16 + lo)
                    j += 1
                    i += 3
                    continue
            out[j] = p[i]
            j += 1
            i += 1
        return PyUnicode_DecodeLatin1(out, j, NULL)
    finally:
        free(out)


cdef bint _valid_host(const char* p, Py_ssize_t n) noexcept:
    """RFC 9110 7.2: Host = uri-host [ ":" port ]; uri-host is an IP-literal
    in brackets or a reg-name (which covers IPv4 and names). Empty is not
    (the caller decides: RFC 9110 4.2.1, an http URI's host is never empty)."""
    cdef Py_ssize_t i = 0, j
    cdef unsigned char c
    if n == 0:
        return False
    if p[0] == b'[':
        i = 1
        while i < n and p[i] != b']':
            c = <unsigned char>p[i]
            if not (HEXVAL[c] >= 0 or c == 58 or c == 46 or c == 118 or c == 86):
                return False
            i += 1
        if i >= n or i == 1:
            return False
        i += 1
    else:
        while i < n and p[i] != b':':
            if not HOST_OK[<unsigned char>p[i]]:
                return False
            i += 1
    if i == n:
        return True
    if p[i] != b':':
        return False
    for j in range(i + 1, n):
        if not (48 <= <unsigned char>p[j] <= 57):
            return False
    return True


# --- Buffer pool ----------------------------------------------------------------
# A worker makes one parser per connection. Their four malloc'd blocks are
# kept on a small stack when a parser dies and handed to the next one, so a
# short connection costs no malloc/free. Only modest buffers are kept.

cdef enum:
    POOL_MAX = 32
    POOL_KEEP_CAP = 65536

cdef struct Pooled:
    char* buf
    Py_ssize_t cap
    LineRef* lines
    Py_ssize_t lines_cap
    FieldRef* fields
    Py_ssize_t fields_cap
    char* hbuf
    Py_ssize_t hcap

cdef Pooled POOL[POOL_MAX]
cdef int POOL_N = 0


cdef inline void _pool_push(RequestParser p) noexcept:
    global POOL_N
    cdef Pooled* b = &POOL[POOL_N]
    b.buf, b.cap = p.buf, p.cap
    b.lines, b.lines_cap = p.lines, p.lines_cap
    b.fields, b.fields_cap = p.fields, p.fields_cap
    b.hbuf, b.hcap = p.hbuf, p.hcap
    POOL_N += 1
    # The pool owns the blocks now.
    p.buf = NULL
    p.lines = NULL
    p.fields = NULL
    p.hbuf = NULL


cdef inline void _pool_pop(RequestParser p) noexcept:
    global POOL_N
    POOL_N -= 1
    cdef Pooled* b = &POOL[POOL_N]
    p.buf, p.cap = b.buf, b.cap
    p.lines, p.lines_cap = b.lines, b.lines_cap
    p.fields, p.fields_cap = b.fields, b.fields_cap
    p.hbuf, p.hcap = b.hbuf, b.hcap


_SECURE_CACHE = {}


cdef object _last_spec = None
cdef list _last_list = None


cdef list _secure_list(object spec):
    """[(NAME bytes upper-cased, value bytes)], shared between parsers with the
    same setting (a worker builds one parser per connection, always from the
    same settings object, so the identity check nearly always hits)."""
    global _last_spec, _last_list
    if spec is _last_spec and _last_list is not None:
        return _last_list
    try:
        _last_list = _SECURE_CACHE[spec]
        _last_spec = spec
        return _last_list
    except (KeyError, TypeError):
        pass
    items = spec.items() if isinstance(spec, dict) else (spec or ())
    out = []
    for name, value in items:
        if isinstance(name, str):
            name = name.encode("latin-1")
        if isinstance(value, str):
            value = value.encode("latin-1")
        out.append((bytes(name).upper(), bytes(value)))
    try:
        if len(_SECURE_CACHE) < 16:
            _SECURE_CACHE[spec] = out
    except TypeError:
        pass
    return out


@cython.final
@cython.freelist(16)
cdef class RequestParser:
    """Incremental HTTP/1.x request parser. See the module docstring."""

    def __cinit__(self):
        self.buf = NULL  # a freelist object may hold stale pointers
        self.lines = NULL
        self.fields = NULL
        self.hbuf = NULL
        self._acquire()

    cdef int _acquire(self) except -1:
        """Take the four blocks (from the pool, else malloc); a no-op when held."""
        if self.buf != NULL:
            return 0
        if POOL_N > 0:
            _pool_pop(self)
            return 0
        self.buf = <char*>malloc(INITIAL_CAP)
        self.cap = INITIAL_CAP
        self.lines_cap = 32
        self.lines = <LineRef*>malloc(self.lines_cap * sizeof(LineRef))
        self.fields_cap = 32
        self.fields = <FieldRef*>malloc(self.fields_cap * sizeof(FieldRef))
        self.hcap = 1024
        self.hbuf = <char*>malloc(self.hcap)
        if self.buf == NULL or self.lines == NULL or self.fields == NULL or self.hbuf == NULL:
            self._free_blocks()
            raise MemoryError()
        return 0

    cdef void _free_blocks(self) noexcept:
        """Free the four blocks (any may be NULL) and forget them."""
        free(self.buf)
        free(self.lines)
        free(self.fields)
        free(self.hbuf)
        self.buf = NULL
        self.lines = NULL
        self.fields = NULL
        self.hbuf = NULL

    cdef int release_buffers(self) except -1:
        """Between requests with nothing buffered (an idle keep-alive
        connection): hand the four blocks back (pool, else free) so an idle
        connection holds none; the next recv_buffer()/feed() takes them
        again. 0 (nothing done) in any other state, 1 when released."""
        if self.buf == NULL or self.pos != self.end or self.dead:
            return 0
        if self.state == ST_DONE:
            self.state = ST_HEAD  # finish(), as next_head() would do
            self._reset_request()
        if self.state != ST_HEAD or self.nlines or self.rl_done or not self.proxy_done:
            return 0  # a head (or PROXY line) in progress
        self.pos = self.end = 0
        if POOL_N < POOL_MAX and self.cap <= POOL_KEEP_CAP:
            _pool_push(self)
        else:
            self._free_blocks()
        self.cap = self.lines_cap = self.fields_cap = self.hcap = 0
        return 1

    def __dealloc__(self):
        if (POOL_N < POOL_MAX and self.buf != NULL and self.lines != NULL
                and self.fields != NULL and self.hbuf != NULL and self.cap <= POOL_KEEP_CAP):
            _pool_push(self)
            return
        self._free_blocks()

    def __init__(
        self,
        *,
        limit_request_line=4094,
        limit_request_fields=100,
        limit_request_field_size=8190,
        limit_request_headers_total=65536,
        limit_request_body=0,
        header_map="drop",
        permit_obsolete_folding=False,
        permit_unconventional_http_method=False,
        casefold_http_method=False,
        strip_header_spaces=False,
        permit_missing_host=False,
        secure_scheme_headers=(
            ("X-FORWARDED-PROTOCOL", "ssl"),
            ("X-FORWARDED-PROTO", "https"),
            ("X-FORWARDED-SSL", "on"),
        ),
        proxy_protocol="off",
        forwarder_headers=("SCRIPT_NAME", "PATH_INFO"),
    ):
        cdef Py_ssize_t v = limit_request_line
        # Gunicorn: negative, 0 (its "unlimited") and anything above 8190 all
        # end up at 8190 for us: a request line is never unbounded.
        self.limit_request_line = MAX_REQUEST_LINE if (v <= 0 or v > MAX_REQUEST_LINE) else v
        v = limit_request_fields
        self.limit_request_fields = MAX_FIELDS if (v <= 0 or v > MAX_FIELDS) else v
        v = limit_request_field_size
        self.limit_request_field_size = DEFAULT_FIELD_SIZE if v <= 0 else v
        v = limit_request_headers_total
        if v <= 0:
            # Gunicorn's max_buffer_headers: every field at its largest.
            v = self.limit_request_fields * (self.limit_request_field_size + 2) + 4
        self.limit_request_headers_total = v
        self.limit_request_body = limit_request_body if limit_request_body > 0 else 0
        if header_map == "drop":
            self.header_map = HM_DROP
        elif header_map == "refuse":
            self.header_map = HM_REFUSE
        elif header_map == "dangerous":
            self.header_map = HM_DANGEROUS
        else:
            raise ValueError(f"header_map must be drop, refuse or dangerous, not {header_map!r}")
        self.permit_obsolete_folding = permit_obsolete_folding
        self.permit_unconventional_http_method = permit_unconventional_http_method
        self.casefold_http_method = casefold_http_method
        self.strip_header_spaces = strip_header_spaces
        self.permit_missing_host = permit_missing_host
        self._secure_headers = _secure_list(secure_scheme_headers)
        # Kept as given (upper-case str names, or "*"): looked at only for a
        # field name with '_' from a trusted peer, so nothing per connection.
        self._forwarder = tuple(forwarder_headers)
        if proxy_protocol is None or proxy_protocol is False or proxy_protocol == "off":
            self.proxy_protocol = PP_OFF
        elif proxy_protocol in (True, "auto"):
            self.proxy_protocol = PP_AUTO
        elif proxy_protocol == "v1":
            self.proxy_protocol = PP_V1
        elif proxy_protocol == "v2":
            self.proxy_protocol = PP_V2
        else:
            raise ValueError(f"proxy_protocol must be off, v1, v2 or auto, not {proxy_protocol!r}")
        # Not trusted until the connection says the peer is in
        # forwarded_allow_ips / proxy_allow_ips: spoofed scheme headers and
        # PROXY lines must never be honoured by default.
        self.trusted = False
        self.proxy_allowed = False
        self.proxy_done = self.proxy_protocol == PP_OFF
        self.proxy_info = None
        self.dead = False
        self.eof = False
        self.state = ST_HEAD
        self._reset_request()

    # ------------------------------------------------------------------ buffer

    cdef int _reserve(self, Py_ssize_t need) except -1:
        """Make room for need more bytes after end: compact, then grow."""
        cdef Py_ssize_t live, newcap
        cdef char* nb
        if self.cap - self.end >= need:
            return 0
        live = self.end - self.pos
        if self.pos > 0:
            if live:
                memmove(self.buf, self.buf + self.pos, live)
            self.pos = 0
            self.end = live
            if self.cap - self.end >= need:
                return 0
        newcap = self.cap * 2
        while newcap - live < need:
            newcap *= 2
        nb = <char*>realloc(self.buf, newcap)
        if nb == NULL:
            raise MemoryError()
        self.buf = nb
        self.cap = newcap
        return 0

    cdef char* recv_buffer(self, Py_ssize_t* avail) except NULL:
        if self.dead:
            self._fail(self.error, self.error_detail)
        self._acquire()
        if self.pos == self.end:
            self.pos = self.end = 0
        self._reserve(MIN_RECV)
        avail[0] = self.cap - self.end
        return self.buf + self.end

    cdef int recv_commit(self, Py_ssize_t n) except -1:
        if self.dead:
            self._fail(self.error, self.error_detail)
        if n < 0 or n > self.cap - self.end:
            raise ValueError("recv_commit: more bytes than recv_buffer offered")
        self.end += n
        return 0

    cdef Py_ssize_t body_direct(self, Py_ssize_t n) noexcept:
        """How many Content-Length body bytes the connection may receive
        straight into the application's ``bytes``, bypassing the input
        buffer: up to n (the rest of the body if n < 0), and 0 unless the
        body is Content-Length delimited and nothing of it is buffered
        (buffered bytes always go first, so order is kept)."""
        if self.dead or self.eof or self.state != ST_BODY_CL or self.pos != self.end:
            return 0
        if n < 0 or n > self.body_left:
            return <Py_ssize_t>self.body_left
        return n

    cdef int body_direct_commit(self, Py_ssize_t n) except -1:
        """n body bytes were received past the buffer (after body_direct)."""
        if self.state != ST_BODY_CL or n < 0 or n > self.body_left:
            raise ValueError("body_direct_commit: more bytes than the body has left")
        self.body_left -= n
        if self.body_left == 0:
            self.state = ST_DONE
        return 0

    cpdef feed(self, data):
        """Append bytes to the input. Raises the parse error if the parser is dead."""
        cdef Py_buffer view
        if self.dead:
            self._fail(self.error, self.error_detail)
        if self.eof:
            raise RuntimeError("feed() after feed_eof()")
        self._acquire()
        if type(data) is bytes:
            self._append(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._append(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef int _append(self, const char* p, Py_ssize_t n) except -1:
        if n <= 0:
            return 0
        if self.pos == self.end:
            self.pos = self.end = 0
        self._reserve(n)
        memcpy(self.buf + self.end, p, n)
        self.end += n
        return 0

    @property
    def buffered(self):
        """Bytes held that are not consumed yet (a partial head counts)."""
        return self.end - self.pos

    @property
    def body_complete(self):
        """True once the body of the current request has been read to its end."""
        return self.state == ST_DONE

    def rejected_request(self):
        """``(method, target, protocol)`` of a head refused (or timed out)
        after its request line was read, else None: what an access log can
        still say about a refused request (called on the error path only)."""
        if self.state != ST_HEAD or not self.rl_done or self.version is None:
            return None
        if self.tgt_off < 0 or self.pos + self.tgt_off + self.tgt_len > self.end:
            return None
        target = PyUnicode_DecodeLatin1(self.buf + self.pos + self.tgt_off, self.tgt_len, NULL)
        return (self.method, target, S_HTTP11 if self.version is V11 else S_HTTP10)

    # ----------------------------------------------------------------- errors

    cdef int _fail(self, object cls, str detail) except -1:
        self.dead = True
        self.error = cls
        self.error_detail = detail
        raise cls(detail)

    cpdef set_trusted(self, bint trusted):
        """The peer is in forwarded_allow_ips: honour secure_scheme_headers."""
        self.trusted = trusted

    cpdef set_proxy_allowed(self, bint allowed):
        """The peer is in proxy_allow_ips: accept a PROXY protocol header."""
        self.proxy_allowed = allowed

    cpdef feed_eof(self):
        """The peer closed its side (no more input will come).

        A partial head raises NoMoreData at once. A Content-Length body cut
        short ends early, as in Gunicorn (its LengthReader returns what came):
        ``read_body()`` hands out what is buffered, then b"", and keep_alive
        turns False. For a chunked body the layout is only known while
        reading it, so the ``read_body()`` that would need more data raises
        (ChunkMissingTerminator when only a chunk's CRLF or the trailer
        section is missing, else NoMoreData). A complete head still buffered
        is not an error: ``next_head()`` returns it.
        """
        if self.dead:
            self._fail(self.error, self.error_detail)
        self.eof = True
        if self.state == ST_HEAD:
            if self.end > self.pos and not self._scan_head():
                self._fail(NoMoreData, "connection closed inside the request head")
        elif self.state == ST_BODY_CL and self.end - self.pos < self.body_left:
            self.keep_alive = False

    # ------------------------------------------------------------------- head

    cdef int _reset_request(self) except -1:
        self.sc_off = self.sc_scan = self.sc_base = self.sc_end = 0
        self.sc_field_len = 0
        self.sc_nfields = 0
        self.nlines = 0
        self.crlf_skipped = False
        self.rl_done = False
        self.nfields = 0
        self.hflags = 0
        self._headers = None
        self._folded = None
        self._trailers = None
        self.method = None
        self.version = None
        self.keep_alive = False
        self.expect_continue = False
        self.content_length = -1
        self.chunked = False
        self.url_scheme = S_HTTP
        self.body_left = 0
        self.body_total = 0
        return 0

    cpdef object next_head(self):
        """Parse the next request head: the environ dict, or None for more data.

        If the previous request's body was read to its end, ``finish()`` is
        implied.
        """
        if self.dead:
            self._fail(self.error, self.error_detail)
        if self.state != ST_HEAD:
            if self.state != ST_DONE:
                raise RuntimeError("next_head() before the previous body was read to its end")
            self.finish()
        if self._scan_head():
            return self._build_head()
        if self.eof and self.end > self.pos:
            self._fail(NoMoreData, "connection closed inside the request head")
        return None

    cdef int _scan_head(self) except -1:
        """Advance the head scan over the buffered bytes; 1 once complete."""
        if not self.proxy_done:
            if not self._proxy():
                return 0
        if not self.rl_done:
            if not self._scan_request_line():
                return 0
        return self._scan_section(False)

    cdef int _scan_request_line(self) except -1:
        cdef const char* base
        cdef const char* lf
        cdef Py_ssize_t avail, stop, i
        cdef Py_ssize_t lim = self.limit_request_line
        while True:
            base = self.buf + self.pos
            avail = self.end - self.pos
            # The LF of a line within the limit is at index lim + 1 at most.
            stop = avail if avail < lim + 2 else lim + 2
            lf = NULL
            if self.sc_scan < stop:
                lf = <const char*>memchr(base + self.sc_scan, b'\n', stop - self.sc_scan)
            if lf == NULL:
                if avail >= lim + 2:
                    self._fail(LimitRequestLine, f"request line over {lim} bytes")
                self.sc_scan = stop
                return 0
            i = lf - base
            if i == 0 or base[i - 1] != b'\r':
                if i > lim:
                    self._fail(LimitRequestLine, f"request line over {lim} bytes")
                self._fail(InvalidRequestLine, "bare LF in the request line")
            if i == 1:
                # RFC 9112 2.2: a server SHOULD ignore at least one empty
                # line before the request line; Gunicorn ignores exactly one.
                if not self.crlf_skipped:
                    self.crlf_skipped = True
                    self.pos += 2
                    self.sc_scan = 0
                    continue
                self._fail(InvalidRequestLine, "empty request line")
            self._parse_request_line(base, i - 1)
            self.rl_done = True
            self.rl_len = i - 1
            self.sc_base = self.sc_off = self.sc_scan = i + 1
            return 1

    cdef int _parse_request_line(self, const char* p, Py_ssize_t n) except -1:
        """RFC 9112 3: method SP request-target SP HTTP-version, single spaces."""
        cdef const char* sp1 = <const char*>memchr(p, b' ', n)
        cdef const char* sp2
        cdef const char* t
        cdef const char* v
        cdef const char* css
        cdef Py_ssize_t mlen, tlen, vlen, i, a, aend
        cdef unsigned char c
        if sp1 == NULL:
            self._fail(InvalidRequestLine, "request line without spaces")
        mlen = sp1 - p
        sp2 = <const char*>memchr(sp1 + 1, b' ', n - mlen - 1)
        if sp2 == NULL:
            self._fail(InvalidRequestLine, "request line needs method, target and version")
        t = sp1 + 1
        tlen = sp2 - t
        v = sp2 + 1
        vlen = (p + n) - v

        # Method: an RFC 9110 token; by default also Gunicorn's conventional
        # shape (upper case, no '#', 3 to 20 bytes), which every IANA method has.
        if mlen == 0:
            self._fail(InvalidRequestMethod, "empty method")
        for i in range(mlen):
            c = <unsigned char>p[i]
            if not TCHAR[c]:
                self._fail(InvalidRequestMethod, "method is not a token")
            if not self.permit_unconventional_http_method and ((97 <= c <= 122) or c == 35):
                self._fail(InvalidRequestMethod, "lower case or '#' in method")
        if not self.permit_unconventional_http_method and not (3 <= mlen <= 20):
            self._fail(InvalidRequestMethod, "method length outside 3..20")
        if self.casefold_http_method:
            m = _upper_key(p, mlen, False)
        else:
            m = _known_method(p, mlen)
            if m is None:
                m = _ascii_str(p, mlen)
        self.method = m

        # Target: printable ASCII only (RFC 9112 3.2, RFC 3986 2), never empty.
        if tlen == 0:
            self._fail(InvalidRequestLine, "empty request target")
        for i in range(tlen):
            if not TARGET_OK[<unsigned char>t[i]]:
                self._fail(InvalidRequestLine, "byte outside printable ASCII in the target")
        self.tgt_off = t - (self.buf + self.pos)
        self.tgt_len = tlen
        self.tgt_authority = False
        self.path_start = 0
        if t[0] == b'/':
            pass                                    # origin-form
        elif tlen == 1 and t[0] == b'*':
            if m != M_OPTIONS:                      # RFC 9112 3.2.4
                self._fail(InvalidRequestLine, "asterisk-form is only for OPTIONS")
        else:
            css = NULL
            for i in range(tlen - 2):
                if t[i] == b':' and t[i + 1] == b'/' and t[i + 2] == b'/':
                    css = t + i
                    break
            if css == NULL:
                if m != M_CONNECT:                  # RFC 9112 3.2.3
                    self._fail(InvalidRequestLine, "authority-form is only for CONNECT")
                self.tgt_authority = True
            else:
                # absolute-form (RFC 9112 3.2.2): scheme "://" authority path
                i = css - t
                if i == 0 or not ((65 <= <unsigned char>t[0] <= 90) or (97 <= <unsigned char>t[0] <= 122)):
                    self._fail(InvalidRequestLine, "invalid scheme in absolute-form target")
                for a in range(1, i):
                    c = <unsigned char>t[a]
                    if not ((65 <= c <= 90) or (97 <= c <= 122) or (48 <= c <= 57)
                            or c == 43 or c == 45 or c == 46):
                        self._fail(InvalidRequestLine, "invalid scheme in absolute-form target")
                a = i + 3
                aend = a
                while aend < tlen and t[aend] != b'/' and t[aend] != b'?' and t[aend] != b'#':
                    aend += 1
                if not _valid_authority(t + a, aend - a):
                    self._fail(InvalidRequestLine, "invalid authority in absolute-form target")
                self.path_start = aend

        # Version: HTTP/1.0 or HTTP/1.x (RFC 9112 2.3; HTTP/2 never arrives
        # as text, HTTP/0.9 has no version). A higher minor version is served
        # as HTTP/1.1, the highest we speak (RFC 9110 2.5; nginx does so).
        if vlen != 8 or memcmp(v, b"HTTP/1.", 7) != 0 or not (b'0' <= v[7] <= b'9'):
            self._fail(InvalidHTTPVersion, "only HTTP/1.x is served")
        self.version = V10 if v[7] == b'0' else V11
        return 0

    cdef bint _empty_host_ok(self, Py_ssize_t n) noexcept:
        """An empty Host names the target URI's authority (RFC 9112 3.3),
        and an http URI with an empty host is invalid (RFC 9110 4.2.1: 400);
        only an absolute- or authority-form target, whose own authority wins
        over Host (RFC 9112 3.2.2), makes it harmless."""
        return n == 0 and (self.path_start > 0 or self.tgt_authority)

    cdef int _scan_section(self, bint trailer) except -1:
        """Scan field lines up to the empty line; 1 when the section is complete.

        Offsets are relative to pos. The checks that a partial line can
        already prove (field size, section size) run before the LF arrives,
        and at the LF they run before the bare-LF check, so the error class
        does not depend on how the input was split.
        """
        cdef const char* base
        cdef const char* lf
        cdef Py_ssize_t avail, i, ll, flen, partial
        cdef Py_ssize_t lim_field = self.limit_request_field_size
        cdef Py_ssize_t lim_total = self.limit_request_headers_total
        cdef bint cont
        if self.sc_end:
            return 1
        while True:
            base = self.buf + self.pos
            avail = self.end - self.pos
            lf = NULL
            if self.sc_scan < avail:
                lf = <const char*>memchr(base + self.sc_scan, b'\n', avail - self.sc_scan)
            if lf == NULL:
                partial = avail - self.sc_off
                if partial > 0:
                    cont = (self.sc_nfields > 0 and self.permit_obsolete_folding
                            and is_ws(base[self.sc_off]))
                    flen = (self.sc_field_len if cont else 0) + partial + 1
                    if flen > lim_field:
                        self._fail(LimitRequestHeaders, "field over limit_request_field_size")
                if avail - self.sc_base + 1 > lim_total:
                    self._fail(LimitRequestHeaders, "header section over its size limit")
                self.sc_scan = avail
                return 0
            i = lf - base
            ll = i - self.sc_off
            if ll == 1 and base[self.sc_off] == b'\r':
                if i + 1 - self.sc_base > lim_total:
                    self._fail(LimitRequestHeaders, "header section over its size limit")
                self.sc_end = i + 1
                return 1
            cont = (ll > 0 and self.sc_nfields > 0 and self.permit_obsolete_folding
                    and is_ws(base[self.sc_off]))
            flen = (self.sc_field_len if cont else 0) + ll + 1
            if flen > lim_field:
                self._fail(LimitRequestHeaders, "field over limit_request_field_size")
            if i + 1 - self.sc_base > lim_total:
                self._fail(LimitRequestHeaders, "header section over its size limit")
            if ll == 0 or base[i - 1] != b'\r':
                self._fail(InvalidHeader, "bare LF as line terminator")
            if not cont:
                self.sc_nfields += 1
                if self.sc_nfields > self.limit_request_fields:
                    self._fail(LimitRequestHeaders, "more than limit_request_fields fields")
            self._add_line(self.sc_off, ll - 1)
            self.sc_field_len = flen
            self.sc_off = self.sc_scan = i + 1

    cdef int _add_line(self, Py_ssize_t off, Py_ssize_t n) except -1:
        cdef LineRef* nl
        if self.nlines == self.lines_cap:
            nl = <LineRef*>realloc(self.lines, 2 * self.lines_cap * sizeof(LineRef))
            if nl == NULL:
                raise MemoryError()
            self.lines = nl
            self.lines_cap *= 2
        self.lines[self.nlines].off = off
        self.lines[self.nlines].len = n
        self.nlines += 1
        return 0

    cdef object _build_head(self):
        cdef const char* base = self.buf + self.pos
        cdef Py_ssize_t hlen = self.sc_end - self.sc_base
        cdef const char* t = base + self.tgt_off
        cdef Py_ssize_t tlen = self.tgt_len
        cdef Py_ssize_t s, e, q
        cdef const char* h
        cdef const char* qm
        cdef char* nb
        if hlen > self.hcap:
            nb = <char*>realloc(self.hbuf, hlen)
            if nb == NULL:
                raise MemoryError()
            self.hbuf = nb
            self.hcap = hlen
        memcpy(self.hbuf, base + self.sc_base, hlen)

        env = dict_presized(self.nlines + 6)
        env[K_METHOD] = self.method
        if self.tgt_authority or (tlen == 1 and t[0] == b'*'):
            env[K_PATH] = _ascii_str(t, tlen)
            env[K_QUERY] = S_EMPTY
        else:
            s = self.path_start
            h = <const char*>memchr(t + s, b'#', tlen - s)
            e = (h - t) if h != NULL else tlen
            qm = <const char*>memchr(t + s, b'?', e - s)
            if qm != NULL:
                q = qm - t
                env[K_PATH] = _unquote_latin1(t + s, q - s)
                env[K_QUERY] = _ascii_str(qm + 1, e - q - 1)
            else:
                env[K_PATH] = _unquote_latin1(t + s, e - s)
                env[K_QUERY] = S_EMPTY
        env[K_RAW] = _ascii_str(t, tlen)
        env[K_PROTO] = S_HTTP11 if self.version is V11 else S_HTTP10

        self._parse_fields(base, env, False)
        self._framing()
        self.pos += self.sc_end
        if self.chunked:
            self.state = ST_CHUNK_SIZE
            self.sc_scan = 0
        elif self.content_length > 0:
            self.state = ST_BODY_CL
            self.body_left = self.content_length
        else:
            self.state = ST_DONE
        return env

    cdef int _parse_fields(self, const char* base, dict env, bint trailer) except -1:
        """Validate the scanned field lines and apply them (RFC 9110 5, Gunicorn
        27 parse_headers + HeaderPolicy order): name, value, fold, then policy.
        Each step is one of the inline _field_* functions below the class."""
        cdef Py_ssize_t k = 0, nlen, vlen
        cdef const char* lp
        cdef const char* v
        cdef const char* ve
        cdef int kid, vclass
        cdef bint kept
        cdef bint scheme_seen = False
        cdef bint scheme_https = False
        cdef bint check_scheme = (not trailer) and self.trusted and len(self._secure_headers) > 0
        cdef bint seen_host = False, seen_ctype = False
        cdef object folded
        while k < self.nlines:
            lp = base + self.lines[k].off
            ve = lp + self.lines[k].len
            kid = _field_name(self, lp, self.lines[k].len, trailer, &nlen, &v)
            vclass = _field_value_span(self, &v, &ve)
            k += 1
            folded = None
            if k < self.nlines and is_ws(base[self.lines[k].off]):
                folded = _field_unfold(self, base, &k, v, ve)
            vlen = ve - v
            _field_policy(self, kid, v, vlen, folded, trailer, &seen_host, &seen_ctype)
            if check_scheme:
                _field_scheme(self, lp, nlen, v, vlen, folded, &scheme_seen, &scheme_https)
            kept = _field_kept(self, kid, lp, nlen)
            if trailer:
                if kept:
                    _field_trailer(self, kid, lp, nlen, v, vlen, folded)
                continue
            _field_record(self, base, lp, nlen, kid, kept, v, vlen, folded)
            if kept:
                _field_environ(env, kid, lp, nlen, folded, v, vlen, vclass)
        if not trailer:
            if scheme_seen:
                self.url_scheme = S_HTTPS if scheme_https else S_HTTP
            if seen_host:
                self.hflags |= HF_HOST
        return 0

    cdef int _connection_tokens(self, const char* v, Py_ssize_t n) except -1:
        """RFC 9112 9.3: every token of every Connection field counts."""
        cdef int found = connection_tokens(v, n)
        if found & CONN_CLOSE:
            self.hflags |= HF_CLOSE
        if found & CONN_KEEPALIVE:
            self.hflags |= HF_KEEPALIVE
        return 0

    cdef const char* _field_value(self, Py_ssize_t fi, Py_ssize_t* n) except NULL:
        cdef FieldRef* f = self.fields + fi
        if f.val_off >= 0:
            n[0] = f.val_len
            return self.hbuf + f.val_off
        b = (<str>self._folded[-1 - f.val_off]).encode("latin-1")
        self._tmp = b
        n[0] = len(b)
        return PyBytes_AS_STRING(b)

    cdef int _framing(self) except -1:
        """RFC 9112 6.1-6.3 body framing, with Gunicorn 27's set_body_reader rules."""
        cdef Py_ssize_t fi, n, i, s, e, cl_n = 0
        cdef const char* v
        cdef const char* cl_v = NULL
        cdef Py_ssize_t cl_len = 0
        cdef bint te = False, chunked = False, force_close = False
        cdef long long cl = 0
        for fi in range(self.nfields):
            if self.fields[fi].known == ID_CONTENT_LENGTH:
                cl_n += 1
                if cl_n > 1:
                    self._fail(InvalidHeader, "duplicate Content-Length")
                cl_v = self._field_value(fi, &cl_len)
                if cl_len == 0 or cl_len > MAX_CL_DIGITS:
                    self._fail(InvalidHeader, "invalid Content-Length")
                cl = 0
                for i in range(cl_len):
                    if not (48 <= <unsigned char>cl_v[i] <= 57):
                        self._fail(InvalidHeader, "invalid Content-Length")
                    cl = cl * 10 + (cl_v[i] - 48)
            elif self.fields[fi].known == ID_TRANSFER_ENCODING:
                te = True
                v = self._field_value(fi, &n)
                i = 0
                while i <= n:
                    s = i
                    while i < n and v[i] != b',':
                        i += 1
                    e = i
                    i += 1
                    while s < e and is_ws(v[s]):
                        s += 1
                    while e > s and is_ws(v[e - 1]):
                        e -= 1
                    if e == s:
                        continue  # RFC 9110 5.6.1: empty list elements are ignored
                    if ieq(v + s, e - s, b"chunked", 7):
                        # stacked chunking is never intended
                        if chunked:
                            self._fail(InvalidHeader, "chunked applied twice")
                        chunked = True
                    elif ieq(v + s, e - s, b"identity", 8):
                        if chunked:
                            self._fail(InvalidHeader, "coding after chunked")
                    elif (ieq(v + s, e - s, b"gzip", 4) or ieq(v + s, e - s, b"deflate", 7)
                          or ieq(v + s, e - s, b"compress", 8)):
                        # RFC 9112 6.1: chunked must be the final coding.
                        if chunked:
                            self._fail(InvalidHeader, "coding after chunked")
                        force_close = True
                    else:
                        self._fail(UnsupportedTransferCoding, "unsupported transfer coding")
        if te and not chunked:
            # RFC 9112 6.3: a request whose TE does not end in chunked has no
            # determinable length: 400.
            self._fail(InvalidHeader, "Transfer-Encoding without final chunked")
        if chunked:
            if self.version is V10:
                # RFC 9112 6.1: chunked framing in HTTP/1.0 is faulty.
                self._fail(InvalidHeader, "Transfer-Encoding in HTTP/1.0")
            if cl_n:
                # RFC 9112 6.1: CL with TE is a smuggling attempt or a broken proxy.
                self._fail(InvalidHeader, "Content-Length with Transfer-Encoding")
            self.chunked = True
            self.content_length = -1
        elif cl_n:
            self.content_length = cl
            if self.limit_request_body and cl > self.limit_request_body:
                self._fail(RequestBodyTooLarge, "Content-Length over limit_request_body")
        if (self.version is V11 and not (self.hflags & HF_HOST)
                and not self.permit_missing_host):
            self._fail(MissingHost, "HTTP/1.1 request without Host")
        if self.version is V11:
            self.keep_alive = not (self.hflags & HF_CLOSE)
        else:
            self.keep_alive = bool(self.hflags & HF_KEEPALIVE) and not (self.hflags & HF_CLOSE)
        if force_close or self.method == M_CONNECT:
            # A compressed body framing we pass through, or a tunnel: never reuse.
            self.keep_alive = False
        return 0

    @property
    def headers(self):
        """The fields of the current head, in order: [(NAME, value)] (names
        upper-cased, values latin-1), without fields that header_map dropped."""
        cdef Py_ssize_t fi
        cdef FieldRef* f
        if self._headers is None:
            out = []
            for fi in range(self.nfields):
                f = self.fields + fi
                if not f.kept:
                    continue
                if f.known >= 0:
                    name = <object>KNOWN_UPPER[f.known]
                else:
                    name = _upper_key(self.hbuf + f.name_off, f.name_len, False)
                if f.val_off >= 0:
                    value = PyUnicode_DecodeLatin1(self.hbuf + f.val_off, f.val_len, NULL)
                else:
                    value = self._folded[-1 - f.val_off]
                out.append((name, value))
            self._headers = out
        return self._headers

    @property
    def trailers(self):
        """Trailer fields of a chunked body once it is complete: [(NAME, value)]."""
        return self._trailers if self._trailers is not None else []

    # ------------------------------------------------------------------- body

    cpdef object read_body(self, Py_ssize_t n=-1):
        """Up to n bytes of the decoded body (all available if n < 0).

        None: need more data. b"": the body is complete (then call finish(),
        or next_head() directly).
        """
        cdef Py_ssize_t avail, k
        if self.dead:
            self._fail(self.error, self.error_detail)
        if n == 0:
            raise ValueError("read_body(0) is ambiguous: b'' means end of body")
        if self.state == ST_DONE:
            return b""
        if self.state == ST_HEAD:
            raise RuntimeError("read_body() without a request head")
        if self.state == ST_BODY_CL:
            avail = self.end - self.pos
            if avail == 0:
                if self.eof:
                    # Cut short by the peer: the body simply ends here.
                    self.state = ST_DONE
                    self.keep_alive = False
                    return b""
                return None
            k = avail if avail < self.body_left else self.body_left
            if 0 < n < k:
                k = n
            data = PyBytes_FromStringAndSize(self.buf + self.pos, k)
            self.pos += k
            self.body_left -= k
            if self.body_left == 0:
                self.state = ST_DONE
            return data
        return self._read_chunked(n)

    cdef object _read_chunked(self, Py_ssize_t n):
        cdef Py_ssize_t got = 0, avail, k
        cdef object first = None
        cdef list more = None
        while True:
            if self.state == ST_CHUNK_SIZE:
                if not self._chunk_size_line():
                    break
            elif self.state == ST_CHUNK_DATA:
                avail = self.end - self.pos
                if avail == 0:
                    break
                k = avail if avail < self.body_left else <Py_ssize_t>self.body_left
                if n > 0 and k > n - got:
                    k = n - got
                piece = PyBytes_FromStringAndSize(self.buf + self.pos, k)
                self.pos += k
                self.body_left -= k
                got += k
                if self.body_left == 0:
                    self.state = ST_CHUNK_CRLF
                if first is None:
                    first = piece
                else:
                    if more is None:
                        more = [first]
                    more.append(piece)
                if n > 0 and got >= n:
                    break
            elif self.state == ST_CHUNK_CRLF:
                # RFC 9112 7.1: chunk-data is followed by CRLF.
                avail = self.end - self.pos
                if avail == 0:
                    break
                if self.buf[self.pos] != b'\r':
                    self._fail(ChunkMissingTerminator, "no CRLF after chunk data")
                if avail < 2:
                    break
                if self.buf[self.pos + 1] != b'\n':
                    self._fail(ChunkMissingTerminator, "no CRLF after chunk data")
                self.pos += 2
                self.state = ST_CHUNK_SIZE
                self.sc_scan = 0
            elif self.state == ST_TRAILERS:
                if not self._scan_section(True):
                    break
                self._parse_fields(self.buf + self.pos, None, True)
                self.pos += self.sc_end
                self.state = ST_DONE
                break
            else:
                break
        if more is not None:
            return b"".join(more)
        if first is not None:
            return first
        if self.state == ST_DONE:
            return b""
        if self.eof:
            if self.state == ST_CHUNK_CRLF or self.state == ST_TRAILERS:
                self._fail(ChunkMissingTerminator, "connection closed before the end of the chunked body")
            self._fail(NoMoreData, "connection closed inside the chunked body")
        return None

    cdef int _chunk_size_line(self) except -1:
        """RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF; 1 when consumed."""
        cdef const char* base = self.buf + self.pos
        cdef Py_ssize_t avail = self.end - self.pos
        cdef Py_ssize_t stop = avail if avail < MAX_CHUNK_LINE else MAX_CHUNK_LINE
        cdef const char* lf = NULL
        cdef const char* semi
        cdef Py_ssize_t i, ln, szend, j
        cdef bint bare
        cdef unsigned long long size = 0
        if self.sc_scan < stop:
            lf = <const char*>memchr(base + self.sc_scan, b'\n', stop - self.sc_scan)
        if lf == NULL:
            if avail >= MAX_CHUNK_LINE:
                self._fail(InvalidChunkSize, f"chunk size line over {MAX_CHUNK_LINE} bytes")
            self.sc_scan = stop
            return 0
        i = lf - base
        bare = i == 0 or base[i - 1] != b'\r'
        ln = i if bare else i - 1
        semi = <const char*>memchr(base, b';', ln)
        szend = (semi - base) if semi != NULL else ln
        if semi != NULL:
            if memchr(semi, b'\r', ln - szend) != NULL:
                self._fail(InvalidChunkExtension, "bare CR in chunk extension")
            while szend > 0 and is_ws(base[szend - 1]):
                szend -= 1                          # BWS before ';'
        if szend == 0 or szend > MAX_CHUNK_DIGITS:
            self._fail(InvalidChunkSize, "invalid chunk size")
        for j in range(szend):
            if HEXVAL[<unsigned char>base[j]] < 0:
                self._fail(InvalidChunkSize, "invalid chunk size")
            size = (size << 4) | <unsigned long long>HEXVAL[<unsigned char>base[j]]
        if bare:
            # Where Gunicorn would read on to the next CRLF the LF falls in
            # the size (no ';' yet) or in the extension.
            if semi == NULL:
                self._fail(InvalidChunkSize, "bare LF after chunk size")
            self._fail(InvalidChunkExtension, "bare LF in chunk extension")
        if size > <unsigned long long>0x7FFFFFFFFFFFFFFF:
            self._fail(InvalidChunkSize, "chunk size overflow")
        if semi != NULL and not _valid_chunk_ext(semi, ln - (semi - base)):
            self._fail(InvalidChunkExtension, "invalid chunk extension")
        if self.limit_request_body and <long long>size > self.limit_request_body - self.body_total:
            self._fail(RequestBodyTooLarge, "chunked body over limit_request_body")
        self.body_total += <long long>size
        self.pos += i + 1
        if size == 0:
            self.state = ST_TRAILERS
            self.sc_off = self.sc_scan = self.sc_base = self.sc_end = 0
            self.sc_field_len = 0
            self.sc_nfields = 0
            self.nlines = 0
        else:
            self.state = ST_CHUNK_DATA
            self.body_left = <long long>size
        return 1

    cpdef finish(self):
        """End the current request; the parser is ready for the next head.
        The body must have been read to its end (read_body() returned b"")."""
        if self.dead:
            self._fail(self.error, self.error_detail)
        if self.state == ST_HEAD:
            return
        if self.state != ST_DONE:
            raise RuntimeError("finish() before the body was read to its end")
        self.state = ST_HEAD
        self._reset_request()

    # -------------------------------------------------------- PROXY protocol

    cdef int _proxy(self) except -1:
        """PROXY protocol header at the start of the connection (haproxy
        proxy-protocol.txt). 1: done (consumed, or absent), 0: need more."""
        cdef const char* base = self.buf + self.pos
        cdef Py_ssize_t avail = self.end - self.pos
        cdef Py_ssize_t m
        cdef int mode = self.proxy_protocol
        if avail == 0:
            return 0
        if mode == PP_V2 or mode == PP_AUTO:
            m = avail if avail < 12 else 12
            if memcmp(base, PP_V2_SIG, m) == 0:
                if m < 12:
                    return 0
                if not self.proxy_allowed:
                    self._fail(ForbiddenProxyRequest, "PROXY header from a peer not in proxy_allow_ips")
                return self._proxy_v2()
        if mode == PP_V1 or mode == PP_AUTO:
            m = avail if avail < 6 else 6
            if memcmp(base, b"PROXY ", m) == 0:
                if m < 6:
                    return 0
                if not self.proxy_allowed:
                    self._fail(ForbiddenProxyRequest, "PROXY header from a peer not in proxy_allow_ips")
                return self._proxy_v1()
        self.proxy_done = True
        return 1

    cdef int _proxy_v1(self) except -1:
        cdef const char* base = self.buf + self.pos
        cdef Py_ssize_t avail = self.end - self.pos
        cdef Py_ssize_t stop = avail if avail < PROXY_V1_MAX else PROXY_V1_MAX
        cdef const char* lf = <const char*>memchr(base, b'\n', stop)
        cdef Py_ssize_t i, ln
        cdef int af = 0
        cdef unsigned char addr[16]
        if lf == NULL:
            if avail >= PROXY_V1_MAX:
                self._fail(InvalidProxyLine, "PROXY line too long")
            return 0
        i = lf - base
        if base[i - 1] != b'\r':
            self._fail(InvalidProxyLine, "PROXY line must end with CRLF")
        for ln in range(i - 1):
            if not (0x20 <= <unsigned char>base[ln] <= 0x7E):
                self._fail(InvalidProxyLine, "control or non-ASCII byte in PROXY line")
        line = PyBytes_FromStringAndSize(base, i - 1)
        bits = line.split(b" ")
        if len(bits) != 6:
            self._fail(InvalidProxyLine, "PROXY line needs 6 fields")
        proto, src, dst, sport, dport = bits[1], bits[2], bits[3], bits[4], bits[5]
        if proto == b"TCP4":
            af = AF_INET
        elif proto == b"TCP6":
            af = AF_INET6
        else:
            self._fail(InvalidProxyLine, "PROXY protocol must be TCP4 or TCP6")
        if inet_pton(af, src, addr) != 1 or inet_pton(af, dst, addr) != 1:
            self._fail(InvalidProxyLine, "invalid address in PROXY line")
        ports = []
        for p in (sport, dport):
            if not (1 <= len(p) <= 5) or not p.isdigit() or int(p) > 65535:
                self._fail(InvalidProxyLine, "invalid port in PROXY line")
            ports.append(int(p))
        self.proxy_info = (src.decode("ascii"), ports[0], dst.decode("ascii"), ports[1])
        self.pos += i + 1
        self.proxy_done = True
        return 1

    cdef int _proxy_v2(self) except -1:
        cdef const unsigned char* b = <const unsigned char*>(self.buf + self.pos)
        cdef Py_ssize_t avail = self.end - self.pos
        cdef Py_ssize_t length, total
        cdef int cmd, fam, proto
        cdef char s_txt[64]
        cdef char d_txt[64]
        if avail < 16:
            return 0
        if (b[12] >> 4) != 2:
            self._fail(InvalidProxyHeader, "PROXY v2: unsupported version")
        cmd = b[12] & 0x0F
        if cmd > 1:
            self._fail(InvalidProxyHeader, "PROXY v2: unsupported command")
        length = (b[14] << 8) | b[15]
        total = 16 + length
        if avail < total:
            return 0
        fam = b[13] >> 4
        proto = b[13] & 0x0F
        info = None
        if cmd == 1:                                # PROXY; LOCAL carries no addresses
            if proto != 1:
                self._fail(InvalidProxyHeader, "PROXY v2: only TCP is supported")
            if fam == 1:
                if length < 12:
                    self._fail(InvalidProxyHeader, "PROXY v2: short IPv4 address block")
                inet_ntop(AF_INET, b + 16, s_txt, 64)
                inet_ntop(AF_INET, b + 20, d_txt, 64)
                info = (s_txt.decode("ascii"), (b[24] << 8) | b[25],
                        d_txt.decode("ascii"), (b[26] << 8) | b[27])
            elif fam == 2:
                if length < 36:
                    self._fail(InvalidProxyHeader, "PROXY v2: short IPv6 address block")
                inet_ntop(AF_INET6, b + 16, s_txt, 64)
                inet_ntop(AF_INET6, b + 32, d_txt, 64)
                info = (s_txt.decode("ascii"), (b[48] << 8) | b[49],
                        d_txt.decode("ascii"), (b[50] << 8) | b[51])
            elif fam != 0:
                self._fail(InvalidProxyHeader, "PROXY v2: unsupported address family")
        self.proxy_info = info
        self.pos += total
        self.proxy_done = True
        return 1


# --- _parse_fields, step by step ----------------------------------------------
# Module-level cdef inline functions, not methods: RequestParser is not final,
# so a cdef method is an indirect call through its vtable that the C compiler
# cannot inline, and these run for every field line.

cdef inline int _field_name(RequestParser self, const char* lp, Py_ssize_t ll, bint trailer,
                            Py_ssize_t* nlen_out, const char** v_out) except -2:
    """The name of the field line lp[:ll]: its length goes to nlen_out, where
    its value starts to v_out; returns its known-name id, or -1."""
    cdef const char* colon = <const char*>memchr(lp, b':', ll)
    cdef Py_ssize_t nlen, j
    cdef int kid
    if colon == NULL or colon == lp:
        self._fail(InvalidHeader, "field line without a name and colon")
    nlen = colon - lp
    if self.strip_header_spaces:
        while nlen > 0 and is_ws(lp[nlen - 1]):
            nlen -= 1
        if nlen == 0:
            self._fail(InvalidHeaderName, "empty field name")
    # A table hit is an exact (case-folded) match of a token, so only
    # other names need the byte-by-byte token check.
    kid = _known_id(lp, nlen)
    if kid < 0:
        for j in range(nlen):
            if not TCHAR[<unsigned char>lp[j]]:
                self._fail(InvalidHeaderName, "field name is not a token")
    # RFC 9110 6.5.1: fields that frame, route or authenticate the
    # message must not arrive as trailers.
    if trailer and (kid == ID_HOST or kid == ID_CONTENT_LENGTH or kid == ID_TRANSFER_ENCODING
                    or kid == ID_TRAILER or kid == ID_AUTHORIZATION or kid == ID_TE):
        self._fail(InvalidHeaderName, "field not allowed in trailers")
    nlen_out[0] = nlen
    v_out[0] = colon + 1
    return kid


cdef inline int _field_value_span(RequestParser self, const char** v, const char** ve) except -1:
    """Trim the value v[0]:ve[0] (RFC 9110 5.5 OWS) and check its bytes;
    returns its field_value_class, 1 (ASCII) or 2 (with obs-text)."""
    cdef const char* a = v[0]
    cdef const char* b = ve[0]
    cdef int vclass
    while a < b and is_ws(a[0]):
        a += 1
    while b > a and is_ws(b[-1]):
        b -= 1
    vclass = field_value_class(a, b - a)
    if vclass == 0:
        self._fail(InvalidHeader, "control byte in field value")
    v[0] = a
    ve[0] = b
    return vclass


cdef inline object _field_unfold(RequestParser self, const char* base, Py_ssize_t* k,
                                 const char* v, const char* ve):
    """RFC 9112 5.2: obs-fold is obsolete; when allowed, the value v:ve and its
    continuation lines from k[0] on (k advances past them) joined by SP."""
    cdef const char* cp
    cdef const char* ce
    cdef Py_ssize_t j
    if not self.permit_obsolete_folding:
        self._fail(ObsoleteFolding, "obsolete line folding")
    parts = [PyUnicode_DecodeLatin1(v, ve - v, NULL)]
    while k[0] < self.nlines and is_ws(base[self.lines[k[0]].off]):
        cp = base + self.lines[k[0]].off
        ce = cp + self.lines[k[0]].len
        while cp < ce and is_ws(cp[0]):
            cp += 1
        while ce > cp and is_ws(ce[-1]):
            ce -= 1
        for j in range(ce - cp):
            if not FIELD_OK[<unsigned char>cp[j]]:
                self._fail(InvalidHeader, "control byte in field value")
        parts.append(PyUnicode_DecodeLatin1(cp, ce - cp, NULL))
        k[0] += 1
    return " ".join(parts)


cdef inline int _field_policy(RequestParser self, int kid, const char* v, Py_ssize_t vlen,
                              object folded, bint trailer, bint* seen_host,
                              bint* seen_ctype) except -1:
    """Gunicorn's HeaderPolicy for the fields with a rule of their own: Host,
    Content-Type, Expect, Connection."""
    if kid == ID_HOST:
        if seen_host[0]:
            self._fail(InvalidHeader, "duplicate Host")
        seen_host[0] = True
        if folded is not None:
            hb = (<str>folded).encode("latin-1")
            if not _valid_host(hb, len(hb)) and not self._empty_host_ok(len(hb)):
                self._fail(InvalidHeader, "empty Host" if not hb else "invalid Host")
        elif not _valid_host(v, vlen) and not self._empty_host_ok(vlen):
            self._fail(InvalidHeader, "empty Host" if vlen == 0 else "invalid Host")
    elif kid == ID_CONTENT_TYPE:
        if seen_ctype[0]:
            self._fail(InvalidHeader, "duplicate Content-Type")
        seen_ctype[0] = True
    elif kid == ID_EXPECT and not trailer:
        # RFC 9110 10.1.1: only 100-continue is defined; ignore it in
        # HTTP/1.0; anything else is 417.
        if folded is None and ieq(v, vlen, b"100-continue", 12):
            if self.version is V11:
                self.expect_continue = True
        else:
            self._fail(ExpectationFailed, "unsupported expectation")
    elif kid == ID_CONNECTION and not trailer:
        self._connection_tokens(v, vlen)
    return 0


cdef inline int _field_scheme(RequestParser self, const char* lp, Py_ssize_t nlen, const char* v,
                              Py_ssize_t vlen, object folded, bint* seen, bint* https) except -1:
    """secure_scheme_headers from a trusted peer: every one present must agree."""
    cdef Py_ssize_t sidx
    cdef bint secure
    for sidx in range(len(self._secure_headers)):
        sname, svalue = self._secure_headers[sidx]
        if not _name_eq(lp, nlen, sname):
            continue
        if folded is not None:
            secure = (<str>folded).encode("latin-1") == svalue
        else:
            secure = (vlen == len(svalue)
                      and memcmp(v, PyBytes_AS_STRING(svalue), vlen) == 0)
        if seen[0] and secure != https[0]:
            self._fail(InvalidSchemeHeaders, "conflicting secure scheme headers")
        seen[0] = True
        https[0] = secure
    return 0


cdef inline bint _field_kept(RequestParser self, int kid, const char* lp, Py_ssize_t nlen) except -1:
    """Whether the field reaches the environ (header_map decides for '_')."""
    if (kid < 0 and memchr(lp, b'_', nlen) != NULL
            and not (self.trusted and _in_names(lp, nlen, self._forwarder))):
        # '_' and '-' both map to '_' in the environ: X_Forwarded_For
        # would merge into X-Forwarded-For (RFC 9110 17.10). Only a
        # trusted front-end may send the names in forwarder_headers
        # (Gunicorn 22+), e.g. nginx's SCRIPT_NAME.
        if self.header_map == HM_DROP:
            return False
        elif self.header_map == HM_REFUSE:
            self._fail(InvalidHeaderName, "'_' in field name")
    return True


cdef inline int _field_trailer(RequestParser self, int kid, const char* lp, Py_ssize_t nlen,
                               const char* v, Py_ssize_t vlen, object folded) except -1:
    if self._trailers is None:
        self._trailers = []
    if folded is None:
        folded = PyUnicode_DecodeLatin1(v, vlen, NULL)
    self._trailers.append((
        <object>KNOWN_UPPER[kid] if kid >= 0 else _upper_key(lp, nlen, False),
        folded))
    return 0


cdef inline int _field_record(RequestParser self, const char* base, const char* lp,
                              Py_ssize_t nlen, int kid, bint kept, const char* v,
                              Py_ssize_t vlen, object folded) except -1:
    """Note the field for the headers property and for framing."""
    cdef FieldRef* nf
    if self.nfields == self.fields_cap:
        nf = <FieldRef*>realloc(self.fields, 2 * self.fields_cap * sizeof(FieldRef))
        if nf == NULL:
            raise MemoryError()
        self.fields = nf
        self.fields_cap *= 2
    nf = self.fields + self.nfields
    self.nfields += 1
    nf.name_off = (lp - base) - self.sc_base
    nf.name_len = nlen
    nf.known = kid
    nf.kept = kept
    if folded is not None:
        if self._folded is None:
            self._folded = []
        nf.val_off = -1 - len(self._folded)
        nf.val_len = 0
        self._folded.append(folded)
    else:
        nf.val_off = (v - base) - self.sc_base
        nf.val_len = vlen
    return 0


cdef inline int _field_environ(dict env, int kid, const char* lp, Py_ssize_t nlen,
                               object folded, const char* v, Py_ssize_t vlen,
                               int vclass) except -1:
    """HTTP_NAME (CONTENT_TYPE, CONTENT_LENGTH) = value in the environ."""
    cdef PyObject* curp
    if kid >= 0:
        key = <object>KNOWN_KEY[kid]
    else:
        key = _upper_key(lp, nlen, True)
    if folded is not None:
        value = folded
    else:
        value = _ascii_str(v, vlen) if vclass == 1 else PyUnicode_DecodeLatin1(v, vlen, NULL)
    curp = PyDict_SetDefault(env, key, value)
    if curp != <PyObject*>value:
        # repeated field: joined with "," as Gunicorn does (RFC 9110 5.3)
        env[key] = <str>(<object>curp) + "," + value
    return 0


cdef bint _in_names(const char* p, Py_ssize_t n, tuple names) except -1:
    """Field name p[:n] is one of ``names`` (upper-case str), or they hold "*"."""
    for name in names:
        if type(name) is not str:
            continue  # config.py hands us validated str; anything else never matches
        if name == "*" or _name_eq(p, n, (<str>name).encode("latin-1", "replace")):
            return True
    return False


cdef inline bint _name_eq(const char* p, Py_ssize_t n, bytes upper) noexcept:
    """Field name p[:n] equals the upper-case name, ignoring case."""
    cdef Py_ssize_t i
    cdef unsigned char c
    cdef const char* u
    if n != PyBytes_GET_SIZE(upper):
        return False
    u = PyBytes_AS_STRING(upper)
    for i in range(n):
        c = <unsigned char>p[i]
        if 97 <= c <= 122:
            c -= 32
        if c != <unsigned char>u[i]:
            return False
    return True


cdef bint _valid_authority(const char* p, Py_ssize_t n) noexcept:
    """authority = [ userinfo "@" ] host [ ":" port ] (RFC 3986 3.2): brackets
    only around an IP-literal, as urllib.parse.urlsplit insists."""
    cdef const char* at = NULL
    cdef Py_ssize_t i
    for i in range(n):
        if p[i] == b'@':
            at = p + i
    if at != NULL:
        if memchr(p, b'[', at - p) != NULL or memchr(p, b']', at - p) != NULL:
            return False
        n -= (at + 1) - p
        p = at + 1
    if memchr(p, b'[', n) == NULL and memchr(p, b']', n) == NULL:
        return True
    return _valid_host(p, n)


cdef bint _valid_chunk_ext(const char* p, Py_ssize_t n) noexcept:
    """RFC 9112 7.1.1: *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )."""
    cdef Py_ssize_t i = 0, s, j
    cdef unsigned char c
    while i < n:
        while i < n and is_ws(p[i]):
            i += 1
        if i >= n or p[i] != b';':
            return False
        i += 1
        while i < n and is_ws(p[i]):
            i += 1
        s = i
        while i < n and TCHAR[<unsigned char>p[i]]:
            i += 1
        if i == s:
            return False
        j = i
        while j < n and is_ws(p[j]):
            j += 1
        if j < n and p[j] == b'=':
            i = j + 1
            while i < n and is_ws(p[i]):
                i += 1
            if i < n and p[i] == b'"':
                i += 1
                while True:
                    if i >= n:
                        return False
                    c = <unsigned char>p[i]
                    if c == 34:
                        i += 1
                        break
                    if c == 92:                     # quoted-pair
                        if i + 1 >= n:
                            return False
                        c = <unsigned char>p[i + 1]
                        if not (c == 9 or 32 <= c <= 126 or c >= 128):
                            return False
                        i += 2
                        continue
                    if not (c == 9 or c == 32 or c == 33 or 35 <= c <= 91
                            or 93 <= c <= 126 or c >= 128):
                        return False
                    i += 1
            else:
                s = i
                while i < n and TCHAR[<unsigned char>p[i]]:
                    i += 1
                if i == s:
                    return False
    return True


# --- Build information ------------------------------------------------------

# Read from the macros the C compiler saw, not from setup.py, so the answer
# describes the code that was actually compiled (a cached .c, another
# compiler picked by CC) and cannot drift from it.
cdef extern from *:
    """
    #if defined(__clang__)
    #define FASTWSGI_CC "clang " __clang_version__
    #elif defined(__GNUC__)
    #define FASTWSGI_CC "GCC " __VERSION__
    #else
    #define FASTWSGI_CC "unknown compiler"
    #endif
    #if defined(__SANITIZE_ADDRESS__)
    #define FASTWSGI_VARIANT "sanitize"
    #elif !defined(NDEBUG) || !defined(__OPTIMIZE__)
    #define FASTWSGI_VARIANT "debug"
    #else
    #define FASTWSGI_VARIANT "release"
    #endif
    """
    const char* FASTWSGI_CC
    const char* FASTWSGI_VARIANT
    const char* PY_VERSION
    unsigned long CYTHON_HEX_VERSION


def build_info():
    """How the compiled core was built: Python headers, Cython, compiler, variant."""
    cdef unsigned long v = CYTHON_HEX_VERSION
    cython_version = f"{(v >> 24) & 0xFF}.{(v >> 16) & 0xFF}.{(v >> 8) & 0xFF}"
    level = v & 0xF0
    if level != 0xF0:  # a pre-release: 0xA0 alpha, 0xB0 beta, 0xC0 candidate
        cython_version += {0xA0: "a", 0xB0: "b", 0xC0: "rc"}.get(level, "?") + str(v & 0x0F)
    return {
        "python": PY_VERSION.decode("ascii"),
        "cython": cython_version,
        "compiler": FASTWSGI_CC.decode("ascii", "replace"),
        "variant": FASTWSGI_VARIANT.decode("ascii"),
    }
