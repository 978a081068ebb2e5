"""The model commands of the riskstream CLI: help, train, evaluate, bench-engine, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from worker.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["train", "evaluate", "bench-engine"])
def test_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--json" in result.output


def test_evaluate_reports_every_variant_as_json(untrained_model_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(untrained_model_dir),
            "--events",
            "400",
            "--seconds",
            "0.05",
            "--buckets",
            "8",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["variants"]) == {"fp32", "int8", "bf16"}
    fp32, int8 = report["variants"]["fp32"], report["variants"]["int8"]
    assert fp32["max_abs_score_diff_vs_fp32"] == 0.0
    assert fp32["max_score_diff_across_buckets"] <= 1e-5
    assert int8["linear_weight_ratio_vs_fp32"] <= 0.30
    assert 0.0 <= int8["decision_agreement_vs_fp32"] <= 1.0
    assert int8["best_events_per_s"] > 0
    assert set(report["summary_vs_fp32"]["int8"]) == {"auc_delta_vs_fp32", "best_throughput_speedup_vs_fp32"}


def test_bench_engine_json(untrained_model_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "bench-engine",
            "--model",
            str(untrained_model_dir),
            "--variants",
            "fp32,int8",
            "--buckets",
            "1,8",
            "--seconds",
            "0.05",
            "--rounds",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {(p["variant"], p["batch_size"]) for p in report["points"]} == {
        ("fp32", 1),
        ("fp32", 8),
        ("int8", 1),
        ("int8", 8),
    }
    assert report["best"]["int8"]["speedup_vs_fp32"] > 0


def test_bench_engine_table(untrained_model_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "bench-engine",
            "--model",
            str(untrained_model_dir),
            "--variants",
            "fp32",
            "--buckets",
            "4",
            "--seconds",
            "0.05",
            "--rounds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "best fp32" in result.stdout


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "nope"), "--events", "200"])
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_unknown_variant_is_a_clear_error(untrained_model_dir: Path) -> None:
    result = runner.invoke(
        app, ["bench-engine", "--model", str(untrained_model_dir), "--variants", "int3", "--seconds", "0.05"]
    )
    assert result.exit_code == 2
    assert "unknown quantization" in result.output


@pytest.mark.slow
def test_train_command_writes_a_servable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "model"
    result = runner.invoke(
        app, ["train", "--out", str(out), "--preset", "tiny", "--events", "1000", "--max-epochs", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["name"] == "riskstream-deepseek-v3-tiny"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_train_rejects_an_unknown_preset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "m"), "--preset", "huge"])
    assert result.exit_code != 0
    assert "unknown preset" in result.output
