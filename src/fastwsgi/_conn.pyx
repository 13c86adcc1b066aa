# cython: language_level=3
"""Per-connection I/O: recv -> parse -> environ -> app -> send / sendfile.

Theory of operation
-------------------
A worker wraps each accepted socket in a ``Connection`` and calls
``handle_request(app)`` once per request; it returns whether the connection
may carry another one (``accept()`` makes one straight from the listener's
fd with ``accept4``, without a Python socket object). Everything blocking
happens here, in C, with the GIL released: the fd is non-blocking and every
wait is a ``poll()`` bounded by a deadline, so a stalled client cannot pin a
worker (a ``recv``/``send`` of up to ``GIL_HOLD_MAX`` bytes, ``accept4`` on
the non-blocking listener and ``close`` keep the GIL: they cannot wait, and
each costs less than a GIL hand-off to another thread and back):

* the request head must be complete within ``header_timeout`` (else 408 if
  some of it arrived, or a silent close if nothing did);
* each read of the body must make progress within ``body_timeout``;
* each write must make progress within ``timeout``.

Bytes are received straight into the parser's buffer
(``recv_buffer``/``recv_commit``: no copy). The environ is a copy of a
per-connection dict (itself a copy of a per-worker base dict holding the
constant WSGI keys) updated with the parser's CGI keys: two C-level dict
operations per request.

Output goes through the sans-IO ``Response``: a small response is one
``send()`` (head and body in one buffer); a large body goes out with
``writev`` next to its head; a ``wsgi.file_wrapper`` over a regular file
goes out with ``sendfile(2)``, after one ``writev`` of the head and the
file's first bytes (``LEAD_BLOCK``: a full first segment without corking).
When a response ends its connection (every sync response, ``Connection:
close``, HTTP/1.0, an error answer), its last small buffer goes out with
``MSG_MORE`` and the write side is shut down at once (``_send_final``,
``_send_closing``): the FIN rides in the same segment as the last bytes, and
the client sees the end of the response before the access log,
``post_request`` or the iterable's ``close()`` run.
A Content-Length request body read in blocks of 8 KiB or more is received
straight into the ``bytes`` the app gets (``DIRECT_MIN``).

Errors: a ``ParseError`` is answered with its own status (nothing for
``NoMoreData``) and the connection closed. An exception from the app before
the head went out is answered 500 (traceback to the error log, never to the
client); after that the connection is closed, which is the only way left to
tell the client the body is incomplete. The iterable's ``close()`` is called
in every case (PEP 3333). A client found gone (EOF) just before the head
goes out of a response that took the app at least ``CLIENT_LEFT_AFTER`` is
logged 499, nginx's "client closed request", though the response is still
written (``_check_client_left``); a write that makes no progress
for ``timeout`` drops the client with an INFO line. Access lines count the
body bytes the kernel took, not those handed to it.

After a keep-alive response whose request body the app did not read, at
most ``DRAIN_LIMIT`` bytes are read and discarded so the next request can be
parsed; a bigger remainder closes the connection instead (reading it would
cost more than the client opening a new connection).

Proxies. A peer in ``forwarded_allow_ips`` (``*`` = any; a unix-socket peer
always, like Gunicorn) is trusted: the parser honours its secure-scheme
headers (``wsgi.url_scheme``) and its ``SCRIPT_NAME`` or ``Script-Name``
header sets SCRIPT_NAME (the underscore spelling passes the parser only from
a trusted peer, through ``forwarder_headers`` as in Gunicorn; underscores in
field names are otherwise dropped by default, as nginx does). Otherwise
SCRIPT_NAME comes from the ``SCRIPT_NAME``
environment variable (``WorkerSettings.script_name``). Either way it is
stripped from PATH_INFO only at a path-segment boundary; a path outside the
mount point keeps SCRIPT_NAME empty. A PROXY protocol header from a peer in
``proxy_allow_ips`` sets REMOTE_ADDR/REMOTE_PORT (and PROXY_ADDR/PROXY_PORT).

When the connection closes with input possibly still in flight (an error, or
a body the app did not read), it is a lingering close, as nginx's: the write
side is shut down first, then what arrives is read and discarded until the
peer closes or ``LINGER_TIME`` runs out, so the kernel does not answer unread
data with an RST that destroys the response before the peer (a proxy still
sending the body) has read it.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, ECONNABORTED, ECONNRESET, EINTR, EPIPE, EPROTO, errno
from libc.string cimport strerror
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec
from posix.types cimport off_t
from posix.uio cimport iovec, writev

from fastwsgi._parser cimport RequestParser
from fastwsgi._response cimport Response
from libc.string cimport strcmp, strcpy, strlen
from posix.unistd cimport close as c_close, pread

from fastwsgi.includes.net cimport (
    AF_INET,
    AF_INET6,
    INET6_ADDRSTRLEN,
    SOCK_CLOEXEC,
    SOCK_NONBLOCK,
    accept4,
    inet_ntop,
    ntohs,
    sockaddr,
    sockaddr_in,
    sockaddr_in6,
    sockaddr_storage,
    socklen_t,
    MSG_DONTWAIT,
    MSG_MORE,
    MSG_PEEK,
    MSG_NOSIGNAL,
    POLLIN,
    POLLOUT,
    SHUT_RDWR,
    SHUT_WR,
    pollfd,
    poll,
    preadv2,
    recv,
    RWF_NOWAIT,
    send,
    sendfile,
    shutdown,
)

import ipaddress
import os
import stat
import sys

from fastwsgi import SERVER_SOFTWARE, metrics as _metrics
from fastwsgi._response import error_response
from fastwsgi.errors import NoMoreData, ParseError, RequestTimeout, ResponseError
from fastwsgi.wsgi import (
    ClientDisconnected,
    ClientStoppedReading,
    FileWrapper,
    RequestInfo,
    WSGIErrors,
)

# Unread request body discarded to keep a connection alive (ours; see above).
cdef long long C_DRAIN_LIMIT = 65536
DRAIN_LIMIT = C_DRAIN_LIMIT
# The lingering close's budget (Connection.close): how long a connection
# closed with input in flight keeps reading and discarding before it closes.
# nginx's lingering_time is 30 s (with lingering_timeout 5 s per pause);
# Gunicorn's close_graceful waits 2 s but stops after 64 KiB, too little for
# a proxy still sending a large body. 2 s is long enough for a proxy to read
# the answer and close, short enough that a client that keeps sending (or
# stays silent) holds a sync worker no longer than Gunicorn's close does. No
# byte cap: discarding costs no memory and the time bounds the CPU, while a
# cap would cut off only fast senders, i.e. a proxy on the same host, which
# is what this is for. Measurements: bench/README.md, "Early answers behind
# nginx".
LINGER_TIME = 2.0
# Only a response the app took at least this long for looks whether its
# client left (499) first: the look is a syscall, a quarter of a keep-alive
# request's, while a client or proxy gives up after its own timeout, which
# is seconds (nginx's proxy_read_timeout: 60 s), not within a millisecond.
cdef double C_CLIENT_LEFT_AFTER = 0.001
CLIENT_LEFT_AFTER = C_CLIENT_LEFT_AFTER
# Linux sendfile(2) moves at most 0x7ffff000 bytes per call.
cdef long long SENDFILE_MAX = 0x7ffff000
# Read-and-send block for file_wrapper without sendfile: PEP 3333's 8 KiB
# example block costs a syscall per 8 KiB; 256 KiB keeps the socket busy.
cdef Py_ssize_t FILE_BLOCK = 262144
cdef bytes CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


cdef inline Py_ssize_t _error_body_len(int status, str reason):
    """Length of ``error_response``'s body: what the access log counts."""
    return len(f"{status} {reason}\n")


