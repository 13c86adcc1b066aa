"""The compat tier's own logic, without servers: comparing and the table."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Difference, differences, header_fields, load_table

pytestmark = pytest.mark.compat

OBS = {
    "gunicorn-sync/direct": {"py status": "200", "py h:transfer-encoding": "chunked"},
    "fastwsgi-sync/direct": {"py status": "200"},
    "gunicorn-gthread/direct": {"py status": "200", "curl exit": "0"},
    "fastwsgi-gthread/direct": {"py status": "200", "curl exit": "0"},
}


def test_a_field_gunicorn_has_and_fastwsgi_lacks_is_a_difference() -> None:
    assert differences("c", OBS, {}, ("fastwsgi-*",)) == [
        Difference("c", "fastwsgi-sync/direct", "py h:transfer-encoding", "chunked", "-", False)
    ]


def test_an_expectation_replaces_gunicorn_and_holds_only_where_asked() -> None:
    # Gunicorn's exit 0 is no reference once the case expects 18; sync is not asked.
    diffs = differences("c", OBS, {"curl exit": "18"}, ("fastwsgi-gthread/*",))
    assert Difference("c", "fastwsgi-gthread/direct", "curl exit", "18", "0", True) in diffs
    assert not [d for d in diffs if d.field == "curl exit" and "sync" in d.target]


def test_date_and_server_are_dropped_and_csrf_cookies_blanked() -> None:
    fields = header_fields("py ", [("Date", "x"), ("Server", "y"), ("Set-Cookie",
                                   "csrftoken=abc; expires=Mon, 06 Dec 2027; Path=/")])
    assert fields == {"py h:set-cookie": "csrftoken=*; expires=*; Path=/"}


def test_table_rows_are_globs_and_sections_are_kept(tmp_path: Path) -> None:
    doc = tmp_path / "compat.md"
    doc.write_text(
        "## Deliberate differences\n\n| Case | Target | Field | G | F | Reason |\n|---|---|---|---|---|---|\n"
        "| `raw-*` | `fastwsgi-*/direct` | `py status` | `200` | `5*` | because |\n\n"
        "## Pending fixes\n\n| `x` | `*` | `*` | `*` | `*` | issue 18 item 9: soon |\n"
    )
    deliberate, pending = load_table(doc)
    assert (deliberate.section, pending.section) == ("deliberate", "pending")
    assert deliberate.matches(Difference("raw-head", "fastwsgi-sync/direct", "py status",
                                         "200", "502", False))
    assert not deliberate.matches(Difference("raw-head", "fastwsgi-sync/nginx", "py status",
                                             "200", "502", False))


def test_a_row_with_a_missing_cell_is_refused(tmp_path: Path) -> None:
    doc = tmp_path / "compat.md"
    doc.write_text("## Pending fixes\n\n| `x` | `*` | `*` | `*` | issue 18 item 9 |\n")
    with pytest.raises(ValueError, match="want 6 cells"):
        load_table(doc)
