"""The release builds exactly the wheels we mean to publish.

``[tool.cibuildwheel]`` in pyproject.toml drives the release; cibuildwheel
lists the builds it would run without starting a container. What it must
list: CPython 3.10-3.14 on manylinux_2_28 x86_64 and aarch64 and on
musllinux_1_2 x86_64, and nothing else (no cp39, no cp315 pre-release, no
free-threaded cp314t, which is not declared safe: docs/design.md).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"

INTENDED = {
    f"cp3{minor}-{platform}"
    for minor in range(10, 15)
    for platform in ("manylinux_x86_64", "manylinux_aarch64", "musllinux_x86_64")
}


def _cibw_config() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["cibuildwheel"]


def test_cibuildwheel_lists_exactly_the_intended_builds() -> None:
    # In the test extra for Python 3.11+ (cibuildwheel's own floor).
    pytest.importorskip("cibuildwheel", minversion="3.2")
    # Only pyproject.toml decides: no CIBW_* from the caller's environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIBW_")}
    proc = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform", "linux",
         str(ROOT)],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split()
    assert len(listed) == len(set(listed))
    assert set(listed) == INTENDED


def test_wheels_use_the_intended_images_and_strip_symbols() -> None:
    cfg = _cibw_config()
    assert cfg["manylinux-x86_64-image"] == "manylinux_2_28"
    assert cfg["manylinux-aarch64-image"] == "manylinux_2_28"
    assert cfg["musllinux-x86_64-image"] == "musllinux_1_2"
    assert cfg["build-frontend"] == "build"
    assert "--strip" in shlex.split(cfg["linux"]["repair-wheel-command"])


def test_smoke_subset_names_test_files_that_exist() -> None:
    cfg = _cibw_config()
    argv = shlex.split(cfg["test-command"])
    assert argv[:3] == ["python", "-m", "pytest"]
    files = [a for a in argv[3:] if not a.startswith("-")]
    assert files, "the smoke subset names no tests"
    for name in files:
        assert (ROOT / name).is_file(), name
    # test-sources copies these next to the command, away from src/.
    assert set(cfg["test-sources"]) >= {"tests", "pyproject.toml"}
