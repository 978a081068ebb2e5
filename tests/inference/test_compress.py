"""Distillation, pruning and the compression report end to end at tiny scale (slow: trains models)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from inference.checkpoint import load_checkpoint, read_metadata
from inference.distill import distill_on_data
from inference.history import replay
from inference.scorer import Scorer
from inference.synthetic_history import generate_histories
from worker.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
SPLIT = ["--split", "time+account", "--holdout-fraction", "0.3"]


def _invoke(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compress")
    _invoke(["data", "history", "--out", str(root), "--events", "6000", "--fraud-rate", "0.05", "--seed", "3"])
    data = root / "transactions.jsonl"
    teacher = root / "teacher"
    _invoke(
        ["train", "--out", str(teacher), "--data", str(data), "--preset", "tiny-sequence", "--max-epochs", "1", *SPLIT]
    )
    return {"root": root, "data": data, "teacher": teacher}


def _scores_do_not_depend_on_the_batch(model_dir: Path, quantization: str = "fp32") -> None:
    """fp32 scores equal across buckets and batches; dynamic int8 computes one activation scale per
    batch, so its scores move with their batch-mates within the documented ~0.01."""
    bound = 1e-5 if quantization == "fp32" else 0.02
    scorer = Scorer.load(model_dir, quantization=quantization)
    items = list(generate_histories(400, seed=11, fraud_rate=0.05))
    features = replay([item.event for item in items], scorer.featurize)[:100]
    alone = np.array([scorer.score([row]).scores[0] for row in features])
    odd = np.concatenate([scorer.score(features[i : i + 7]).scores for i in range(0, 100, 7)])
    assert np.max(np.abs(alone - scorer.score(features).scores)) <= bound
    assert np.max(np.abs(alone - odd)) <= bound


def test_distillation_is_deterministic_and_serves(world: dict[str, Path], tmp_path: Path) -> None:
    options: dict[str, Any] = {
        "student_preset": "tiny-sequence",
        "split": "time+account",
        "holdout_fraction": 0.3,
        "max_epochs": 1,
        "threads": 1,
        "temperature": 3.0,
        "alpha": 0.7,
    }
    first = distill_on_data(tmp_path / "a", world["data"], world["teacher"], seed=0, **options)
    again = distill_on_data(tmp_path / "b", world["data"], world["teacher"], seed=0, **options)
    other = distill_on_data(tmp_path / "c", world["data"], world["teacher"], seed=0, **{**options, "alpha": 0.0})
    assert first.metadata.weights_sha256 == again.metadata.weights_sha256
    assert first.metadata.weights_sha256 != other.metadata.weights_sha256  # the teacher's scores matter
    record = first.metadata.training["distillation"]
    assert record["temperature"] == 3.0 and record["alpha"] == 0.7
    assert record["teacher"]["name"] == read_metadata(world["teacher"]).name
    assert first.metadata.name.endswith("-distilled")
    _scores_do_not_depend_on_the_batch(first.out_dir)
    # Transfer data: another world's events, learnt from the teacher's scores alone.
    _invoke(["data", "history", "--out", str(tmp_path / "t"), "--events", "1500", "--seed", "4"])
    transfer = tmp_path / "t" / "transactions.jsonl"
    more = distill_on_data(tmp_path / "d", world["data"], world["teacher"], seed=0, transfer=transfer, **options)
    assert more.metadata.training["distillation"]["transfer_events"] == 1500
    assert more.metadata.training["train_events"] == first.metadata.training["train_events"]  # labelled rows
    assert more.metadata.weights_sha256 != first.metadata.weights_sha256


def test_a_teacher_that_reads_other_history_is_refused(world: dict[str, Path], tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "distill",
            "--teacher",
            str(world["teacher"]),
            "--student-preset",
            "small-sequence",
            "--out",
            str(tmp_path / "s"),
            "--data",
            str(world["data"]),
            *SPLIT,
        ],
    )
    assert result.exit_code == 2
    assert "history" in result.output and not (tmp_path / "s").exists()


def test_prune_distill_and_report_from_the_command_line(world: dict[str, Path], tmp_path: Path) -> None:
    data, teacher = str(world["data"]), str(world["teacher"])
    student = tmp_path / "student"
    _invoke(
        [
            "distill",
            "--teacher",
            teacher,
            "--student-preset",
            "tiny-sequence",
            "--out",
            str(student),
            "--data",
            data,
            "--max-epochs",
            "1",
            *SPLIT,
        ]
    )
    pruned = tmp_path / "pruned"
    out = _invoke(
        [
            "prune",
            "--model",
            teacher,
            "--out",
            str(pruned),
            "--data",
            data,
            "--heads",
            "0.5",
            "--ffn",
            "0.5",
            "--recovery-epochs",
            "1",
            "--calibration-rows",
            "512",
            *SPLIT,
        ]
    )
    assert "heads 2 -> 1" in out.stdout and "FFN 64 -> 32" in out.stdout
    loaded = load_checkpoint(pruned)  # a valid, smaller checkpoint: config, weights and hashes agree
    assert loaded.model.config.num_attention_heads == 1 and loaded.model.config.intermediate_size == 32
    config = json.loads((pruned / "config.json").read_text())
    assert config["num_attention_heads"] == 1 and config["intermediate_size"] == 32
    record = loaded.metadata.training["pruning"]
    assert record["from"]["parameters"] > record["parameters"] and record["recovery_epochs"] == 1
    for quantization in ("fp32", "int8"):
        _scores_do_not_depend_on_the_batch(pruned, quantization)
    unrecovered = tmp_path / "unrecovered"
    _invoke(
        [
            "prune",
            "--model",
            teacher,
            "--out",
            str(unrecovered),
            "--data",
            data,
            "--heads",
            "0.5",
            "--recovery-epochs",
            "0",
            *SPLIT,
        ]
    )
    assert read_metadata(unrecovered).training["epochs_run"] == 0

    holdout = json.loads((teacher_dir := world["teacher"]).joinpath("riskstream.json").read_text())
    since = holdout["training"]["data"]["split"]["holdout_from"]
    report_dir = tmp_path / "report"
    shown = _invoke(
        [
            "compress",
            "report",
            f"teacher={teacher_dir}",
            f"student={student}",
            f"pruned={pruned}",
            f"pruned-int8={pruned}@int8",
            "--data",
            data,
            "--since",
            since,
            "--holdout-accounts",
            "0.3",
            "--seconds",
            "0.05",
            "--latency-runs",
            "10",
            "--buckets",
            "1,32",
            "--bootstrap",
            "20",
            "--out",
            str(report_dir),
        ]
    )
    assert "Pareto front" in shown.stdout
    report = json.loads((report_dir / "report.json").read_text())
    rows = report["models"]
    assert list(rows) == ["teacher", "student", "pruned", "pruned-int8"]
    assert len({row["events"] for row in rows.values()}) == 1  # every model on the same events
    assert rows["pruned"]["parameters"] < rows["teacher"]["parameters"]
    assert rows["pruned-int8"]["linear_weight_bytes"] < rows["pruned"]["linear_weight_bytes"]
    assert any(row["pareto"] for row in rows.values())
    assert report["reference"] == "teacher" and rows["teacher"]["auc_diff_vs_teacher_ci95"] == [0.0, 0.0]
    low, high = rows["student"]["auc_ci95"]
    assert low <= rows["student"]["auc"] <= high
    for row in rows.values():
        assert 0.0 <= row["auc"] <= 1.0 and row["best_events_per_s"] > 0 and row["p99_ms_at_32"] > 0
        assert row["max_score_diff_across_buckets"] <= (1e-5 if row["variant"] == "fp32" else 0.02)
    assert (report_dir / "pareto.png").stat().st_size > 10_000


def test_pareto_front() -> None:
    from inference.compress import Entry, pareto_front

    points = {"a": (100.0, 0.90), "b": (200.0, 0.85), "c": (50.0, 0.88), "d": (200.0, 0.80)}
    assert pareto_front(points) == {"a", "b"}
    assert Entry.parse("x=models/p@int8") == Entry("x", Path("models/p"), "int8")
    assert Entry.parse("x=models/p").variant == "fp32"
    with pytest.raises(ValueError, match="LABEL=DIR"):
        Entry.parse("models/p")
