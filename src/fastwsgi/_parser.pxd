# C-level API of the sans-IO request parser (see _parser.pyx and docs/design.md).
#
# _conn.pyx cimports RequestParser and drives it without Python-level calls:
#
#     buf = p.recv_buffer(&avail)          # writable space, grown if needed
#     n = recv(fd, buf, avail)             # GIL released around the syscall
#     p.recv_commit(n)                     # n bytes are now part of the input
#     env = p.next_head()                  # None until a complete head
#     data = p.read_body(-1)               # None: need more, b"": done
#     p.finish()                           # ready for the next pipelined request

cdef struct FieldRef:
    # One header field of the current head: offsets are relative to the start
    # of the head in the buffer, which stays pinned until finish().
    Py_ssize_t name_off
    Py_ssize_t name_len
    Py_ssize_t val_off
    Py_ssize_t val_len


cdef class RequestParser:
    # --- settings (fixed at construction) ---
    cdef Py_ssize_t limit_request_line
    cdef Py_ssize_t limit_request_fields
    cdef Py_ssize_t limit_request_field_size
    cdef Py_ssize_t limit_request_headers_total
    cdef long long limit_request_body
    cdef int header_map
    cdef bint permit_obsolete_folding
    cdef bint permit_unconventional_http_method
    cdef bint casefold_http_method
    cdef bint strip_header_spaces
    cdef bint permit_missing_host
    cdef list _secure_headers           # [(NAME bytes, value bytes)], upper-cased names
    cdef int proxy_protocol
    cdef bint trusted
    cdef bint proxy_allowed

    # --- input buffer: bytes [pos, end) are unconsumed, [head_start, head_end) the current head ---
    cdef char* buf
    cdef Py_ssize_t cap
    cdef Py_ssize_t pos
    cdef Py_ssize_t end
    cdef Py_ssize_t scan                # head scanning resumes here (relative to pos)
    cdef Py_ssize_t head_start
    cdef Py_ssize_t head_len
    cdef bint head_pinned
    cdef int state
    cdef int proxy_state
    cdef object error                   # the ParseError instance that killed the parser

    # --- field table of the current head ---
    cdef FieldRef* fields
    cdef Py_ssize_t nfields
    cdef Py_ssize_t fields_cap
    cdef list _headers                  # lazily built by the headers property
    cdef list _folded                   # values rebuilt from obs-fold, or None

    # --- body state ---
    cdef long long body_left            # CL bytes left, or bytes left in the current chunk
    cdef long long body_read            # decoded body bytes delivered so far
    cdef int chunk_state
    cdef list _trailers

    # --- per-request results (readable from Python and C) ---
    cdef readonly str method
    cdef readonly tuple version
    cdef readonly bint keep_alive
    cdef readonly bint expect_continue
    cdef readonly long long content_length
    cdef readonly bint chunked
    cdef readonly str url_scheme
    cdef readonly object proxy_info
    cdef readonly bint dead

    # --- C-level API for _conn.pyx ---
    cdef char* recv_buffer(self, Py_ssize_t* avail) except NULL
    cdef int recv_commit(self, Py_ssize_t n) except -1

    cpdef feed(self, data)
    cpdef feed_eof(self)
    cpdef object next_head(self)
    cpdef object read_body(self, Py_ssize_t n=*)
    cpdef finish(self)
    cpdef set_trusted(self, bint trusted)
    cpdef set_proxy_allowed(self, bint allowed)
