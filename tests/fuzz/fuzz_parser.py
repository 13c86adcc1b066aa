"""atheris fuzz target for the request parser.

Invariant: any input either parses (heads, bodies, trailers) or raises a
``ParseError`` subclass, never another exception, a crash or a hang; and the
outcome is the same whether the bytes are fed whole or one byte at a time.
The first input byte picks a few settings so the lenient paths (obs-fold,
PROXY protocol, header_map, strip_header_spaces) are fuzzed too.

Short run (what the test suite does, about 20 s at most)::

    PYTHONPATH=src python tests/fuzz/fuzz_parser.py -runs=2000 -max_total_time=20

Longer run under AddressSanitizer + UBSan, seeded with the Gunicorn corpus
(crashes are written to ./crash-*; the corpus directory grows as it learns)::

    FASTWSGI_SANITIZE=1 FASTWSGI_ONLY=_parser python setup.py build_ext --inplace -q
    mkdir -p /tmp/fuzz-corpus
    for f in ../shared/conformance/gunicorn-requests/*/*.http; do
        cp "$f" /tmp/fuzz-corpus/$(basename "$(dirname "$f")")-$(basename "$f"); done
    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
        PYTHONPATH=src python tests/fuzz/fuzz_parser.py -max_total_time=3600 /tmp/fuzz-corpus
    FASTWSGI_ONLY=_parser python setup.py build_ext --inplace -q   # back to the normal build

(Build the sanitized copy in a scratch checkout if others share the tree: an
ASan-built ``_parser.so`` only loads with libasan preloaded, and ``python``
must be the real interpreter, not a pyenv bash shim.) With libasan alone
preloaded, gcc's empty coverage hooks shadow libFuzzer's and the run gets no
coverage signal; ``tests/fuzz/CAMPAIGN.md`` has the small ``covshim.so``
that forwards them (preload it before libasan, with
``ASAN_OPTIONS=verify_asan_link_order=0``), the exact commands, and the
results of the 2 x 31-minute campaigns run so far (no findings).

The compiled parser is not coverage-instrumented (that needs clang's
``-fsanitize=fuzzer-no-link``; the build uses gcc), so the harness gives
libFuzzer a coarse signal instead: each distinct outcome (error class and
message, or the shape of what parsed) lands in one of 256 unrolled,
instrumented branches, and inputs that reach a new outcome are kept.
"""

from __future__ import annotations

import re
import sys
import zlib
from typing import Any

import atheris

with atheris.instrument_imports():
    from fastwsgi import errors
    from fastwsgi._parser import RequestParser

MAX_REQUESTS = 20
MAX_STEPS = 100_000
BUCKETS = 256


def _make_bucket() -> Any:
    """An instrumented function with one branch per outcome bucket."""
    lines = ["def bucket(h):"]
    for i in range(BUCKETS):
        lines.append(f"    if h == {i}:")
        lines.append(f"        return {i}")
    lines.append("    return -1")
    ns: dict[str, Any] = {}
    exec("\n".join(lines), ns)  # noqa: S102 - generated from constants above
    return atheris.instrument_func(ns["bucket"])


bucket = _make_bucket()


def settings_for(flags: int) -> dict[str, Any]:
    return {
        "permit_obsolete_folding": bool(flags & 1),
        "strip_header_spaces": bool(flags & 2),
        "header_map": ("drop", "refuse", "dangerous", "drop")[(flags >> 2) & 3],
        "proxy_protocol": ("off", "auto", "v1", "v2")[(flags >> 4) & 3],
        "permit_missing_host": bool(flags & 64),
        "limit_request_body": 100 if flags & 128 else 0,
    }


def run(pieces: list[bytes], kwargs: dict[str, Any]) -> tuple[str, Any]:
    p = RequestParser(**kwargs)
    p.set_trusted(True)
    p.set_proxy_allowed(True)
    out: list[Any] = []
    in_body = False
    body = b""
    steps = 0
    try:
        for piece in [*pieces, None]:
            if piece is None:
                p.feed_eof()
            else:
                p.feed(piece)
            while True:
                steps += 1
                if steps > MAX_STEPS:
                    raise RuntimeError("parser made no progress: possible hang")
                if not in_body:
                    env = p.next_head()
                    if env is None:
                        break
                    in_body, body = True, b""
                    head = (env, p.headers, p.keep_alive, p.url_scheme)
                chunk = p.read_body(1000)
                if chunk is None:
                    break
                if chunk:
                    body += chunk
                    continue
                out.append((*head, body, p.trailers))
                in_body = False
                if len(out) >= MAX_REQUESTS:
                    return "ok", out
                p.finish()
    except errors.ParseError as exc:
        if not p.dead:
            raise RuntimeError("ParseError but the parser is not dead") from exc
        return "error", (type(exc).__name__, str(exc))
    return "ok", out


def outcome_tag(result: tuple[str, Any]) -> str:
    kind, value = result
    if kind == "error":
        detail = re.sub(r"\d+", "#", value[1])
        return f"E:{value[0]}:{detail}"
    shape = [(len(h[1]), h[2], h[3], len(h[5]), min(len(h[4]), 3)) for h in value[:3]]
    return f"OK:{len(value)}:{shape}"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    kwargs = settings_for(data[0])
    payload = data[1:]
    whole = run([payload], kwargs)
    bytewise = run([payload[i : i + 1] for i in range(len(payload))], kwargs)
    if whole != bytewise:
        raise RuntimeError(f"split changes the outcome: {whole!r} != {bytewise!r}")
    bucket(zlib.crc32(outcome_tag(whole).encode()) % BUCKETS)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