# Access-log status of a request whose client left before any of the
# response went out: nginx's 499 (no response is sent with it).
CLIENT_CLOSED = "499 Client Closed Request"
# The fd is non-blocking, so recv/send never wait; up to this many bytes the
# call is a short copy, cheaper than handing the GIL to another thread and
# taking it back (two futex calls and a context switch whenever a thread
# waits for it: measured at ~18 futex calls per request with 8 gthread
# threads before). Bigger copies, and every wait (poll) and sendfile,
# release the GIL (ours).
cdef Py_ssize_t GIL_HOLD_MAX = 65536
# Content-Length body reads of at least DIRECT_MIN bytes, when nothing of the
# body is buffered, are received straight into the bytes handed to the app:
# no copy through the (4 KiB) input buffer and one recv per read instead of
# one per buffer-full; at most DIRECT_MAX per recv, so read() of a huge body
# never allocates it whole up front (ours; 8 KiB is Gunicorn's read size).
cdef Py_ssize_t DIRECT_MIN = 8192
cdef Py_ssize_t DIRECT_MAX = 262144
# wsgi.file_wrapper with sendfile: the head and the file's first bytes, up
# to LEAD_BLOCK together, go out in one writev (the bytes copied with pread),
# the rest with sendfile(2). Measured alternatives (1 MiB file, loopback,
# 8 keep-alive clients at 50 requests/s each): the head alone with MSG_MORE
# (a one-shot cork) left 1-2 % of responses stalled ~40 ms, until the
# client's delayed ACK (p99 44-47 ms against Gunicorn's 17); the head alone
# without it made a tiny first segment that halved throughput flat out
# (ours; 64 KiB is one full segment on loopback, a few on Ethernet).
cdef Py_ssize_t LEAD_BLOCK = 65536
# Distinct peer addresses whose trust answer is remembered (ours).
cdef Py_ssize_t ADDR_CACHE = 4096


cdef extern from *:
    """
    /* Shrink a fresh bytes object (refcount 1) to n bytes in place; steals
       the reference, returns a new one, or NULL with an exception set. */
    static PyObject* fastwsgi_bytes_shrink(PyObject* b, Py_ssize_t n) {
        if (_PyBytes_Resize(&b, n) < 0) return NULL;
        return b;
    }
    """
    object bytes_shrink "fastwsgi_bytes_shrink"(PyObject* b, Py_ssize_t n)


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double _wall() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


# The metrics slot's layout and histogram bounds (metrics.py owns them).
cdef Py_ssize_t M_IN_FLIGHT = _metrics.IN_FLIGHT
cdef Py_ssize_t M_CONNECTIONS = _metrics.CONNECTIONS
cdef Py_ssize_t M_BYTES = _metrics.BYTES
cdef Py_ssize_t M_DURATION_SUM = _metrics.DURATION_SUM
cdef Py_ssize_t M_QUEUE_SUM = _metrics.QUEUE_SUM
cdef Py_ssize_t M_DURATION = _metrics.DURATION
cdef Py_ssize_t M_QUEUE = _metrics.QUEUE
cdef Py_ssize_t M_STATUS = _metrics.STATUS
cdef Py_ssize_t M_STATUS_OTHER = _metrics.STATUS_OTHER
cdef Py_ssize_t M_WORDS = _metrics.WORDS
cdef Py_ssize_t M_NBOUNDS = len(_metrics.BUCKETS)
cdef double M_BOUNDS[32]
if M_NBOUNDS > 32:
    raise ImportError("metrics.BUCKETS: at most 32 bounds")
for _i, _b in enumerate(_metrics.BUCKETS):
    M_BOUNDS[<Py_ssize_t>_i] = _b


cdef inline Py_ssize_t _bucket(double v) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(M_NBOUNDS):
        if v <= M_BOUNDS[i]:
            return i
    return M_NBOUNDS


cdef Py_ssize_t _status_index(object status) noexcept:
    """Index of ``status`` (``"200 OK"``, an int, or None for 500) among
    the slot's per-status words (100..599), or the "other" one."""
    cdef Py_ssize_t code = 0, i
    cdef Py_UCS4 ch
    if status is None:
        return 400
    if type(status) is str:
        if len(<str>status) < 3:
            return M_STATUS_OTHER
        for i in range(3):
            ch = (<str>status)[i]
            if ch < u"0" or ch > u"9":
                return M_STATUS_OTHER
            code = code * 10 + (<Py_ssize_t>ch - 48)
    elif type(status) is int and 100 <= status <= 599:
        code = status
    if 100 <= code <= 599:
        return code - 100
    return M_STATUS_OTHER


cdef double _queue_start(dict env) noexcept:
    """Epoch seconds from a proxy's ``X-Request-Start``/``X-Queue-Start``:
    ``t=`` (optional) then seconds (nginx ``t=${msec}``), milliseconds
    (Heroku) or microseconds (New Relic), told apart by magnitude; 0 when
    absent or unparsable."""
    cdef double v
    text = env.get("HTTP_X_REQUEST_START")
    if text is None:
        text = env.get("HTTP_X_QUEUE_START")
        if text is None:
            return 0
    if type(text) is not str:  # the app may have put anything in its environ
        return 0
    try:
        text = (<str>text).strip()
        if text.startswith("t="):
            text = text[2:]
        v = float(text)
    except Exception:
        return 0
    if not v > 0 or v > 1e19:  # NaN, negative, absurd
        return 0
    if v > 1e14:
        return v / 1e6
    if v > 1e11:
        return v / 1e3
    return v


@cython.final
@cython.auto_pickle(False)
cdef class _AddrMatcher:
    """Is a peer address in ``forwarded_allow_ips`` / ``proxy_allow_ips``?

    The settings hold addresses and CIDR networks (Gunicorn accepts both).
    They are parsed once per worker; the answer for each distinct peer
    address string is cached, so a connection costs one dict lookup, not an
    ``ipaddress`` parse. The cache is bounded (``ADDR_CACHE``): past it, it
    starts over rather than grow with every client address on the Internet.
    """

    def __init__(self, addrs):
        self.allow_all = "*" in addrs
        self.networks = tuple(ipaddress.ip_network(a, strict=False)
                              for a in addrs if a != "*")
        self.cache = {}

    cdef bint match(self, str ip) except -1:
        if self.allow_all:
            return True
        hit = self.cache.get(ip)
        if hit is not None:
            return hit is True
        ok = False
        try:
            addr = ipaddress.ip_address(ip.partition("%")[0])
        except ValueError:
            addr = None
        if addr is not None:
            # An IPv4-mapped IPv6 peer (::ffff:a.b.c.d on a dual-stack
            # listener) is matched as the IPv4 address it is.
            mapped = getattr(addr, "ipv4_mapped", None)
            for net in self.networks:
                if addr in net or (mapped is not None and mapped in net):
                    ok = True
                    break
        if len(self.cache) >= ADDR_CACHE:
            self.cache.clear()
        self.cache[ip] = ok
        return ok


@cython.auto_pickle(False)
cdef class WorkerContext:
    """Per-worker constants every Connection shares (built once per worker)."""

    def __init__(self, settings, log=None, hooks=None, worker=None, *,
                 bint multithread=False, bint multiprocess=True, bint keepalive=True):
        self.settings = settings
        self.log = log
        self.hooks = hooks
        self.worker = worker
        self.keepalive = keepalive
        self.use_sendfile = settings.sendfile
        self.parser_kwargs = settings.parser.as_kwargs()
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self.send_timeout = settings.timeout if settings.timeout > 0 else 30.0
        self.forwarded = _AddrMatcher(tuple(settings.forwarded_allow_ips))
        self.proxy_allowed = _AddrMatcher(tuple(settings.proxy_allow_ips))
        self.proxy_protocol = settings.parser.proxy_protocol != "off"
        self.script_name = settings.script_name.rstrip("/")
        software = settings.server_software or SERVER_SOFTWARE
        self.server = software.encode("latin-1")
        self.pre_request = getattr(hooks, "pre_request", None) if hooks is not None else None
        self.post_request = getattr(hooks, "post_request", None) if hooks is not None else None
        # The access log costs a call and a format per request: only when on.
        self.access = None
        if log is not None and (getattr(log, "access_enabled", False)
                                or getattr(log, "statsd", None) is not None):
            self.access = log.access
        page = getattr(worker, "metrics", None) if worker is not None else None
        if page is not None:
            self.count_into(page)
        error_logger = getattr(log, "error_log", None)
        errors = WSGIErrors(error_logger) if error_logger is not None else sys.stderr
        self.base_env = {
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.errors": errors,
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "SERVER_SOFTWARE": software,
            "SCRIPT_NAME": "",
        }

    def stamp_heartbeat(self, slot, double every):
        """Let this worker's client I/O stamp its heartbeat ``slot``.

        For the sync worker, whose only thread is inside the request: every
        byte received from or sent to the client, and every ``every``
        seconds of a wait on the client (bounded by its own deadline:
        header, body or send timeout), stamps the slot, so a long download
        or upload that keeps moving never reads as a stuck worker, while an
        app silent for ``timeout`` still does (Gunicorn's sync worker is
        killed mid-transfer: its #1186, #1736, #3259). The stamp is one
        8-byte store into the shared page, on the same CLOCK_MONOTONIC as
        ``HeartbeatSlot.beat``; the page stays exported (it cannot be closed
        under us) as long as this context lives."""
        cdef unsigned char[::1] view
        mem, offset = slot.stamp_location()
        view = mem
        if offset < 0 or offset % 8 or offset + 8 > view.shape[0]:
            raise ValueError(f"bad heartbeat stamp offset {offset}")
        if every <= 0:
            raise ValueError("every must be positive")
        self.beat_view = view
        self.beat = <double*>&view[offset]
        self.beat_every = every

    def count_into(self, page):
        """Count this worker's requests into ``page``, its metrics slot
        (``metrics.MetricsPool.slot``: shared memory the master reads when
        scraped). The page stays exported as long as this context lives."""
        cdef long long[::1] view
        view = memoryview(page).cast("q")
        if view.shape[0] < M_WORDS:
            raise ValueError("metrics page too small")
        self.metrics_view = view
        self.metrics = &view[0]


