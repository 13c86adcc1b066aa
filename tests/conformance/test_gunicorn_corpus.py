"""Replay Gunicorn 27.0.1's request corpus (shared/conformance/gunicorn-requests).

Every valid case is fed whole, one byte at a time, split after each CRLF and
in seeded random pieces, and every request's body is read whole, in reads of
1, 7 and 4096 bytes and line by line; the environ, the header list, the body
and the trailers must match the JSON every time. Every invalid case must
raise the named exception (or one Gunicorn's own tests also accept) with the
JSON status, however the input is split, and leave the parser dead.

fastwsgi answers 400 to HTTP/1.1 without Host (RFC 9112 3.2), Gunicorn does
not: the corpus already adds ``permit_missing_host`` to the valid cases that
need it. Some invalid cases also lack Host but fail only later, in the body
(a bad chunk size): those run with ``permit_missing_host`` so the body error
is reached, and once more with the defaults, where MissingHost must win.
"""

from __future__ import annotations

import json
import random
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from shared_data import gunicorn_requests

from fastwsgi import errors
from fastwsgi._parser import RequestParser

CORPUS = gunicorn_requests()
INDEX: dict[str, list[dict[str, Any]]] = json.loads((CORPUS / "index.json").read_text())

# Gunicorn setting name -> RequestParser keyword (same names, same meaning).
DIRECT_SETTINGS = {
    "limit_request_line",
    "limit_request_fields",
    "limit_request_field_size",
    "header_map",
    "permit_obsolete_folding",
    "permit_unconventional_http_method",
    "casefold_http_method",
    "strip_header_spaces",
    "permit_missing_host",
    "proxy_protocol",
}

BODY_ERRORS = {"InvalidChunkSize", "InvalidChunkExtension", "ChunkMissingTerminator"}


def parser_for(settings: dict[str, Any]) -> RequestParser:
    kwargs: dict[str, Any] = {}
    for name, value in settings.items():
        if name in DIRECT_SETTINGS:
            kwargs[name] = value
        elif name == "forwarded_allow_ips":
            # The corpus peer has no address, so it passes any allow list;
            # the parser is trusted below in every case anyway.
            assert value == ["*"], value
        else:
            raise AssertionError(f"corpus setting {name!r} has no mapping")
    p = RequestParser(**kwargs)
    # As on a UNIX socket: Gunicorn trusts a peer without an address for
    # forwarded_allow_ips and proxy_allow_ips alike.
    p.set_trusted(True)
    p.set_proxy_allowed(True)
    return p


# --- ways to cut the input -------------------------------------------------


def whole(data: bytes) -> list[bytes]:
    return [data]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def at_crlf(data: bytes) -> list[bytes]:
    return [piece for piece in re.split(rb"(?<=\r\n)", data) if piece]


def random_pieces(seed: str) -> Callable[[bytes], list[bytes]]:
    def cut(data: bytes) -> list[bytes]:
        rnd = random.Random(seed)
        out, i = [], 0
        while i < len(data):
            n = rnd.randint(1, 40)
            out.append(data[i : i + n])
            i += n
        return out

    return cut


FEEDERS: dict[str, Callable[[bytes], list[bytes]]] = {
    "whole": whole,
    "bytewise": bytewise,
    "crlf": at_crlf,
    "random0": random_pieces("r0"),
    "random1": random_pieces("r1"),
}


class Feed:
    """Hands the parser one piece per pump(); EOF after the last one."""

    def __init__(self, parser: RequestParser, pieces: list[bytes]) -> None:
        self.p = parser
        self.pieces: Iterator[bytes] = iter(pieces)
        self.at_eof = False
        self.budget = len(pieces) + 2  # every loop below is bounded by this

    def pump(self) -> None:
        self.budget -= 1
        assert self.budget >= 0, "parser keeps asking for data after EOF"
        piece = next(self.pieces, None)
        if piece is None:
            if not self.at_eof:
                self.at_eof = True
                self.p.feed_eof()
        else:
            self.p.feed(piece)

    def head(self) -> dict[str, str]:
        while True:
            env = self.p.next_head()
            if env is not None:
                return env
            self.pump()

    def read(self, n: int = -1) -> bytes:
        while True:
            data = self.p.read_body(n)
            if data is not None:
                return data
            self.pump()


