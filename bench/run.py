#!/usr/bin/env python3
"""fastwsgi vs Gunicorn (and friends), reproducible with one command.

    python bench/run.py            # full comparison, ~15 min on 2 cores
    python bench/run.py --quick    # harness smoke run, < 60 s

Method (see bench/README.md for the why):

* For each (scenario, path) every selected server is started on its own free
  loopback port (behind its own nginx for the proxied paths), checked with one
  real request, and warmed up. Then the servers are measured in interleaved
  rounds, A B C A B C ..., so drift on a shared machine (other jobs, thermal,
  page cache) hits every server alike; we report medians over rounds.
* The headline figure is server CPU time per request: utime+stime of the
  server's whole process tree (master, workers, threads, reaped children) from
  /proc, sampled around each load run, divided by the responses the load
  generator counted. Requests/s and latency are reported too, but they depend
  on the load generator and the neighbours far more.
* Every load run must be clean: one transport error or non-2xx response marks
  the case failed (and the whole run exits 1); numbers from a failed case are
  never shown as results.
* ``--pin`` puts the server on CPU 0 and the load generator and nginx on CPU
  1, so they do not steal each other's cycles; ``--server-cpus`` and
  ``--client-cpus`` split a bigger machine the same way (bench/scaling.py).
* Beside it, the machine's CPU per request (every CPU's busy time from
  /proc/stat) and, when pinned, the load side's share: loopback TCP charges
  part of a response's cost to whichever CPU sends or acknowledges, so a
  server can look cheap by leaving work to its client (bench/procstat.py).

Outputs: a Markdown table on stdout, a JSON file (``--out``), a PNG chart
(``--chart``), a progress line on stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make "bench" importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import apps, hey, nginx, procstat, servers, strace, wrk  # noqa: E402
from bench.loadresult import LoadResult  # noqa: E402

INSTALL_HINT = "apt-get install hey wrk nginx-light"


@dataclass(frozen=True)
class Scenario:
    name: str
    app: str
    expect_len: int
    method: str = "GET"
    body_size: int | None = None  # request body (POST)
    threaded_only: bool = False  # only servers that overlap blocking requests
    description: str = ""


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("hello", "bench.apps:hello", len(apps.HELLO),
                 description="13-byte body"),
        Scenario("body64k", "bench.apps:body64k", len(apps.BODY_64K),
                 description="64 KiB body"),
        Scenario("file1m", "bench.apps:file1m", apps.FILE_SIZE,
                 description="1 MiB file via wsgi.file_wrapper"),
        Scenario("echo64k", "bench.apps:echo", 64 * 1024, method="POST", body_size=64 * 1024,
                 description="64 KiB POST echoed back"),
        Scenario("sleep10", "bench.apps:sleep10", len(apps.HELLO), threaded_only=True,
                 description="app sleeps 10 ms (threaded servers only)"),
        Scenario("flask", "bench.flask_app:app", len(apps.HELLO),
                 description="Flask hello world, 13-byte body (framework cost vs ours)"),
    )
}

PATHS = {
    "nginx": "nginx buffering proxy, HTTP/1.0 upstream: new connection per request",
    "nginx-ka": "nginx buffering proxy, HTTP/1.1 upstream keep-alive pool",
    "nginx-unix": "nginx buffering proxy, HTTP/1.0 upstream over a unix socket "
                  "(fastwsgi and Gunicorn only)",
    "direct": "load generator straight to the server, keep-alive",
}

# The metrics-on variants are for the metrics A/B only (run by name).
DEFAULT_SERVERS = [n for n in servers.SERVERS if not n.endswith("-metrics")]
# The figures the product promise is judged by: server CPU per request,
# fastwsgi over Gunicorn, target <= 1/4.
HEADLINES = [
    ("hello", "nginx", "fastwsgi-sync", "sync behind nginx (new upstream connection per request)"),
    ("hello", "direct", "fastwsgi-gthread", "gthread keep-alive direct"),
]
CPU_TARGET = 0.25
# taskset -c syntax, the part we need: CPUs and ranges, comma-separated.
CPU_LIST = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


def cpu_set(value: str) -> set[int]:
    """The CPUs of a taskset-style list (CPU_LIST syntax): "0-3,6" -> {0, 1, 2, 3, 6}."""
    out: set[int] = set()
    for part in value.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
QUICK_CASES = [
    ("hello", "nginx", "fastwsgi-sync"),
    ("hello", "direct", "fastwsgi-gthread"),
    ("hello", "nginx", "gunicorn-sync"),
]


# --------------------------------------------------------------------------- options


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark fastwsgi against Gunicorn and other WSGI servers.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true",
                   help="harness smoke run: hello, 1 round, few requests, 3 cases (< 60 s)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS),
                   help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS),
                   help="comma-separated server names or families "
                        f"(from: {', '.join(servers.SERVERS)})")
    p.add_argument("--paths", default="nginx,direct",
                   help=f"comma-separated, from: {', '.join(PATHS)}")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median taken)")
    p.add_argument("--duration", type=float, default=3.0,
                   help="seconds per measured load run (hey -z, wrk -d)")
    p.add_argument("-n", "--requests", type=int, default=None,
                   help="requests per hey run instead of a duration (wrk always uses --duration)")
    p.add_argument("--concurrency", "-c", type=int, default=16,
                   help="client connections (hey -c, wrk -c)")
    p.add_argument("--workers", "-w", type=int, default=1, help="server worker processes")
    p.add_argument("--threads", type=int, default=8, help="threads per threaded worker")
    p.add_argument("--qps", type=float, default=None,
                   help="requests/s per client (hey -q; implies --tool hey): compare "
                        "servers at the same offered rate instead of flat out")
    p.add_argument("--tool", choices=("auto", "hey", "wrk"), default="auto",
                   help="load generator; auto = hey through nginx, wrk direct")
    p.add_argument("--warmup", type=float, default=1.0,
                   help="seconds of unmeasured load after start")
    p.add_argument("--pin", action="store_true",
                   help="server on CPU 0; load generator and nginx on CPU 1")
    p.add_argument("--server-cpus", metavar="LIST", default=None,
                   help="CPUs for the server, in taskset -c syntax (e.g. 0-7); "
                        "--pin means 0")
    p.add_argument("--client-cpus", metavar="LIST", default=None,
                   help="CPUs for the load generator and nginx (e.g. 8-15); --pin means 1")
    p.add_argument("--queue-start", action="store_true",
                   help='nginx sends X-Request-Start "t=${msec}" (the metrics queue time)')
    p.add_argument("--nginx-workers", type=int, default=1,
                   help="nginx worker processes on the proxied paths")
    p.add_argument("--load-threads", type=int, default=1,
                   help="wrk threads (hey uses every CPU it is allowed)")
    p.add_argument("--strace", action="store_true",
                   help="count syscalls per request on one extra short run (strace -c -f)")
    p.add_argument("--out", default=None,
                   help="JSON results file (default bench/results/bench-<time>.json)")
    p.add_argument("--chart", default=None, help="PNG chart (default: the --out path, .png)")
    p.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    p.add_argument("--start-timeout", type=float, default=60.0,
                   help="seconds a server may take to listen and answer")
    p.add_argument("--report", metavar="FILE.json", default=None,
                   help="run nothing: print compact Markdown tables from a saved results file")
    ns = p.parse_args(argv)
    if ns.quick:
        ns.scenarios, ns.rounds = "hello", 1
        ns.requests = ns.requests or 1000
        ns.duration, ns.warmup, ns.concurrency = 1.0, 0.0, 8
    if ns.rounds < 1:
        p.error("--rounds must be >= 1")
    if ns.pin:
        ns.server_cpus = ns.server_cpus or "0"
        ns.client_cpus = ns.client_cpus or "1"
    for opt in ("server_cpus", "client_cpus"):
        value = getattr(ns, opt)
        if value is not None and not CPU_LIST.fullmatch(value):
            p.error(f"--{opt.replace('_', '-')} takes a CPU list such as 0 or 0-3,6 "
                    f"(got {value!r})")
    if ns.nginx_workers < 1 or ns.load_threads < 1:
        p.error("--nginx-workers and --load-threads must be >= 1")
    if ns.qps is not None and (ns.qps <= 0 or ns.tool == "wrk"):
        p.error("--qps needs a positive rate, and hey (wrk cannot limit its rate)")
    if ns.requests is not None and ns.requests < ns.concurrency:
        p.error("-n must be >= --concurrency")
    return ns


def _split(value: str, known: Sequence[str], what: str) -> list[str]:
    out = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        matches = [k for k in known if k == item] or [k for k in known if k.split("-")[0] == item]
        if not matches:
            raise SystemExit(f"unknown {what} {item!r}; choose from: {', '.join(known)}")
        out += [m for m in matches if m not in out]
    return out


def plan(ns: argparse.Namespace) -> list[tuple[str, str, str]]:
    """The (scenario, path, server) cases to run, in run order."""
    if ns.quick:
        return list(QUICK_CASES)
    scen = _split(ns.scenarios, list(SCENARIOS), "scenario")
    paths = _split(ns.paths, list(PATHS), "path")
    names = _split(ns.servers, list(servers.SERVERS), "server")
    cases = []
    for s in scen:
        for path in paths:
            for name in names:
                spec = servers.SERVERS[name]
                if SCENARIOS[s].threaded_only and not spec.threaded:
                    continue
                if path == "nginx-unix" and not spec.unix_ok:
                    continue
                if spec.apps is not None and SCENARIOS[s].app not in spec.apps:
                    continue
                if spec.paths is not None and path not in spec.paths:
                    continue
                cases.append((s, path, name))
    return cases


def tool_for(ns: argparse.Namespace, path: str) -> str:
    if ns.tool != "auto":
        return ns.tool
    if ns.qps is not None:
        return "hey"  # wrk has no rate limit
    return "wrk" if path == "direct" else "hey"


def missing_tools(ns: argparse.Namespace, cases: list[tuple[str, str, str]]) -> list[str]:
    need: set[str] = set()
    for _, path, _ in cases:
        need.add(tool_for(ns, path))
        if path.startswith("nginx"):
            need.add("nginx")
    if ns.server_cpus or ns.client_cpus:
        need.add("taskset")
    if ns.strace:
        need.add("strace")
    checks = {
        "hey": hey.available,
        "wrk": wrk.available,
        "nginx": nginx.available,
        "taskset": lambda: shutil.which("taskset") is not None,
        "strace": strace.available,
    }
    return sorted(t for t in need if not checks[t]())


# --------------------------------------------------------------------------- progress


class Progress:
    """One self-overwriting status line on a terminal, plain lines otherwise."""

    def __init__(self, total: int, stream: Any = sys.stderr) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = time.monotonic()

    def show(self, label: str, advance: bool = False) -> None:
        if advance:
            self.done = min(self.done + 1, self.total)
        width = 24
        filled = int(width * self.done / self.total)
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.done}/{self.total} {time.monotonic() - self.t0:5.0f}s {label}"
        if self.tty:
            self.stream.write("\r\x1b[K" + line[:160])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- running


@dataclass
class Case:
    scenario: str
    path: str
    server: str
    baseline: str
    tool: str
    status: str = "pending"  # ok | failed | failed to start
    reason: str = ""
    rounds: list[dict[str, Any]] = field(default_factory=list)
    peak_rss_kib: int | None = None
    syscalls_per_req: float | None = None
    syscalls_top: dict[str, float] = field(default_factory=dict)
    median: dict[str, float | None] = field(default_factory=dict)
    ratio: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Bench:
    def __init__(self, ns: argparse.Namespace, workdir: str) -> None:
        self.ns = ns
        self.workdir = workdir
        self.server_prefix: list[str] = []
        self.client_prefix: list[str] = []
        if ns.server_cpus:
            self.server_prefix = ["taskset", "-c", ns.server_cpus]
        if ns.client_cpus:
            self.client_prefix = ["taskset", "-c", ns.client_cpus]
        # The load side's CPUs, whose busy time is reported per request next
        # to the server's (procstat: what TCP on loopback charges to whom).
        self.client_set = cpu_set(ns.client_cpus) if ns.client_cpus else None
        self.env = servers.server_env()
        self.env[apps.FILE_ENV] = apps.ensure_file(os.path.join(workdir, "file1m.bin"))
        self.post_body = os.path.join(workdir, "post64k.bin")
        with open(self.post_body, "wb") as f:
            f.write(b"x" * (64 * 1024))

    # -- one load run
    def load(self, url: str, scen: Scenario, tool: str, *, warmup: bool = False,
             short: bool = False) -> LoadResult:
        ns = self.ns
        duration = ns.duration
        requests = ns.requests
        if warmup:
            duration, requests = ns.warmup, None
        if short:  # the strace run: strace slows the server ~10x
            duration = max(1.0, ns.duration / 3)
            requests = max(ns.concurrency, min(ns.requests or 500, 500))
        if tool == "hey":
            return hey.run(
                url,
                requests=requests,
                duration_s=None if requests else duration,
                concurrency=ns.concurrency,
                timeout_s=10,
                method=scen.method,
                body_file=self.post_body if scen.body_size else None,
                content_type="application/octet-stream" if scen.body_size else None,
                qps=ns.qps,
                prefix=self.client_prefix,
            )
        return wrk.run(
            url,
            duration_s=duration,
            connections=ns.concurrency,
            threads=ns.load_threads,
            timeout_s=10,
            body_size=scen.body_size,
            prefix=self.client_prefix,
        )

    def run_group(self, scen: Scenario, path: str, cases: list[Case], progress: Progress) -> None:
        """Start every server of one (scenario, path), measure in rounds, stop."""
        live: list[tuple[Case, servers.Server, nginx.Nginx | None]] = []
        try:
            for case in cases:
                progress.show(f"{scen.name} {path} {case.server}: starting")
                unix = (os.path.join(self.workdir, f"{case.server}-{scen.name}.sock")
                        if path == "nginx-unix" else None)
                srv = servers.Server(
                    servers.SERVERS[case.server], scen.app, workers=self.ns.workers,
                    threads=self.ns.threads, prefix=self.server_prefix, env=self.env,
                    unix_path=unix,
                )
                proxy: nginx.Nginx | None = None
                try:
                    srv.start(self.ns.start_timeout)
                    body = b"x" * scen.body_size if scen.body_size else None
                    srv.check(method=scen.method, body=body, expect_len=scen.expect_len)
                    if path.startswith("nginx"):
                        proxy = nginx.Nginx(srv.address, keepalive=path == "nginx-ka",
                                            prefix_cmd=self.client_prefix,
                                            workers=self.ns.nginx_workers,
                                            queue_start=self.ns.queue_start)
                        proxy.start()
                except (servers.StartError, RuntimeError, OSError) as e:
                    case.status, case.reason = "failed to start", str(e)[:400]
                    if proxy is not None:
                        proxy.stop()
                    srv.stop()
                    for _ in range(self.ns.rounds):
                        progress.show(f"{scen.name} {path} {case.server}: failed to start", True)
                    continue
                live.append((case, srv, proxy))
            for case, srv, proxy in live:
                url = proxy.url if proxy else srv.url
                if self.ns.warmup > 0:
                    progress.show(f"{scen.name} {path} {case.server}: warm-up")
                    res = self.load(url, scen, case.tool, warmup=True)
                    if res.failed:
                        case.status, case.reason = "failed", "warm-up: " + res.failure_reason()
            for r in range(self.ns.rounds):
                for case, srv, proxy in live:
                    label = f"{scen.name} {path} {case.server} round {r + 1}/{self.ns.rounds}"
                    if case.status == "failed":
                        progress.show(label + ": skipped after failure", True)
                        continue
                    progress.show(label)
                    case.rounds.append(self.measure(scen, case, srv, proxy))
                    progress.show(label, True)
                    if case.rounds[-1]["load"]["failed"]:
                        case.status = "failed"
                        case.reason = f"round {r + 1}: {case.rounds[-1]['failure']}"
            for case, srv, proxy in live:
                case.peak_rss_kib = procstat.peak_rss_per_worker_kib(srv.pid)
                if self.ns.strace and case.status != "failed":
                    progress.show(f"{scen.name} {path} {case.server}: strace run")
                    self.count_syscalls(scen, case, srv, proxy)
                if case.status == "pending":
                    case.status = "ok"
        finally:
            for _case, srv, proxy in live:
                if proxy is not None:
                    proxy.stop()
                srv.stop()

    def measure(self, scen: Scenario, case: Case, srv: servers.Server,
                proxy: nginx.Nginx | None) -> dict[str, Any]:
        url = proxy.url if proxy else srv.url
        s0 = procstat.cpu_sample(srv.pid)
        n0 = procstat.cpu_sample(proxy.proc.pid) if proxy and proxy.proc else None
        m0 = procstat.machine_busy()
        res = self.load(url, scen, case.tool)
        m1 = procstat.machine_busy()
        s1 = procstat.cpu_sample(srv.pid)
        n1 = procstat.cpu_sample(proxy.proc.pid) if proxy and proxy.proc else None
        cpu_s = s1.seconds - s0.seconds

        def per_req(seconds: float) -> float | None:
            return round(seconds * 1e6 / res.requests, 2) if res.requests else None

        rec: dict[str, Any] = {
            "load": res.to_json(),
            "server_cpu_s": round(cpu_s, 4),
            "server_pids": s1.pids,
            "cpu_us_per_req": per_req(cpu_s),
            "nginx_cpu_us_per_req": per_req(n1.seconds - n0.seconds) if n0 and n1 else None,
            # Every CPU's busy time (the whole machine: server, nginx, load
            # generator, softirq), and the load side's CPUs alone when pinned.
            "machine_cpu_us_per_req": per_req(procstat.busy_seconds(m0, m1)),
            "client_cpus_us_per_req": (
                per_req(procstat.busy_seconds(m0, m1, self.client_set))
                if self.client_set is not None else None
            ),
            "failure": res.failure_reason(),
        }
        return rec

    def count_syscalls(self, scen: Scenario, case: Case, srv: servers.Server,
                       proxy: nginx.Nginx | None) -> None:
        pids = procstat.tree_pids(srv.pid)
        with strace.Tracer(pids) as tracer:
            res = self.load(proxy.url if proxy else srv.url, scen, case.tool, short=True)
        if res.failed:
            case.reason = "strace run: " + res.failure_reason()
            return
        if tracer.result is not None and res.requests:
            case.syscalls_per_req = round(tracer.result.total / res.requests, 2)
            top = sorted(tracer.result.by_name.items(), key=lambda kv: -kv[1])[:8]
            case.syscalls_top = {k: round(v / res.requests, 2) for k, v in top}


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 3) if vals else None


def summarize(cases: list[Case]) -> None:
    for c in cases:
        good = [r for r in c.rounds if not r["load"]["failed"]]
        if c.status != "ok" or not good:
            continue
        c.median = {
            "rps": _median([r["load"]["rps"] for r in good]),
            "p50_ms": _median([r["load"]["p50_ms"] for r in good]),
            "p99_ms": _median([r["load"]["p99_ms"] for r in good]),
            "cpu_us_per_req": _median([r["cpu_us_per_req"] for r in good]),
            "cpu_us_per_req_min": min(cpus) if (cpus := [
                r["cpu_us_per_req"] for r in good if r["cpu_us_per_req"] is not None]) else None,
            "cpu_us_per_req_max": max(cpus) if cpus else None,
            "nginx_cpu_us_per_req": _median([r["nginx_cpu_us_per_req"] for r in good]),
            "machine_cpu_us_per_req": _median([r.get("machine_cpu_us_per_req") for r in good]),
            "client_cpus_us_per_req": _median([r.get("client_cpus_us_per_req") for r in good]),
        }
    index = {(c.scenario, c.path, c.server): c for c in cases}
    for c in cases:
        base = index.get((c.scenario, c.path, c.baseline))
        if not c.median or base is None or not base.median:
            continue
        def ratio(key: str, c: Case = c, base: Case = base) -> float | None:
            a, b = c.median.get(key), base.median.get(key)
            return round(a / b, 3) if a is not None and b else None
        c.ratio = {"cpu": ratio("cpu_us_per_req"), "rps": ratio("rps")}


# --------------------------------------------------------------------------- output


def headlines(cases: list[Case]) -> list[dict[str, Any]]:
    index = {(c.scenario, c.path, c.server): c for c in cases}
    out = []
    for scen, path, server, label in HEADLINES:
        c = index.get((scen, path, server))
        base = index.get((scen, path, c.baseline)) if c is not None else None
        if c is None or base is None:  # not part of this run
            continue
        ratio = c.ratio.get("cpu") if c.ratio else None
        out.append({
            "label": f"{label}, {scen}",
            "server": server,
            "baseline": c.baseline,
            "cpu_us_per_req": c.median.get("cpu_us_per_req") if c.median else None,
            "baseline_cpu_us_per_req": base.median.get("cpu_us_per_req") if base.median else None,
            "cpu_ratio": ratio,
            "machine_cpu_us_per_req": c.median.get("machine_cpu_us_per_req") if c.median else None,
            "baseline_machine_cpu_us_per_req": (
                base.median.get("machine_cpu_us_per_req") if base.median else None
            ),
            "target": CPU_TARGET,
            "met": None if ratio is None else ratio <= CPU_TARGET,
        })
    return out


def headline_text(items: list[dict[str, Any]]) -> str:
    lines = []
    for h in items:
        if h["cpu_ratio"] is None:
            lines.append(f"- {h['label']}: no comparison ({h['server']} or {h['baseline']} "
                         "did not run clean)")
            continue
        lines.append(
            f"- {h['label']}: {h['server']} {_fmt(h['cpu_us_per_req'], 0)} µs/req vs "
            f"{h['baseline']} {_fmt(h['baseline_cpu_us_per_req'], 0)} µs/req = "
            f"{h['cpu_ratio']:.2f}× (target ≤ {h['target']:.2f}×: "
            f"{'met' if h['met'] else 'NOT met'})"
            + (f"; whole machine {_fmt(h['machine_cpu_us_per_req'], 0)} vs "
               f"{_fmt(h['baseline_machine_cpu_us_per_req'], 0)} µs/req"
               if h.get("machine_cpu_us_per_req") and h.get("baseline_machine_cpu_us_per_req")
               else "")
        )
    return "\n".join(lines)


def pivot(results: list[dict[str, Any]], key: str, nd: int = 0) -> str:
    """One row per (scenario, path), one column per server: the README's view."""
    names = list(dict.fromkeys(r["server"] for r in results))
    rows = list(dict.fromkeys((r["scenario"], r["path"]) for r in results))
    cell = {(r["scenario"], r["path"], r["server"]): r for r in results}
    out = ["| scenario | path | " + " | ".join(names) + " |",
           "|---|---|" + "---:|" * len(names)]
    for s, p in rows:
        vals = []
        for n in names:
            r = cell.get((s, p, n))
            if r is None:
                vals.append("")
            elif r["status"] != "ok":
                vals.append(r["status"])
            else:
                v = r["median"].get(key) if key in r["median"] else r.get(key)
                vals.append(_fmt(v, nd))
        out.append(f"| {s} | {p} | " + " | ".join(vals) + " |")
    return "\n".join(out) + "\n"


