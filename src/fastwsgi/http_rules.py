"""HTTP byte rules that both the compiled core and the pure-Python side read.

RFC 9110 section 5.6.2 tchar is spelled here and nowhere else: the parser and
the response writer fill their byte tables from ``TCHARS`` at import (through
``includes/http.pxd``), and ``config.py`` checks configured field names
against it, so what a request may name, a response may name and a setting may
name cannot drift apart.
"""

from __future__ import annotations

TCHARS = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def is_token(s: str) -> bool:
    """Whether ``s`` is a non-empty RFC 9110 token."""
    return bool(s) and set(s) <= _TCHAR_SET


_TCHAR_SET = frozenset(TCHARS)