def accept(WorkerContext ctx, int lfd, object server):
    """Accept one connection from the listening socket ``lfd``: a
    ``Connection``, or None when nothing is queued (or the client gave up
    before we got to it: ECONNABORTED/EPROTO, which Gunicorn ignores too).
    Other errors (EMFILE, ENOBUFS, ...) raise ``OSError`` for the worker's
    back-off.

    ``accept4`` on the raw fd with ``SOCK_NONBLOCK | SOCK_CLOEXEC``: no
    Python socket object, no ``FIONBIO`` ioctl, no ``getsockname`` (the
    listener's address is ``server``, looked up once per worker). The peer
    address string is reused while consecutive peers share it (behind a
    proxy, they all do). ``lfd`` must be non-blocking (both workers set it
    so): the call keeps the GIL."""
    cdef sockaddr_storage ss
    cdef socklen_t sl = sizeof(ss)
    cdef int fd, err
    cdef char ipbuf[INET6_ADDRSTRLEN + 1]
    cdef const void* addr
    cdef int port
    cdef Connection conn
    # Non-blocking (the listener is), so the GIL stays held: releasing it
    # for a call that never waits only hands it to a pool thread and back.
    fd = accept4(lfd, <sockaddr*>&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC)
    if fd < 0:
        err = errno
        if err == EAGAIN or err == ECONNABORTED or err == EPROTO:
            return None
        if err == EINTR:
            PyErr_CheckSignals()
            return None
        raise OSError(err, strerror(err).decode())
    try:
        client = ""
        if ss.ss_family == AF_INET or ss.ss_family == AF_INET6:
            if ss.ss_family == AF_INET:
                addr = &(<sockaddr_in*>&ss).sin_addr
                port = ntohs((<sockaddr_in*>&ss).sin_port)
            else:
                addr = &(<sockaddr_in6*>&ss).sin6_addr
                port = ntohs((<sockaddr_in6*>&ss).sin6_port)
            if inet_ntop(ss.ss_family, addr, ipbuf, sizeof(ipbuf)) == NULL:
                ipbuf[0] = 0
            if ctx.last_ip_str is None or strcmp(ipbuf, ctx.last_ip) != 0:
                ctx.last_ip_str = ipbuf[:strlen(ipbuf)].decode("ascii")
                strcpy(ctx.last_ip, ipbuf)
            client = (ctx.last_ip_str, port)
        conn = Connection.__new__(Connection)
        conn._setup(ctx, fd, client, server)
    except BaseException:
        c_close(fd)
        raise
    return conn


@cython.final
@cython.freelist(16)
@cython.auto_pickle(False)
cdef class Input:
    """``wsgi.input``: streams this request's (de-chunked) body and ends at
    its end, never reading into the next request."""

    def __cinit__(self, Connection conn):
        self.conn = conn
        self.buf = b""
        self.off = 0

    cdef Py_ssize_t _avail(self):
        return PyBytes_GET_SIZE(self.buf) - self.off

    cdef bytes _more(self, Py_ssize_t hint):
        cdef Connection c = self.conn
        cdef RequestParser p
        cdef double deadline = 0
        cdef Py_ssize_t want
        if c is None or self.done:
            return b""
        p = c.parser
        if p.dead:
            return b""
        c._continue()
        while True:
            want = p.body_direct(hint)
            if want >= DIRECT_MIN:
                if deadline == 0:
                    deadline = _now() + c.ctx.body_timeout
                d = c._recv_direct(want if want < DIRECT_MAX else DIRECT_MAX, deadline)
                if d is None:
                    c.eof = True
                    raise ClientDisconnected("client closed before the end of the request body")
                return d
            d = p.read_body(hint)
            if d is None:
                if c.eof:
                    raise ClientDisconnected("client closed before the end of the request body")
                if deadline == 0:
                    deadline = _now() + c.ctx.body_timeout
                if c._recv(deadline) == 0:
                    c.eof = True
                continue
            if PyBytes_GET_SIZE(d) == 0:
                self.done = True
                return b""
            return d

    def read(self, size=-1):
        cdef Py_ssize_t want, have
        cdef list parts
        if size is None:
            size = -1
        want = size
        have = self._avail()
        if want < 0:
            parts = [self.buf[self.off:]] if have else []
            self.buf = b""
            self.off = 0
            while True:
                d = self._more(-1)
                if not d:
                    break
                parts.append(d)
            return b"".join(parts)
        if want == 0:
            return b""
        if have >= want:
            out = self.buf[self.off:self.off + want]
            self.off += want
            return out
        parts = [self.buf[self.off:]] if have else []
        self.buf = b""
        self.off = 0
        while have < want:
            d = self._more(want - have)
            if not d:
                break
            if PyBytes_GET_SIZE(d) > want - have:
                self.buf = d
                self.off = want - have
                d = d[:want - have]
            parts.append(d)
            have += PyBytes_GET_SIZE(d)
        return b"".join(parts)

    def readline(self, size=-1):
        cdef Py_ssize_t limit, got = 0, end, i
        cdef list parts = []
        if size is None:
            size = -1
        limit = size
        if limit == 0:
            return b""
        while True:
            if self._avail() == 0:
                d = self._more(65536)
                if not d:
                    break
                self.buf = d
                self.off = 0
            end = PyBytes_GET_SIZE(self.buf)
            if limit > 0 and end - self.off > limit - got:
                end = self.off + (limit - got)
            i = self.buf.find(b"\n", self.off, end)
            if i >= 0:
                end = i + 1
            parts.append(self.buf[self.off:end])
            got += end - self.off
            self.off = end
            if i >= 0 or (limit > 0 and got >= limit):
                break
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def readlines(self, hint=-1):
        cdef list lines = []
        cdef Py_ssize_t total = 0
        if hint is None:
            hint = -1
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line


