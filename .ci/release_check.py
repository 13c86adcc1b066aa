"""Build a release here and prove a user without a compiler can install and serve it.

Run by ``.ci/run`` after the test suite: ``python3 .ci/release_check.py``.

Theory of operation
-------------------
1. ``python -m build`` makes the sdist, then the wheel *from the sdist*, each
   in a fresh isolated environment: so the sdist is proved to build, and to
   carry what the build needs.
2. The sdist must hold every tracked file under ``src/`` (the ``.pyx`` and
   ``.pxd``, ``includes/``), the build files and the license, and nothing
   built or cached; the wheel must hold the compiled extensions and stubs and
   no ``.pyx``, ``.pxd`` or ``.c``. ``twine check`` reads the metadata and
   renders the README as the package index will.
3. ``auditwheel repair --strip`` (the same command cibuildwheel runs) tags
   the wheel manylinux and drops debug symbols; the sizes before and after
   are printed. ``auditwheel show`` must find nothing outside the policy,
   and the extensions must carry no ``.debug_*`` section.
4. For each CPython 3.10-3.13 found on PATH (``python3.10`` ...) or
   installed by pyenv (``$PYENV_ROOT/versions/3.1x.y``, which this machine
   image carries beside the system's one), or the interpreters named in
   ``$FASTWSGI_CI_PYTHONS``, the wheel for it is
   installed into a fresh venv without pip, setuptools or Cython, from
   local files only (``--no-index``; runtime and smoke-test dependencies
   were downloaded beforehand), with PATH holding the venv and no compiler.
   The demo app is served from that venv and must answer; ``--version``
   must name the wheel; then the smoke subset (``tool.cibuildwheel``'s
   ``test-command``) runs from a copy of ``tests/`` against it, as
   cibuildwheel runs it in its containers. The first interpreter reuses the
   wheel of step 1; any other builds its own from the same sdist.

Every wait has a deadline; every process started here is stopped by pid.
Artifacts are left in ``build/release/`` (ignored by git) for inspection.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = ("_parser", "_response", "_conn", "_selector")
CANDIDATES = ("python3.10", "python3.11", "python3.12", "python3.13")
COMPILERS = ("cc", "gcc", "clang", "c++", "g++", "x86_64-linux-gnu-gcc")
# Things that are build output or caches and must never reach an archive.
BUILT = re.compile(r"(^|/)(build|dist|__pycache__|\.pytest_cache|\.hypothesis|\.benchmarks)/"
                   r"|\.(pyc|so|o|c|html)$")


class CheckFailed(Exception):
    pass


def check(ok: object, message: str) -> None:
    if not ok:
        raise CheckFailed(message)


def step(title: str) -> None:
    print(f"\n=== release check: {title}", flush=True)


def run(*argv: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600, capture: bool = True) -> str:
    """Run a command, echo its output (live unless captured), fail if it fails."""
    printable = " ".join(shlex.quote(str(a)) for a in argv)
    print(f"+ {printable}", flush=True)
    proc = subprocess.run([str(a) for a in argv], env=env, cwd=cwd, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.STDOUT, text=True)
    if proc.stdout:
        print(proc.stdout.rstrip(), flush=True)
    check(proc.returncode == 0, f"exit status {proc.returncode}: {printable}")
    return proc.stdout


def kib(n: int) -> str:
    return f"{n / 1024:.0f} KiB"


# --- 1-2: build, and what the archives hold -----------------------------------

def build(work: Path) -> tuple[Path, Path]:
    step("python -m build: the sdist, then the wheel from the sdist (isolated)")
    dist = work / "dist"
    # setuptools adds the files listed in an old SOURCES.txt to a new sdist:
    # a stale one would hide a file MANIFEST.in no longer includes.
    shutil.rmtree(ROOT / "src" / "fastwsgi.egg-info", ignore_errors=True)
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, timeout=900, capture=False)
    sdists = sorted(dist.glob("*.tar.gz"))
    wheels = sorted(dist.glob("*.whl"))
    check(len(sdists) == 1 and len(wheels) == 1, f"expected one sdist and one wheel in {dist}")
    return sdists[0], wheels[0]


def check_sdist(sdist: Path) -> None:
    step(f"sdist contents: {sdist.name}")
    with tarfile.open(sdist) as tar:
        names = [n.split("/", 1)[1] for n in tar.getnames() if "/" in n]
    members = set(names)
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "src"], capture_output=True,
                             text=True, check=True, timeout=60).stdout.split()
    needed = set(tracked) | {"pyproject.toml", "setup.py", "README.md", "LICENSE", "CHANGELOG.md"}
    missing = sorted(needed - members)
    check(not missing, f"sdist lacks {missing}")
    for ext in EXTENSIONS:
        check(f"src/fastwsgi/{ext}.pyx" in members and f"src/fastwsgi/{ext}.pxd" in members,
              f"sdist lacks the source of {ext}")
    check(any(n.startswith("src/fastwsgi/includes/") for n in members), "sdist lacks includes/")
    stray = sorted(n for n in members if BUILT.search(n))
    check(not stray, f"sdist holds build output or caches: {stray}")
    print(f"ok: {len(members)} files, every tracked file under src/, nothing built or cached")


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def check_wheel(wheel: Path) -> None:
    step(f"wheel contents: {wheel.name}")
    names = wheel_names(wheel)
    sources = sorted(n for n in names if n.endswith((".pyx", ".pxd", ".c")))
    check(not sources, f"wheel ships sources: {sources}")
    for ext in EXTENSIONS:
        check(any(re.fullmatch(rf"fastwsgi/{ext}\..*\.so", n) for n in names),
              f"wheel lacks the compiled {ext}")
        check(f"fastwsgi/{ext}.pyi" in names, f"wheel lacks {ext}.pyi")
    check("fastwsgi/py.typed" in names, "wheel lacks py.typed")
    check(any(n.endswith("/LICENSE") and ".dist-info/" in n for n in names), "wheel lacks the license")
    stray = sorted(n for n in names if BUILT.search(n) and not n.endswith(".so"))
    check(not stray, f"wheel holds build output or caches: {stray}")
    print(f"ok: {len(names)} files, the three extensions and their stubs, no .pyx/.pxd/.c")


def twine_check(dist: Path) -> None:
    step("twine check: metadata and README rendering")
    out = run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    check("WARNING" not in out and "ERROR" not in out, "twine check is not clean")


# --- 3: repair, strip, audit ----------------------------------------------------

def debug_sections(so: Path) -> list[str]:
    out = subprocess.run(["readelf", "-S", "-W", str(so)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return sorted(set(re.findall(r"\s(\.debug_\w+|\.symtab)\s", out)))


def repair(wheel: Path, out: Path) -> Path:
    step(f"auditwheel repair --strip: {wheel.name}")
    run("auditwheel", "repair", "--strip", "-w", out, wheel)
    repaired = sorted(out.glob("*.whl"))
    check(len(repaired) == 1, f"expected one repaired wheel in {out}")
    fixed = repaired[0]
    check("manylinux" in fixed.name, f"not manylinux-tagged: {fixed.name}")
    shown = run("auditwheel", "show", fixed)
    check(re.search(r'consistent\s+with\s+the\s+following\s+platform\s+tag:\s*"manylinux_', shown),
          "auditwheel show: not consistent with a manylinux policy")
    check(not any(".libs/" in n for n in wheel_names(fixed)),
          "auditwheel grafted libraries outside the policy into the wheel")
    unpacked = out / "unpacked"
    with zipfile.ZipFile(fixed) as zf:
        zf.extractall(unpacked)
    with zipfile.ZipFile(wheel) as zf:
        before = {Path(i.filename).name: i.file_size for i in zf.infolist() if i.filename.endswith(".so")}
    print("size before -> after stripping debug symbols:")
    print(f"  wheel {wheel.name}: {kib(wheel.stat().st_size)} -> {kib(fixed.stat().st_size)}")
    for so in sorted(unpacked.glob("fastwsgi/*.so")):
        left = debug_sections(so)
        check(not left, f"{so.name} still has {left}")
        print(f"  {so.name}: {kib(before[so.name])} -> {kib(so.stat().st_size)}")
    return fixed


def start_wheel_build(python: str, sdist: Path, raw: Path) -> tuple[
        subprocess.Popen[bytes], Path, Path]:
    """``pip wheel`` of the sdist for another interpreter, in the background."""
    raw.mkdir(parents=True, exist_ok=True)
    log = raw / "build.log"
    argv = [python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(raw), str(sdist)]
    print(f"+ {shlex.join(argv)} > {log} &", flush=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    return proc, raw, log


def finish_wheel_build(build: tuple[subprocess.Popen[bytes], Path, Path]) -> Path:
    proc, raw, log = build
    status = proc.wait(timeout=900)
    if status != 0:
        sys.stdout.write(log.read_text(errors="replace"))
    check(status == 0, f"pip wheel exited {status} (its output is above)")
    return next(raw.glob("fastwsgi-*.whl"))


# --- 4: install without a compiler, serve, smoke --------------------------------

def pyenv_pythons() -> list[str]:
    """The CPython 3.10-3.13 builds pyenv keeps, whether or not a shim selects them."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for minor in ("3.10", "3.11", "3.12", "3.13"):
        for exe in sorted(root.glob(f"{minor}.*/bin/python{minor}")):
            found.append(str(exe))
    return found


