"""fastwsgi against Gunicorn 27 with real apps, real clients and real nginx.

Every case of ``cases.py`` runs on every target (``conftest.py``); here each
case's observations on the fastwsgi targets are compared with Gunicorn's of
the same worker kind reached the same way, or with the case's absolute
expectation. A difference passes only if exactly one row of docs/compat.md
allows it; every row there must still be needed.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from cases import CASES
from harness import TABLE, Difference, Row, differences, load_table

pytestmark = pytest.mark.compat

Observations = dict[str, dict[str, dict[str, str]]]


def _diffs(observations: Observations, name: str) -> list[Difference]:
    case = CASES[name]
    return differences(name, observations[name], case.expect, case.expect_on)


def _explain(d: Difference, rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.matches(d)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_matches_gunicorn_or_the_table(compat_observations: Observations, name: str) -> None:
    observed = compat_observations[name]
    assert any(label.startswith("fastwsgi-") for label in observed), f"{name} ran on no target"
    rows = load_table()
    unexplained, twice = [], []
    for d in _diffs(compat_observations, name):
        matched = _explain(d, rows)
        if not matched:
            unexplained.append(d)
        elif len(matched) > 1:
            twice.append((d, matched))
    assert not twice, "differences allowed by more than one row of docs/compat.md:\n" + "\n".join(
        f"{d.markdown()} <- lines {[r.line for r in m]}" for d, m in twice)
    assert not unexplained, (
        f"{name}: differences not allowed by {TABLE.name} (fix them, or add a row with its "
        "reason; 'expected' is Gunicorn's value, or the case's own expectation):\n"
        + "\n".join(d.markdown() for d in unexplained)
        + "\n\nobservations:\n"
        + "\n".join(f"  {label}: {obs}" for label, obs in sorted(observed.items()))
    )


def test_every_row_of_the_table_is_still_needed(compat_observations: Observations) -> None:
    rows = load_table()
    used: Counter[int] = Counter()
    for name in CASES:
        for d in _diffs(compat_observations, name):
            for r in _explain(d, rows):
                used[r.line] += 1
    stale = [r for r in rows if not used[r.line]]
    assert not stale, (
        "rows of docs/compat.md that no difference needs any more; delete them "
        "(a pending row means its fix has landed):\n"
        + "\n".join(f"line {r.line}: {r.markdown()}" for r in stale))


def test_the_table_is_well_formed() -> None:
    rows = load_table()
    assert rows, f"no rows parsed from {TABLE}"
    keys = Counter((r.case, r.target, r.field, r.expected, r.got) for r in rows)
    assert [k for k, n in keys.items() if n > 1] == [], "a difference is listed twice"
    known = set(CASES)
    for r in rows:
        assert any(re.fullmatch(r.case.replace("*", ".*"), c) for c in known), (
            f"line {r.line}: no case matches {r.case!r}")
        assert r.why and r.why != "WHY", f"line {r.line}: no reason given"
        if r.section == "pending":
            assert re.search(r"issue \d+ item \d+", r.why), (
                f"line {r.line}: a pending row names its issue item")