@cython.final
@cython.auto_pickle(False)
cdef class Connection:
    """One accepted socket (see module docstring). Not thread-safe: a worker
    hands it between threads, never shares it."""

    def __init__(self, WorkerContext ctx, sock, client, server=None):
        self.sock = sock
        sock.setblocking(False)
        if server is None:
            server = sock.getsockname()
        self._setup(ctx, sock.fileno(), client, server)

    cdef int _setup(self, WorkerContext ctx, int fd, object client, object server) except -1:
        cdef dict env
        self.ctx = ctx
        self.fd = fd
        self.parser = RequestParser(**ctx.parser_kwargs)
        # Only what differs per connection (4 keys); _build_env lays it over
        # base_env: a full copy here cost every idle connection ~0.3 KiB.
        env = {}
        if isinstance(client, tuple):
            ip = client[0]
            env["REMOTE_ADDR"] = ip
            env["REMOTE_PORT"] = str(client[1])
            self.trusted = ctx.forwarded.match(ip)
            if ctx.proxy_protocol:
                self.parser.set_proxy_allowed(ctx.proxy_allowed.match(ip))
        else:
            # A unix socket peer has no address; like Gunicorn, REMOTE_ADDR is
            # "" and the peer is trusted: the socket file's permissions are
            # the access control.
            env["REMOTE_ADDR"] = client.decode() if isinstance(client, bytes) else (client or "")
            self.trusted = True
            if ctx.proxy_protocol:
                self.parser.set_proxy_allowed(True)
        self.parser.set_trusted(self.trusted)
        if isinstance(server, tuple):
            self.is_unix = False
            env["SERVER_NAME"] = server[0]
            env["SERVER_PORT"] = str(server[1])
        else:
            # Unix socket: WSGI has no words for it; SERVER_* come from the
            # Host header per request (Gunicorn does the same).
            self.is_unix = True
            self.server_name = server.decode() if isinstance(server, bytes) else str(server)
            env["SERVER_NAME"] = self.server_name
            env["SERVER_PORT"] = ""
        self.conn_env = env
        self.write_cb = self.write
        # Bound once per connection, not once per request.
        self.start_cb = self.start_response
        if ctx.metrics != NULL:
            ctx.metrics[M_CONNECTIONS] += 1
            self.conn_counted = True
        return 0

    def fileno(self):
        return self.fd

    @property
    def request_line(self):
        """``METHOD uri`` of the current (or last) request, for logs."""
        if self._req_method is None:
            return ""
        return self._req_method + " " + self._req_uri

    @property
    def remote_addr(self):
        """The peer's address as the connection's requests see it (REMOTE_ADDR
        before any per-request proxy rewrite), for logs."""
        if self.conn_env is None:
            return ""
        return self.conn_env.get("REMOTE_ADDR", "")

    @property
    def buffered(self):
        """Bytes received and not yet consumed by a request."""
        return self.parser.buffered

    @property
    def peer_closed(self):
        return self.eof

    @property
    def response(self):
        return self.resp

    # --- syscalls (GIL released) ------------------------------------------

    cdef inline void _progress(self) noexcept:
        """Bytes moved (or a bounded wait on the client ended): the request
        is not stuck, and a heartbeat the context stamps says so too."""
        cdef double now = _now()
        self.last_progress = now
        if self.ctx.beat != NULL:
            self.ctx.beat[0] = now

    cdef int _wait(self, short events, double deadline) except -1:
        """1 when the fd is ready, 0 when the deadline passed.

        While here the request is waiting on the client under our own
        deadline, not stuck in the app: ``io_wait`` tells the worker so, the
        time spent counts as progress, and a heartbeat the context stamps
        (sync) is stamped at least every ``beat_every`` seconds meanwhile."""
        cdef pollfd pfd
        cdef int r, ms
        cdef double left, now
        self.io_wait = True
        try:
            while True:
                now = _now()
                left = deadline - now
                if left <= 0:
                    return 0
                if self.ctx.beat != NULL:
                    self.ctx.beat[0] = now
                    if left > self.ctx.beat_every:
                        left = self.ctx.beat_every
                ms = <int>(left * 1000) + 1
                pfd.fd = self.fd
                pfd.events = events
                pfd.revents = 0
                with nogil:
                    r = poll(&pfd, 1, ms)
                if r > 0:
                    return 1
                if r < 0:
                    if errno != EINTR:
                        raise OSError(errno, strerror(errno).decode())
                    PyErr_CheckSignals()
        finally:
            self._progress()
            self.io_wait = False

    cdef Py_ssize_t _recv_into(self, char* buf, Py_ssize_t n, double deadline) except -2:
        """One recv of up to n bytes into buf: bytes read, 0 at EOF (or reset),
        -1 would block (only when ``deadline`` is 0). RequestTimeout past the
        deadline.

        ``drained`` records whether this recv() emptied the socket (it came
        back short, at EOF or with EAGAIN): bytes that arrive after that
        raise a fresh edge-triggered epoll event, so an event loop that sees
        ``drained`` need not look again before it waits (gthread).
        """
        cdef ssize_t r
        cdef int err
        while True:
            if n <= GIL_HOLD_MAX:
                r = recv(self.fd, buf, <size_t>n, 0)
            else:
                with nogil:
                    r = recv(self.fd, buf, <size_t>n, 0)
            if r > 0:
                self.drained = r < n
                self._progress()
                return r
            self.drained = True
            if r == 0:
                return 0
            err = errno
            if err == EAGAIN:
                if deadline == 0:
                    return -1
                if not self._wait(POLLIN, deadline):
                    raise RequestTimeout("client too slow")
            elif err == EINTR:
                PyErr_CheckSignals()
            elif err == ECONNRESET:
                return 0
            else:
                raise OSError(err, strerror(err).decode())

    cdef Py_ssize_t _recv(self, double deadline) except -2:
        """Receive into the parser: bytes read, 0 at EOF, -1 would block
        (only when ``deadline`` is 0). RequestTimeout past the deadline."""
        cdef Py_ssize_t avail = 0
        cdef char* buf = self.parser.recv_buffer(&avail)
        cdef Py_ssize_t r = self._recv_into(buf, avail, deadline)
        if r > 0:
            self.parser.recv_commit(r)
        return r

    cdef object _recv_direct(self, Py_ssize_t want, double deadline):
        """Receive up to ``want`` Content-Length body bytes into a new bytes
        object (the parser said none are buffered: body_direct); None at EOF.
        RequestTimeout past the deadline."""
        cdef object data = PyBytes_FromStringAndSize(NULL, want)
        cdef PyObject* o
        cdef Py_ssize_t r = self._recv_into(PyBytes_AS_STRING(data), want, deadline)
        if r == 0:
            return None
        self.parser.body_direct_commit(r)
        if r < want:
            o = <PyObject*>data
            Py_INCREF(data)  # the resize's reference, once ours is dropped
            data = None
            data = bytes_shrink(o, r)
        return data

    cdef bytes _pread(self, int fd, Py_ssize_t k, long long pos):
        """Up to k bytes of the file at pos (fewer only at its end). From the
        page cache (RWF_NOWAIT) the copy is short and keeps the GIL, as a
        recv of up to 64 KiB does; only a read that must wait for the disk
        releases it (with 8 threads, releasing it every time added ~35
        futex calls per 1 MiB response)."""
        cdef object data = PyBytes_FromStringAndSize(NULL, k)
        cdef char* buf = PyBytes_AS_STRING(data)
        cdef PyObject* o
        cdef Py_ssize_t got = 0
        cdef ssize_t r
        cdef iovec iov
        cdef bint cached = k <= GIL_HOLD_MAX
        while got < k:
            if cached:
                iov.iov_base = buf + got
                iov.iov_len = <size_t>(k - got)
                r = preadv2(fd, &iov, 1, <off_t>(pos + got), RWF_NOWAIT)
                if r < 0 and errno != EINTR:
                    cached = False  # not in the page cache (EAGAIN), or no RWF_NOWAIT here
                    continue
            else:
                with nogil:
                    r = pread(fd, buf + got, <size_t>(k - got), <off_t>(pos + got))
            if r > 0:
                got += r
            elif r == 0:
                break
            elif errno == EINTR:
                PyErr_CheckSignals()
            else:
                raise OSError(errno, strerror(errno).decode())
        if got < k:
            o = <PyObject*>data
            Py_INCREF(data)  # the resize's reference, once ours is dropped
            data = None
            data = bytes_shrink(o, got)
        return data

    cdef int _send_buf(self, const char* buf, Py_ssize_t n, int flags) except -1:
        cdef ssize_t r
        cdef Py_ssize_t off = 0
        while off < n:
            if n - off <= GIL_HOLD_MAX:
                r = send(self.fd, buf + off, <size_t>(n - off), flags | MSG_NOSIGNAL)
            else:
                with nogil:
                    r = send(self.fd, buf + off, <size_t>(n - off), flags | MSG_NOSIGNAL)
            if r >= 0:
                off += r
                self.wire_sent += r
                self._progress()
                continue
            self._send_failed(errno)
        return 0

    cdef int _send_failed(self, int err) except -1:
        """After send/sendfile returned -1: wait for room (EAGAIN) within the
        send deadline, retry (EINTR), or raise: a vanished client is
        ClientDisconnected, anything else OSError."""
        if err == EAGAIN:
            if not self._wait(POLLOUT, _now() + self.ctx.send_timeout):
                raise ClientStoppedReading("client stopped reading (send timed out)")
        elif err == EINTR:
            PyErr_CheckSignals()
        elif err == EPIPE or err == ECONNRESET:
            raise ClientDisconnected(err, strerror(err).decode())
        else:
            raise OSError(err, strerror(err).decode())
        return 0

    cdef int _send_vec(self, tuple out) except -1:
        cdef iovec iov[4]
        cdef int cnt = len(out), i
        cdef ssize_t r
        cdef Py_ssize_t done, ln
        cdef bytes b
        cdef Py_ssize_t total = 0
        if cnt > 4:
            raise ValueError("too many buffers")
        for i in range(cnt):
            b = <bytes>out[i]
            iov[i].iov_base = PyBytes_AS_STRING(b)
            iov[i].iov_len = PyBytes_GET_SIZE(b)
            total += PyBytes_GET_SIZE(b)
        self.wire_goal = self.wire_sent + total
        if total <= GIL_HOLD_MAX:  # a short copy, as in _send_buf
            r = writev(self.fd, iov, cnt)
        else:
            with nogil:
                r = writev(self.fd, iov, cnt)
        if r < 0:
            if errno == EPIPE or errno == ECONNRESET:
                raise ClientDisconnected(errno, strerror(errno).decode())
            if errno != EAGAIN and errno != EINTR:
                raise OSError(errno, strerror(errno).decode())
            r = 0
        if r > 0:
            self.wire_sent += r
            self._progress()
        # Partial write: finish each buffer from where writev stopped.
        done = r
        for i in range(cnt):
            ln = <Py_ssize_t>iov[i].iov_len
            if done >= ln:
                done -= ln
                continue
            self._send_buf(<char*>iov[i].iov_base + done, ln - done, 0)
            done = 0
        return 0

    cdef int _send_out(self, object out) except -1:
        if type(out) is bytes:
            if PyBytes_GET_SIZE(out):
                self.wire_goal = self.wire_sent + PyBytes_GET_SIZE(out)
                self._send_buf(PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out), 0)
        else:
            self._send_vec(<tuple>out)
        return 0

    cdef long long _sendfile(self, int in_fd, long long offset, long long count) except -1:
        cdef off_t off = offset
        cdef long long left = count
        cdef ssize_t r
        cdef size_t chunk
        while left > 0:
            chunk = <size_t>(left if left < SENDFILE_MAX else SENDFILE_MAX)
            with nogil:
                r = sendfile(self.fd, in_fd, &off, chunk)
            if r > 0:
                left -= r
                self.wire_sent += r
                self._progress()
                continue
            if r == 0:
                break  # the file is shorter than it was when we looked
            self._send_failed(errno)
        return count - left

    # --- request cycle ---------------------------------------------------------

    cdef int _continue(self) except -1:
        # Expect: 100-continue is answered when the app first reads the body
        # (RFC 9110 section 10.1.1), never after the final head went out.
        if (self.parser.expect_continue and not self.continue_sent
                and self.resp is not None and not self.resp.headers_sent):
            self.continue_sent = True
            self._send_buf(CONTINUE, len(CONTINUE), 0)
        return 0

    cdef object _next_head(self):
        cdef RequestParser p = self.parser
        cdef double deadline
        cdef Py_ssize_t n
        if self.pending_error is not None:
            err = self.pending_error
            self.pending_error = None
            raise err
        if self.pending_head is not None:
            head = self.pending_head
            self.pending_head = None
            return head
        deadline = _now() + self.ctx.header_timeout
        while True:
            head = p.next_head()
            if head is not None:
                return head
            if self.eof:
                if p.buffered == 0:
                    return None
                raise NoMoreData("client closed inside a request head")
            try:
                n = self._recv(deadline)
            except RequestTimeout:
                if p.buffered == 0:
                    return None  # idle: close quietly, like Gunicorn
                raise
            if n == 0:
                self.eof = True

    cdef int _buffered_head(self) except -2:
        """What the bytes already received say, without a syscall: 1 a head
        (or an error to answer) is ready, -1 the peer closed with nothing
        pending, 0 more bytes are needed."""
        if self.closed:
            return -1
        if self.pending_head is not None or self.pending_error is not None:
            return 1
        try:
            head = self.parser.next_head()
        except ParseError as exc:
            self.pending_error = exc
            return 1
        if head is not None:
            self.pending_head = head
            return 1
        return -1 if self.eof else 0

    def buffered_head(self):
        """``poll_head`` without the recv(): what the bytes already received
        say. How a pool thread looks for a pipelined request after an answer;
        a client that sends its next request only after reading the answer
        has not sent it yet (a recv() there found nothing 99.7 times in 100
        at 16 keep-alive clients), and the selector's epoll finds it when it
        comes."""
        return self._buffered_head()

    def release_idle(self):
        """Parked with nothing received (an idle keep-alive connection, or
        one not yet sent its request): give the parser's buffers back, so
        an idle connection costs no buffer memory (they are taken again when
        bytes come). True when released."""
        if self.closed:
            return False
        self.resp = None  # the last answer's headers: each request makes its own
        self.req_env = None  # and its environ (abort() needs resp, gone too)
        if self.inp is not None:
            self.inp.conn = None
            self.inp = None
        return self.parser.release_buffers() == 1

    def poll_head(self):
        """Non-blocking: 1 when a request head (or an error to answer) is
        ready for ``handle_request``; 0 when more bytes are needed; -1 when
        the peer closed with nothing pending. For event loops."""
        cdef Py_ssize_t n
        cdef int r
        while True:
            r = self._buffered_head()
            if r != 0:
                return r
            try:
                n = self._recv(0)
            except ParseError as exc:
                self.pending_error = exc
                return 1
            if n == 0:
                self.eof = True
            elif n < 0:
                return 0

    def wait_head(self, double timeout):
        """``poll_head`` after waiting up to ``timeout`` seconds (GIL
        released) for the client to send something: how a pool thread that
        has just answered keeps a keep-alive connection for the next request
        instead of handing it back to the selector thread. 0 when nothing
        came in time (or a signal interrupted the wait)."""
        cdef pollfd pfd
        cdef int r
        cdef int ms = <int>(timeout * 1000.0)
        # A head already buffered (pipelining) is served without a syscall;
        # otherwise poll() first: a recv() now would mostly find nothing.
        r = self._buffered_head()
        if r != 0:
            return r
        if ms < 1:
            ms = 1
        pfd.fd = self.fd
        pfd.events = POLLIN
        pfd.revents = 0
        with nogil:
            r = poll(&pfd, 1, ms)
        if r > 0:
            return self.poll_head()
        if r < 0 and errno != EINTR:
            raise OSError(errno, strerror(errno).decode())
        return 0

    cdef object _build_env(self, dict head):
        cdef RequestParser p = self.parser
        cdef dict env = self.ctx.base_env.copy()
        cdef str script_name
        cdef Py_ssize_t n
        env.update(self.conn_env)
        env.update(head)
        if p.url_scheme != "http":
            env["wsgi.url_scheme"] = p.url_scheme
        info = p.proxy_info
        if info is not None:
            # The client as the proxy saw it (Gunicorn's proxy_environ).
            env["REMOTE_ADDR"] = info[0]
            env["REMOTE_PORT"] = str(info[1])
            env["PROXY_ADDR"] = info[2]
            env["PROXY_PORT"] = str(info[3])
        if self.is_unix:
            host = head.get("HTTP_HOST")
            if host:
                name, sep, port = host.rpartition(":")
                if not sep or "]" in port:
                    name, port = host, ("443" if p.url_scheme == "https" else "80")
                env["SERVER_NAME"] = name
                env["SERVER_PORT"] = port
        script_name = self.ctx.script_name
        if self.trusted:
            hdr = env.pop("HTTP_SCRIPT_NAME", None)
            if hdr:
                script_name = hdr.rstrip("/")
        if script_name:
            path = env.get("PATH_INFO", "")
            n = len(script_name)
            if path.startswith(script_name) and (len(path) == n or path[n] == "/"):
                env["SCRIPT_NAME"] = script_name
                env["PATH_INFO"] = path[n:]
        inp = Input(self)
        self.inp = inp
        env["wsgi.input"] = inp
        return env

    cdef int _revise_keep(self) except -1:
        """Before the head goes out: will this connection really carry another
        request? It was decided from the request head; since then the body
        may have failed to parse (the app caught the error) or be one we
        cannot drain (unread behind an unanswered ``Expect: 100-continue``,
        or bigger than DRAIN_LIMIT). Then the head must say
        ``Connection: close``, not promise a keep-alive we will not keep.
        And has the client left meanwhile (``_check_client_left``)?"""
        cdef Response resp = self.resp
        cdef RequestParser p = self.parser
        if resp.headers_sent:
            return 0
        if not self.client_left and _now() - self.request_started >= C_CLIENT_LEFT_AFTER:
            self._check_client_left()
        if not resp.want_keep_alive:
            return 0
        if p.dead or self.eof:
            resp.refuse_keep_alive()
        elif self.inp is not None and self.inp.done:
            pass
        elif p.expect_continue and not self.continue_sent and (p.chunked or p.body_left > 0):
            resp.refuse_keep_alive()
        elif not p.chunked and p.body_left > C_DRAIN_LIMIT:
            resp.refuse_keep_alive()
        return 0

    cdef int _check_client_left(self) except -1:
        """Did the client close before the response head went out (nginx's
        499: it gave up waiting, or its proxy timed out)? One non-blocking
        peek: 0 is EOF. Data waiting is not EOF (a pipelined request, an
        unread body), so a request already buffered behind this one skips
        the peek. A client that only half-closed (``shutdown(SHUT_WR)``,
        ``nc -N``) looks the same as one that left: it is logged 499 as
        nginx logs it, but still gets the response, since it may be
        reading; to a client that is gone that costs one write."""
        cdef char c
        cdef ssize_t r
        cdef RequestParser p = self.parser
        if p.end > p.pos:
            return 0
        if not self.eof:
            r = recv(self.fd, &c, 1, MSG_PEEK | MSG_DONTWAIT)
            if r > 0 or (r < 0 and errno != ECONNRESET):
                return 0
        # Only the log changes: the next read finds the EOF as it would.
        self.client_left = True
        return 0

    cdef object _frame(self, object data, bint last=False):
        if not self.resp.headers_sent:
            self._revise_keep()
        return self.resp.frame(data, last)

    def start_response(self, status, headers, exc_info=None):
        """PEP 3333 start_response: validates now, sends with the first body bytes."""
        cdef Response resp = self.resp
        if resp is None:
            raise ResponseError("start_response() called outside a request")
        if exc_info is not None:
            try:
                if resp.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif resp.status is not None:
            raise ResponseError("start_response() called twice without exc_info")
        resp.start(status, headers)
        return self.write_cb

    def write(self, data):
        """PEP 3333 write(): the bytes are on their way before it returns."""
        cdef Response resp = self.resp
        if resp is None or resp.finished:
            raise ResponseError("write() called outside a request")
        if len(data) == 0 and not resp.headers_sent:
            return
        self._send_out(self._frame(data))

    cdef bint _send_file(self, object wrapper, bint use_sendfile) except -1:
        """A file_wrapper over a regular file: its size is known, so the
        response gets a Content-Length (unless the app gave one) and the bytes
        go out with sendfile(2), or read-and-send when sendfile is off. False
        when the file-like has no usable fileno(): iterate it instead."""
        cdef Response resp = self.resp
        cdef long long avail, n, sent, left
        cdef Py_ssize_t bs
        f = wrapper.filelike
        try:
            fd = f.fileno()
        except Exception:
            return False
        if not isinstance(fd, int) or fd < 0:
            return False
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        try:
            pos = f.tell()
        except Exception:
            pos = os.lseek(fd, 0, os.SEEK_CUR)
        if resp.status is None:
            raise ResponseError("the application never called start_response()")
        avail = max(st.st_size - pos, 0)
        self._revise_keep()
        prefix, n = resp.frame_file(avail)
        # What follows the prefix on the wire is the file: counted from the
        # wire, so a transfer the client cuts off is logged with its bytes.
        start = self.wire_sent + (PyBytes_GET_SIZE(prefix) if prefix else 0)
        try:
            if prefix and use_sendfile and n > 0 and PyBytes_GET_SIZE(prefix) < LEAD_BLOCK:
                first = self._pread(fd, min(n, LEAD_BLOCK - PyBytes_GET_SIZE(prefix)), pos)
                self._send_vec((prefix, first))
            elif prefix:
                self._send_buf(PyBytes_AS_STRING(prefix), PyBytes_GET_SIZE(prefix),
                               MSG_MORE if n > 0 else 0)
            if n <= 0:
                return True
            if use_sendfile:
                sent = self.wire_sent - start
                if sent < n:
                    self._sendfile(fd, pos + sent, n - sent)
            else:
                sent = 0
                bs = max(wrapper.blksize, FILE_BLOCK)
                while sent < n:
                    left = n - sent
                    d = f.read(bs if left > bs else left)
                    if not d:
                        break
                    self._send_buf(PyBytes_AS_STRING(d), PyBytes_GET_SIZE(d), 0)
                    sent += PyBytes_GET_SIZE(d)
        finally:
            sent = max(self.wire_sent - start, 0)
            resp.file_sent(sent)
            self.wire_goal = self.wire_sent  # counted exactly: nothing to take back
        if sent < n:
            self.must_close = True
        return True

    cdef int _send_result(self, object result) except -1:
        cdef Response resp = self.resp
        cdef Py_ssize_t total
        t = type(result)
        if t is not list and t is not tuple and isinstance(result, FileWrapper):
            if not self._send_file(result, self.ctx.use_sendfile):
                f = result.filelike
                bs = max(result.blksize, FILE_BLOCK)
                while True:
                    d = f.read(bs)
                    if not d:
                        break
                    self._send_out(self._frame(d))
                    if resp.overflow:
                        break
        elif (t is list or t is tuple) and len(result) == 1:
            self._send_final(self._frame(result[0], True))
            return 0
        else:
            total = -1
            if (t is list or t is tuple) and len(result) > 1 and not resp.headers_sent:
                # The whole body is known up front: a small one goes out with
                # the head in one write, a larger one with Content-Length.
                total = 0
                for item in result:
                    if type(item) is not bytes:
                        total = -1
                        break
                    total += PyBytes_GET_SIZE(item)
                if 0 <= total <= 16384:
                    self._send_final(self._frame(b"".join(result), True))
                    return 0
                elif total > 16384:
                    resp.expect_length(total)
            for item in result:
                if len(item) == 0 and not resp.headers_sent:
                    continue
                out = self._frame(item)
                if (type(out) is bytes and PyBytes_GET_SIZE(out) > 0 and not self.fin_sent
                        and resp.body_done_and_closing()):
                    # The declared length is reached (Flask, Django: one item
                    # with a Content-Length): the last bytes, as in _send_final.
                    self._send_closing(<bytes>out)
                else:
                    self._send_out(out)
                if resp.overflow:
                    break
        self._revise_keep()
        self._send_final(b"")
        return 0

    cdef int _send_final(self, object out) except -1:
        """Send ``out``, the response's last body bytes (framed), and what
        ``Response.finish()`` adds (the chunked terminator, or the whole head
        when nothing was written).

        When the response ends the connection, a last buffer that is
        ``bytes`` (at most a small body with its head, or a terminator) goes
        out with ``MSG_MORE`` and the write side is shut down right after:
        the kernel holds the partial segment and ``shutdown`` sends it with
        the FIN set (``tcp_send_fin`` tacks the FIN onto an unsent tail).
        One packet instead of two, and one wake-up of the peer: behind nginx
        (HTTP/1.0 upstream, a connection per request) that measured 65-68 ->
        56-59 µs of sync worker CPU per request, for one more syscall
        (shutdown; close then has no FIN left to send). The client also sees
        the end of the response before the access log, ``post_request`` and
        the iterable's ``close()`` run. A ``writev`` tuple (a body over
        16 KiB) has no flags and spans several segments anyway: it goes out
        as before and the FIN with ``close()``."""
        cdef Response resp = self.resp
        cdef bytes tail = resp.finish()
        if resp.keep_alive or self.fin_sent:
            self._send_out(out)
            if PyBytes_GET_SIZE(tail):
                self._send_buf(PyBytes_AS_STRING(tail), PyBytes_GET_SIZE(tail), 0)
            return 0
        if PyBytes_GET_SIZE(tail):
            if type(out) is bytes and PyBytes_GET_SIZE(out) > 0:
                out = <bytes>out + tail
            else:
                self._send_out(out)
                out = tail
        if type(out) is not bytes or PyBytes_GET_SIZE(out) == 0:
            # Nothing to carry the FIN: close() sends it alone, as it would.
            self._send_out(out)
            return 0
        self._send_closing(<bytes>out)
        return 0

    cdef int _send_closing(self, bytes out) except -1:
        """Send the last bytes this connection will ever write, then shut
        its write side: with ``MSG_MORE`` the kernel holds the partial
        segment, and ``shutdown`` sends it with the FIN set (see
        ``_send_final``). An error from shutdown (the peer reset) is left
        for close()."""
        self.wire_goal = self.wire_sent + PyBytes_GET_SIZE(out)
        self._send_buf(PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out), MSG_MORE)
        if shutdown(self.fd, SHUT_WR) == 0:
            self.fin_sent = True
        return 0

    cdef bint _drain_body(self) except -1:
        cdef RequestParser p = self.parser
        cdef long long total = 0
        cdef double deadline
        if self.inp is not None and self.inp.done:
            return True
        if p.dead or self.eof:
            return False
        if p.expect_continue and not self.continue_sent and (p.chunked or p.body_left > 0):
            return False  # the client is waiting for 100 before sending a body
        if not p.chunked and p.body_left > C_DRAIN_LIMIT:
            return False
        deadline = _now() + self.ctx.body_timeout
        try:
            while True:
                d = p.read_body(65536)
                if d is None:
                    if self._recv(deadline) == 0:
                        self.eof = True
                        return False
                    continue
                if PyBytes_GET_SIZE(d) == 0:
                    return True
                total += PyBytes_GET_SIZE(d)
                if total > C_DRAIN_LIMIT:
                    return False
        except (ParseError, OSError):
            return False

    cdef Py_ssize_t _answer(self, object exc) noexcept:
        """Answer a protocol error with its status; the body bytes that went
        out (for the access log), or -1 when it has no status to answer."""
        status = getattr(exc, "status", None)
        if status is None:
            return -1
        out = error_response(status, exc.reason, self.ctx.server)
        try:
            # Every caller closes the connection after this answer.
            self._send_closing(out)
        except Exception:
            return 0
        return _error_body_len(status, exc.reason)

    cdef object _app_failed(self, BaseException exc, dict env, double started, object status,
                            long long* err_sent):
        """What a request that raised (the app, the body, the client) gets
        and what the logs say: returns the status for the access log (or
        None) and sets err_sent to the body bytes of an answer the server
        sent in the app's place. The request's connection is never reused.
        handle_request re-raises anything that is not an Exception."""
        cdef WorkerContext ctx = self.ctx
        cdef Response resp = self.resp
        self.must_close = True
        if isinstance(exc, ClientDisconnected):
            if isinstance(exc, ClientStoppedReading):
                # The server ended this transfer: say so where an
                # operator looks first (the access log may be off).
                if ctx.log is not None:
                    ctx.log.info(
                        "Client stopped reading for %.1fs (timeout): %s from %s cut "
                        "off with status %s after %d body bytes",
                        ctx.send_timeout, self.request_line, self.remote_addr,
                        (resp.status or "-").split(" ", 1)[0],
                        max(0, resp.sent - max(0, self.wire_goal - self.wire_sent)))
            elif ctx.log is not None:
                ctx.log.debug("Client went away during %s: %s", self.request_line, exc)
            if not resp.headers_sent or self.client_left:
                # Logged as nginx does (499): not a server error, so an
                # aborted upload or an impatient client does not show up
                # among the 500s of the access log and statsd. Once the
                # head went out, the status sent is logged with the
                # bytes that made it.
                status = CLIENT_CLOSED
            # Body bytes framed but never taken by the kernel did not
            # make it (a bound: what was unsent may include framing).
            err_sent[0] = max(0, resp.sent - max(0, self.wire_goal - self.wire_sent))
        elif isinstance(exc, ParseError):
            # The request body was malformed, too large or too slow.
            if not resp.headers_sent and (<object>exc).status is not None:
                err_sent[0] = self._answer(exc)
                status = f"{(<object>exc).status} {(<object>exc).reason}"
            self._warn_rejected(exc)
        elif isinstance(exc, Exception):
            if ctx.log is not None:
                ctx.log.exception("Error handling request %s", self.request_line)
            if not resp.headers_sent:
                out = error_response(500, "Internal Server Error", ctx.server)
                try:
                    self._send_closing(out)  # must_close: nothing follows
                    status = "500 Internal Server Error"
                    err_sent[0] = _error_body_len(500, "Internal Server Error")
                except Exception:
                    pass
        else:
            # The worker is going down under this request: SystemExit from
            # its abort after a heartbeat timeout (sync) or from a fast
            # stop (INT/QUIT). Its client gets a 500 rather than a bare
            # close when nothing went out yet (a proxy logs "upstream
            # prematurely closed" and answers 502 otherwise), and the
            # access log gets its line (Gunicorn writes none: its #1060,
            # #1243); then the exit goes on.
            if not resp.headers_sent:
                out = error_response(500, "Internal Server Error", ctx.server)
                # The body is the answer's tail: count what of it made it.
                err_sent[0] = max(0, self._answer_now(out) - PyBytes_GET_SIZE(out)
                                  + _error_body_len(500, "Internal Server Error"))
                status = "500 Internal Server Error"
            elif status is None:
                status = resp.status
            if not self.aborted:
                self._log_access(env, status, resp, started, err_sent[0])
        return status

    def handle_request(self, app):
        """Serve one request; True if the connection may be reused."""
        cdef WorkerContext ctx = self.ctx
        cdef RequestParser p = self.parser
        cdef Response resp
        cdef bint keep
        cdef double started
        cdef long long err_sent
        if self.closed:
            return False
        try:
            head = self._next_head()
        except ParseError as exc:
            self.must_close = True
            self.linger = True
            self._log_rejected(exc, None, self._answer(exc))
            return False
        except ClientDisconnected:
            self.must_close = True
            return False
        if head is None:
            return False
        env = self._build_env(head)
        self.req_env = env
        version = p.version
        keep = ctx.keepalive and p.keep_alive
        if keep and ctx.worker is not None and not ctx.worker.alive:
            keep = False
        resp = Response(p.method == "HEAD", keep, version >= (1, 1), ctx.server)
        self.resp = resp
        self.continue_sent = False
        self.must_close = False
        self.client_left = False
        self.wire_sent = 0
        self.wire_goal = 0
        err_sent = -1  # body bytes of an answer the server sent in the app's place
        started = _now()
        if ctx.metrics != NULL:
            ctx.metrics[M_IN_FLIGHT] += 1
            self.in_flight = True
            self.sent_at = 0
        self.request_started = started
        self.last_progress = started
        self._req_method = p.method
        self._req_uri = env.get("RAW_URI", "")
        self.requests += 1
        req = None
        if ctx.pre_request is not None or ctx.post_request is not None:
            req = RequestInfo(p.method, env.get("RAW_URI", ""), env.get("PATH_INFO", ""),
                              env.get("QUERY_STRING", ""), version, p.headers)
        if ctx.pre_request is not None:
            try:
                ctx.pre_request(ctx.worker, req)
            except Exception:
                ctx.log.exception("Exception in pre_request hook")
        status = None
        result = None
        try:
            result = app(env, self.start_cb)
            self._send_result(result)
            if ctx.metrics != NULL:
                self.sent_at = _now()  # the metrics' duration ends here
            # A client that left before the head went out is logged as
            # nginx logs it (499), even though the response was written.
            status = CLIENT_CLOSED if self.client_left else resp.status
        except BaseException as exc:
            status = self._app_failed(exc, env, started, status, &err_sent)
            if not isinstance(exc, Exception):
                raise  # the worker is going down: SystemExit, KeyboardInterrupt
        finally:
            if result is not None and type(result) is not list and type(result) is not tuple:
                close = getattr(result, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        self.must_close = True
                        if ctx.log is not None:
                            ctx.log.exception("Error closing the response iterable of %s",
                                              self.request_line)
            if self.inp is not None:
                self.inp.conn = None
        keep = not self.must_close and resp.keep_alive and self._drain_body()
        if keep:
            p.finish()
        else:
            self.must_close = True
            # Input may still be in flight only if the body was not read to its
            # end or more bytes (pipelined, or garbage) are already here.
            self.linger = (p.dead or p.end > p.pos
                           or not ((self.inp is not None and self.inp.done) or p.body_complete))
        if status is None and resp.headers_sent:
            status = resp.status  # cut short after the head went out
        if not self.aborted:  # else abort() wrote the line
            self._log_access(env, status, resp, started, err_sent)
        if ctx.post_request is not None:
            try:
                ctx.post_request(ctx.worker, req, env, resp)
            except Exception:
                ctx.log.exception("Exception in post_request hook")
        self.request_started = 0
        return keep

    cdef void _log_access(self, dict env, object status, Response resp, double started,
                          long long err_sent=-1) noexcept:
        """The one place where a response's status and bytes are final:
        counted in the metrics, then the access line. ``err_sent`` (>= 0)
        is the body of an error answer the server sent in place of the
        app's response."""
        cdef WorkerContext ctx = self.ctx
        cdef double took
        cdef long long sent
        if ctx.access is None and ctx.metrics == NULL:
            return
        took = _now() - started if started > 0 else 0.0
        if err_sent >= 0:
            sent = err_sent
        else:
            sent = resp.sent if resp is not None else 0
        if ctx.metrics != NULL:
            self._count(env, status, sent, took)
        if ctx.access is None:
            return
        try:
            ctx.access(env, status or "500 Internal Server Error", resp.headers or [],
                       sent, took)
        except Exception:
            try:
                ctx.log.exception("Error writing the access log")
            except Exception:
                pass

    cdef void _count(self, dict env, object status, long long sent, double took) noexcept:
        """Add one finished request to the worker's metrics slot: adds
        through a pointer into shared memory, under the GIL (no lock, no
        syscall: the clocks are vDSO). ``took`` is the time since the head
        was read; the duration ends with the last byte sent when that was
        stamped (not the iterable's close() or a drain after it). Queue
        time only from a trusted peer: the wall clock when the head was
        read (now less ``took``) minus the proxy's stamp; a clock a little
        behind the proxy's counts 0."""
        cdef long long* m = self.ctx.metrics
        cdef double* d = <double*>m
        cdef double start, q
        cdef double dur = took
        if self.sent_at > 0 and self.request_started > 0:
            dur = self.sent_at - self.request_started
            if dur < 0 or dur > took:
                dur = took
        if self.in_flight:
            self.in_flight = False
            m[M_IN_FLIGHT] -= 1
        m[M_STATUS + _status_index(status)] += 1
        if sent > 0:
            m[M_BYTES] += sent
        m[M_DURATION + _bucket(dur)] += 1
        d[M_DURATION_SUM] += dur
        if self.trusted and env is not None:
            start = _queue_start(env)
            if start > 0:
                q = _wall() - took - start
                if q < 0:
                    q = 0
                m[M_QUEUE + _bucket(q)] += 1
                d[M_QUEUE_SUM] += q

    cdef void _warn_rejected(self, object exc) noexcept:
        """Gunicorn's ``Invalid request from ip=ADDR: REASON`` warning (the
        logger rate-limits it); a head that came too slowly is no invalid
        request, Gunicorn never answers it at all: debug only."""
        cdef WorkerContext ctx = self.ctx
        if ctx.log is None or getattr(exc, "status", None) is None:
            return
        try:
            ip = self.conn_env.get("REMOTE_ADDR", "")
            if isinstance(exc, RequestTimeout):
                ctx.log.debug("Request timeout from ip=%s: %s", ip, exc)
                return
            warn = getattr(ctx.log, "invalid_request", None)
            if warn is not None:
                warn(ip, str(exc))
            else:
                ctx.log.warning("Invalid request from ip=%s: %s", ip, exc)
        except Exception:
            pass

    cdef void _log_rejected(self, object exc, dict env, long long sent) noexcept:
        """Warning plus access line, with the status and the ``sent`` body
        bytes that went out, for a request the server refused before the app
        saw it (nginx logs these; Gunicorn writes no access line when the
        request line itself failed). What could not be parsed shows as the
        access log's ``-``."""
        cdef WorkerContext ctx = self.ctx
        status = getattr(exc, "status", None)
        if status is None:
            return
        self._warn_rejected(exc)
        if ctx.metrics != NULL:
            # Counted with the requests that reached the app, by the status sent.
            self._count(None, f"{status} {exc.reason}", max(sent, 0), 0.0)
        if ctx.access is None:
            return
        try:
            if env is None:
                env = self.conn_env.copy()
                line = self.parser.rejected_request()
                if line is not None:
                    env["REQUEST_METHOD"], env["RAW_URI"], env["SERVER_PROTOCOL"] = line
            ctx.access(env, f"{status} {exc.reason}",
                       [("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(_error_body_len(status, exc.reason)))],
                       max(sent, 0), 0.0)
        except Exception:
            try:
                ctx.log.exception("Error writing the access log")
            except Exception:
                pass

    cdef Py_ssize_t _answer_now(self, bytes out) noexcept:
        """One non-blocking send of a closing answer (a head that timed out,
        a worker on its way out): whatever does not fit in the socket buffer
        now is dropped, it never waits on the client. The caller closes.
        Returns the bytes the kernel took (0 if none)."""
        cdef ssize_t r = send(self.fd, PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out),
                              MSG_DONTWAIT | MSG_NOSIGNAL)
        return r if r > 0 else 0

    def abort(self):
        """The app has held this request past ``--timeout``: gthread's stuck
        check calls this from the selector thread while a pool thread is
        still in the app (the sync worker gets the same from the SystemExit
        of its abort, in handle_request). Answers 500 in one non-blocking
        send when no head went out yet, writes the request's access line,
        and shuts the socket down both ways, so that nothing the app still
        does reaches the client (its sends fail) or the access log. Returns
        the status logged, or None when no request is in flight."""
        cdef Response resp = self.resp
        if self.closed or self.aborted or not self.request_started or resp is None:
            return None
        self.aborted = True
        if resp.headers_sent:
            status = resp.status  # the response is cut short: the client sees it
            # What of the body the kernel took, as for a client gone midway.
            err_sent = max(0, resp.sent - max(0, self.wire_goal - self.wire_sent))
        else:
            status = "500 Internal Server Error"
            out = error_response(500, status[4:], self.ctx.server)
            err_sent = max(0, self._answer_now(out) - PyBytes_GET_SIZE(out)
                           + _error_body_len(500, status[4:]))
        shutdown(self.fd, SHUT_RDWR)
        self.fin_sent = True
        self._log_access(self.req_env, status, resp, self.request_started, err_sent)
        return status

    def timeout_response(self):
        """Best-effort 408 for a head that did not complete in time (used by
        event loops that own the waiting); the caller closes."""
        cdef RequestParser p = self.parser
        self.must_close = True
        self.linger = True
        if p.buffered > 0 and not self.eof:
            # Best effort: never wait on a slow client here.
            out = error_response(408, "Request Timeout", self.ctx.server)
            sent = self._answer_now(out) - (PyBytes_GET_SIZE(out) - _error_body_len(408, "Request Timeout"))
            self._log_rejected(RequestTimeout("request head not complete in time"), None, sent)

    def close(self, bint wait=True):
        """Close the socket, with a lingering close when input may still be
        in flight (a protocol error, or a request body the app did not read
        to its end).

        Closing a socket whose receive queue holds unread bytes makes the
        kernel answer with an RST, and an RST that reaches the peer before it
        has read the response destroys it: behind nginx the app's early 401
        or 413 became nginx's 502 (``writev() failed (32: Broken pipe) while
        sending request to upstream``). So, as nginx's own lingering close
        does: the write side is shut down (the response is complete, the
        peer sees its end), then what arrives is read and discarded until
        the peer closes, or for at most ``LINGER_TIME`` seconds, and only
        then is the socket closed. A proxy closes its side as soon as it has
        the whole response, so the wait is as long as its reading takes; the
        budget bounds what a client that keeps sending (or stays silent) can
        hold a sync worker or a pool thread for. ``wait=False`` (a selector
        thread, which must never block) discards only what has already
        arrived."""
        if self.closed:
            return
        self.closed = True
        self.write_cb = None
        self.start_cb = None
        self.resp = None
        if self.conn_counted:
            self.conn_counted = False
            self.ctx.metrics[M_CONNECTIONS] -= 1
        self.req_env = None
        if self.inp is not None:
            self.inp.conn = None
            self.inp = None
        try:
            if self.linger and not self.eof:
                if not self.fin_sent:
                    shutdown(self.fd, SHUT_WR)
                    self.fin_sent = True
                try:
                    self._discard_input(_now() + LINGER_TIME if wait else 0.0)
                except OSError:
                    pass  # poll() failed: close at once, as without the linger
        finally:
            if self.sock is not None:
                self.sock.close()
            else:
                c_close(self.fd)

    cdef long long _discard_input(self, double deadline) except -1:
        """Read and discard input until EOF (or a reset) or ``deadline``
        (0: only what is already here). Returns the bytes discarded.

        A recv that finds data is non-blocking and keeps the GIL (at most
        GIL_HOLD_MAX bytes, see above); only the wait for more releases it,
        so a close that finds nothing more to read (the common case) costs
        a pool thread no GIL hand-off: releasing it on every close had cost
        14.6 against 9.3 futex calls per request (gthread behind nginx)."""
        cdef char scratch[65536]
        cdef ssize_t r
        cdef long long total = 0
        while True:
            r = recv(self.fd, scratch, 65536, MSG_DONTWAIT)
            if r > 0:
                total += r
                continue
            if r == 0:
                break
            if errno == EINTR:
                continue
            if errno != EAGAIN or deadline == 0.0 or not self._wait(POLLIN, deadline):
                break
        return total
