"""A/B two checkouts of fastwsgi in interleaved rounds: is B as cheap as A?

A change that must leave the hot path alone ("unchanged within noise") is
judged by running the same ``bench/run.py`` case from two trees, each with its
extensions built in place, one round at a time and alternating which tree goes
first, so that the machine's drift lands on both sides. Each round is a
one-round ``run.py`` invocation whose JSON is kept; the summary is the median
server CPU per request (and syscalls per request with ``--strace``) per tree
and case, and B/A.

    python bench/ab_trees.py --a /tmp/old --b . --rounds 8 -- \\
        --servers fastwsgi-sync --scenarios hello --paths nginx --duration 3 --pin

Everything after ``--`` goes to each ``run.py`` call unchanged (``--rounds``
and ``--out`` are set here).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def one_round(tree: Path, out: Path, run_args: list[str]) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    cmd = [sys.executable, str(tree / "bench" / "run.py"), *run_args,
           "--rounds", "1", "--no-chart", "--out", str(out)]
    subprocess.run(cmd, cwd=tree, env=env, check=False, stdout=subprocess.DEVNULL)
    if not out.exists():
        raise SystemExit(f"{tree}: run.py wrote no {out}")
    return json.loads(out.read_text())["results"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, required=True, help="baseline tree")
    parser.add_argument("--b", type=Path, required=True, help="tree under test")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench/results/ab"))
    parser.add_argument("run_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    run_args = [a for a in args.run_args if a != "--"]
    args.out.mkdir(parents=True, exist_ok=True)
    cpu: dict[tuple[str, str], list[float]] = {}
    calls: dict[tuple[str, str], list[float]] = {}
    trees = {"A": args.a.resolve(), "B": args.b.resolve()}
    for r in range(args.rounds):
        order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
        for side in order:
            results = one_round(trees[side], args.out / f"{side}-{r}.json", run_args)
            for res in results:
                case = f"{res['server']} {res['scenario']} {res['path']}"
                for rnd in res.get("rounds", []):
                    if rnd.get("failure") or rnd["load"].get("failed"):
                        print(f"round {r} {side} {case}: failed: {rnd.get('failure')}")
                        continue
                    cpu.setdefault((case, side), []).append(rnd["cpu_us_per_req"])
                if res.get("syscalls_per_req") is not None:
                    calls.setdefault((case, side), []).append(res["syscalls_per_req"])
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    cases = sorted({case for case, _ in cpu})
    print(f"\nA = {trees['A']}\nB = {trees['B']}\nserver CPU us/request, median of rounds")
    print(f"{'case':44} {'A':>8} {'B':>8} {'B/A':>6}  rounds A | B")
    for case in cases:
        a, b = cpu.get((case, "A"), []), cpu.get((case, "B"), [])
        if not a or not b:
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        spread = f"{min(a):.1f}-{max(a):.1f} | {min(b):.1f}-{max(b):.1f}"
        print(f"{case:44} {ma:8.2f} {mb:8.2f} {mb / ma:6.3f}  {spread}")
        ca, cb = calls.get((case, "A")), calls.get((case, "B"))
        if ca and cb:
            print(f"{'  syscalls/request':44} {statistics.median(ca):8.2f} "
                  f"{statistics.median(cb):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
