#!/usr/bin/env python3
"""Mutation testing on demand: does the suite notice when a promise breaks?

Theory of operation
-------------------
``MUTATIONS`` (in ``scripts/mutations.py``) lists one-line (or few-line)
edits, each breaking one behaviour the docs or the tests promise, with the
tests that should notice. For each one this script replaces the exact text
(it must occur once), rebuilds the extension in place when the file is a
``.pyx``, runs the named tests with ``-x``, and restores the file (and the
built ``.so`` and generated ``.c``, copied aside first, so a restore costs no
second build). A mutation is *killed* when the tests fail, *survived* when
they pass; *error* means it did not build or the text was not found (the
list needs updating). The report is a Markdown table on stdout (``--out``
writes it to a file too).

Python modules get the same treatment rather than mutmut's: the tests that
matter run real servers in child processes, which mutmut's in-process
trampolines do not reach. For the pure modules whose unit tests cover them,
``mutmut run`` (configured in ``[tool.mutmut]`` of pyproject.toml) is a
second, broader sweep.

Run it from the repository root on a quiet machine, never in CI (it takes
minutes per ``.pyx`` mutation):

    python3 scripts/mutate.py                 # every mutation
    python3 scripts/mutate.py -k date -k jitter   # ids containing these words
    python3 scripts/mutate.py --list

It refuses to start when a file it would mutate has uncommitted changes, so
the restore is exact, and restores on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from mutations import MUTATIONS, Mutation  # noqa: E402


def _build() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


def _built_files(pyx: Path) -> list[Path]:
    """The generated C file and the built extension(s) of one .pyx."""
    stem = pyx.stem
    return [pyx.with_suffix(".c"), *sorted(pyx.parent.glob(f"{stem}.*.so"))]


def _dirty(paths: set[str]) -> list[str]:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--", *sorted(paths)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.strip()]


def run_one(m: Mutation, timeout: float, verbose: bool) -> tuple[str, str, float]:
    """(outcome, detail, seconds) for one mutation; the tree is restored after."""
    path = ROOT / m.path
    original = path.read_text()
    if original.count(m.old) != 1:
        return "error", f"text found {original.count(m.old)} times (want 1)", 0.0
    started = time.monotonic()
    backup = Path(tempfile.mkdtemp(prefix="mutate"))
    saved: list[tuple[Path, Path]] = []
    if path.suffix == ".pyx":
        for f in _built_files(path):
            if f.exists():
                shutil.copy2(f, backup / f.name)
                saved.append((f, backup / f.name))
    try:
        path.write_text(original.replace(m.old, m.new))
        if path.suffix == ".pyx":
            # Newer than its .c whatever the clock did, so cythonize redoes it.
            newest = max((f.stat().st_mtime for f, _ in saved), default=time.time())
            os.utime(path, (newest + 2, newest + 2))
            built = _build()
            if built.returncode != 0:
                return "error", "build failed: " + built.stderr.strip()[-300:], 0.0
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
        )
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
        try:
            res = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return "killed", f"tests ran past {timeout:.0f}s (a hang counts as caught)", 0.0
        tail = (res.stdout + res.stderr).strip().splitlines()
        summary = tail[-1] if tail else ""
        if verbose:
            print("\n".join(tail[-30:]), file=sys.stderr)
        if res.returncode == 1:
            failed = [ln.split(" - ")[0] for ln in tail if ln.startswith(("FAILED", "ERROR"))]
            return "killed", (failed[0] if failed else summary), 0.0
        if res.returncode == 0:
            return "survived", summary, 0.0
        return "error", f"pytest exit {res.returncode}: {summary}", 0.0
    finally:
        path.write_text(original)
        for dst, src in saved:
            shutil.copy2(src, dst)
        # The restored .c and .so must look newer than the restored .pyx (no
        # rebuild needed) and than the mutated objects left under build/ (so
        # the next ordinary build recompiles from the original .c).
        stamp = path.stat().st_mtime + 1
        for dst, _ in saved:
            os.utime(dst, (stamp, stamp))
        shutil.rmtree(backup, ignore_errors=True)
        print(f"  {m.id}: {time.monotonic() - started:.0f}s", file=sys.stderr)


def report(results: list[tuple[Mutation, str, str]]) -> str:
    killed = sum(1 for _, o, _ in results if o == "killed")
    scored = sum(1 for _, o, _ in results if o in ("killed", "survived"))
    lines = [
        f"Killed {killed} of {scored} mutations"
        + (f" ({100.0 * killed / scored:.0f}%)" if scored else "")
        + (f"; {len(results) - scored} could not be applied" if scored < len(results) else ""),
        "",
        "| id | file | breaks | outcome | detail |",
        "|---|---|---|---|---|",
    ]
    for m, outcome, detail in results:
        detail = detail.replace("|", "\\|")
        lines.append(f"| {m.id} | `{m.path}` | {m.promise} | {outcome} | {detail} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", action="append", default=[], help="only ids containing this")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--timeout", type=float, default=600.0, help="per mutation's tests")
    ap.add_argument("--out", type=Path, help="also write the report here")
    ap.add_argument("-v", "--verbose", action="store_true")
    ns = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if not ns.k or any(k in m.id for k in ns.k)]
    if ns.list:
        for m in chosen:
            print(f"{m.id:40} {m.path:40} {' '.join(m.tests)}")
        return 0
    dirty = _dirty({m.path for m in chosen})
    if dirty:
        print("uncommitted changes in files to mutate; commit or stash first:", file=sys.stderr)
        print("\n".join(dirty), file=sys.stderr)
        return 2
    results = []
    try:
        for m in chosen:
            outcome, detail, _ = run_one(m, ns.timeout, ns.verbose)
            results.append((m, outcome, detail))
    except KeyboardInterrupt:
        print("interrupted; every file is restored", file=sys.stderr)
    text = report(results)
    print(text)
    if ns.out:
        ns.out.write_text(text)
    return 0 if all(o == "killed" for _, o, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
