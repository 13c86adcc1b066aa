# C-level API of the per-connection I/O core (see _conn.pyx).

from fastwsgi._parser cimport RequestParser
from fastwsgi._response cimport Response


cdef class _AddrMatcher:
    cdef bint allow_all
    cdef tuple networks
    cdef dict cache
    cdef bint match(self, str ip) except -1


cdef class WorkerContext:
    cdef readonly object settings
    cdef readonly object log
    cdef readonly object hooks
    cdef readonly object worker
    cdef readonly dict base_env
    cdef readonly bint keepalive
    cdef readonly bint use_sendfile
    cdef dict parser_kwargs
    cdef double header_timeout
    cdef double body_timeout
    cdef double send_timeout
    cdef _AddrMatcher forwarded
    cdef _AddrMatcher proxy_allowed
    cdef bint proxy_protocol
    cdef str script_name
    cdef bytes server
    cdef object pre_request
    cdef object post_request
    cdef object access
    cdef char last_ip[48]                 # INET6_ADDRSTRLEN + 1
    cdef str last_ip_str
    cdef double* beat                     # the worker's heartbeat stamp, or NULL
    cdef object beat_view                 # keeps the shared page exported meanwhile
    cdef double beat_every                # longest unstamped wait on a client
    cdef long long* metrics               # the worker's metrics slot, or NULL
    cdef object metrics_view              # keeps that shared page exported meanwhile


cdef class Input:
    cdef Connection conn
    cdef bytes buf
    cdef Py_ssize_t off
    cdef readonly bint done
    cdef bytes _more(self, Py_ssize_t hint)
    cdef Py_ssize_t _avail(self)


cdef class Connection:
    cdef WorkerContext ctx
    cdef readonly object sock
    cdef readonly int fd
    cdef RequestParser parser
    cdef dict conn_env
    cdef bint is_unix
    cdef object server_name
    cdef object server_port
    cdef bint trusted
    cdef readonly bint closed
    cdef bint eof
    cdef object pending_head
    cdef object pending_error
    cdef Response resp
    cdef Input inp
    cdef bint continue_sent
    cdef bint must_close
    cdef bint linger
    cdef object write_cb
    cdef object start_cb
    cdef readonly double request_started
    cdef readonly double last_progress    # last byte moved (or wait ended) for this request
    cdef readonly bint io_wait            # in poll() under a client deadline
    cdef str _req_method                  # request_line, built only when read
    cdef object _req_uri
    cdef readonly long long requests
    cdef readonly bint drained            # the last recv() left the socket empty
    cdef readonly bint fin_sent           # the write side is shut down (_send_final)
    cdef long long wire_sent              # bytes of this response the kernel took (head too)
    cdef long long wire_goal              # wire_sent once the send under way completes
    cdef bint client_left                 # EOF seen before the response head went out
    cdef bint in_flight                   # counted in the metrics' in-flight gauge
    cdef double sent_at                   # the response's last byte sent (metrics on)
    cdef bint conn_counted                # counted in the metrics' connections gauge
    cdef readonly bint aborted            # answered by abort() while the app still ran
    cdef dict req_env                     # the current request's environ, for abort()'s log

    cdef int _setup(self, WorkerContext ctx, int fd, object client, object server) except -1
    cdef Py_ssize_t _recv_into(self, char* buf, Py_ssize_t n, double deadline) except -2
    cdef Py_ssize_t _recv(self, double deadline) except -2
    cdef object _recv_direct(self, Py_ssize_t want, double deadline)
    cdef bytes _pread(self, int fd, Py_ssize_t k, long long pos)
    cdef void _progress(self) noexcept
    cdef int _wait(self, short events, double deadline) except -1
    cdef int _send_buf(self, const char* buf, Py_ssize_t n, int flags) except -1
    cdef int _send_out(self, object out) except -1
    cdef int _send_failed(self, int err) except -1
    cdef int _send_vec(self, tuple out) except -1
    cdef long long _sendfile(self, int in_fd, long long offset, long long count) except -1
    cdef int _continue(self) except -1
    cdef object _next_head(self)
    cdef int _buffered_head(self) except -2
    cdef object _build_env(self, dict head)
    cdef int _send_result(self, object result) except -1
    cdef int _send_final(self, object out) except -1
    cdef int _send_closing(self, bytes out) except -1
    cdef bint _send_file(self, object wrapper, bint use_sendfile) except -1
    cdef bint _drain_body(self) except -1
    cdef long long _discard_input(self, double deadline) except -1
    cdef void _log_access(self, dict env, object status, Response resp, double started,
                          long long err_sent=*) noexcept
    cdef void _count(self, dict env, object status, long long sent, double took) noexcept
    cdef Py_ssize_t _answer_now(self, bytes out) noexcept
    cdef int _check_client_left(self) except -1
    cdef void _warn_rejected(self, object exc) noexcept
    cdef void _log_rejected(self, object exc, dict env, long long sent) noexcept
    cdef int _revise_keep(self) except -1
    cdef object _frame(self, object data, bint last=*)
    cdef Py_ssize_t _answer(self, object exc) noexcept
    cdef object _app_failed(self, BaseException exc, dict env, double started, object status,
                            long long* err_sent)