def report(path: str) -> str:
    with open(path) as f:
        data = json.load(f)
    m = data["meta"]
    o = m["options"]
    lines = [
        f"Run {m['date']}, commit `{m['commit']}`, {m['machine']['cpus']} × {m['machine']['cpu']}, "
        f"load average at start {m['machine']['loadavg_at_start'][0]:.1f}; "
        f"{o['rounds']} rounds × {o['duration']:g} s, -c {o['concurrency']}, "
        f"{o['workers']} worker(s), {o['threads']} threads, "
        f"CPUs server={o.get('server_cpus')} client={o.get('client_cpus')}; "
        f"took {m.get('elapsed_s', 0):.0f} s.",
        "",
        "Server CPU µs per request (median over rounds; lower is better):",
        "",
        pivot(data["results"], "cpu_us_per_req"),
        "Requests/s (median; depends on the load generator and the neighbours):",
        "",
        pivot(data["results"], "rps"),
    ]
    if any((r.get("median") or {}).get("machine_cpu_us_per_req") for r in data["results"]):
        lines += ["Machine CPU µs per request (every CPU's busy time: server, nginx, load "
                  "generator and the TCP work charged to each):", "",
                  pivot(data["results"], "machine_cpu_us_per_req")]
        if o.get("client_cpus"):
            lines += [f"Of which on the load side's CPUs ({o['client_cpus']}):", "",
                      pivot(data["results"], "client_cpus_us_per_req")]
    if o.get("strace"):
        lines += ["Syscalls per request (strace -c -f attached for one extra short run):", "",
                  pivot(data["results"], "syscalls_per_req", 1)]
    if data.get("headline"):
        lines += ["Headline, server CPU per request:", "", headline_text(data["headline"]), ""]
    if data.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in data["skipped"].items()), ""]
    return "\n".join(lines)


