"""Every behavioural claim in docs/faq.md and docs/security.md names its test.

The docs say, after the text they cover, which tests prove it::

    Tested by: `tests/integration/test_x.py::test_y`,
    `tests/unit/test_z.py::TestClass::test_w`.

(one paragraph, wrapping allowed; each node id in backticks, without
parametrize brackets). Here each named test is found by parsing its file
with ``ast``, not by running it: the file exists, defines that test function
(at the top level, or as a method of the named class), and does not mark it
as an expected failure, since a claim proved by an xfail test does not hold.
Every section (``##`` and deeper) with text of its own carries at least one
such paragraph; a section that makes no behavioural claim says so with
``Tested by: nothing (no behavioural claim).``
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["docs/faq.md", "docs/security.md"]
NOTHING = "Tested by: nothing (no behavioural claim)."
_HEADING = re.compile(r"^(#{2,6}) (.+)$")
_NODE = re.compile(r"`([^`]+)`")


def claim_lines(text: str) -> list[tuple[str, int, list[str]]]:
    """(section heading, line number, node ids) of each ``Tested by:``
    paragraph; a section with text but no such paragraph gets an entry with
    no ids, and so does a ``Tested by:`` paragraph that names nothing."""
    out: list[tuple[str, int, list[str]]] = []
    lines = text.splitlines()
    section, has_text, has_claim = "", False, False
    in_code = False

    def close_section() -> None:
        if section and has_text and not has_claim:
            out.append((section, 0, []))

    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_code = not in_code
            has_text = True
        elif in_code:
            pass
        elif m := _HEADING.match(line):
            close_section()
            section, has_text, has_claim = m.group(2), False, False
        elif line.startswith("Tested by:"):
            start = i
            para = [line]
            while i + 1 < len(lines) and lines[i + 1].strip():
                i += 1
                para.append(lines[i])
            joined = " ".join(para)
            has_claim = True
            if joined.strip() != NOTHING:
                out.append((section, start + 1, _NODE.findall(joined)))
        elif line.strip() and section:
            has_text = True
        i += 1
    close_section()
    return out


@cache
def _tests_in(path: Path) -> dict[str, ast.AST]:
    """``name`` and ``Class::name`` of every test function in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}::{sub.name}"] = sub
    return found


def problem(node_id: str, root: Path = ROOT) -> str | None:
    """Why ``node_id`` does not name a runnable, expected-to-pass test (None if it does)."""
    path_text, sep, name = node_id.partition("::")
    if not sep or not name or "[" in name:
        return "not PATH::TEST (no parametrize brackets)"
    path = root / path_text
    if not path_text.startswith("tests/") or path.suffix != ".py" or not path.is_file():
        return f"no test file {path_text}"
    fn = _tests_in(path).get(name)
    if fn is None:
        return f"no test {name} in {path_text}"
    if not name.rpartition("::")[2].startswith("test"):
        return f"{name} is not a test function"
    decorators = getattr(fn, "decorator_list", [])
    if any("xfail" in ast.unparse(d) for d in decorators):
        return f"{name} is marked xfail: the claim does not hold"
    return None


@pytest.mark.parametrize("doc", DOCS)
def test_every_section_names_tests_that_exist(doc: str) -> None:
    bad = []
    for section, line, ids in claim_lines((ROOT / doc).read_text()):
        if not ids:
            where = f"the 'Tested by:' line {line} names no test" if line else "no 'Tested by:' line"
            bad.append(f"{doc} '{section}': {where}")
        for node_id in ids:
            why = problem(node_id)
            if why:
                bad.append(f"{doc}:{line} '{section}': {node_id}: {why}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("doc", DOCS)
def test_the_format_is_explained_at_the_top(doc: str) -> None:
    head = (ROOT / doc).read_text().split("\n## ", 1)[0]
    assert "Tested by:" in head and "tests/unit/test_doc_claims.py" in head


def test_the_checker_finds_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text(
        "import pytest\n\n"
        "def test_ok():\n    pass\n\n"
        "@pytest.mark.xfail(reason='known bug')\ndef test_known_bug():\n    pass\n\n"
        "class TestGroup:\n    def test_in_class(self):\n        pass\n\n"
        "def helper():\n    pass\n"
    )
    assert problem("tests/test_a.py::test_ok", tmp_path) is None
    assert problem("tests/test_a.py::TestGroup::test_in_class", tmp_path) is None
    assert "no test test_gone" in str(problem("tests/test_a.py::test_gone", tmp_path))
    assert "xfail" in str(problem("tests/test_a.py::test_known_bug", tmp_path))
    assert "not a test" in str(problem("tests/test_a.py::helper", tmp_path))
    assert "no test file" in str(problem("tests/test_b.py::test_ok", tmp_path))
    assert "brackets" in str(problem("tests/test_a.py::test_ok[x]", tmp_path))
    doc = (
        "# T\n\nIntro, not checked.\n\n## A\n\nClaim.\n\nTested by: `tests/test_a.py::test_ok`,\n"
        "`tests/test_a.py::test_gone`.\n\n## B\n\nClaim without a test.\n\n"
        "## C\n\nAdvice.\n\n" + NOTHING + "\n\n## D\n\n```\nTested by: in code, ignored\n```\n"
    )
    assert claim_lines(doc) == [
        ("A", 9, ["tests/test_a.py::test_ok", "tests/test_a.py::test_gone"]),
        ("B", 0, []),
        ("D", 0, []),
    ]
