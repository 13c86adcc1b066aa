"""Early answers behind nginx: does every app status reach the client?

An app that answers before reading the request body (401 from an auth check,
413 from a size limit) sits behind a default ``proxy_pass`` nginx
(``proxy_http_version 1.0``, one upstream connection per request). Each case
POSTs a body with curl through nginx and records the status curl received:
the app's own status, or nginx's 502 when the server's close reset the
connection before nginx read the answer (issue 18, item 1). The matrix is

    server x proxy_request_buffering (on, off) x Expect: 100-continue (with, without)
           x body size (1 KiB, 64 KiB, 1 MiB, 10 MiB, 100 MiB) x repeats

with 10 repeats: 200 requests per server. Every server runs in the same
invocation, so Gunicorn's losses are measured on the same machine at the same
time as ours. Run from a checkout with the extensions built in place::

    python bench/early_reply.py                        # 200 per server, ~5 min
    python bench/early_reply.py --repeats 2 --max-mb 1 # a quick look

Exit status 1 when any fastwsgi request did not get the app's status.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nginx  # noqa: E402
from bench.servers import SERVERS, Server  # noqa: E402

SIZES = (1024, 64 * 1024, 1024 * 1024, 10 * 1024 * 1024, 100 * 1024 * 1024)
DEFAULT_SERVERS = ("fastwsgi-sync", "fastwsgi-gthread", "gunicorn-sync", "gunicorn-gthread")


def location(buffering: bool) -> str:
    """The proxy's settings for one buffering mode: bodies up to 200 MiB."""
    return "client_max_body_size 200m;\n" + (
        "" if buffering else "proxy_request_buffering off;\n")


def post(port: int, path: str, body_file: str, expect: bool, timeout_s: float) -> str:
    """One POST with curl: the status it received, or ``curl-N`` for curl's
    own failure (exit code N)."""
    argv = [
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(timeout_s),
        "-H", "Content-Type: application/octet-stream",
        "-H", "Expect: 100-continue" if expect else "Expect:",
        "--data-binary", f"@{body_file}", f"http://127.0.0.1:{port}{path}",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 30)
    if proc.returncode != 0 and not proc.stdout.strip("0"):
        return f"curl-{proc.returncode}"
    return proc.stdout.strip()


def body_files(tmp: str, sizes: list[int]) -> dict[int, str]:
    files = {}
    for size in sizes:
        path = os.path.join(tmp, f"body-{size}")
        with open(path, "wb") as f:
            f.write(os.urandom(min(size, 1 << 20)) * max(size >> 20, 1) if size >= 1 << 20
                    else os.urandom(size))
        files[size] = path
    return files


def run_server(name: str, files: dict[int, str], repeats: int, timeout_s: float) -> Counter[str]:
    """Every case of the matrix against one server; Counter of outcomes
    (``ok`` when curl got the app's status)."""
    counts: Counter[str] = Counter()
    srv = Server(SERVERS[name], "bench.apps:reject", workers=1, threads=4)
    srv.start()
    try:
        for buffering in (True, False):
            with nginx.Nginx(srv.address, location_extra=location(buffering)) as proxy:
                for expect in (False, True):
                    for size, path in files.items():
                        for i in range(repeats):
                            want = "401" if i % 2 else "413"
                            got = post(proxy.port, f"/?status={want}", path, expect, timeout_s)
                            key = "ok" if got == want else f"{got} (buffering "\
                                f"{'on' if buffering else 'off'}, expect {expect}, {size} B)"
                            counts[key] += 1
    finally:
        srv.stop()
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", nargs="+", default=list(DEFAULT_SERVERS), choices=sorted(SERVERS))
    ap.add_argument("--repeats", type=int, default=10, help="requests per case (default 10)")
    ap.add_argument("--max-mb", type=float, default=100.0, help="largest body, MiB")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    args = ap.parse_args(argv)
    missing = [t for t in ("curl", "nginx") if not (shutil.which(t) or
                                                    (t == "nginx" and nginx.available()))]
    if missing:
        print(f"missing {', '.join(missing)} (apt-get install curl nginx-light)", file=sys.stderr)
        return 2
    sizes = [s for s in SIZES if s <= args.max_mb * 1024 * 1024]
    failed = False
    with tempfile.TemporaryDirectory(prefix="fastwsgi-early-") as tmp:
        files = body_files(tmp, sizes)
        print("| server | requests | app status received | lost (what the client got instead) |")
        print("|---|---|---|---|")
        for name in args.servers:
            started = time.monotonic()
            counts = run_server(name, files, args.repeats, args.timeout)
            total = sum(counts.values())
            lost = {k: v for k, v in counts.items() if k != "ok"}
            print(f"| {name} | {total} | {counts['ok']} | "
                  f"{'; '.join(f'{v} x {k}' for k, v in sorted(lost.items())) or '-'} |",
                  flush=True)
            print(f"  ({name}: {time.monotonic() - started:.0f} s)", file=sys.stderr)
            if lost and name.startswith("fastwsgi"):
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
