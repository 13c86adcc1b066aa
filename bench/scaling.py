"""Multi-worker scaling: the same benchmark at 1, 2, 4, 8 workers.

Theory of operation
-------------------
``bench/run.py`` measures one worker count per run. Scaling asks a different
question: as workers are added, does throughput grow with them, and does the
CPU each request costs stay flat (no lock, shared listen socket or accept
storm eating the gain)? fastwsgi is measured beside Gunicorn at every step.

* For each worker count W this runs ``run.py`` once, with ``-w W`` and
  ``W × --clients-per-worker`` client connections, so every worker sees the
  same load per worker at each step. Inside that run the servers are
  interleaved (A B A B, median of rounds) as usual, so the fastwsgi/Gunicorn
  ratio at each W comes from the same minutes.
* The machine is split in two CPU sets: the server (master and all workers)
  on the first half, the load generator and nginx on the second, so up to
  half the machine's CPUs every worker can have a core of its own and the
  client side is not what is measured. nginx gets ``--nginx-workers``
  processes and wrk ``--load-threads`` threads (default: half the client
  CPUs each); hey uses every client CPU. On a two-CPU machine the split is
  CPU 0 / CPU 1 (run.py's ``--pin``); on one CPU nothing is pinned.
* Each W writes run.py's own JSON (``<out>-w<W>.json``); this script combines
  them into ``<out>.json`` and prints three Markdown tables: requests/s with
  the speed-up over one worker, server CPU µs per request, and each fastwsgi
  server against its Gunicorn baseline. ``--report FILE.json`` reprints
  them from a saved file.
* Bounded: each run.py call gets a timeout taken from ``--deadline``; a worker
  count that would start after the deadline is skipped and reported as such.

Usage (the 16-CPU scaling figures in bench/README.md)::

    python bench/scaling.py --workers-list 1,2,4,8 --out /tmp/scale
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "bench" / "run.py"

DEFAULT_SERVERS = "fastwsgi-sync,fastwsgi-gthread,gunicorn-sync,gunicorn-gthread"


def cpu_split(ncpu: int) -> tuple[str | None, str | None, int]:
    """(server CPUs, client CPUs, client CPU count) for a machine of ``ncpu``."""
    if ncpu < 2:
        return None, None, 1
    half = ncpu // 2
    server = "0" if half == 1 else f"0-{half - 1}"
    client = str(half) if ncpu - half == 1 else f"{half}-{ncpu - 1}"
    return server, client, ncpu - half


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run bench/run.py at several worker counts and combine the results.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--workers-list", default="1,2,4,8",
                   help="comma-separated worker counts, one run.py run each")
    p.add_argument("--clients-per-worker", type=int, default=16,
                   help="client connections per server worker (-c = W × this)")
    p.add_argument("--servers", default=DEFAULT_SERVERS, help="passed to run.py")
    p.add_argument("--scenarios", default="hello", help="passed to run.py")
    p.add_argument("--paths", default="nginx,direct", help="passed to run.py")
    p.add_argument("--rounds", type=int, default=3, help="passed to run.py")
    p.add_argument("--duration", type=float, default=2.0, help="passed to run.py")
    p.add_argument("--warmup", type=float, default=0.5, help="passed to run.py")
    p.add_argument("--tool", choices=("auto", "hey", "wrk"), default="auto",
                   help="passed to run.py")
    p.add_argument("--server-cpus", default=None,
                   help="server CPU list (default: the first half of the machine)")
    p.add_argument("--client-cpus", default=None,
                   help="load generator and nginx CPU list (default: the second half)")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin (for a machine without taskset)")
    p.add_argument("--nginx-workers", type=int, default=None,
                   help="nginx worker processes (default: half the client CPUs)")
    p.add_argument("--load-threads", type=int, default=None,
                   help="wrk threads (default: half the client CPUs)")
    p.add_argument("--deadline", type=float, default=540.0,
                   help="seconds for the whole scaling run; later worker counts are skipped")
    p.add_argument("--out", default=None,
                   help="path prefix for the JSON files (default bench/results/scaling-<time>)")
    p.add_argument("--report", metavar="FILE.json", default=None,
                   help="run nothing: print the tables from a saved combined file")
    ns = p.parse_args(argv)
    try:
        ns.workers = [int(w) for w in ns.workers_list.split(",") if w.strip()]
    except ValueError:
        p.error(f"--workers-list takes integers such as 1,2,4,8 (got {ns.workers_list!r})")
    if not ns.workers or min(ns.workers) < 1:
        p.error("--workers-list needs at least one worker count >= 1")
    if ns.clients_per_worker < 1:
        p.error("--clients-per-worker must be >= 1")
    server, client, nclient = cpu_split(os.cpu_count() or 1)
    if ns.no_pin:
        ns.server_cpus = ns.client_cpus = None
    else:
        ns.server_cpus = ns.server_cpus or server
        ns.client_cpus = ns.client_cpus or client
    ns.nginx_workers = ns.nginx_workers or max(1, nclient // 2)
    ns.load_threads = ns.load_threads or max(1, nclient // 2)
    return ns


def run_argv(ns: argparse.Namespace, workers: int, out: str) -> list[str]:
    argv = [
        sys.executable, str(RUN),
        "--servers", ns.servers, "--scenarios", ns.scenarios, "--paths", ns.paths,
        "--rounds", str(ns.rounds), "--duration", str(ns.duration),
        "--warmup", str(ns.warmup), "--tool", ns.tool,
        "--workers", str(workers), "--concurrency", str(workers * ns.clients_per_worker),
        "--nginx-workers", str(ns.nginx_workers), "--load-threads", str(ns.load_threads),
        "--no-chart", "--out", out,
    ]
    if ns.server_cpus:
        argv += ["--server-cpus", ns.server_cpus]
    if ns.client_cpus:
        argv += ["--client-cpus", ns.client_cpus]
    return argv


# --------------------------------------------------------------------------- combining


def combine(runs: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scenario, path, server): its medians and ratios at each W."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for w in sorted(runs):
        for r in runs[w].get("results", []):
            key = (r["scenario"], r["path"], r["server"])
            row = rows.setdefault(key, {
                "scenario": key[0], "path": key[1], "server": key[2],
                "baseline": r.get("baseline"), "by_workers": {},
            })
            med = r.get("median") or {}
            ratio = r.get("ratio") or {}
            row["by_workers"][str(w)] = {
                "status": r.get("status"),
                "rps": med.get("rps"),
                "cpu_us_per_req": med.get("cpu_us_per_req"),
                "p99_ms": med.get("p99_ms"),
                "rps_vs_baseline": ratio.get("rps"),
                "cpu_vs_baseline": ratio.get("cpu"),
            }
    for row in rows.values():
        ws = sorted(int(w) for w in row["by_workers"])
        first, last = row["by_workers"][str(ws[0])], row["by_workers"][str(ws[-1])]
        row["speedup"] = (round(last["rps"] / first["rps"], 2)
                          if len(ws) > 1 and first["rps"] and last["rps"] else None)
    return list(rows.values())


def _fmt(v: float | None, digits: int = 0, suffix: str = "") -> str:
    return "–" if v is None else f"{v:,.{digits}f}{suffix}"


def tables(data: dict[str, Any]) -> str:
    ws = [str(w) for w in data["workers"]]
    rows = data["rows"]
    head = "| scenario | path | server | " + " | ".join(f"{w} w" for w in ws)
    sep = "|---|---|---|" + "--:|" * len(ws)

    def cells(row: dict[str, Any], key: str, digits: int, suffix: str = "") -> str:
        return " | ".join(_fmt(row["by_workers"].get(w, {}).get(key), digits, suffix)
                          for w in ws)

    out = [f"Requests/s (median of rounds); last column: {ws[-1]} workers over {ws[0]}:", "",
           head + " | speed-up |", sep + "--:|"]
    out += [f"| {r['scenario']} | {r['path']} | {r['server']} | {cells(r, 'rps', 0)} | "
            f"{_fmt(r['speedup'], 2, '×')} |" for r in rows]
    out += ["", "Server CPU µs per request (all processes of the server):", "", head + " |",
            sep]
    out += [f"| {r['scenario']} | {r['path']} | {r['server']} | "
            f"{cells(r, 'cpu_us_per_req', 1)} |" for r in rows]
    versus = [r for r in rows if r["baseline"] and r["baseline"] != r["server"]
              and any(v.get("rps_vs_baseline") for v in r["by_workers"].values())]
    if versus:
        out += ["", "Against the Gunicorn baseline in the same run "
                "(req/s ratio, higher is better / CPU per request ratio, lower is better):", "",
                head.replace("| server |", "| server (vs baseline) |") + " |", sep]
        for r in versus:
            pair = " | ".join(
                f"{_fmt(v.get('rps_vs_baseline'), 2, '×')} / {_fmt(v.get('cpu_vs_baseline'), 2, '×')}"
                for v in (r["by_workers"].get(w, {}) for w in ws))
            out.append(f"| {r['scenario']} | {r['path']} | {r['server']} "
                       f"(vs {r['baseline']}) | {pair} |")
    if data.get("skipped"):
        out += ["", "Not run: " + "; ".join(f"{w} workers ({why})"
                                            for w, why in data["skipped"].items())]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.report:
        with open(ns.report) as f:
            print(tables(json.load(f)), end="")
        return 0
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    prefix = ns.out or str(REPO / "bench" / "results" / f"scaling-{stamp}")
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    t_end = time.monotonic() + ns.deadline
    runs: dict[int, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    rc = 0
    for w in ns.workers:
        left = t_end - time.monotonic()
        if left < 10:
            skipped[str(w)] = "deadline reached"
            continue
        out = f"{prefix}-w{w}.json"
        print(f"scaling: {w} worker(s), -c {w * ns.clients_per_worker}, "
              f"server CPUs {ns.server_cpus}, client CPUs {ns.client_cpus}", file=sys.stderr)
        try:
            proc = subprocess.run(run_argv(ns, w, out), timeout=left, stdout=subprocess.PIPE,
                                  text=True)
        except subprocess.TimeoutExpired:
            skipped[str(w)] = "timed out"
            rc = 1
            continue
        if proc.returncode != 0:
            rc = 1  # a failed case; run.py wrote its results all the same
        try:
            with open(out) as f:
                runs[w] = json.load(f)
        except (OSError, ValueError) as e:
            skipped[str(w)] = f"no results ({e.__class__.__name__})"
            rc = 1
    data = {
        "meta": {
            "date": stamp,
            "cpus": os.cpu_count(),
            "options": {k: v for k, v in vars(ns).items() if k != "report"},
            "runs": {str(w): runs[w]["meta"] for w in runs},
        },
        "workers": [w for w in ns.workers if w in runs],
        "skipped": skipped,
        "rows": combine(runs),
    }
    with open(prefix + ".json", "w") as f:
        json.dump(data, f, indent=1, default=str)
    if data["workers"]:
        print(tables(data), end="")
    print(f"\nresults: {prefix}.json", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
