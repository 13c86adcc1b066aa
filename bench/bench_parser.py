"""Request-parser micro-benchmarks (pytest-benchmark; not part of the test suite).

Each contender turns the same bytes into the same thing: a PEP 3333 environ
with REQUEST_METHOD, PATH_INFO (percent-decoded), QUERY_STRING, RAW_URI,
SERVER_PROTOCOL and the HTTP_* / CONTENT_* keys (repeated fields joined with
","), plus the decoded body for the chunked POST. Parsers that only produce
events get the environ built in their callbacks, the way a server on top of
them would. A check outside the timed loop asserts every contender built the
same keys and body.

Scenarios:

* ``get``: a typical browser GET, 529 bytes, 12 header fields.
* ``chunked``: a POST with a 4 KiB body in 8 chunks of 512 bytes.

Run (from the repository root, extensions built in place)::

    PYTHONPATH=src python -m pytest bench/bench_parser.py --benchmark-only \\
        --benchmark-columns=min,median,mean,ops --benchmark-sort=mean -p no:cacheprovider

Contenders: fastwsgi (a fresh parser per request, and one parser reused for
keep-alive requests), httptools (reused parser, environ built in callbacks),
gunicorn_h1c (its C ``parse_to_wsgi_environ`` for the GET, ``H1CProtocol``
callbacks for the chunked body), Gunicorn 27's pure-Python parser
(``http_parser = "python"``) and h11.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import pytest

from fastwsgi._parser import RequestParser

GET = (
    b"GET /static/app/main.css?v=3f9a2c HTTP/1.1\r\n"
    b"Host: www.example.com\r\n"
    b"Connection: keep-alive\r\n"
    b'sec-ch-ua: "Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"\r\n'
    b"sec-ch-ua-mobile: ?0\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/124.0.0.0 Safari/537.36\r\n"
    b'sec-ch-ua-platform: "Linux"\r\n'
    b"Accept: text/css,*/*;q=0.1\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: no-cors\r\n"
    b"Referer: https://www.example.com/\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"\r\n"
)

BODY = bytes(range(256)) * 16  # 4 KiB
CHUNKED = (
    b"POST /api/v1/upload?id=42 HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"User-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
    + b"".join(b"200\r\n" + BODY[i : i + 512] + b"\r\n" for i in range(0, len(BODY), 512))
    + b"0\r\n\r\n"
)

CASES = {"get": (GET, b""), "chunked": (CHUNKED, BODY)}


def header_key(name: str) -> str:
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key


def add_header(env: dict[str, Any], key: str, value: str) -> None:
    if key in env:
        env[key] += "," + value
    else:
        env[key] = value


def split_target(env: dict[str, Any], raw: str) -> None:
    path, _, query = raw.partition("?")
    env["RAW_URI"] = raw
    env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
    env["QUERY_STRING"] = query


# --- contenders: each returns (environ, body) -------------------------------


def fastwsgi_new(data: bytes) -> tuple[dict[str, Any], bytes]:
    p = RequestParser()
    p.feed(data)
    env = p.next_head()
    chunks = []
    while chunk := p.read_body():
        chunks.append(chunk)
    return env, b"".join(chunks)


_REUSED = RequestParser()


def fastwsgi_reused(data: bytes) -> tuple[dict[str, Any], bytes]:
    p = _REUSED
    p.feed(data)
    env = p.next_head()
    chunks = []
    while chunk := p.read_body():
        chunks.append(chunk)
    p.finish()
    return env, b"".join(chunks)


try:
    import httptools
except ImportError:  # pragma: no cover - optional contender
    httptools = None


class _HttptoolsEnv:
    """Environ built in httptools callbacks, as a server on httptools does it."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.reset()

    def reset(self) -> None:
        self.env: dict[str, Any] = {}
        self.url = b""
        self.body: list[bytes] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        add_header(self.env, header_key(name.decode("latin-1")), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        env = self.env
        split_target(env, self.url.decode("latin-1"))
        env["REQUEST_METHOD"] = self.parser.get_method().decode("ascii")
        env["SERVER_PROTOCOL"] = "HTTP/" + self.parser.get_http_version()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)


_HT = _HttptoolsEnv() if httptools else None


def httptools_reused(data: bytes) -> tuple[dict[str, Any], bytes]:
    h = _HT
    h.reset()
    h.parser.feed_data(data)
    return h.env, b"".join(h.body)


try:
    import gunicorn_h1c
except ImportError:  # pragma: no cover - optional contender
    gunicorn_h1c = None


