"""What ``fastwsgi --version`` says: the version and which build this is.

A bug report needs more than the version: the same release is built for
several CPythons and platforms, by different compilers, and a source install
compiles on the user's machine. The compiled core reports how it was built
from the macros its compiler saw (``_parser.build_info``); the installed
wheel's tags, when fastwsgi was installed from one, say which wheel it was.
Imported only for ``--version``.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from fastwsgi import __version__


def compiled_core() -> str:
    """One line: how the extensions were built, or why they cannot be loaded."""
    try:
        from fastwsgi._parser import build_info
    except ImportError as exc:
        return f"not built ({exc})"
    info = build_info()
    return (f"CPython {info['python']} headers, Cython {info['cython']}, "
            f"{info['compiler']}, {info['variant']} build")


def wheel_tags() -> str | None:
    """The tags of the wheel this copy of fastwsgi was installed from, if any.

    None for a source tree or an editable install, and for a ``fastwsgi``
    distribution that is not the code running now (PyPI has an unrelated
    package of that name)."""
    from importlib import metadata

    import fastwsgi

    try:
        dist = metadata.distribution("fastwsgi")
    except metadata.PackageNotFoundError:
        return None
    installed = Path(str(dist.locate_file("fastwsgi/__init__.py")))
    if not installed.is_file() or installed.resolve() != Path(fastwsgi.__file__).resolve():
        return None
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.partition(":")[2].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    return ", ".join(tags) or None


def describe(prog: str = "fastwsgi") -> str:
    # The first line is Gunicorn's format, which scripts may parse.
    lines = [
        f"{prog} (version {__version__})",
        f"compiled core: {compiled_core()}",
        f"running on: {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}",
    ]
    tags = wheel_tags()
    lines.append(f"installed from: {'wheel ' + tags if tags else 'source'} ({Path(__file__).parent})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(describe() + "\n")
