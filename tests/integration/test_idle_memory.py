"""An idle keep-alive connection costs a gthread worker at most 2 KiB of RSS
(issue 21; Gunicorn's gthread worker: 2.4 KiB): the parser's buffers go back
to the pool while the connection waits (``Connection.release_idle``).

1,000 connections here (bench/idle_conns.py runs the issue's 10,000): each
sends one request, reads its answer and stays open; the worker's VmRSS is
read after 50 of them and again with all of them idle, and every one must
still answer afterwards.
"""

from __future__ import annotations

import resource

import pytest

from bench import idle_conns

CONNS = 1000


@pytest.mark.skipif(
    resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2 * CONNS + 300,
    reason="RLIMIT_NOFILE hard limit too low for 1,000 connections on both ends",
)
def test_idle_keepalive_connection_costs_at_most_2_kib() -> None:
    res = idle_conns.measure(CONNS)
    print(res)
    assert res["idle_not_answering"] == 0, res
    assert float(res["per_idle_kib"]) <= 2.0, res  # type: ignore[arg-type]
