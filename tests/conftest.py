"""Suite-wide checks, and ``tests/`` on ``sys.path`` (pytest's rootdir-conftest
rule) so unit and integration tests share helpers such as ``straced.py``.

A run never quietly tests less than it says: without the compiled extensions
it stops at once with the command that builds them (there is no fallback to
a pure-Python worker unless ``FASTWSGI_TEST_WORKER`` asks for one, and the
unit tests need the extensions anyway); the shared corpus is checked in
``shared_data.py``.
"""

from __future__ import annotations

import importlib

import pytest

COMPILED = ("fastwsgi._parser", "fastwsgi._response", "fastwsgi._conn", "fastwsgi._selector")


def pytest_configure(config: pytest.Config) -> None:
    missing = []
    for name in COMPILED:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing.append(f"{name} ({exc})")
    if missing:
        raise pytest.UsageError(
            "fastwsgi's compiled extensions do not import: "
            + "; ".join(missing)
            + ". Build them in place first: python3 setup.py build_ext --inplace "
            "(or install the package: pip install '.[test]')."
        )
