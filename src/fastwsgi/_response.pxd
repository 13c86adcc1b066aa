# C-level API of the sans-IO response writer (see _response.pyx).
#
# _conn.pyx drives one Response per request:
#
#     r = Response(is_head, keep_alive, http11, server)
#     r.start(status, headers)           # from start_response; ResponseError if bad
#     out = r.frame(data, last)          # bytes, or a tuple of buffers for writev
#     prefix, n = r.frame_file(avail)    # before sendfile(2) of n bytes
#     r.file_sent(n)
#     tail = r.finish()                  # chunked terminator, or the whole head

cdef enum Framing:
    FRAME_UNSET = 0     # head not built yet
    FRAME_NONE = 1      # HEAD, 1xx, 204, 304: no body on the wire
    FRAME_LENGTH = 2    # Content-Length
    FRAME_CHUNKED = 3   # Transfer-Encoding: chunked
    FRAME_CLOSE = 4     # body ends when the connection closes


cdef class Response:
    # request facts, fixed at construction
    cdef bint is_head
    cdef bint want_keep_alive
    cdef bint http11
    cdef bytes server

    # from start_response
    cdef readonly object status         # str as the app gave it
    cdef readonly int status_code
    cdef readonly object headers        # the app's list, for logs and hooks
    cdef bytes _status_b
    cdef bytes _block                   # validated app headers, "Name: value\r\n"...
    cdef bint _app_server
    cdef bint _app_date
    cdef bint _app_close
    cdef readonly long long content_length   # -1 = the app gave none

    # output state
    cdef int framing
    cdef readonly bint headers_sent
    cdef readonly long long sent        # body bytes put on the wire (after framing)
    cdef readonly bint overflow         # the app produced more than Content-Length
    cdef bint _pending_crlf             # a chunk sent with sendfile still needs CRLF
    cdef bint _finished

    cpdef start(self, object status, object headers)
    cpdef object frame(self, object data, bint last=*)
    cpdef expect_length(self, long long n)
    cpdef tuple frame_file(self, long long avail)
    cpdef file_sent(self, long long n)
    cpdef bytes finish(self)
    cdef void refuse_keep_alive(self) noexcept   # _conn: this connection will close
    cdef void _decide(self, bint last, long long n)
    cdef bint _conn_keep(self)
    cdef bint body_done_and_closing(self)
    cdef bytes _build_head(self, const char* body, Py_ssize_t body_len, bint chunk)
