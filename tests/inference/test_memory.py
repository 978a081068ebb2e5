"""Memory probe (CPU, cgroup v2 parsing) and the memory-based batch cap."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.errors import DeviceError
from inference.memory import MemoryProbe, recommended_max_batch


def test_cpu_probe_returns_sane_numbers() -> None:
    sample = MemoryProbe.for_device("cpu").sample()
    assert 0 < sample.free_bytes <= sample.total_bytes
    assert sample.total_bytes >= 256 * 1024 * 1024
    assert sample.source in {"cgroup", "meminfo", "sysconf"}


def _fake_system(tmp_path: Path, *, cgroup_path: str, limits: dict[str, str], current: str) -> tuple[Path, Path]:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text(f"0::{cgroup_path}\n")
    (proc / "meminfo").write_text("MemTotal:       16000000 kB\nMemFree:  100 kB\nMemAvailable:   8000000 kB\n")
    root = tmp_path / "cgroup"
    leaf = root / cgroup_path.lstrip("/")
    leaf.mkdir(parents=True)
    for relative, value in limits.items():
        (root / relative / "memory.max").write_text(value + "\n")
    (leaf / "memory.current").write_text(current + "\n")
    return root, proc


def test_cgroup_limit_wins_when_below_the_machine(tmp_path: Path) -> None:
    root, proc = _fake_system(
        tmp_path, cgroup_path="/pod/worker", limits={"pod": "4294967296", "pod/worker": "max"}, current="1073741824"
    )
    sample = MemoryProbe(torch.device("cpu"), cgroup_root=root, proc_root=proc).sample()
    assert sample.source == "cgroup"
    assert sample.total_bytes == 4 * 1024**3
    assert sample.free_bytes == 3 * 1024**3


def test_unlimited_cgroup_falls_back_to_meminfo(tmp_path: Path) -> None:
    root, proc = _fake_system(tmp_path, cgroup_path="/pod", limits={"pod": "max"}, current="1000")
    sample = MemoryProbe(torch.device("cpu"), cgroup_root=root, proc_root=proc).sample()
    assert sample.source == "meminfo"
    assert (sample.free_bytes, sample.total_bytes) == (8_000_000 * 1024, 16_000_000 * 1024)


def test_cgroup_free_is_capped_by_what_the_machine_has(tmp_path: Path) -> None:
    root, proc = _fake_system(tmp_path, cgroup_path="/pod", limits={"pod": str(12 * 1024**3)}, current="0")
    sample = MemoryProbe(torch.device("cpu"), cgroup_root=root, proc_root=proc).sample()
    assert sample.total_bytes == 12 * 1024**3
    assert sample.free_bytes == 8_000_000 * 1024


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_probe_without_cuda_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="CUDA"):
        MemoryProbe.for_device("cuda:0")


def test_unknown_device_is_a_device_error() -> None:
    with pytest.raises(DeviceError):
        MemoryProbe.for_device("meta")


BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@pytest.mark.parametrize(
    ("free", "headroom", "per_item", "configured", "expected"),
    [
        (10**12, 0, 1000, 256, 256),  # plenty of memory: the configured cap
        (10**12, 0, 1000, 100, 64),  # configured cap is rounded down to a bucket
        (100_000, 0, 1000, 256, 64),  # 100 items fit: the largest bucket <= 100
        (100_000, 50_000, 1000, 256, 32),  # headroom taken first
        (10, 0, 1000, 256, 1),  # nothing fits: still one event
        (10**6, 0, 0, 256, 256),  # unknown bytes per item
    ],
)
def test_recommended_max_batch(free: int, headroom: int, per_item: int, configured: int, expected: int) -> None:
    assert recommended_max_batch(free, headroom, per_item, BUCKETS, configured) == expected


def test_recommended_max_batch_validates_its_inputs() -> None:
    with pytest.raises(ValueError, match="buckets"):
        recommended_max_batch(1, 0, 1, [], 8)
    with pytest.raises(ValueError, match="configured_max"):
        recommended_max_batch(1, 0, 1, BUCKETS, 0)
