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


cdef struct LineRef:
    # One field line of a head or trailer section while it is being scanned:
    # offset relative to the start of the section, length without the CRLF.
    Py_ssize_t off
    Py_ssize_t len


cdef struct FieldRef:
    # One parsed header field of the current head. Offsets index the parser's
    # private copy of the head (hbuf), so they survive buffer compaction.
    # val_off < 0 means the value was rebuilt from obs-fold lines and lives at
    # _folded[-1 - val_off].
    Py_ssize_t name_off
    Py_ssize_t name_len
    Py_ssize_t val_off
    Py_ssize_t val_len
    int known           # index in the static name table, or -1
    int kept            # 0 when header_map="drop" removed it


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
    cdef tuple _forwarder               # forwarder_headers: upper-case str names, or "*"
    cdef int proxy_protocol
    cdef bint trusted
    cdef bint proxy_allowed

    # --- input buffer: bytes [pos, end) are not consumed yet ---
    cdef char* buf
    cdef Py_ssize_t cap
    cdef Py_ssize_t pos
    cdef Py_ssize_t end
    cdef int state
    cdef bint proxy_done
    cdef bint eof
    cdef object error                   # the ParseError class that killed the parser
    cdef str error_detail

    # --- section scanner (head fields and trailers) ---
    cdef Py_ssize_t sc_off              # start of the current line
    cdef Py_ssize_t sc_scan             # memchr resumes here
    cdef Py_ssize_t sc_base             # start of the field lines
    cdef Py_ssize_t sc_end              # end of the section (after the empty line)
    cdef Py_ssize_t sc_field_len        # bytes of the current field, folds included
    cdef Py_ssize_t sc_nfields
    cdef bint crlf_skipped
    cdef bint rl_done
    cdef LineRef* lines
    cdef Py_ssize_t nlines
    cdef Py_ssize_t lines_cap

    # --- request line results kept until the head completes ---
    cdef Py_ssize_t tgt_off
    cdef Py_ssize_t tgt_len
    cdef Py_ssize_t rl_len
    cdef Py_ssize_t path_start          # where the path starts inside the target
    cdef bint tgt_authority             # CONNECT authority-form target
    cdef int hflags                     # HF_* bits seen in the head
    cdef object _tmp                    # keeps a temporary bytes alive

    # --- parsed head (copy) for the lazy headers property ---
    cdef char* hbuf
    cdef Py_ssize_t hcap
    cdef FieldRef* fields
    cdef Py_ssize_t nfields
    cdef Py_ssize_t fields_cap
    cdef list _headers
    cdef list _folded

    # --- body state ---
    cdef long long body_left            # CL bytes left, or bytes left in the current chunk
    cdef long long body_total           # decoded body bytes announced so far (chunked limit)
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
    cdef Py_ssize_t body_direct(self, Py_ssize_t n) noexcept
    cdef int body_direct_commit(self, Py_ssize_t n) except -1
    cdef int release_buffers(self) except -1
    cdef void _free_blocks(self) noexcept
    cdef int _acquire(self) except -1

    cpdef feed(self, data)
    cpdef feed_eof(self)
    cpdef object next_head(self)
    cpdef object read_body(self, Py_ssize_t n=*)
    cpdef finish(self)
    cpdef set_trusted(self, bint trusted)
    cpdef set_proxy_allowed(self, bint allowed)

    # --- internals ---
    cdef int _fail(self, object cls, str detail) except -1
    cdef int _append(self, const char* p, Py_ssize_t n) except -1
    cdef int _scan_head(self) except -1
    cdef int _connection_tokens(self, const char* v, Py_ssize_t n) except -1
    cdef const char* _field_value(self, Py_ssize_t fi, Py_ssize_t* n) except NULL
    cdef int _reserve(self, Py_ssize_t need) except -1
    cdef int _proxy(self) except -1
    cdef int _proxy_v1(self) except -1
    cdef int _proxy_v2(self) except -1
    cdef int _scan_request_line(self) except -1
    cdef int _parse_request_line(self, const char* p, Py_ssize_t n) except -1
    cdef bint _empty_host_ok(self, Py_ssize_t n) noexcept
    cdef int _scan_section(self, bint trailer) except -1
    cdef int _add_line(self, Py_ssize_t off, Py_ssize_t n) except -1
    cdef object _build_head(self)
    cdef int _parse_fields(self, const char* base, dict env, bint trailer) except -1
    cdef int _framing(self) except -1
    cdef object _read_chunked(self, Py_ssize_t n)
    cdef int _chunk_size_line(self) except -1
    cdef int _reset_request(self) except -1