def _fmt(v: float | None, nd: int = 1) -> str:
    return "–" if v is None else f"{v:,.{nd}f}"


def markdown(cases: list[Case]) -> str:
    head = (
        "| scenario | path | server | req/s | p50 ms | p99 ms | server CPU µs/req "
        "| machine CPU µs/req | CPU vs Gunicorn | req/s vs Gunicorn | peak RSS/worker MiB "
        "| syscalls/req | status |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
    )
    rows = []
    for c in cases:
        m, r = c.median, c.ratio
        vs = c.baseline if c.baseline != c.server else ""
        rows.append(
            f"| {c.scenario} | {c.path} | {c.server} | {_fmt(m.get('rps'), 0)} "
            f"| {_fmt(m.get('p50_ms'), 2)} | {_fmt(m.get('p99_ms'), 2)} "
            f"| {_fmt(m.get('cpu_us_per_req'), 0)} "
            f"| {_fmt(m.get('machine_cpu_us_per_req'), 0)} "
            f"| {(_fmt(r.get('cpu'), 2) + '×') if r.get('cpu') and vs else '–'} "
            f"| {(_fmt(r.get('rps'), 2) + '×') if r.get('rps') and vs else '–'} "
            f"| {_fmt(c.peak_rss_kib / 1024 if c.peak_rss_kib else None, 1)} "
            f"| {_fmt(c.syscalls_per_req, 1)} "
            f"| {c.status}{(': ' + c.reason.replace('|', '/')[:120]) if c.reason else ''} |"
        )
    return head + "\n".join(rows) + "\n"


