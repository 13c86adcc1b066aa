"""The multi-worker scaling driver and run.py's CPU-split options.

A scaling table that put a worker count's numbers in the wrong column, or
computed a speed-up from the wrong pair, would misstate how fastwsgi scales;
a CPU split that gave the server the client's CPUs would measure the wrong
thing. These check the arithmetic and the argv that reach run.py; the real
run is in tests/integration/test_bench_quick.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import nginx, run, scaling

pytestmark = pytest.mark.bench  # the harness tier: `-m "not bench"` skips it


@pytest.mark.parametrize(
    ("ncpu", "expect"),
    [
        (1, (None, None, 1)),
        (2, ("0", "1", 1)),
        (3, ("0", "1-2", 2)),
        (16, ("0-7", "8-15", 8)),
    ],
)
def test_cpu_split_gives_the_server_the_first_half(
    ncpu: int, expect: tuple[str | None, str | None, int]
) -> None:
    assert scaling.cpu_split(ncpu) == expect


def test_run_argv_scales_clients_with_workers_and_passes_the_split() -> None:
    ns = scaling.parse_args(["--workers-list", "1,4", "--server-cpus", "0-7",
                             "--client-cpus", "8-15", "--nginx-workers", "3",
                             "--load-threads", "2", "--clients-per-worker", "10"])
    assert ns.workers == [1, 4]
    argv = scaling.run_argv(ns, 4, "/tmp/x-w4.json")
    opts = {a: b for a, b in zip(argv, argv[1:], strict=False)
            if a.startswith("--") and not b.startswith("--")}
    assert "--no-chart" in argv
    assert opts["--workers"] == "4" and opts["--concurrency"] == "40"
    assert opts["--server-cpus"] == "0-7" and opts["--client-cpus"] == "8-15"
    assert opts["--nginx-workers"] == "3" and opts["--load-threads"] == "2"
    assert opts["--out"] == "/tmp/x-w4.json"
    # run.py must accept every option scaling.py hands it.
    parsed = run.parse_args(argv[2:])
    assert (parsed.workers, parsed.concurrency) == (4, 40)
    assert (parsed.server_cpus, parsed.client_cpus) == ("0-7", "8-15")


def test_no_pin_drops_the_split() -> None:
    ns = scaling.parse_args(["--no-pin"])
    assert ns.server_cpus is None and ns.client_cpus is None
    assert "--server-cpus" not in scaling.run_argv(ns, 1, "/tmp/x.json")


@pytest.mark.parametrize("bad", [["--workers-list", "1,x"], ["--workers-list", "0,2"],
                                 ["--clients-per-worker", "0"]])
def test_bad_scaling_options_are_refused(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        scaling.parse_args(bad)


def _result(server: str, baseline: str, rps: float, cpu: float,
            ratio: dict[str, float] | None = None) -> dict[str, Any]:
    return {"scenario": "hello", "path": "direct", "server": server, "baseline": baseline,
            "status": "ok", "median": {"rps": rps, "cpu_us_per_req": cpu, "p99_ms": 1.0},
            "ratio": ratio or {}}


def test_combine_and_tables_put_each_worker_count_in_its_column() -> None:
    runs = {
        1: {"results": [_result("fastwsgi-sync", "gunicorn-sync", 1000, 20,
                                {"rps": 5.0, "cpu": 0.2}),
                        _result("gunicorn-sync", "gunicorn-sync", 200, 100)]},
        4: {"results": [_result("fastwsgi-sync", "gunicorn-sync", 3000, 25,
                                {"rps": 3.75, "cpu": 0.25}),
                        _result("gunicorn-sync", "gunicorn-sync", 800, 100)]},
    }
    rows = scaling.combine(runs)
    fw = next(r for r in rows if r["server"] == "fastwsgi-sync")
    assert fw["by_workers"]["1"]["rps"] == 1000 and fw["by_workers"]["4"]["rps"] == 3000
    assert fw["speedup"] == 3.0
    assert next(r for r in rows if r["server"] == "gunicorn-sync")["speedup"] == 4.0

    text = scaling.tables({"workers": [1, 4], "rows": rows, "skipped": {"8": "timed out"}})
    assert "| hello | direct | fastwsgi-sync | 1,000 | 3,000 | 3.00× |" in text
    assert "| hello | direct | fastwsgi-sync | 20.0 | 25.0 |" in text
    assert ("| hello | direct | fastwsgi-sync (vs gunicorn-sync) | 5.00× / 0.20× | "
            "3.75× / 0.25× |") in text
    assert "gunicorn-sync (vs" not in text  # a baseline is not compared with itself
    assert "Not run: 8 workers (timed out)" in text


def test_a_case_missing_at_one_worker_count_shows_a_dash() -> None:
    runs = {1: {"results": [_result("fastwsgi-sync", "gunicorn-sync", 1000, 20)]},
            2: {"results": []}}
    rows = scaling.combine(runs)
    assert rows[0]["speedup"] is None
    text = scaling.tables({"workers": [1, 2], "rows": rows})
    assert "| hello | direct | fastwsgi-sync | 1,000 | – | – |" in text


def test_run_pin_is_shorthand_for_cpu_0_and_1() -> None:
    ns = run.parse_args(["--pin"])
    assert (ns.server_cpus, ns.client_cpus) == ("0", "1")
    ns = run.parse_args(["--pin", "--server-cpus", "2-3"])
    assert (ns.server_cpus, ns.client_cpus) == ("2-3", "1")
    ns = run.parse_args([])
    assert (ns.server_cpus, ns.client_cpus) == (None, None)


@pytest.mark.parametrize("bad", ["0-", "a", "0,,1", "-1", "0 1"])
def test_run_refuses_a_malformed_cpu_list(bad: str) -> None:
    with pytest.raises(SystemExit):
        run.parse_args(["--server-cpus", bad])


@pytest.mark.parametrize("bad", [["--nginx-workers", "0"], ["--load-threads", "0"]])
def test_run_refuses_zero_nginx_workers_or_load_threads(bad: list[str]) -> None:
    with pytest.raises(SystemExit):
        run.parse_args(bad)


def test_nginx_conf_takes_the_worker_count() -> None:
    conf = nginx.render_conf("/tmp/p", 8080, ("127.0.0.1", 9000), False, workers=4)
    assert "worker_processes 4;" in conf
    assert "worker_processes 1;" in nginx.render_conf("/tmp/p", 8080, ("127.0.0.1", 9000), False)
