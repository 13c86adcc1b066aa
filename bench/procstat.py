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
