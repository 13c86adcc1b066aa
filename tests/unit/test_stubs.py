"""Every public name a compiled module defines is declared in its ``.pyi``.

Type checkers see the extensions only through the stubs, so a name missing
there is an import error for every typed user; a name the module no longer
has is a lie. Names a module merely re-exports (errors, stdlib modules) are
declared where they are defined; module constants are checked one way
(a declared constant must exist).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

EXTENSIONS = ["_parser", "_response", "_conn", "_selector"]


def _declared(pyi: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(pyi.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


@pytest.mark.parametrize("name", EXTENSIONS)
def test_stub_declares_what_the_extension_defines(name: str) -> None:
    mod = importlib.import_module(f"fastwsgi.{name}")
    assert mod.__file__ is not None and not mod.__file__.endswith(".py")
    pyi = Path(mod.__file__).parent / f"{name}.pyi"
    assert pyi.is_file(), f"{pyi} is not installed beside the extension"
    declared = _declared(pyi)
    defined = {
        k
        for k, v in vars(mod).items()
        if not k.startswith("_")
        and callable(v)
        and getattr(v, "__module__", mod.__name__) == mod.__name__
    }
    assert defined - declared == set(), f"defined in {name} but not in its stub"
    assert declared - set(vars(mod)) == set(), f"declared in the stub, absent from {name}"


def test_package_is_typed() -> None:
    import fastwsgi

    assert (Path(fastwsgi.__file__).parent / "py.typed").is_file()
