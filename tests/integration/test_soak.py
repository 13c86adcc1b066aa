"""The soak (bench/soak.py), CI-sized: 3,000 requests through nginx to 2
workers (small, streamed and 64 KiB uploads); after 1,000 of warm-up no
process may grow by more than 1 MiB of RSS or by a descriptor, no request
may fail, and no worker may have been replaced. The 1,000,000-request run is
the benchmark's (bench/README.md)."""

from __future__ import annotations

import pytest

from bench import soak
from bench.nginx import available

pytestmark = pytest.mark.skipif(not available(), reason="needs nginx")


@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_soak_is_flat(worker: str) -> None:
    res = soak.soak(3000, worker, warmup=1000, clients=4)
    print(res)
    assert not res["errors"], res
    assert res["same_workers"], res
    assert soak.flat(res), res
