"""Server-side cost from /proc: CPU time of a whole process tree, peak RSS.

Requests per second on a shared 2-core machine moves with whatever else runs;
CPU time the server spent per request moves much less, so it is the headline
figure. For a pre-fork server the cost is spread over a master and its
workers (and their threads), so we sum ``utime + stime`` (fields 14 and 15 of
/proc/PID/stat, all threads included) over every live process in the tree,
plus the master's ``cutime + cstime`` (fields 16 and 17), which hold the time
of children that already exited and were reaped (a worker recycled during
the run). Sampled before and after the load, the difference is the CPU the
server tree burned on it.

Peak RSS is ``VmHWM`` from /proc/PID/status, read per worker before stop.

The process tree's CPU is not the whole cost of a request. On loopback the
receiving half of TCP runs in softirq context on whichever CPU sends the
packet, and a sender whose data waits for the peer's ACKs has the rest
pushed out from the peer's ACK processing: on the load generator's CPU. So
two servers with the same machine-wide cost can show very different
server CPU (measured: uWSGI's 1 MiB file path 277-316 µs on the server's
CPU, 812-1,044 on the client's; fastwsgi's gthread 363-420 and 374-398).
``machine_busy`` reads per-CPU busy time from /proc/stat (user, nice,
system, irq, softirq; not idle, iowait or steal) so a run can report the
machine's total and the client side's share next to the server's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("latin-1")
    except OSError:
        return None
    # comm (field 2) is in parentheses and may hold spaces or ')'; split after
    # the last ')'. The rest starts at field 3 (state).
    rparen = data.rfind(")")
    return data[rparen + 2 :].split()


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _read_stat(int(name))
        if fields is None:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    return children


def tree_pids(root: int) -> list[int]:
    """root and all its live descendants (breadth first, bounded by /proc)."""
    children = _ppid_map()
    out = [root]
    i = 0
    while i < len(out):
        out.extend(children.get(out[i], []))
        i += 1
    return out


def worker_pids(root: int) -> list[int]:
    """Direct children of root, or root itself for single-process servers."""
    kids = _ppid_map().get(root, [])
    return kids or [root]


@dataclass
class CpuSample:
    ticks: int  # live tree utime+stime, plus root's reaped children
    pids: int

    @property
    def seconds(self) -> float:
        return self.ticks / CLK_TCK


def cpu_sample(root: int) -> CpuSample:
    total = 0
    pids = tree_pids(root)
    for pid in pids:
        fields = _read_stat(pid)
        if fields is None:
            continue
        # fields[0] is field 3 (state): utime=14 → index 11, stime 12,
        # cutime 13, cstime 14.
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
    return CpuSample(ticks=total, pids=len(pids))


def machine_busy(path: str = "/proc/stat") -> dict[int, int]:
    """Busy clock ticks per CPU since boot: user + nice + system + irq +
    softirq (guest time is already inside user; idle, iowait and steal, the
    time a VM waited for its host, are not work done here)."""
    out: dict[int, int] = {}
    with open(path) as f:
        for line in f:
            if not (line.startswith("cpu") and line[3:4].isdigit()):
                continue
            name, *vals = line.split()
            v = [int(x) for x in vals[:7]]
            v += [0] * (7 - len(v))  # very old kernels print fewer fields
            out[int(name[3:])] = v[0] + v[1] + v[2] + v[5] + v[6]
    return out


def busy_seconds(before: dict[int, int], after: dict[int, int],
                 cpus: set[int] | None = None) -> float:
    """Busy seconds between two ``machine_busy`` samples, over ``cpus``
    (every CPU when None)."""
    keys = after.keys() if cpus is None else cpus & after.keys()
    return sum(after[k] - before.get(k, 0) for k in keys) / CLK_TCK


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_per_worker_kib(root: int) -> int | None:
    """Largest VmHWM among the workers (the master for one-process servers)."""
    values = [v for p in worker_pids(root) if (v := vm_hwm_kib(p)) is not None]
    return max(values) if values else None
