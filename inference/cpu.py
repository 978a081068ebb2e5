"""How many CPU cores this process may use, and the scorer's default intra-op thread count.

Measured on the 2-core development machine with the default model (int8, batch 256): two torch
threads reach about 11,000 events/s at the median batch latency when nothing else runs, but a
forward pass has ~100 OpenMP barriers, and whenever another busy thread or process holds one of the
two cores a barrier waits out a scheduler slice — mean throughput fell to ~6,000 events/s with a
light background load, and to 20-100x slower batches with one busy neighbour process. One thread
has no barriers: about 8,500 events/s, steady. A worker also needs CPU for its poll and publish
threads, so the default leaves one core to them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(*, cgroup_root: Path = _CGROUP_ROOT, proc_root: Path = Path("/proc")) -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 ``cpu.max`` quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota(cgroup_root, proc_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def default_threads() -> int:
    """Intra-op threads for CPU inference when the caller does not say: one core is left for the
    caller's other threads (see the module docstring for the measurements), never fewer than one."""
    return max(1, available_cpus() - 1)


def _cgroup_cpu_quota(cgroup_root: Path, proc_root: Path) -> float | None:
    """CPUs allowed by ``cpu.max`` ("quota period") of this process's cgroup, None if unlimited."""
    try:
        lines = (proc_root / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, _, path = line.partition("::")
        if hierarchy != "0":
            continue
        try:
            quota, period = (cgroup_root / path.lstrip("/") / "cpu.max").read_text().split()[:2]
        except (OSError, ValueError):
            return None
        if quota == "max":
            return None
        try:
            return int(quota) / int(period)
        except (ValueError, ZeroDivisionError):
            return None
    return None
