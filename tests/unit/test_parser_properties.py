"""Property and differential tests for RequestParser.

* Any split of a valid request stream gives the same requests, headers,
  bodies and trailers as feeding it whole.
* Arbitrary bytes (and mutated valid requests) either parse or raise a
  ParseError subclass, never another exception, and the outcome does not
  depend on the split.
* On generated valid requests we agree with h11 and httptools on the method,
  target, version, header fields and decoded body.

Example counts stay modest so the suite stays fast on a small machine.
"""

from __future__ import annotations

from typing import Any

import h11
import httptools
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastwsgi import errors
from fastwsgi._parser import RequestParser

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TCHAR = "!#$%&'*+-.^`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%"
VCHAR = "".join(chr(c) for c in range(0x21, 0x7F))

field_names = st.one_of(
    st.sampled_from(
        ["User-Agent", "Accept", "accept-encoding", "Cookie", "X-Request-Id", "Referer"]
    ),
    st.text(TCHAR.replace("_", ""), min_size=1, max_size=12).map(lambda s: "X-" + s),
)
field_values = st.text(VCHAR + " \t", max_size=40).map(lambda s: s.strip(" \t"))
paths = st.lists(st.text(PCHAR.replace("%", ""), max_size=8), min_size=1, max_size=4).map(
    lambda segs: "/" + "/".join(segs)
)
queries = st.one_of(st.just(""), st.text(PCHAR + "/?", max_size=20).map(lambda q: "?" + q))


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PROPFIND"]))
    target = draw(paths) + draw(queries)
    fields = draw(st.lists(st.tuples(field_names, field_values), max_size=8))
    body = draw(st.binary(max_size=200))
    framing = draw(st.sampled_from(["length", "chunked", "none"])) if body else "none"
    trailers: list[tuple[str, str]] = []
    head = [f"{method} {target} HTTP/1.1", "Host: example.com"]
    head += [f"{n}: {v}" for n, v in fields]
    wire_body = b""
    if framing == "length":
        head.append(f"Content-Length: {len(body)}")
        wire_body = body
    elif framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        cuts = sorted(
            draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=4, unique=True))
        )
        pieces, start = [], 0
        for c in [*cuts, len(body)]:
            if c > start:
                pieces.append(body[start:c])
                start = c
        for piece in pieces:
            wire_body += b"%x\r\n" % len(piece) + piece + b"\r\n"
        trailers = draw(st.lists(st.tuples(field_names, field_values), max_size=2))
        wire_body += b"0\r\n" + b"".join(f"{n}: {v}\r\n".encode() for n, v in trailers) + b"\r\n"
    else:
        body = b""
    raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + wire_body
    return {
        "raw": raw,
        "method": method,
        "target": target,
        "fields": [("host", "example.com"), *[(n.lower(), v) for n, v in fields]]
        + ([("content-length", str(len(body)))] if framing == "length" else [])
        + ([("transfer-encoding", "chunked")] if framing == "chunked" else []),
        "body": body,
        "trailers": [(n.upper(), v) for n, v in trailers],
    }


def run(pieces: list[bytes], limit: int = 50) -> tuple[str, Any]:
    """Parse a stream fed in pieces; ("ok", requests) or ("error", class name)."""
    p = RequestParser()
    out: list[tuple[Any, ...]] = []
    in_body = False
    body = b""
    try:
        for piece in [*pieces, None]:
            if piece is None:
                p.feed_eof()
            else:
                p.feed(piece)
            for _ in range(10_000):
                if not in_body:
                    env = p.next_head()
                    if env is None:
                        break
                    in_body, body = True, b""
                    head = (env, p.headers)
                chunk = p.read_body(17)
                if chunk is None:
                    break
                if chunk:
                    body += chunk
                    continue
                out.append((*head, body, p.trailers))
                in_body = False
                if len(out) >= limit:
                    return "ok", out
                p.finish()
    except errors.ParseError as exc:
        return "error", type(exc).__name__
    return "ok", out


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, start = [], 0
    for c in [*points, len(data)]:
        out.append(data[start:c])
        start = c
    return [p for p in out if p]


@SETTINGS
@given(st.lists(requests(), min_size=1, max_size=3), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_gives_the_same_result(reqs: list[dict[str, Any]], cuts: list[int]) -> None:
    stream = b"".join(r["raw"] for r in reqs)
    whole = run([stream])
    assert whole[0] == "ok"
    assert len(whole[1]) == len(reqs)
    for (_env, _headers, body, trailers), r in zip(whole[1], reqs, strict=True):
        assert body == r["body"]
        assert trailers == r["trailers"]
    assert run(split_at(stream, cuts)) == whole


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    whole = run([data])
    assert run([data[i : i + 1] for i in range(len(data))]) == whole


@SETTINGS
@given(
    requests(),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), min_size=1, max_size=4),
)
def test_mutated_requests_parse_or_raise_parse_error(
    req: dict[str, Any], edits: list[tuple[int, bytes]]
) -> None:
    data = bytearray(req["raw"])
    for at, blob in edits:
        i = at % (len(data) + 1)
        data[i : i + len(blob)] = blob
    data = bytes(data)
    whole = run([data])
    assert run([data[i : i + 1] for i in range(len(data))]) == whole
    assert run(split_at(data, [a for a, _ in edits])) == whole


