"""The differential tier's machinery: targets, clients, observations, the table.

Theory of operation
-------------------
A *target* is one server (fastwsgi sync, fastwsgi gthread, Gunicorn sync,
Gunicorn gthread) reached one way (``direct``, or through a real nginx with
its default proxy settings). A *case* (``cases.py``) sends scripted requests
to a target with real clients (curl as a subprocess, ``http.client``, a raw
socket for what neither will send) and returns its *observations*: a flat
``{field: value}`` dict of strings (``py status``, ``py h:content-type``,
``curl exit``, ``py body``, ...), normalised so that only what a server
decides is left (no Date or Server, no per-request CSRF tokens).

Each fastwsgi target is compared field by field with its *reference*: the
Gunicorn target of the same worker kind reached the same way; or, for the
fields a case checks absolutely (where Gunicorn itself is weak, issue 18
item 1), a fixed expected value. Every mismatch is a :class:`Difference`.

docs/compat.md holds the two tables that allow differences: deliberate ones
(each with its reason) and those pending a fix (each naming its issue item).
``load_table`` parses them; a difference no row matches fails the case, and a
row that matches nothing fails too (the table must stay true: a pending row
whose fix landed is to be deleted). Cells are globs (``fnmatch``).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "compat.md"
ABSENT = "-"
# Headers that say when or who, not what: never compared.
IGNORED_HEADERS = {"date", "server"}
CLIENT_TIMEOUT = 30.0


@dataclass
class Target:
    server: str  # fastwsgi-sync, fastwsgi-gthread, gunicorn-sync, gunicorn-gthread
    via: str  # direct | nginx
    port: int
    log_path: Path  # the server's stdout+stderr (access log included)
    started_with: str  # how the server was given the app: "--paste site.ini" or "APP argument"

    @property
    def label(self) -> str:
        return f"{self.server}/{self.via}"

    @property
    def worker(self) -> str:
        return self.server.rpartition("-")[2]

    @property
    def is_fastwsgi(self) -> bool:
        return self.server.startswith("fastwsgi-")

    @property
    def reference(self) -> str:
        return f"gunicorn-{self.worker}/{self.via}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# --- normalising ---------------------------------------------------------------------

_TOKEN_RX = re.compile(rb'(name="csrfmiddlewaretoken" value=")[^"]+(")')
_COOKIE_RX = re.compile(r"(csrftoken=)[^;]+|(expires=)[^;]+", re.IGNORECASE)


def body_digest(body: bytes) -> str:
    """Length and hash of a body, with per-request CSRF tokens blanked."""
    body = _TOKEN_RX.sub(rb"\1*\2", body)
    return f"{len(body)}:{hashlib.sha256(body).hexdigest()[:16]}"


def header_fields(prefix: str, headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{prefix + "h:" + name: value}``; repeated fields joined with `` + ``."""
    out: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        if name in IGNORED_HEADERS:
            continue
        if name == "set-cookie":
            value = _COOKIE_RX.sub(lambda m: (m.group(1) or m.group(2)) + "*", value)
        elif name == "expires":  # Django's never_cache: "now"
            value = "*"
        key = f"{prefix}h:{name}"
        out[key] = f"{out[key]} + {value}" if key in out else value
    return out


# --- clients ---------------------------------------------------------------------------


@dataclass
class Req:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    chunked: bool = False  # send the body with Transfer-Encoding: chunked


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def py_request(t: Target, req: Req, prefix: str = "py ") -> dict[str, str]:
    """One request over a fresh ``http.client`` connection."""
    conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=CLIENT_TIMEOUT)
    obs: dict[str, str] = {}
    try:
        body: bytes | Iterator[bytes] | None = req.body
        if req.chunked and req.body is not None:
            body = _chunks(req.body)
        conn.request(req.method, req.path, body=body, headers=req.headers,
                     encode_chunked=req.chunked)
        resp = conn.getresponse()
        obs[prefix + "status"] = str(resp.status)
        obs.update(header_fields(prefix, resp.getheaders()))
        try:
            data = resp.read()
            obs[prefix + "error"] = ABSENT
        except http.client.IncompleteRead as exc:
            data = exc.partial
            obs[prefix + "error"] = "IncompleteRead"
        obs[prefix + "body"] = body_digest(data)
    except (OSError, http.client.HTTPException) as exc:
        obs.setdefault(prefix + "status", ABSENT)
        obs[prefix + "error"] = type(exc).__name__
    finally:
        conn.close()
    return obs


