"""The scripted requests of the differential tier, one :class:`Case` each.

A case runs against one target and returns its observations (see
``harness.py``). ``phase`` 1 cases run on every target at once; phase 2
cases watch the server's log, so they run afterwards, one target per server
(``direct``), with nothing else talking to it. ``expect`` holds the fields a
case checks absolutely on the fastwsgi targets matching ``expect_on``:
behaviour Gunicorn does not get right either, so its value is no reference.
"""

from __future__ import annotations

import gzip
import http.client
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from harness import (
    ABSENT,
    CLIENT_TIMEOUT,
    Req,
    Target,
    blob,
    body_digest,
    curl_request,
    curl_statuses,
    py_request,
    raw_exchange,
    raw_fields,
    wait_logs,
)

Run = Callable[[Target, Path], dict[str, str]]


@dataclass
class Case:
    name: str
    run: Run
    phase: int = 1
    targets: str = "*"  # which targets run it (fnmatch on the label)
    expect: dict[str, str] = field(default_factory=dict)
    expect_on: tuple[str, ...] = ("fastwsgi-*",)

    def runs_on(self, t: Target) -> bool:
        return fnmatchcase(t.label, self.targets)


CASES: dict[str, Case] = {}


def add(name: str, run: Run, **kw: object) -> None:
    assert name not in CASES, f"case {name} defined twice"
    CASES[name] = Case(name, run, **kw)  # type: ignore[arg-type]


def case(name: str, **kw: object) -> Callable[[Run], Run]:
    """``add`` as a decorator, for cases that are functions of their own."""

    def register(fn: Run) -> Run:
        add(name, fn, **kw)
        return fn

    return register


def both(req: Req) -> Run:
    """The request once with http.client and once with curl."""
    return lambda t, tmp: py_request(t, req) | curl_request(t, req, tmp)


