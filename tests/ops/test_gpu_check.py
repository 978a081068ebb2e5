"""``benchmarks/gpu/run.sh --dry-run``: the prepared GPU check runs end to end on the CPU, at tiny scale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_gpu_check_runs_as_a_dry_run(kafka: Any, serving_model: Path, tmp_path: Path) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "PYTHON": sys.executable}
    run = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu" / "run.sh"),
            "--dry-run",
            "--out",
            str(tmp_path),
            "--model",
            str(serving_model),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    steps = report["steps"]
    assert report["dry_run"] is True and set(steps) == {"engine", "oom", "backpressure", "bench"}
    assert {point["variant"] for point in steps["engine"]["points"]} >= {"fp32", "int8"}
    assert steps["oom"]["oom_splits"] > 0 and steps["oom"]["failed"] == 0
    assert steps["backpressure"]["ok"] and steps["backpressure"]["pauses"].get("memory", 0) >= 1
    assert set(steps["bench"]) == {"1_processes", "2_processes", "seconds"}
    assert (tmp_path / "gpu-check.md").read_text().startswith("# GPU check")