@SETTINGS
@given(
    requests(),
    st.lists(st.sampled_from(["", " ", "\t"]), min_size=1, max_size=3),
    st.lists(st.sampled_from(["", " ", "\t"]), max_size=3),
    st.lists(st.integers(0, 10_000), max_size=6),
)
def test_empty_te_elements_change_nothing(
    req: dict[str, Any], before: list[str], after: list[str], cuts: list[int]
) -> None:
    """RFC 9110 5.6.1: empty elements around ``chunked`` are ignored, so the
    request parses exactly as with the plain spelling, however it is split."""
    plain = b"Transfer-Encoding: chunked\r\n"
    if plain not in req["raw"]:
        return
    spelled = ",".join([*before, " chunked", *after]).encode()
    data = req["raw"].replace(plain, b"Transfer-Encoding:" + spelled + b"\r\n", 1)
    whole, expected = run([data]), run([req["raw"]])
    assert whole[0] == "ok"
    for env, *_rest in whole[1] + expected[1]:
        env.pop("HTTP_TRANSFER_ENCODING")
    assert [(e, b, t) for e, _h, b, t in whole[1]] == [(e, b, t) for e, _h, b, t in expected[1]]
    assert run(split_at(data, cuts)) == run([data])


@SETTINGS
@given(requests(), st.sampled_from(b"23456789"))
def test_higher_minor_version_parses_as_http11(req: dict[str, Any], minor: int) -> None:
    """RFC 9110 2.5: HTTP/1.2-1.9 parse exactly as HTTP/1.1."""
    data = req["raw"].replace(b" HTTP/1.1\r\n", b" HTTP/1.%c\r\n" % minor, 1)
    assert run([data]) == run([req["raw"]])


# --- differential: h11 and httptools ----------------------------------------


def ours(raw: bytes) -> dict[str, Any]:
    p = RequestParser()
    p.feed(raw)
    env = p.next_head()
    assert env is not None
    body = b""
    while (chunk := p.read_body()) != b"":
        assert chunk is not None
        body += chunk
    return {
        "method": env["REQUEST_METHOD"],
        "target": env["RAW_URI"],
        "version": p.version,
        "fields": [(n.lower(), v) for n, v in p.headers],
        "body": body,
        "trailers": [(n.lower(), v) for n, v in p.trailers],
    }


def with_h11(raw: bytes) -> dict[str, Any]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(raw)
    conn.receive_data(b"")
    result: dict[str, Any] = {"body": b""}
    for _ in range(1000):
        ev = conn.next_event()
        if isinstance(ev, h11.Request):
            result["method"] = ev.method.decode()
            result["target"] = ev.target.decode()
            result["version"] = tuple(int(x) for x in ev.http_version.decode().split("."))
            result["fields"] = [(n.decode(), v.decode("latin-1")) for n, v in ev.headers]
        elif isinstance(ev, h11.Data):
            result["body"] += bytes(ev.data)
        elif isinstance(ev, h11.EndOfMessage):
            result["trailers"] = [(n.decode(), v.decode("latin-1")) for n, v in ev.headers]
            return result
        else:
            raise AssertionError(ev)
    raise AssertionError("h11 never finished")


class _Collector:
    def __init__(self) -> None:
        self.url = b""
        self.fields: list[tuple[str, str]] = []
        self.body = b""
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields.append((name.decode().lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.done = True


def with_httptools(raw: bytes) -> dict[str, Any]:
    c = _Collector()
    p = httptools.HttpRequestParser(c)
    p.feed_data(raw)
    assert c.done
    return {
        "method": p.get_method().decode(),
        "target": c.url.decode(),
        "version": tuple(int(x) for x in p.get_http_version().split(".")),
        # httptools reports trailer fields through on_header too
        "fields+trailers": c.fields,
        "body": c.body,
    }


@SETTINGS
@given(requests())
def test_agrees_with_h11_and_httptools(req: dict[str, Any]) -> None:
    mine = ours(req["raw"])
    assert mine["fields"] == req["fields"]
    assert mine["body"] == req["body"]
    assert mine["trailers"] == [(n.lower(), v) for n, v in req["trailers"]]
    assert mine == with_h11(req["raw"])
    theirs = with_httptools(req["raw"])
    assert theirs.pop("fields+trailers") == mine["fields"] + mine["trailers"]
    assert theirs == {k: v for k, v in mine.items() if k not in ("fields", "trailers")}
