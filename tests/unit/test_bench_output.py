"""The bench harness's readers, on output captured from real hey/wrk/strace runs.

The fixtures in bench/testdata/ are verbatim output of runs made on the dev
machine: against Gunicorn (ok), a closed port (refused), python -m http.server
on a missing path (404), and a sync server drowned by 200 connections to a
10 ms app (timeouts). A harness that misreads any of them would report a
broken run as a number, which is the one thing a benchmark must never do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import hey, procstat, strace, wrk

pytestmark = pytest.mark.bench  # the harness tier: `-m "not bench"` skips it

DATA = Path(__file__).resolve().parents[2] / "bench" / "testdata"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_hey_ok_run() -> None:
    r = hey.parse(read("hey_ok.txt"))
    assert r.requests == 200
    assert r.status_counts == {"200": 200}
    assert r.errors == {}
    assert r.duration_s == pytest.approx(0.1247)
    assert r.rps == pytest.approx(200 / 0.1247)
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == pytest.approx((6.0, 8.2, 11.5))
    assert not r.failed
    assert r.failure_reason() == ""


def test_hey_all_refused_is_failed_although_exit_zero() -> None:
    r = hey.parse(read("hey_refused.txt"), exit_status=0)
    assert r.requests == 0
    assert r.rps == 0.0  # hey itself printed 17762 req/s for 50 refused connects
    (msg, count), = r.errors.items()
    assert count == 50 and "connection refused" in msg
    assert r.failed
    assert "no responses" in r.failure_reason()


def test_hey_non_2xx_is_failed_and_bogus_percentile_dropped() -> None:
    r = hey.parse(read("hey_404.txt"))
    assert r.status_counts == {"404": 40}
    assert r.failed and "404×40" in r.failure_reason()
    # With < 100 samples hey prints "0% in 0.0000 secs" where p99 belongs.
    assert r.p99_ms is None
    assert r.p50_ms == pytest.approx(3.5)


def test_hey_partial_timeouts_are_failed() -> None:
    r = hey.parse(read("hey_timeout.txt"))
    assert r.status_counts == {"200": 38}
    assert r.error_count == 362
    assert r.requests == 38
    assert r.rps == pytest.approx(38 / 2.0262)  # not hey's 197 which counts errors
    assert r.failed and "Client.Timeout" in r.failure_reason()


def test_hey_garbage_is_failed() -> None:
    r = hey.parse("flag provided but not defined: -bogus\n", exit_status=2)
    assert r.failed and r.requests == 0
    assert any("no summary" in m for m in r.errors)


def test_wrk_ok_runs() -> None:
    r = wrk.parse(read("wrk_ok.txt"))
    assert r.requests == 2226
    assert r.duration_s == pytest.approx(1.0)
    assert (r.p50_ms, r.p90_ms, r.p99_ms) == pytest.approx((4.42, 5.91, 7.34))
    assert r.status_counts == {"2xx/3xx": 2226}
    assert not r.failed
    s = wrk.parse(read("wrk_sync.txt"))
    assert s.requests == 3265 and not s.failed


def test_wrk_latency_units() -> None:
    r = wrk.parse(read("wrk_timeout.txt"))
    assert r.p50_ms == pytest.approx(508.02)
    assert r.duration_s == pytest.approx(3.01)
    r2 = wrk.parse(read("wrk_ok.txt").replace("4.42ms", "442.00us"))
    assert r2.p50_ms == pytest.approx(0.442)


def test_wrk_socket_errors_fail() -> None:
    r = wrk.parse(read("wrk_timeout.txt"))
    assert r.errors == {"timeout": 184}
    assert r.requests == 276 and r.failed


def test_wrk_non_2xx_fail() -> None:
    r = wrk.parse(read("wrk_404.txt"))
    assert r.status_counts == {"non-2xx/3xx": 1641}
    assert r.failed


def test_wrk_refused_fail() -> None:
    r = wrk.parse(read("wrk_refused.txt"), exit_status=1)
    assert r.requests == 0 and r.failed
    assert "exited 1" in r.failure_reason()
    assert any("Connection refused" in m for m in r.errors)


def test_wrk_command_bounds() -> None:
    argv = wrk.command("http://127.0.0.1:1/", duration_s=0.2, connections=4, threads=8)
    assert argv[argv.index("-d") + 1] == "1s"  # wrk takes whole seconds; round up, never 0
    assert argv[argv.index("-t") + 1] == "4"  # wrk needs threads <= connections
    assert "--timeout" in argv and "--latency" in argv


def test_hey_command_bounds() -> None:
    with pytest.raises(ValueError):
        hey.command("http://x/", requests=5, concurrency=10)
    with pytest.raises(ValueError):
        hey.command("http://x/")
    argv = hey.command("http://x/", duration_s=2, timeout_s=0)
    assert argv[argv.index("-z") + 1] == "2s"
    assert argv[argv.index("-t") + 1] == "1"  # -t 0 would mean no timeout at all
    assert "-q" not in argv
    argv = hey.command("http://x/", duration_s=2, concurrency=4, qps=50)
    assert argv[argv.index("-q") + 1] == "50"  # per client: 200 requests/s offered
    with pytest.raises(ValueError):
        hey.command("http://x/", duration_s=2, qps=0)


def test_strace_summary() -> None:
    r = strace.parse_summary(read("strace_c.txt"))
    assert r is not None
    assert (r.total, r.errors) == (9116, 1359)
    assert sum(r.by_name.values()) == r.total
    assert r.by_name["connect"] == 1
    assert strace.parse_summary("strace: attach: ptrace(PTRACE_SEIZE, 1): EPERM\n") is None


def test_procstat_counts_live_and_reaped_children() -> None:
    """CPU burned by a child, then by a reaped grandchild, shows in the tree."""
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    parent = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}], check=True)\n"
        "sys.stdout.write('reaped\\n'); sys.stdout.flush()\n"
        "time.sleep(30)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "reaped\n"
        sample = procstat.cpu_sample(p.pid)
        # The grandchild is gone; its 0.3 s live on in the parent's cutime.
        assert sample.seconds >= 0.25
        assert procstat.tree_pids(p.pid) == [p.pid]
        assert procstat.worker_pids(p.pid) == [p.pid]
        assert (procstat.vm_hwm_kib(p.pid) or 0) > 1000
    finally:
        p.kill()
        p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()


# /proc/stat as Linux 6.x prints it (two CPUs; the "cpu" total line and the
# lines after the per-CPU ones are not per-CPU and must be skipped).
PROC_STAT = """\
cpu  1000 20 300 9000 40 5 60 7 0 0
cpu0 600 10 200 4000 30 3 40 5 0 0
cpu1 400 10 100 5000 10 2 20 2 0 0
intr 123456 0 9 0
ctxt 987654
btime 1764300000
"""


def test_machine_busy_counts_work_not_idle_iowait_or_steal(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(PROC_STAT)
    # user + nice + system + irq + softirq
    assert procstat.machine_busy(str(stat)) == {0: 600 + 10 + 200 + 3 + 40,
                                                1: 400 + 10 + 100 + 2 + 20}
    later = tmp_path / "later"
    later.write_text(PROC_STAT.replace("cpu1 400 10 100 5000", "cpu1 400 10 100 5500")
                     .replace("cpu0 600", "cpu0 700"))
    a, b = procstat.machine_busy(str(stat)), procstat.machine_busy(str(later))
    tck = procstat.CLK_TCK
    assert procstat.busy_seconds(a, b) == pytest.approx(100 / tck)  # cpu1 only idled
    assert procstat.busy_seconds(a, b, {1}) == 0.0
    assert procstat.busy_seconds(a, b, {0, 7}) == pytest.approx(100 / tck)  # 7: no such CPU


def test_machine_busy_sees_a_process_burn_on_its_cpu() -> None:
    # A child pinned to one CPU burns 0.4 s of CPU time: that CPU's busy time
    # grows by at least most of it, and the machine's by at least as much.
    cpus = sorted(os.sched_getaffinity(0))
    cpu = cpus[-1]
    burn = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\n"
    before = procstat.machine_busy()
    subprocess.run(["taskset", "-c", str(cpu), sys.executable, "-c", burn], check=True,
                   timeout=60)
    after = procstat.machine_busy()
    assert procstat.busy_seconds(before, after, {cpu}) >= 0.3
    assert procstat.busy_seconds(before, after) >= procstat.busy_seconds(before, after, {cpu})


def test_run_cpu_set_reads_taskset_lists() -> None:
    from bench import run

    assert run.cpu_set("0") == {0}
    assert run.cpu_set("0-3,6") == {0, 1, 2, 3, 6}
    assert run.cpu_set("8-15") == set(range(8, 16))


def test_procstat_tree_finds_workers() -> None:
    code = (
        "import os, sys, time\n"
        "kids = [os.fork() for _ in range(1)]\n"
        "if 0 in kids:\n    time.sleep(30); os._exit(0)\n"
        "sys.stdout.write('forked\\n'); sys.stdout.flush()\n"
        "time.sleep(30)\n"
    )
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        assert p.stdout is not None
        assert p.stdout.readline() == "forked\n"
        deadline = time.monotonic() + 10
        pids: list[int] = []
        while time.monotonic() < deadline:
            pids = procstat.tree_pids(p.pid)
            if len(pids) == 2:
                break
            time.sleep(0.05)
        assert len(pids) == 2 and pids[0] == p.pid
        assert procstat.worker_pids(p.pid) == pids[1:]
        assert procstat.peak_rss_per_worker_kib(p.pid) is not None
    finally:
        os.killpg(p.pid, 9)  # the session is ours: the parent and its forked child
        p.wait(timeout=10)
        if p.stdout is not None:
            p.stdout.close()


def test_run_qps_means_hey_and_refuses_wrk(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import run

    ns = run.parse_args(["--qps", "50", "--paths", "direct"])
    assert run.tool_for(ns, "direct") == "hey"  # direct would otherwise be wrk
    assert run.tool_for(run.parse_args([]), "direct") == "wrk"
    for bad in (["--qps", "50", "--tool", "wrk"], ["--qps", "0"]):
        with pytest.raises(SystemExit) as exc:
            run.parse_args(bad)
        assert exc.value.code == 2
        assert "--qps needs a positive rate" in capsys.readouterr().err


def test_run_offers_nginx_static_only_where_it_can_answer() -> None:
    from bench import run

    cases = run.plan(run.parse_args(
        ["--servers", "nginx-static,fastwsgi-sync", "--scenarios", "hello,body64k,file1m",
         "--paths", "nginx,direct"]))
    static = sorted((s, p) for s, p, name in cases if name == "nginx-static")
    assert static == [("file1m", "direct"), ("hello", "direct")]
    assert len([c for c in cases if c[2] == "fastwsgi-sync"]) == 6
