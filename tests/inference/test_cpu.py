"""Available CPUs (affinity, cgroup v2 quota) and the scorer's default thread count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from inference.cpu import available_cpus, default_threads
from inference.scorer import Scorer


def _fake(tmp_path: Path, cpu_max: str | None) -> tuple[Path, Path]:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "cgroup").write_text("0::/pod/worker\n")
    root = tmp_path / "cgroup"
    leaf = root / "pod" / "worker"
    leaf.mkdir(parents=True)
    if cpu_max is not None:
        (leaf / "cpu.max").write_text(cpu_max + "\n")
    return root, proc


def test_a_cgroup_quota_caps_the_cpus(tmp_path: Path) -> None:
    root, proc = _fake(tmp_path, "100000 100000")
    assert available_cpus(cgroup_root=root, proc_root=proc) == 1


def test_a_fractional_quota_rounds_up(tmp_path: Path) -> None:
    root, proc = _fake(tmp_path, "50000 100000")
    assert available_cpus(cgroup_root=root, proc_root=proc) == 1


@pytest.mark.parametrize("cpu_max", [None, "max 100000", "garbage"])
def test_no_or_unreadable_quota_means_the_affinity(tmp_path: Path, cpu_max: str | None) -> None:
    root, proc = _fake(tmp_path, cpu_max)
    assert available_cpus(cgroup_root=root, proc_root=proc) == len(os.sched_getaffinity(0))


def test_default_threads_leave_one_core() -> None:
    assert default_threads() == max(1, available_cpus() - 1)


def test_scorer_applies_the_default_thread_count(untrained_model_dir: Path) -> None:
    before = torch.get_num_threads()
    try:
        scorer = Scorer.load(untrained_model_dir, quantization="fp32")
        assert scorer.threads == default_threads()
    finally:
        torch.set_num_threads(before)