def draw_chart(cases: list[Case], path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: no chart"
    scen_names = list(dict.fromkeys(c.scenario for c in cases))
    # One colour per server across every panel, so a glance down the page works.
    all_names = list(dict.fromkeys(c.server for c in cases))
    palette = plt.get_cmap("tab10")
    colour = {n: palette(i % 10) for i, n in enumerate(all_names)}
    fig, axes = plt.subplots(len(scen_names), 2, figsize=(13, 3.2 * len(scen_names)),
                             squeeze=False)
    for row, s in enumerate(scen_names):
        sc = [c for c in cases if c.scenario == s]
        paths = list(dict.fromkeys(c.path for c in sc))
        names = list(dict.fromkeys(c.server for c in sc))
        width = 0.8 / max(len(names), 1)
        for col, (key, title) in enumerate(
            (("cpu_us_per_req", "server CPU µs/request (lower is better)"),
             ("rps", "requests/s (higher is better)"))
        ):
            ax = axes[row][col]
            for i, name in enumerate(names):
                vals = []
                for p in paths:
                    c = next((c for c in sc if c.path == p and c.server == name), None)
                    vals.append((c.median.get(key) if c and c.median else None) or 0.0)
                xs = [j + i * width for j in range(len(paths))]
                ax.bar(xs, vals, width, label=name, color=colour[name])
            ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(paths))])
            ax.set_xticklabels(paths)
            ax.set_title(f"{s}: {title}", fontsize=9)
            ax.tick_params(labelsize=8)
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