class _H1CEnv(_HttptoolsEnv):
    def __init__(self) -> None:
        self.parser = gunicorn_h1c.H1CProtocol(
            on_url=self.on_url,
            on_header=self.on_header,
            on_headers_complete=self.on_headers_complete,
            on_body=self.on_body,
        )
        self.reset()

    def on_headers_complete(self) -> None:
        env = self.env
        split_target(env, self.url.decode("latin-1"))
        env["REQUEST_METHOD"] = self.parser.method.decode("ascii")
        env["SERVER_PROTOCOL"] = "HTTP/{}.{}".format(*self.parser.http_version)


def gunicorn_h1c_parse(data: bytes) -> tuple[dict[str, Any], bytes]:
    if b"Transfer-Encoding" in data:
        h = _H1CEnv()
        h.parser.feed(data)
        return h.env, b"".join(h.body)
    env = gunicorn_h1c.parse_to_wsgi_environ(data)
    # C-built, but PATH_INFO is left percent-encoded and RAW_URI is absent.
    path = env["PATH_INFO"]
    if "%" in path:
        env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
    env["RAW_URI"] = path + ("?" + env["QUERY_STRING"] if env["QUERY_STRING"] else "")
    del env["_consumed"], env["wsgi.url_scheme"]
    return env, b""


try:
    from gunicorn.config import Config
    from gunicorn.http.message import Request as GunicornRequest
    from gunicorn.http.unreader import IterUnreader

    _GCFG = Config()
    _GCFG.set("http_parser", "python")
except ImportError:  # pragma: no cover - optional contender
    GunicornRequest = None


def gunicorn_python(data: bytes) -> tuple[dict[str, Any], bytes]:
    req = GunicornRequest(_GCFG, IterUnreader([data]), ("127.0.0.1", 5000))
    env: dict[str, Any] = {
        "REQUEST_METHOD": req.method,
        "SERVER_PROTOCOL": "HTTP/{}.{}".format(*req.version),
        "QUERY_STRING": req.query,
        "RAW_URI": req.uri,
    }
    # the header loop of gunicorn.http.wsgi.create()
    repeated: dict[str, list[str]] = {}
    for name, value in req.headers:
        if name == "CONTENT-TYPE":
            env["CONTENT_TYPE"] = value
            continue
        if name == "CONTENT-LENGTH":
            env["CONTENT_LENGTH"] = value
            continue
        key = "HTTP_" + name.replace("-", "_")
        if key in env:
            repeated.setdefault(key, [env[key]]).append(value)
        else:
            env[key] = value
    for key, values in repeated.items():
        env[key] = ",".join(values)
    env["PATH_INFO"] = unquote_to_bytes(req.path).decode("latin-1")
    return env, req.body.read()


try:
    import h11
except ImportError:  # pragma: no cover - optional contender
    h11 = None


def h11_parse(data: bytes) -> tuple[dict[str, Any], bytes]:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    ev = conn.next_event()
    env: dict[str, Any] = {
        "REQUEST_METHOD": ev.method.decode("ascii"),
        "SERVER_PROTOCOL": "HTTP/" + ev.http_version.decode("ascii"),
    }
    split_target(env, ev.target.decode("latin-1"))
    # h11 lower-cases names; raw_items() keeps them as received
    for name, value in ev.headers.raw_items():
        add_header(env, header_key(name.decode("latin-1")), value.decode("latin-1"))
    chunks = []
    while True:
        ev = conn.next_event()
        if type(ev) is h11.Data:
            chunks.append(ev.data)
        else:
            break
    return env, b"".join(chunks)


CONTENDERS = {
    "fastwsgi_new": fastwsgi_new,
    "fastwsgi_reused": fastwsgi_reused,
    "httptools": httptools_reused if httptools else None,
    "gunicorn_h1c": gunicorn_h1c_parse if gunicorn_h1c else None,
    "gunicorn_python": gunicorn_python if GunicornRequest else None,
    "h11": h11_parse if h11 else None,
}


@pytest.mark.parametrize("contender", list(CONTENDERS))
@pytest.mark.parametrize("case", list(CASES))
def test_parse(benchmark: Any, case: str, contender: str) -> None:
    fn = CONTENDERS[contender]
    if fn is None:
        pytest.skip(f"{contender} is not installed")
    data, body = CASES[case]
    benchmark.group = case
    reference, ref_body = fastwsgi_new(data)
    env, got_body = fn(data)
    assert env == reference, contender
    assert got_body == ref_body == body
    benchmark(fn, data)
