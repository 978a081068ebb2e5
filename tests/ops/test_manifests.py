"""The deployment artefacts (Dockerfile, Kubernetes manifests, dashboard) pass ops/lint.sh.

ops/lint.sh is the real check (hadolint, kustomize, kubeconform against upstream and CRD
schemas, PromQL and settings against the code); this test only makes it part of the suite. The
first run builds its tools into ~/.cache/riskstream/ops-tools (a minute or two), later runs take
seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ops_lint_passes() -> None:
    if shutil.which("go") is None:
        pytest.skip("ops/lint.sh builds kustomize and kubeconform with the Go toolchain")
    run = subprocess.run(
        ["bash", str(ROOT / "ops" / "lint.sh")],
        cwd=ROOT,
        env={**os.environ, "RISKSTREAM_PYTHON": sys.executable, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert run.returncode == 0, f"ops/lint.sh failed:\n{run.stdout}\n{run.stderr}"
    assert "ops/lint: OK" in run.stdout