# --- ways to read a body ---------------------------------------------------


def read_whole(f: Feed) -> bytes:
    out = bytearray()
    for _ in range(1_000_000):
        chunk = f.read()
        if not chunk:
            return bytes(out)
        out += chunk
    raise AssertionError("body never ended")


def read_sized(size: int) -> Callable[[Feed], bytes]:
    def reader(f: Feed) -> bytes:
        out = bytearray()
        for _ in range(1_000_000):
            chunk = f.read(size)
            assert len(chunk) <= size
            if not chunk:
                return bytes(out)
            out += chunk
        raise AssertionError("body never ended")

    return reader


def read_lines(f: Feed) -> bytes:
    """A minimal readline() over read_body(), as wsgi.input would do it."""
    pending = bytearray()
    lines: list[bytes] = []
    done = False
    for _ in range(1_000_000):
        nl = pending.find(b"\n")
        if nl >= 0:
            lines.append(bytes(pending[: nl + 1]))
            del pending[: nl + 1]
            continue
        if done:
            if pending:
                lines.append(bytes(pending))
            assert all(line.endswith(b"\n") for line in lines[:-1])
            return b"".join(lines)
        chunk = f.read(5)
        if chunk:
            pending += chunk
        else:
            done = True
    raise AssertionError("body never ended")


READERS: dict[str, Callable[[Feed], bytes]] = {
    "whole": read_whole,
    "r1": read_sized(1),
    "r7": read_sized(7),
    "r4096": read_sized(4096),
    "lines": read_lines,
}


# --- expectations ----------------------------------------------------------


def expected_environ(req: dict[str, Any]) -> dict[str, str]:
    """PEP 3333 keys the way Gunicorn's wsgi.create() builds them."""
    env: dict[str, str] = {
        "REQUEST_METHOD": req["method"],
        "RAW_URI": req["uri"],
        "QUERY_STRING": req["query"],
        "SERVER_PROTOCOL": "HTTP/{}.{}".format(*req["version"]),
    }
    uri = req["uri"]
    if req["method"] == "CONNECT" and not uri.startswith("/") and "://" not in uri:
        # Authority-form: urlsplit's "path" of "example.com:443" is "443";
        # fastwsgi gives the whole authority, which is what CONNECT names.
        env["PATH_INFO"] = uri
    else:
        env["PATH_INFO"] = urllib.parse.unquote_to_bytes(req["path"]).decode("latin-1")
    repeated: dict[str, list[str]] = {}
    for name, value in req["headers"]:
        if name == "CONTENT-TYPE":
            key = "CONTENT_TYPE"
        elif name == "CONTENT-LENGTH":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.replace("-", "_")
        repeated.setdefault(key, []).append(value)
    for key, values in repeated.items():
        env[key] = ",".join(values)
    return env


def valid_cases() -> list[Any]:
    return [pytest.param(c["name"], id=c["name"]) for c in INDEX["valid"]]


def invalid_cases() -> list[Any]:
    return [pytest.param(c["name"], id=c["name"]) for c in INDEX["invalid"]]


def load(kind: str, name: str) -> tuple[bytes, dict[str, Any]]:
    data = (CORPUS / kind / f"{name}.http").read_bytes()
    spec = json.loads((CORPUS / kind / f"{name}.json").read_text(encoding="utf-8"))
    return data, spec


def parse_all(data: bytes, spec: dict[str, Any], feeder: str, reader: str) -> list[dict[str, Any]]:
    p = parser_for(spec["settings"])
    f = Feed(p, FEEDERS[feeder](data))
    got = []
    for _ in spec["requests"]:
        env = f.head()
        body = READERS[reader](f)
        # After the end of the body every further read says so again.
        assert p.read_body() == b""
        assert p.read_body(3) == b""
        got.append(
            {
                "env": env,
                "headers": p.headers,
                "version": p.version,
                "body": body,
                "trailers": p.trailers,
                "keep_alive": p.keep_alive,
            }
        )
        if not p.keep_alive:
            break
        p.finish()
    return got


