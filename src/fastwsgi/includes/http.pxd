# HTTP byte rules shared by the parser (_parser.pyx) and the response writer
# (_response.pyx). "Nothing smuggles" needs both to agree on what a token, a
# field value and a Connection close are, so each is written once, here, as
# inline C that costs the same as the private copies it replaces.
#
# Each module that cimports this calls http_tables_init() once at import;
# the tchar set itself is spelled in fastwsgi/http_rules.py (TCHARS), which
# config.py reads too.

from libc.stdint cimport uint64_t
from libc.string cimport memcpy


cdef extern from *:
    """
    /* Static: each extension module fills its own copy at import. */
    static unsigned char fastwsgi_tchar[256];
    static unsigned char fastwsgi_field_ok[256];
    """
    # RFC 9110 5.6.2 tchar.
    unsigned char TCHAR "fastwsgi_tchar"[256]
    # RFC 9110 5.5 field-vchar / SP / HTAB (obs-text allowed): not a CTL other
    # than HTAB, not DEL.
    unsigned char FIELD_OK "fastwsgi_field_ok"[256]


cdef enum:
    # connection_tokens() result bits.
    CONN_CLOSE = 1
    CONN_KEEPALIVE = 2


cdef inline void http_tables_init(bytes tchars) noexcept:
    cdef int c
    for c in range(256):
        FIELD_OK[c] = 1 if (c == 9 or (32 <= c <= 126) or c >= 128) else 0
        TCHAR[c] = 0
    for c in tchars:
        TCHAR[c] = 1


cdef inline bint is_ws(char c) noexcept:
    return c == b' ' or c == b'\t'


cdef inline bint ieq(const char* p, Py_ssize_t n, const char* lower, Py_ssize_t m) noexcept:
    """p[:n] equals the lower-case ASCII word lower[:m], ignoring case."""
    cdef Py_ssize_t i
    cdef unsigned char c
    if n != m:
        return False
    for i in range(n):
        c = <unsigned char>p[i]
        if 65 <= c <= 90:
            c += 32
        if c != <unsigned char>lower[i]:
            return False
    return True


cdef inline int field_value_class(const char* p, Py_ssize_t n) noexcept:
    """0: a CTL other than HTAB, or DEL (RFC 9110 5.5); 1: printable ASCII
    (and HTAB); 2: valid with obs-text bytes 0x80-0xFF.

    Eight bytes at a time: a word with no byte below 0x20 and no 0x7F is fine
    as a whole (hasless / haszero from Sean Anderson's Bit Twiddling Hacks);
    otherwise (usually a tab) its bytes are checked one by one."""
    cdef Py_ssize_t i = 0, j
    cdef uint64_t w, x
    cdef uint64_t ones = 0x0101010101010101ULL
    cdef uint64_t highs = 0x8080808080808080ULL
    cdef uint64_t seen = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        seen |= w
        x = w ^ (ones * 0x7F)
        if (((w - ones * 0x20) & ~w) | ((x - ones) & ~x)) & highs:
            for j in range(i, i + 8):
                if not FIELD_OK[<unsigned char>p[j]]:
                    return 0
        i += 8
    while i < n:
        if not FIELD_OK[<unsigned char>p[i]]:
            return 0
        seen |= <unsigned char>p[i]
        i += 1
    return 2 if seen & highs else 1


cdef inline int connection_tokens(const char* v, Py_ssize_t n) noexcept:
    """RFC 9112 9.3 / RFC 9110 7.6.1: the comma-separated tokens of one
    Connection field value; CONN_CLOSE and/or CONN_KEEPALIVE if present."""
    cdef Py_ssize_t i = 0, s, e
    cdef int found = 0
    while i <= n:
        s = i
        while i < n and v[i] != b',':
            i += 1
        e = i
        while s < e and is_ws(v[s]):
            s += 1
        while e > s and is_ws(v[e - 1]):
            e -= 1
        if ieq(v + s, e - s, b"close", 5):
            found |= CONN_CLOSE
        elif ieq(v + s, e - s, b"keep-alive", 10):
            found |= CONN_KEEPALIVE
        i += 1
    return found
