"""Where the shared test data lives (Gunicorn's request corpus, used by the
conformance replay and to seed the fuzzer): ``$FASTWSGI_SHARED``, else a
``shared/`` directory beside the checkout.

Missing data fails the run under CI (``CI`` set, as every CI service sets
it): 723 conformance tests skipped is not a green run. On a developer's
machine the tests skip with the same message, shown by ``-ra``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def gunicorn_requests() -> Path:
    """The corpus directory; skips (fails under CI) with how to fix it when absent."""
    env = os.environ.get("FASTWSGI_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(ROOT.parent / "shared")
    for base in candidates:
        d = base / "conformance" / "gunicorn-requests"
        if (d / "index.json").is_file():
            return d
    why = (
        "shared/conformance/gunicorn-requests not found in "
        + ", ".join(str(c) for c in candidates)
        + ": set FASTWSGI_SHARED to the directory that holds conformance/, "
        "or put shared/ beside the checkout"
    )
    if os.environ.get("CI"):
        pytest.fail(why + " (CI is set: missing test data fails the run)", pytrace=False)
    pytest.skip(why, allow_module_level=True)