def _cmd_out(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (p.stdout + p.stderr).strip()


def metadata(ns: argparse.Namespace) -> dict[str, Any]:
    repo = str(servers.REPO)
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _cmd_out(["git", "-C", repo, "describe", "--always", "--dirty"]),
        "python": platform.python_version(),
        "machine": {"cpu": cpu, "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()},
        "tools": {
            "nginx": _cmd_out([nginx.NGINX, "-v"]) if nginx.available() else None,
            "wrk": _cmd_out(["wrk", "-v"]).splitlines()[0] if wrk.available() else None,
            "gunicorn": _cmd_out([sys.executable, "-m", "gunicorn", "--version"]),
        },
        "options": {k: v for k, v in vars(ns).items()},
        "paths": PATHS,
        "scenarios": {k: v.description for k, v in SCENARIOS.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.report:
        print(report(ns.report), end="")
        return 0
    cases_plan = plan(ns)
    missing = missing_tools(ns, cases_plan)
    if missing:
        print(f"bench: missing {', '.join(missing)}; install with: {INSTALL_HINT}"
              + (" strace" if "strace" in missing else ""), file=sys.stderr)
        return 2
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ns.out or str(servers.REPO / "bench" / "results" / f"bench-{stamp}.json")
    chart = ns.chart or (str(Path(out).with_suffix(".png")))

    cases: list[Case] = []
    skipped: dict[str, str] = {}
    for s, path, name in cases_plan:
        spec = servers.SERVERS[name]
        why = spec.missing()
        if why:
            skipped[name] = why
            continue
        cases.append(Case(s, path, name, spec.baseline, tool_for(ns, path)))
    for name, why in skipped.items():
        print(f"bench: skipping {name}: {why}", file=sys.stderr)

    groups: dict[tuple[str, str], list[Case]] = {}
    for c in cases:
        groups.setdefault((c.scenario, c.path), []).append(c)
    progress = Progress(len(cases) * ns.rounds)
    meta = metadata(ns)  # date and load average as the run starts
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fastwsgi-bench-") as workdir:
        bench = Bench(ns, workdir)
        try:
            for (s, path), group in groups.items():
                bench.run_group(SCENARIOS[s], path, group, progress)
        finally:
            progress.close()
    summarize(cases)

    table = markdown(cases)
    print(table, end="")
    heads = headlines(cases)
    if heads:
        print("\nServer CPU per request, fastwsgi vs Gunicorn:\n" + headline_text(heads))
    result = {
        "meta": meta | {"elapsed_s": round(time.monotonic() - t0, 1)},
        "headline": heads,
        "skipped": skipped,
        "results": [c.to_json() for c in cases],
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"\nresults: {out}", file=sys.stderr)
    if not ns.no_chart and cases:
        err = draw_chart(cases, chart)
        print(f"chart: {chart}" if err is None else f"chart: {err}", file=sys.stderr)
    bad = [c for c in cases if c.status != "ok"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
