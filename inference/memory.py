"""Device memory probe and the batch cap that follows from it.

``MemoryProbe.for_device("cuda:1").sample()`` reads ``torch.cuda.mem_get_info`` (free and total bytes
of that GPU, as the driver sees them: other processes included). On CPU it reads the cgroup v2
limit of this process (``memory.max`` of its cgroup and every ancestor; the smallest limit wins)
and the cgroup's ``memory.current``; without a limit, or where it is higher than what the machine
has, ``MemAvailable``/``MemTotal`` of ``/proc/meminfo``; as a last resort ``sysconf``.

:func:`recommended_max_batch` turns a sample into a batch cap: the largest bucket whose activations
(``bytes_per_item`` each, measured at warm-up) fit in the free memory left after a headroom.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import torch

from inference.errors import DeviceError

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
PROC_ROOT: Final = Path("/proc")


@dataclass(frozen=True)
class MemorySample:
    """Free and total bytes of a device at one moment; ``source`` says where they came from
    ("cuda", "cgroup", "meminfo" or "sysconf")."""

    free_bytes: int
    total_bytes: int
    source: str = "unknown"


class MemoryProbe:
    """Samples free/total memory of one device. Cheap enough to call every batch on CPU
    (two small file reads) and on CUDA (one driver call)."""

    def __init__(self, device: torch.device, *, cgroup_root: Path = CGROUP_ROOT, proc_root: Path = PROC_ROOT) -> None:
        self.device = device
        self._cgroup_root = cgroup_root
        self._proc_root = proc_root
        self._cgroup_dir = self._find_cgroup_dir() if device.type == "cpu" else None

    @classmethod
    def for_device(cls, device: str | torch.device) -> MemoryProbe:
        """A probe for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; ``DeviceError`` if no such device."""
        resolved = torch.device(device)
        if resolved.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceError(f"{device}: CUDA is not available")
            index = resolved.index if resolved.index is not None else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise DeviceError(f"{device}: only {torch.cuda.device_count()} CUDA device(s)")
            resolved = torch.device("cuda", index)
        elif resolved.type != "cpu":
            raise DeviceError(f"unsupported device {device!r}: use 'cpu' or 'cuda:N'")
        return cls(resolved)

    def sample(self) -> MemorySample:
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            return MemorySample(free_bytes=int(free), total_bytes=int(total), source="cuda")
        system = self._meminfo() or self._sysconf()
        limited = self._cgroup()
        if limited is not None and (system is None or limited.total_bytes <= system.total_bytes):
            if system is not None:
                # A cgroup may allow more than the host has free right now: take the smaller.
                return MemorySample(min(limited.free_bytes, system.free_bytes), limited.total_bytes, "cgroup")
            return limited
        if system is not None:
            return system
        raise DeviceError("cannot read the memory of this machine (no cgroup v2, /proc/meminfo or sysconf)")

    def _find_cgroup_dir(self) -> Path | None:
        try:
            lines = (self._proc_root / "self" / "cgroup").read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            hierarchy, _, path = line.partition("::")
            if hierarchy == "0":  # the cgroup v2 unified hierarchy
                candidate = self._cgroup_root / path.lstrip("/")
                if candidate.is_dir():
                    return candidate
        return None

    def _cgroup(self) -> MemorySample | None:
        if self._cgroup_dir is None:
            return None
        limit: int | None = None
        directory = self._cgroup_dir
        while True:
            value = _read_int(directory / "memory.max")
            if value is not None:
                limit = value if limit is None else min(limit, value)
            if directory == self._cgroup_root or directory.parent == directory:
                break
            directory = directory.parent
        current = _read_int(self._cgroup_dir / "memory.current")
        if limit is None or current is None:
            return None
        return MemorySample(free_bytes=max(0, limit - current), total_bytes=limit, source="cgroup")

    def _meminfo(self) -> MemorySample | None:
        try:
            text = (self._proc_root / "meminfo").read_text()
        except OSError:
            return None
        values = {}
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
        if "MemTotal" not in values or "MemAvailable" not in values:
            return None
        return MemorySample(free_bytes=values["MemAvailable"], total_bytes=values["MemTotal"], source="meminfo")

    @staticmethod
    def _sysconf() -> MemorySample | None:
        try:
            page = os.sysconf("SC_PAGE_SIZE")
            return MemorySample(
                free_bytes=os.sysconf("SC_AVPHYS_PAGES") * page,
                total_bytes=os.sysconf("SC_PHYS_PAGES") * page,
                source="sysconf",
            )
        except (AttributeError, OSError, ValueError):
            return None


def _read_int(path: Path) -> int | None:
    """An integer cgroup file; None when absent or "max" (no limit at this level)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def recommended_max_batch(
    free_bytes: int,
    headroom_bytes: int,
    bytes_per_item: int,
    buckets: Sequence[int],
    configured_max: int,
) -> int:
    """The largest bucket <= ``configured_max`` whose activations fit in ``free - headroom``.

    Never below the smallest bucket (one event must always be attemptable; an OOM is then handled
    by splitting). ``bytes_per_item <= 0`` means unknown: the cap is then ``configured_max``'s bucket.
    """
    if not buckets or min(buckets) < 1:
        raise ValueError("buckets must be a non-empty sequence of positive sizes")
    if configured_max < 1:
        raise ValueError("configured_max must be >= 1")
    allowed = sorted(bucket for bucket in set(buckets) if bucket <= configured_max) or [min(buckets)]
    if bytes_per_item <= 0:
        return allowed[-1]
    budget = free_bytes - headroom_bytes
    fitting = [bucket for bucket in allowed if bucket * bytes_per_item <= budget]
    return fitting[-1] if fitting else allowed[0]