def head(path: str) -> Run:
    """HEAD with both clients, and over a raw socket read to the close: no body bytes."""

    def run(t: Target, tmp: Path) -> dict[str, str]:
        raw = raw_exchange(t, [b"HEAD %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                               % path.encode()])
        after_head = raw.partition(b"\r\n\r\n")[2]
        return both(Req("HEAD", path))(t, tmp) | {"raw bytes after head": str(len(after_head))}

    return run


def py_only(req: Req) -> Run:
    return lambda t, tmp: py_request(t, req)


def curl_only(req: Req) -> Run:
    return lambda t, tmp: curl_request(t, req, tmp)


def static_files(root: Path) -> None:
    """What WhiteNoise, send_file and file_wrapper serve, written once per run."""
    css = b"".join(b".rule-%d { margin: %dpx; }\n" % (i, i % 17) for i in range(4000))
    (root / "app.css").write_bytes(css)
    (root / "app.css.gz").write_bytes(gzip.compress(css, mtime=0))
    (root / "blob.bin").write_bytes(blob(300_000, seed=1))


SMALL = blob(1024, seed=2)
LARGE = blob(8 * 1024 * 1024, seed=3)
MEDIUM = blob(300 * 1024, seed=4)
MIB = blob(1024 * 1024, seed=5)
BIG = blob(16 * 1024 * 1024, seed=8)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EXPECT = {"Expect": "100-continue"}

# --- Django: the admin's login page, CSRF, uploads, FileResponse, WhiteNoise ---------
add("django-admin-login", both(Req("GET", "/django/admin/login/?next=/django/admin/")))
add("django-csrf-refused",
    both(Req("POST", "/django/admin/login/", FORM, b"username=a&password=b")))
add("django-upload-small", both(Req("POST", "/django/upload", body=SMALL)))
add("django-upload-large", both(Req("POST", "/django/upload", body=LARGE)))
add("django-file-response", both(Req("GET", "/django/download")))
add("whitenoise-gzip", both(Req("GET", "/django/static/app.css", {"Accept-Encoding": "gzip"})))
add("whitenoise-identity", both(Req("GET", "/django/static/app.css")))
add("whitenoise-range", both(Req("GET", "/django/static/app.css", {"Range": "bytes=100-199"})))
add("whitenoise-head", head("/django/static/app.css"))


def conditional(path: str, validator: str, condition: str) -> Run:
    """GET ``path``, then GET it again with its own validator as ``condition``."""

    def run(t: Target, tmp: Path) -> dict[str, str]:
        first = py_request(t, Req("GET", path), prefix="first ")
        value = first.get(f"first h:{validator}", ABSENT)
        req = Req("GET", path, {condition: value})
        return {f"first h:{validator}": value} | py_request(t, req) | curl_request(t, req, tmp)

    return run


add("whitenoise-304-etag", conditional("/django/static/app.css", "etag", "If-None-Match"))
add("whitenoise-304-date",
    conditional("/django/static/app.css", "last-modified", "If-Modified-Since"))

# --- Flask: streams, send_file, chunked uploads, Expect, abort(413) -----------------
add("flask-hello", both(Req("GET", "/flask/hello")))
add("flask-stream", both(Req("GET", "/flask/stream")))
add("flask-stream-head", head("/flask/stream"))
add("flask-send-file-range", both(Req("GET", "/flask/file", {"Range": "bytes=0-99"})))
add("flask-send-file-304", conditional("/flask/file", "etag", "If-None-Match"))
add("flask-upload-chunked", both(Req("POST", "/flask/upload", body=MEDIUM, chunked=True)))
add("flask-upload-expect", curl_only(Req("POST", "/flask/upload", EXPECT, MIB)))
# Above the view's 1 KiB limit but small enough to arrive with the head, so
# whether the server reads it does not decide what the client sees.
add("flask-abort-413", both(Req("POST", "/flask/limit", body=blob(2048, seed=6))))
add("flask-abort-413-expect",
    curl_only(Req("POST", "/flask/limit", EXPECT, blob(2048, seed=6))))

# --- Pyramid (assembled by PasteDeploy from site.ini) and Falcon ---------------------
add("pyramid-hello", both(Req("GET", "/pyramid/hello")))
add("pyramid-echo", both(Req("POST", "/pyramid/echo", body=MEDIUM)))
add("pyramid-404", py_only(Req("GET", "/pyramid/nowhere")))
add("falcon-items", both(Req("GET", "/falcon/items?q=x")))
add("falcon-post", both(Req("POST", "/falcon/items", body=MEDIUM)))
add("falcon-404", py_only(Req("GET", "/falcon/nowhere")))

# --- the raw app: streams, file_wrapper, HEAD, early answers, failures --------------
add("raw-stream", both(Req("GET", "/raw/stream")))
add("raw-write", both(Req("GET", "/raw/write")))
add("raw-list-no-length", both(Req("GET", "/raw/list")))
add("raw-empty-no-length", both(Req("GET", "/raw/empty")))
add("raw-file-wrapper", both(Req("GET", "/raw/file")))
add("raw-file-wrapper-head", head("/raw/file"))
add("raw-head", head("/raw/hello"))
add("raw-upload-chunked", both(Req("POST", "/raw/echo", body=MEDIUM, chunked=True)))
add("raw-upload-expect", curl_only(Req("POST", "/raw/echo", EXPECT, MIB)))
add("raw-upload-large", py_only(Req("POST", "/raw/echo", body=LARGE)))
add("raw-early-small", both(Req("POST", "/raw/early", body=SMALL)))
# A stream that fails after two parts must look truncated to the client
# (issue 18 item 2). Behind nginx's default HTTP/1.0 upstream the response is
# close-delimited, so nginx cannot tell: there it is only compared.
add(
    "raw-fail-mid-stream",
    both(Req("GET", "/raw/fail")),
    expect={"curl exit": "18", "py error": "IncompleteRead"},
    expect_on=("fastwsgi-*/direct", "fastwsgi-gthread/nginx"),
)


@case("raw-http10-stream")
def http10_stream(t: Target, tmp: Path) -> dict[str, str]:
    # HTTP/1.0 has no chunked coding: unknown length is close-delimited.
    return raw_fields(raw_exchange(t, [b"GET /raw/stream HTTP/1.0\r\nHost: x\r\n\r\n"]))


@case("raw-fail-connection-close")
def fail_connection_close(t: Target, tmp: Path) -> dict[str, str]:
    # Chunked also when the connection closes after the response (issue 18 item 2).
    return raw_fields(raw_exchange(
        t, [b"GET /raw/fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]))


@case("raw-pipelined")
def pipelined(t: Target, tmp: Path) -> dict[str, str]:
    # Two requests in one packet: both answered, in order, on every worker.
    data = raw_exchange(t, [b"GET /raw/hello HTTP/1.1\r\nHost: x\r\n\r\n"
                            b"GET /raw/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])
    return {"raw statuses": " ".join(re.findall(r"HTTP/1\.1 (\d{3})", data.decode("latin-1")))}


@case("keep-alive-session")
def session(t: Target, tmp: Path) -> dict[str, str]:
    # One http.client connection for a GET, a POST and a stream: which
    # responses let the next request reuse the connection.
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=CLIENT_TIMEOUT)
    obs: dict[str, str] = {}
    try:
        for i, (method, path, body) in enumerate([("GET", "/raw/hello", None),
                                                  ("POST", "/raw/echo", SMALL),
                                                  ("GET", "/raw/stream", None),
                                                  ("GET", "/falcon/items", None)]):
            sock = conn.sock
            conn.request(method, path, body=body)
            resp = conn.getresponse()
            obs[f"{i} status"] = str(resp.status)
            obs[f"{i} body"] = body_digest(resp.read())
            if i:
                obs[f"{i} reused the connection"] = "yes" if conn.sock is sock else "no"
    finally:
        conn.close()
    return obs


@case("raw-slow-client")
def slow_client(t: Target, tmp: Path) -> dict[str, str]:
    body = blob(8 * 1024, seed=7)
    head = (b"POST /raw/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body))
    pieces = [head[:10], head[10:40], head[40:]] + [body[i : i + 1024]
                                                     for i in range(0, len(body), 1024)]
    return raw_fields(raw_exchange(t, pieces, gap=0.08))


# --- absolute checks: every app status reaches the client through nginx -----------------
# variant: (request, how many); 16 MiB ones are few, for the tier's time budget.
EARLY = {
    "buffered": (Req("POST", "/raw/early", body=MIB), 8),
    "buffered-16MiB": (Req("POST", "/raw/early", body=BIG), 2),
    "expect-100": (Req("POST", "/raw/early", EXPECT, MIB), 8),
    "unbuffered": (Req("POST", "/nobuf/raw/early", body=MIB), 8),
}


@case("early-answer-behind-nginx", targets="fastwsgi-*/nginx",
      expect={name: f"413x{n}" for name, (_, n) in EARLY.items()})
def early_behind_nginx(t: Target, tmp: Path) -> dict[str, str]:
    # An app's 413 to a POST it never reads (issue 18 item 1): nginx must
    # relay it, with request buffering on and off, with and without Expect.
    obs = {}
    for name, (req, n) in EARLY.items():
        codes = curl_statuses(t, [req] * n, tmp)
        obs[name] = " ".join(f"{c}x{codes.count(c)}" for c in sorted(set(codes)))
    return obs


# --- phase 2: what the server's log says ------------------------------------------------
REJECTS = {
    "bad-request-line": b"GARBAGE\r\n\r\n",
    "uri-too-long": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-too-large": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    "unknown-transfer-coding": (b"POST /raw/echo HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding: foo\r\n\r\n0\r\n\r\n"),
    "content-length-and-chunked": (b"POST /raw/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "content-length-twice": (b"POST /raw/echo HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Length: 5, 5\r\nConnection: close\r\n\r\nhello"),
    "obs-fold": b"GET /raw/hello HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\nConnection: close\r\n\r\n",
    "control-char-in-value": (b"GET /raw/hello HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n"
                              b"Connection: close\r\n\r\n"),
    # Issue 18 item 7 (RFC 9110 4.2.1, 5.6.1, 2.5), checked absolutely below.
    "empty-host": b"GET /raw/hello HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
    "te-empty-list-element": (b"POST /raw/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                              b"Transfer-Encoding: , chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
    "te-empty-with-content-length": (b"POST /raw/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n"
                                     b"Content-Length: 2\r\nConnection: close\r\n\r\nhi"),
    "http-1.2": b"GET /raw/hello HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n",
}
ACCESS_REJECTED = r'" (400|414|431|501) '


@case("rejected-requests", phase=2, targets="*/direct",
      expect={"error log: Invalid request from ip=": "yes",
              "access log: rejected statuses": "yes",
              "empty-host status": "400",
              "te-empty-list-element status": "200",
              "te-empty-with-content-length status": "400",
              "http-1.2 status": "200"})
def rejected(t: Target, tmp: Path) -> dict[str, str]:
    # Issue 18 item 3: Gunicorn's WARNING line, and an access line as nginx writes.
    mark = len(t.log())
    obs = {f"{name} status": raw_fields(raw_exchange(t, [data]))["raw status"]
           for name, data in REJECTS.items()}
    return obs | wait_logs(t, {
        "error log: Invalid request from ip=": r"Invalid request from ip=127\.0\.0\.1",
        "access log: rejected statuses": ACCESS_REJECTED,
    }, mark)


STUCK_LOG = {
    "log: WORKER TIMEOUT": r"WORKER TIMEOUT \(pid:\d+\)",
    "log: names the request": r"\[(CRITICAL|ERROR|WARNING)\] .*GET /raw/hang\?s=20",
    "access log: 500": r'"GET /raw/hang\?s=20 HTTP/1\.1" 500 ',
}


@case("stuck-request", phase=2, targets="fastwsgi-*/direct",
      expect={"py status": "500"} | dict.fromkeys(STUCK_LOG, "yes"))
def stuck(t: Target, tmp: Path) -> dict[str, str]:
    # Issue 18 item 5: a request past --timeout gets a 500, an access line, and
    # the log says WORKER TIMEOUT and which request was stuck.
    mark = len(t.log())
    obs = {"py status": py_request(t, Req("GET", "/raw/hang?s=20"))["py status"]}
    return obs | wait_logs(t, STUCK_LOG, mark)


def app_loading(t: Target, tmp: Path) -> dict[str, str]:
    return {"started with": t.started_with}


# Issue 18 item 4: the site is assembled by PasteDeploy either way; the server
# should load it from the ini itself, as Gunicorn does.
add("paste-deploy", app_loading, targets="*/direct",
    expect={"started with": "--paste site.ini"})
