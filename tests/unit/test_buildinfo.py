"""``fastwsgi --version`` says which build this is (``fastwsgi.buildinfo``).

The compiled core reports what its compiler saw; these tests check that
against the running interpreter and against the compiler's own stamp in the
shared object. Which wheel it came from is checked on a real installed
wheel by ``.ci/release_check.py``; here with a dist-info laid out by hand.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastwsgi
from fastwsgi import buildinfo

_parser = pytest.importorskip("fastwsgi._parser", reason="compiled core not built")


def test_build_info_describes_this_interpreter_and_toolchain() -> None:
    info = _parser.build_info()
    assert set(info) == {"python", "cython", "compiler", "variant"}
    # Built against this CPython's headers: same minor version (a wheel built
    # with 3.11.7 headers runs on any 3.11).
    assert info["python"].split(".")[:2] == [str(v) for v in sys.version_info[:2]]
    assert re.fullmatch(r"3\.\d+\.\d+((a|b|rc)\d+)?", info["cython"]), info
    assert re.match(r"(GCC|clang) \d+\.\d+", info["compiler"]), info
    assert info["variant"] in {"release", "debug", "sanitize"}


def test_compiler_is_the_one_that_stamped_the_shared_object() -> None:
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) not installed")
    out = subprocess.run([readelf, "-p", ".comment", _parser.__file__],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    version = _parser.build_info()["compiler"].split()[1]
    assert version in out, (version, out)


def test_version_text_names_version_core_interpreter_and_origin() -> None:
    lines = buildinfo.describe().splitlines()
    info = _parser.build_info()
    assert lines[0] == f"fastwsgi (version {fastwsgi.__version__})"
    assert lines[1] == (f"compiled core: CPython {info['python']} headers, Cython {info['cython']}, "
                        f"{info['compiler']}, {info['variant']} build")
    assert lines[2].startswith(f"running on: CPython {sys.version.split()[0]}, Linux ")
    assert lines[3].startswith("installed from: ")
    assert str(Path(fastwsgi.__file__).parent) in lines[3]


def _dist_info(site: Path, tag: str) -> None:
    info = site / "fastwsgi-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fastwsgi\nVersion: 0.1.0\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")


def test_wheel_tags_of_the_running_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    _dist_info(site, "cp311-cp311-manylinux_2_28_x86_64")
    (site / "fastwsgi").symlink_to(Path(fastwsgi.__file__).parent)
    monkeypatch.syspath_prepend(str(site))
    assert buildinfo.wheel_tags() == "cp311-cp311-manylinux_2_28_x86_64"
    assert "installed from: wheel cp311-cp311-manylinux_2_28_x86_64" in buildinfo.describe()


def test_no_wheel_tags_from_another_fastwsgi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PyPI's unrelated "fastwsgi", or a stale install beside a source tree.
    site = tmp_path / "site"
    _dist_info(site, "cp311-cp311-linux_x86_64")
    (site / "fastwsgi").mkdir()
    (site / "fastwsgi" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site))
    assert buildinfo.wheel_tags() is None
