"""The benchmark harness end to end: real servers, real nginx, real hey and wrk.

``bench/run.py --quick`` must start fastwsgi (sync behind nginx, gthread
direct) and Gunicorn (sync behind nginx), push real requests through them,
and print a table and a JSON file of the promised shape. What is asserted is
that every request succeeded and the numbers are present and sane — never
how fast anything was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from server import wait_until

import fastwsgi
from bench import hey, nginx, nginx_static, procstat, servers, wrk

pytestmark = pytest.mark.bench  # the harness tier: `-m "not bench"` skips it

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "bench" / "run.py"
MISSING = [t for t, ok in (("hey", hey.available()), ("wrk", wrk.available()),
                           ("nginx", nginx.available())) if not ok]


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(Path(fastwsgi.__file__).resolve().parent.parent), str(REPO)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


@pytest.mark.slow
@pytest.mark.needs_tools
@pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} "
                    "(apt-get install hey wrk nginx-light)")
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    out, chart = tmp_path / "quick.json", tmp_path / "quick.png"
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(out), "--chart", str(chart)],
        capture_output=True, text=True, timeout=240, env=bench_env(), cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]

    lines = proc.stdout.splitlines()
    assert lines[0].startswith("| scenario | path | server | req/s")
    rows = [ln for ln in lines[2:] if ln.startswith("| hello |")]
    assert len(rows) == 3 and all(r.rstrip().endswith("| ok |") for r in rows)
    assert "[" in proc.stderr and "3/3" in proc.stderr  # the progress line

    data = json.loads(out.read_text())
    assert set(data) == {"meta", "headline", "skipped", "results"}
    (head,) = data["headline"]  # --quick has the sync-behind-nginx pair only
    assert head["server"] == "fastwsgi-sync" and head["baseline"] == "gunicorn-sync"
    assert head["cpu_ratio"] is not None and "µs/req" in proc.stdout
    assert head["machine_cpu_us_per_req"] > head["cpu_us_per_req"]
    assert head["baseline_machine_cpu_us_per_req"] > head["baseline_cpu_us_per_req"]
    assert "; whole machine " in proc.stdout
    assert data["meta"]["options"]["quick"] is True
    got = [(r["scenario"], r["path"], r["server"]) for r in data["results"]]
    assert got == [
        ("hello", "nginx", "fastwsgi-sync"),
        ("hello", "direct", "fastwsgi-gthread"),
        ("hello", "nginx", "gunicorn-sync"),
    ]
    by_server = {r["server"]: r for r in data["results"]}
    for r in data["results"]:
        assert r["status"] == "ok", r["reason"]
        (rnd,) = r["rounds"]
        load = rnd["load"]
        assert load["failed"] is False and load["errors"] == {}
        assert load["requests"] > 0
        if r["path"] == "nginx":
            assert load["tool"] == "hey"
            assert load["status_counts"] == {"200": 1000}  # --quick sends exactly -n 1000
            assert rnd["nginx_cpu_us_per_req"] is not None
        else:
            assert load["tool"] == "wrk"
            assert set(load["status_counts"]) == {"2xx/3xx"}
        assert rnd["cpu_us_per_req"] > 0
        assert rnd["server_cpu_s"] > 0
        # The whole machine did the server's work and the load generator's.
        assert rnd["machine_cpu_us_per_req"] > rnd["cpu_us_per_req"]
        assert rnd["client_cpus_us_per_req"] is None  # not pinned
        assert r["peak_rss_kib"] > 1024  # a Python worker holds more than 1 MiB
        assert r["median"]["rps"] > 0
    sync = by_server["fastwsgi-sync"]
    assert sync["baseline"] == "gunicorn-sync"
    assert sync["ratio"]["cpu"] == pytest.approx(
        sync["median"]["cpu_us_per_req"] / by_server["gunicorn-sync"]["median"]["cpu_us_per_req"],
        rel=0.01,
    )
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rep = subprocess.run([sys.executable, str(RUN), "--report", str(out)], capture_output=True,
                         text=True, timeout=60, env=bench_env())
    assert rep.returncode == 0, rep.stderr
    assert "| scenario | path | fastwsgi-sync | fastwsgi-gthread | gunicorn-sync |" in rep.stdout
    assert data["meta"]["commit"] in rep.stdout


@pytest.mark.needs_tools
@pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} "
                    "(apt-get install hey wrk nginx-light)")
@pytest.mark.parametrize(
    ("keepalive", "unix"),
    [(False, False), (True, False), (False, True)],
    ids=["http10-upstream", "keepalive-upstream", "unix-socket-upstream"],
)
def test_nginx_proxy_serves_and_a_dead_upstream_fails_the_run(
    keepalive: bool, unix: bool, tmp_path: Path
) -> None:
    spec = servers.SERVERS["gunicorn-gthread"]
    if spec.missing():
        pytest.skip(spec.missing() or "")
    env = bench_env()
    sock = str(tmp_path / "app.sock") if unix else None
    srv = servers.Server(spec, "bench.apps:hello", threads=4, env=env, unix_path=sock)
    proxy = nginx.Nginx(srv.address, keepalive=keepalive)
    try:
        srv.start(60)
        srv.check(expect_len=13)
        proxy.start()
        ok = hey.run(proxy.url, requests=200, concurrency=4)
        assert not ok.failed, ok.failure_reason()
        assert ok.status_counts == {"200": 200}
        # The master listens before it forks its worker; by now the worker served.
        assert len(proxy.pids()) >= 2
        srv.stop()
        dead = hey.run(proxy.url, requests=20, concurrency=2)
        assert dead.failed
        assert dead.status_counts == {"502": 20}  # nginx: Bad Gateway
    finally:
        proxy.stop()
        srv.stop()
    assert proxy.dir == ""  # temp prefix removed


@pytest.mark.needs_tools
@pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} "
                    "(apt-get install hey wrk nginx-light)")
def test_nginx_runs_the_worker_processes_it_is_given_and_pins_them(tmp_path: Path) -> None:
    # The scaling runs give nginx several workers on the client CPUs.
    spec = servers.SERVERS["fastwsgi-sync"]
    srv = servers.Server(spec, "bench.apps:hello", env=bench_env())
    proxy = nginx.Nginx(srv.address, workers=3, prefix_cmd=["taskset", "-c", "0"])
    try:
        srv.start(60)
        proxy.start()
        ok = hey.run(proxy.url, requests=60, concurrency=3)
        assert not ok.failed, ok.failure_reason()
        wait_until("nginx master + 3 workers", lambda: len(proxy.pids()) == 4, 10.0)
        for pid in proxy.pids():
            assert os.sched_getaffinity(pid) == {0}
    finally:
        proxy.stop()
        srv.stop()


@pytest.mark.needs_tools
@pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} "
                    "(apt-get install hey wrk nginx-light)")
@pytest.mark.parametrize(("app", "length"), [("bench.apps:hello", 13),
                                             ("bench.apps:file1m", 1024 * 1024)])
def test_nginx_static_answers_like_the_app_and_cleans_up(
    app: str, length: int, tmp_path: Path
) -> None:
    # The C reference serves the same bytes as the WSGI app, over keep-alive,
    # and stopping it (SIGTERM to its Python parent) leaves no process and no
    # temporary prefix behind.
    env = bench_env()
    env["FASTWSGI_BENCH_FILE"] = str(tmp_path / "file1m.bin")
    env["TMPDIR"] = str(tmp_path)
    srv = servers.Server(servers.SERVERS["nginx-static"], app, env=env)
    try:
        srv.start(60)
        srv.check(expect_len=length)
        res = wrk.run(srv.url, duration_s=1.0, connections=2, timeout_s=10)
        assert not res.failed, res.failure_reason()
        assert res.requests > 0
        pids = procstat.tree_pids(srv.pid)
        assert len(pids) >= 3  # our parent, nginx master, nginx worker
    finally:
        srv.stop()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _zombie(pid)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fastwsgi-nginx-static-")]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def test_nginx_static_offers_only_what_it_can_answer() -> None:
    spec = servers.SERVERS["nginx-static"]
    assert spec.apps == {"bench.apps:hello", "bench.apps:file1m"}
    assert spec.paths == {"direct"}
    with pytest.raises(ValueError, match="cannot answer bench.apps:sleep10"):
        nginx_static.render("/tmp/x", 8080, "bench.apps:sleep10", 1, "/tmp/f")


@pytest.mark.needs_tools
@pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} "
                    "(apt-get install hey wrk nginx-light)")
def test_wrk_posts_a_body_and_reports_refused_as_failure() -> None:
    spec = servers.SERVERS["gunicorn-gthread"]
    if spec.missing():
        pytest.skip(spec.missing() or "")
    srv = servers.Server(spec, "bench.apps:echo", threads=4, env=bench_env())
    try:
        srv.start(60)
        srv.check(method="POST", body=b"x" * 100, expect_len=100)
        res = wrk.run(srv.url, duration_s=1, connections=2, body_size=4096)
        assert not res.failed, res.failure_reason()
        assert res.requests > 0
        port = srv.port
    finally:
        srv.stop()
    refused = wrk.run(f"http://127.0.0.1:{port}/", duration_s=1, connections=2)
    assert refused.failed and refused.requests == 0


def test_missing_tools_is_one_clear_line(tmp_path: Path) -> None:
    env = bench_env()
    env["PATH"] = str(tmp_path)  # an empty directory: no hey, no wrk
    proc = subprocess.run(
        [sys.executable, str(RUN), "--quick", "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert "missing hey, wrk" in line and "apt-get install hey wrk nginx-light" in line
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
@pytest.mark.needs_tools
@pytest.mark.skipif(bool(MISSING), reason=f"missing {', '.join(MISSING)} "
                    "(apt-get install hey wrk nginx-light)")
def test_scaling_runs_each_worker_count_and_combines_them(tmp_path: Path) -> None:
    # Real servers at 1 and 2 workers: each worker count is its own run.py run
    # with that many worker processes and 4 clients per worker, and the
    # combined file holds both.
    prefix = tmp_path / "scale"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "scaling.py"), "--workers-list", "1,2",
         "--servers", "fastwsgi-sync,gunicorn-sync", "--scenarios", "hello",
         "--paths", "direct", "--rounds", "1", "--duration", "0.5", "--warmup", "0",
         "--clients-per-worker", "4", "--deadline", "120", "--out", str(prefix)],
        capture_output=True, text=True, timeout=180, env=bench_env(), cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    data = json.loads((tmp_path / "scale.json").read_text())
    assert data["workers"] == [1, 2] and data["skipped"] == {}
    for w in (1, 2):
        per = json.loads((tmp_path / f"scale-w{w}.json").read_text())
        opts = per["meta"]["options"]
        assert (opts["workers"], opts["concurrency"]) == (w, 4 * w)
        for r in per["results"]:
            assert r["status"] == "ok", r["reason"]
            # master + w workers were measured (the CPU of the whole tree)
            rnd = r["rounds"][0]
            assert rnd["server_pids"] == 1 + w
            if opts["client_cpus"]:  # pinned: wrk's CPUs did part of the machine's work
                assert 0 < rnd["client_cpus_us_per_req"] < rnd["machine_cpu_us_per_req"]
    rows = {r["server"]: r for r in data["rows"]}
    assert set(rows) == {"fastwsgi-sync", "gunicorn-sync"}
    for row in rows.values():
        assert all(row["by_workers"][w]["rps"] > 0 for w in ("1", "2"))
        assert row["speedup"] == pytest.approx(
            row["by_workers"]["2"]["rps"] / row["by_workers"]["1"]["rps"], abs=0.01)
    assert "| hello | direct | fastwsgi-sync (vs gunicorn-sync) |" in proc.stdout