@pytest.mark.parametrize("feeder", list(FEEDERS))
@pytest.mark.parametrize("name", valid_cases())
def test_valid(name: str, feeder: str) -> None:
    data, spec = load("valid", name)
    for reader in READERS:
        got = parse_all(data, spec, feeder, reader)
        assert len(got) == len(spec["requests"]), reader
        for req, res in zip(spec["requests"], got, strict=True):
            assert res["env"] == expected_environ(req), reader
            assert res["headers"] == [tuple(h) for h in req["headers"]], reader
            assert res["version"] == tuple(req["version"])
            assert res["body"] == req["body"].encode("latin-1"), reader
            assert res["trailers"] == [tuple(t) for t in req["trailers"]], reader


def _lacks_host(data: bytes) -> bool:
    """An HTTP/1.1 request line and no Host field anywhere in the input."""
    first = data.split(b"\r\n", 1)[0]
    return first.endswith(b" HTTP/1.1") and re.search(rb"\r\nhost[ \t]*:", data, re.I) is None


def run_invalid(data: bytes, settings: dict[str, Any], feeder: str) -> tuple[BaseException, bool]:
    """Drive the parser until it raises; returns the error and whether a head
    was parsed before it."""
    p = parser_for(settings)
    f = Feed(p, FEEDERS[feeder](data))
    head_seen = False
    try:
        for _ in range(100):
            f.head()
            head_seen = True
            read_whole(f)
            if not p.keep_alive:
                break
            p.finish()
    except errors.ParseError as exc:
        # Dead after an error: every further call raises the same class again.
        assert p.dead
        with pytest.raises(type(exc)):
            p.feed(b"GET / HTTP/1.1\r\n\r\n")
        with pytest.raises(type(exc)):
            p.next_head()
        with pytest.raises(type(exc)):
            p.read_body()
        return exc, head_seen
    raise AssertionError("no error raised")


def check_error(exc: BaseException, spec: dict[str, Any]) -> None:
    names = [spec["exception"], *spec.get("also_acceptable", [])]
    classes = tuple(getattr(errors, n) for n in names)
    assert isinstance(exc, classes), f"{type(exc).__name__}: {exc}; expected one of {names}"
    assert exc.status == spec["status"]


@pytest.mark.parametrize("feeder", list(FEEDERS))
@pytest.mark.parametrize("name", invalid_cases())
def test_invalid(name: str, feeder: str) -> None:
    data, spec = load("invalid", name)
    settings = dict(spec["settings"])
    if _lacks_host(data) and spec["exception"] in BODY_ERRORS:
        settings["permit_missing_host"] = True
    exc, head_seen = run_invalid(data, settings, feeder)
    check_error(exc, spec)
    if spec["exception"] in BODY_ERRORS or name.startswith("rfc9110_trailer_forbidden"):
        assert head_seen, "a body error must come after a complete head"


@pytest.mark.parametrize(
    "name",
    [
        c
        for c in invalid_cases()
        if _lacks_host((CORPUS / "invalid" / f"{c.values[0]}.http").read_bytes())
        and json.loads((CORPUS / "invalid" / f"{c.values[0]}.json").read_text())["exception"]
        in BODY_ERRORS
    ],
)
def test_invalid_body_error_without_host_is_missing_host_by_default(name: str) -> None:
    data, spec = load("invalid", name)
    exc, head_seen = run_invalid(data, spec["settings"], "whole")
    assert isinstance(exc, errors.MissingHost)
    assert exc.status == 400
    assert not head_seen


def test_corpus_is_complete() -> None:
    # The README promises 62 valid cases (66 requests) and 81 invalid ones.
    assert len(INDEX["valid"]) == 62
    assert sum(c["requests"] for c in INDEX["valid"]) == 66
    assert len(INDEX["invalid"]) == 81
