"""The on-demand mutation list (scripts/mutations.py) still fits the code.

The mutation run is not part of CI (it rebuilds and reruns tests per entry),
so an edit that moves the text a mutation replaces would leave that entry
silently inapplicable until the next run; this check keeps it honest in
every run, at the cost of reading a few files.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _mutations() -> list:
    spec = importlib.util.spec_from_file_location("mutations", ROOT / "scripts" / "mutations.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.MUTATIONS


def test_each_mutation_applies_exactly_once() -> None:
    for m in _mutations():
        text = (ROOT / m.path).read_text()
        assert text.count(m.old) == 1, f"{m.id}: its text occurs {text.count(m.old)} times in {m.path}"
        assert m.old != m.new, m.id


def test_each_mutation_names_tests_that_exist() -> None:
    for m in _mutations():
        for node in m.tests:
            path, _, name = node.partition("::")
            assert (ROOT / path).is_file(), f"{m.id}: no {path}"
            if name:
                tree = ast.parse((ROOT / path).read_text())
                names = {n.name for n in ast.walk(tree)
                         if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
                assert name.split("[")[0] in names, f"{m.id}: no test {node}"