def interpreters() -> list[str]:
    named = os.environ.get("FASTWSGI_CI_PYTHONS", "").split()
    found: dict[tuple[str, str], str] = {}
    for candidate in named or [sys.executable, *CANDIDATES, *pyenv_pythons()]:
        path = shutil.which(candidate)
        if path is None:
            continue
        proc = subprocess.run(
            [path, "-c", "import sys, platform; print(platform.python_implementation(), "
             "'%d.%d' % sys.version_info[:2], sys.executable)"],
            capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:  # e.g. a pyenv shim for a version not selected
            continue
        impl, version, exe = proc.stdout.split()
        # This interpreter always: it built the release (and ran the suite).
        if named or candidate == sys.executable or (
                impl == "CPython" and version in {"3.10", "3.11", "3.12", "3.13"}):
            found.setdefault((version, os.path.realpath(exe)), exe)
    return list(found.values())


def download_deps(python: str, wheel: Path, deps: Path) -> None:
    """Runtime dependencies and the smoke extra, as wheels, for an offline install."""
    run(python, "-m", "pip", "download", "-q", "--only-binary", ":all:", "-d", deps,
        f"{wheel}[smoke]", timeout=600)


def no_compiler_env(work: Path, venv: Path) -> dict[str, str]:
    """The environment of a user without a compiler: PATH is the venv, and readelf."""
    tools = work / "tools"
    tools.mkdir(exist_ok=True)
    readelf = shutil.which("readelf")
    if readelf and not (tools / "readelf").exists():
        (tools / "readelf").symlink_to(readelf)
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} and not k.startswith("PIP_")}
    env.update(PATH=f"{venv / 'bin'}:{tools}", PYTHONNOUSERSITE="1", PIP_NO_INDEX="1")
    for cc in COMPILERS:
        check(shutil.which(cc, path=env["PATH"]) is None, f"{cc} is reachable on the test PATH")
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_demo(venv: Path, env: dict[str, str], work: Path) -> None:
    port = free_port()
    log = work / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([venv / "bin" / "fastwsgi", "-b", f"127.0.0.1:{port}",
                                 "fastwsgi.demo:app"], cwd=work, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            check(proc.poll() is None, f"the demo server exited: {log.read_text()}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                break
            except OSError:
                check(time.monotonic() < deadline, f"the demo server did not answer: {log.read_text()}")
                time.sleep(0.1)
        check(resp.status == 200 and body, f"the demo answered {resp.status}")
        print(f"ok: the demo app served from the venv answered 200 ({len(body)} bytes)")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


def install_and_smoke(python: str, wheel: Path, work: Path) -> None:
    tag = re.sub(r"\W", "", Path(python).name)
    base = work / f"venv-check-{tag}"
    venv = base / "venv"
    step(f"{wheel.name}: fresh venv for {python}, no compiler, no build dependencies, no index")
    deps = work / "deps"
    download_deps(python, wheel, deps)
    run(python, "-m", "venv", "--without-pip", venv)
    env = no_compiler_env(base, venv)
    # The venv has no pip: the outer pip installs into it, offline.
    run(python, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q",
        "--no-index", "--only-binary", ":all:", "--find-links", deps, f"{wheel}[smoke]", env=env)
    vpy = str(venv / "bin" / "python")
    for module in ("Cython", "setuptools", "pip"):
        absent = subprocess.run([vpy, "-c", f"import {module}"], env=env, capture_output=True,
                                timeout=60).returncode != 0
        check(absent, f"{module} is importable in the fresh venv")
    version = run(venv / "bin" / "fastwsgi", "--version", env=env, cwd=base)
    wheel_tag = "-".join(wheel.name[:-4].split("-")[2:])
    check(f"installed from: wheel {wheel_tag}" in version, "--version does not name the wheel")
    check(", release build" in version, "--version does not say release build")
    check(str(venv) in version, "--version names a fastwsgi outside the venv")
    serve_demo(venv, env, base)
    step(f"smoke subset against {wheel.name}")
    cibw = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    smoke = base / "smoke"
    shutil.rmtree(smoke, ignore_errors=True)
    smoke.mkdir()
    for name in cibw["test-sources"]:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, smoke / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, smoke / name)
    argv = shlex.split(cibw["test-command"])
    check(argv[0] == "python", "test-command must start with python")
    run(vpy, *argv[1:], env=env, cwd=smoke, timeout=900, capture=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "release")
    args = parser.parse_args(argv)
    work: Path = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    builds: dict[int, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    try:
        pythons = interpreters()
        source = "$FASTWSGI_CI_PYTHONS" if os.environ.get("FASTWSGI_CI_PYTHONS") else \
            f"this one, {', '.join(CANDIDATES)} on PATH and pyenv's"
        print(f"Interpreters for the wheel install and smoke subset ({source}): {len(pythons)}: "
              f"{', '.join(pythons)}")
        sdist, wheel = build(work)
        check_sdist(sdist)
        check_wheel(wheel)
        twine_check(work / "dist")
        # The other interpreters' wheels compile in the background, all at
        # once, while the first one is checked: a build is mostly one gcc
        # run, so on two cores this takes minutes off the CI run.
        for i, python in enumerate(pythons):
            if os.path.realpath(python) != os.path.realpath(sys.executable):
                builds[i] = start_wheel_build(python, sdist, work / f"dist-{i}")
        for i, python in enumerate(pythons):
            out = work / f"wheelhouse-{i}"
            if i not in builds:
                built = wheel
            else:
                step(f"wheel for {python} from {sdist.name} (built in the background)")
                built = finish_wheel_build(builds.pop(i))
            install_and_smoke(python, repair(built, out), work)
    except (CheckFailed, subprocess.TimeoutExpired) as exc:
        print(f"\nrelease check FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc, _, _ in builds.values():
            proc.kill()
            proc.wait()
    print(f"\nrelease check passed in {time.monotonic() - started:.0f} s: "
          f"{len(pythons)} interpreter(s); artifacts in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