def curl_argv(t: Target, req: Req, tmp: Path, tag: str, write_out: str = "%{http_code}"
              ) -> list[str]:
    argv = ["curl", "-sS", "--max-time", str(int(CLIENT_TIMEOUT)), "-o", str(tmp / f"{tag}.body"),
            "-D", str(tmp / f"{tag}.head"), "-w", write_out]
    if req.method == "HEAD":
        argv.append("--head")
    elif req.method != "GET" or req.body is not None:
        argv += ["-X", req.method]
    for name, value in req.headers.items():
        argv += ["-H", f"{name}: {value}"]
    if req.body is not None:
        data = tmp / f"{tag}.upload"
        data.write_bytes(req.body)
        argv += ["--data-binary", f"@{data}"]
        if "content-type" not in {h.lower() for h in req.headers}:
            argv += ["-H", "Content-Type: application/octet-stream"]
        if req.chunked:
            argv += ["-H", "Transfer-Encoding: chunked"]
    argv.append(f"http://127.0.0.1:{t.port}{req.path}")
    return argv


def curl_request(t: Target, req: Req, tmp: Path, prefix: str = "curl ") -> dict[str, str]:
    """One request with the curl binary; what it dumps is read back from files."""
    tag = f"curl-{t.server}-{t.via}"
    for suffix in (".body", ".head"):
        (tmp / f"{tag}{suffix}").unlink(missing_ok=True)
    proc = subprocess.run(curl_argv(t, req, tmp, tag), capture_output=True,
                          timeout=CLIENT_TIMEOUT + 10, check=False)
    obs = {prefix + "exit": str(proc.returncode),
           prefix + "status": proc.stdout.decode().strip() or ABSENT}
    head = (tmp / f"{tag}.head").read_bytes() if (tmp / f"{tag}.head").exists() else b""
    # -D writes every response head, interim ones (100 Continue) first.
    blocks = [b for b in head.split(b"\r\n\r\n") if b.strip()]
    interim = [b.split(b" ", 2)[1].decode() for b in blocks if re.match(rb"HTTP/\S+ 1\d\d", b)]
    obs[prefix + "interim"] = ",".join(interim) or ABSENT
    if req.method != "HEAD":  # for HEAD, curl writes the head as the body
        body_path = tmp / f"{tag}.body"
        obs[prefix + "body"] = body_digest(body_path.read_bytes() if body_path.exists() else b"")
    return obs


def curl_statuses(t: Target, reqs: list[Req], tmp: Path) -> list[str]:
    """Several requests in one curl process (``--next``); the status of each."""
    argv = ["curl"]
    for req in reqs:
        one = curl_argv(t, req, tmp, f"multi-{t.server}-{t.via}", "%{http_code}\\n")
        argv += [*one[1:], "--next"]
    proc = subprocess.run(argv[:-1], capture_output=True, timeout=CLIENT_TIMEOUT * len(reqs),
                          check=False)
    codes = proc.stdout.decode().split()
    return codes + [ABSENT] * (len(reqs) - len(codes))


def raw_exchange(t: Target, pieces: list[bytes], gap: float = 0.0) -> bytes:
    """Send ``pieces`` (``gap`` seconds apart: a slow client), read until close."""
    with socket.create_connection(("127.0.0.1", t.port), timeout=CLIENT_TIMEOUT) as s:
        try:
            for i, piece in enumerate(pieces):
                if i and gap:
                    time.sleep(gap)  # the trickle is the behaviour under test
                s.sendall(piece)
        except OSError:
            pass  # an early answer may close before we finish: read what came
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except OSError:
            pass
    return data


def raw_fields(data: bytes, prefix: str = "raw ") -> dict[str, str]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/\S+ (\d{3})", lines[0])
    obs = {prefix + "status": m.group(1) if m else ABSENT}
    if m:
        pairs = [tuple(p.strip() for p in ln.split(":", 1)) for ln in lines[1:] if ":" in ln]
        obs.update(header_fields(prefix, pairs))  # type: ignore[arg-type]
        if obs.get(prefix + "h:transfer-encoding") == "chunked":
            # A response cut short must not end with the last chunk.
            obs[prefix + "last chunk"] = "yes" if body.endswith(b"0\r\n\r\n") else "no"
            body = dechunk(body)
        obs[prefix + "body"] = body_digest(body)
    return obs


def dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def wait_logs(t: Target, patterns: dict[str, str], after: int,
              timeout: float = 8.0) -> dict[str, str]:
    """Until every pattern shows in the target's log past ``after``, or the deadline:
    ``{field: "yes" or "no"}`` (one wait for all, so absent lines cost it once)."""
    rxs = {name: re.compile(p, re.MULTILINE) for name, p in patterns.items()}
    deadline = time.monotonic() + timeout
    while True:
        text = t.log()
        seen = {name: "yes" if rx.search(text, after) else "no" for name, rx in rxs.items()}
        if "no" not in seen.values() or time.monotonic() >= deadline:
            return seen
        time.sleep(0.05)


# --- the table -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    section: str  # "deliberate" | "pending"
    case: str
    target: str
    field: str
    expected: str  # Gunicorn's value, or the absolute expectation
    got: str  # fastwsgi's value
    why: str  # the reason (deliberate) or the issue item (pending)
    line: int

    def matches(self, d: Difference) -> bool:
        return all(fnmatchcase(v, pat) for v, pat in (
            (d.case, self.case), (d.target, self.target), (d.field, self.field),
            (d.expected, self.expected), (d.got, self.got)))

    def markdown(self) -> str:
        cells = [self.case, self.target, self.field, self.expected, self.got]
        return "| " + " | ".join(f"`{c}`" for c in cells) + f" | {self.why} |"


@dataclass(frozen=True)
class Difference:
    case: str
    target: str
    field: str
    expected: str
    got: str
    absolute: bool  # expected is the case's own expectation, not Gunicorn's value

    def markdown(self) -> str:
        cells = [self.case, self.target, self.field, self.expected, self.got]
        return "| " + " | ".join(f"`{c}`" for c in cells) + " | WHY |"


SECTIONS = {"## Deliberate differences": "deliberate", "## Pending fixes": "pending"}


def load_table(path: Path = TABLE) -> list[Row]:
    """The rows of the two tables in docs/compat.md, in file order."""
    rows: list[Row] = []
    section = ""
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("## "):
            section = SECTIONS.get(line.strip(), "")
            continue
        if not section or not line.startswith("|") or set(line) <= set("|- :"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "Case":
            continue
        if len(cells) != 6:
            raise ValueError(f"{path}:{n}: want 6 cells, got {len(cells)}: {line}")
        plain = [c.strip("`") for c in cells[:5]]
        rows.append(Row(section, *plain, why=cells[5], line=n))
    return rows


def differences(case: str, obs: dict[str, dict[str, str]],
                expect: dict[str, str], expect_on: tuple[str, ...]) -> list[Difference]:
    """Every way the fastwsgi targets' observations differ from their reference.

    Fields in ``expect`` are checked against it on the targets matching
    ``expect_on`` (and not compared with Gunicorn); the rest are compared
    with the reference target's observation of the same case.
    """
    diffs: list[Difference] = []
    for label, got in sorted(obs.items()):
        if not label.startswith("fastwsgi-"):
            continue
        server, via = label.split("/")
        ref = obs.get(f"gunicorn-{server.rpartition('-')[2]}/{via}")
        absolute = any(fnmatchcase(label, pat) for pat in expect_on)
        fields = set(got) | set(ref or {})
        for f in sorted(fields):
            if f in expect:
                if absolute and not fnmatchcase(got.get(f, ABSENT), expect[f]):
                    diffs.append(Difference(case, label, f, expect[f], got.get(f, ABSENT), True))
                continue
            if ref is None:
                continue
            a, b = ref.get(f, ABSENT), got.get(f, ABSENT)
            if a != b:
                diffs.append(Difference(case, label, f, a, b, False))
    return diffs


def blob(n: int, seed: int = 0) -> bytes:
    """``n`` bytes that are the same in every run (so hashes compare across servers)."""
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block * 32
    return bytes(out[:n])


def env_paths(*paths: Path) -> str:
    return os.pathsep.join(str(p) for p in paths)
