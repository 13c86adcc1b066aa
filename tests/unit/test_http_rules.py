"""The parser, the response writer and the settings agree on HTTP's byte rules.

"Nothing smuggles" needs what a request may carry and what a response may
carry to follow one rule; includes/http.pxd and http_rules.py hold each rule
once. These tests check every byte against the RFC's own grammar, spelled
independently here, through all three users.
"""

from __future__ import annotations

import string

import pytest

from fastwsgi import errors
from fastwsgi._parser import RequestParser
from fastwsgi._response import Response
from fastwsgi.config import v_forwarder_headers
from fastwsgi.errors import ResponseError

# RFC 9110 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "."
#                        / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
RFC_TCHAR = set("!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters)
# RFC 9110 5.5: field-value bytes are VCHAR / obs-text / SP / HTAB.
RFC_FIELD_BYTE = {0x09, 0x20} | set(range(0x21, 0x7F)) | set(range(0x80, 0x100))


def parser_accepts_name(name: bytes) -> bool:
    p = RequestParser(header_map="dangerous")
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\n" + name + b": v\r\n\r\n")
    try:
        p.next_head()
    except errors.InvalidHeaderName:
        return False
    return True


def response_accepts(name: str, value: str) -> bool:
    try:
        Response().start("200 OK", [(name, value)])
    except ResponseError:
        return False
    return True


def config_accepts_name(name: str) -> bool:
    try:
        v_forwarder_headers(name)
    except ValueError:
        return False
    return True


def test_field_names_are_tokens_for_parser_response_and_settings() -> None:
    for b in range(256):
        c = chr(b)
        want = c in RFC_TCHAR
        assert response_accepts("X" + c + "Y", "v") is want, hex(b)
        if c not in "\r\n:," and not c.isspace():  # framing, or what the settings split on
            assert config_accepts_name("X" + c + "Y") is want, hex(b)
        if c not in "\r\n:":  # these end the name or the line before the check
            assert parser_accepts_name(b"X" + bytes([b]) + b"Y") is want, hex(b)


def test_field_values_refuse_the_same_control_bytes() -> None:
    for b in range(256):
        want = b in RFC_FIELD_BYTE
        # inside the value, so the surrounding whitespace trim does not hide it
        assert response_accepts("X-A", "a" + chr(b) + "b") is want, hex(b)
        if b in (0x0A, 0x0D):
            continue  # ends the line in a request
        p = RequestParser()
        p.feed(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a" + bytes([b]) + b"b\r\n\r\n")
        if want:
            assert p.next_head() is not None, hex(b)
        else:
            with pytest.raises(errors.InvalidHeader):
                p.next_head()


@pytest.mark.parametrize("value", ["close", "CLOSE", "foo, Close", " x ,\tclose\t", "keep-alive, close"])
def test_a_close_token_closes_in_requests_and_responses(value: str) -> None:
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + value.encode() + b"\r\n\r\n")
    assert p.next_head() is not None
    assert not p.keep_alive
    r = Response(keep_alive=True)
    r.start("200 OK", [("Connection", value)])
    assert b"Connection: close\r\n" in r.frame(b"", True)
    assert not r.keep_alive


@pytest.mark.parametrize("value", ["closed", "clo se", "close-ish, x", "", "keep-alive"])
def test_only_the_whole_close_token_closes(value: str) -> None:
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: " + value.encode() + b"\r\n\r\n")
    assert p.next_head() is not None
    assert p.keep_alive
    r = Response(keep_alive=True)
    r.start("200 OK", [("Connection", value)])
    assert b"Connection: close\r\n" not in r.frame(b"", True)
    assert r.keep_alive
