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


# --- own data -------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["thresholds"], ["data", "example"]])
def test_help_of_the_own_data_commands(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--out" in result.output


@pytest.fixture(scope="module")
def foreign_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("foreign")
    result = runner.invoke(
        app, ["data", "example", "--out", str(out), "--rows", "3000", "--seed", "5", "--fraud-rate", "0.03"]
    )
    assert result.exit_code == 0, result.output
    assert "3,000 rows" in result.stdout
    return out


def test_evaluate_on_labelled_data_reports_the_operating_table_and_plots(
    untrained_model_dir: Path, foreign_example: Path, tmp_path: Path
) -> None:
    plots = tmp_path / "plots"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(untrained_model_dir),
            "--data",
            str(foreign_example / "transactions.csv"),
            "--mapping",
            str(foreign_example / "mapping.toml"),
            "--variants",
            "fp32,int8",
            "--plots",
            str(plots),
            "--seconds",
            "0.05",
            "--buckets",
            "8",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"]["file"] == "transactions.csv" and report["events"] == 3_000
    table = report["variants"]["fp32"]["operating_table"]
    assert [row["name"] for row in table] == [
        "rate 0.1%",
        "rate 0.5%",
        "rate 1.0%",
        "rate 2.0%",
        "rate 5.0%",
        "review threshold",
        "decline threshold",
    ]
    assert {"threshold", "precision", "recall", "value_recall", "alerts_per_10k"} <= set(table[0])
    assert set(report["unknown_values"]) == {"mcc", "merchant_country", "ip_country", "currency"}
    for name in ("roc.png", "precision_recall.png", "score_histogram.png"):
        assert (plots / name).stat().st_size > 1_000
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_table_output_and_since(untrained_model_dir: Path, foreign_example: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(untrained_model_dir),
            "--data",
            str(foreign_example / "transactions.csv"),
            "--mapping",
            str(foreign_example / "mapping.toml"),
            "--variants",
            "fp32",
            "--since",
            "2026-01-20T00:00:00Z",
            "--seconds",
            "0.05",
            "--buckets",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "operating table: fp32" in result.stdout and "values unknown to the model" in result.stdout


def test_unknown_values_are_counted(untrained_model_dir: Path, tmp_path: Path) -> None:
    from inference.evaluate import UnknownValues
    from inference.scorer import Scorer
    from inference.synthetic import generate

    spec = Scorer.load(untrained_model_dir, quantization="fp32").metadata.feature_spec
    events = [item.event for item in generate(20, seed=3)]
    odd = events[0].model_copy(
        update={"merchant": events[0].merchant.model_copy(update={"mcc": "0001", "country": "AQ"}), "currency": "XAU"}
    )
    unknown = UnknownValues()
    unknown.add([*events, odd, odd], spec)
    counts = unknown.to_json(22)
    assert counts["mcc"]["events"] >= 2 and counts["mcc"]["top"]["0001"] == 2
    assert counts["merchant_country"]["top"]["AQ"] == 2 and counts["currency"]["top"] == {"XAU": 2}


def test_plots_without_matplotlib_say_how_to_install(
    untrained_model_dir: Path, foreign_example: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(untrained_model_dir),
            "--data",
            str(foreign_example / "transactions.csv"),
            "--mapping",
            str(foreign_example / "mapping.toml"),
            "--plots",
            str(tmp_path / "p"),
        ],
    )
    assert result.exit_code == 2
    assert "pip install 'riskstream[plots]'" in result.output


def test_own_data_options_are_checked(foreign_example: Path, tmp_path: Path) -> None:
    data = str(foreign_example / "transactions.csv")
    both = runner.invoke(app, ["train", "--out", str(tmp_path / "m"), "--data", data, "--events", "600"])
    assert both.exit_code != 0 and "--events" in both.output
    no_data = runner.invoke(app, ["train", "--out", str(tmp_path / "m"), "--mapping", "m.toml"])
    assert no_data.exit_code != 0 and "--mapping needs --data" in no_data.output
    split = runner.invoke(app, ["train", "--out", str(tmp_path / "m"), "--data", data, "--split", "random"])
    assert split.exit_code != 0 and "time+account" in split.output
    broken = tmp_path / "broken.toml"
    broken.write_text('format = "csv"\n[fields]\ntransaction_id = "txn_ref"\n', encoding="utf-8")
    invalid = runner.invoke(app, ["train", "--out", str(tmp_path / "m"), "--data", data, "--mapping", str(broken)])
    assert invalid.exit_code == 2 and "fields.event_time: required" in invalid.output
    nothing = runner.invoke(app, ["thresholds", "--model", str(tmp_path), "--data", data])
    assert nothing.exit_code != 0 and "at least one target" in nothing.output
    percent = runner.invoke(app, ["thresholds", "--model", str(tmp_path), "--data", data, "--review-rate", "2 pct"])
    assert percent.exit_code != 0 and "not a fraction" in percent.output


def test_a_csv_without_mapping_is_a_data_error(foreign_example: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            "--out",
            str(tmp_path / "m"),
            "--preset",
            "tiny",
            "--data",
            str(foreign_example / "transactions.csv"),
        ],
    )
    assert result.exit_code == 2
    assert "need a mapping" in result.output


# --- history models ---------------------------------------------------------------------------


def test_data_history_writes_a_time_ordered_labelled_file(tmp_path: Path) -> None:
    from inference.data import read_labelled

    result = runner.invoke(app, ["data", "history", "--out", str(tmp_path), "--events", "1500", "--fraud-rate", "0.05"])
    assert result.exit_code == 0, result.output
    assert "1,500 transactions" in result.stdout
    events, labels, _ = read_labelled(tmp_path / "transactions.jsonl")
    assert len(events) == 1_500 and 0 < sum(labels) < 1_500
    assert [event.event_time for event in events] == sorted(event.event_time for event in events)
    assert all(not event.features for event in events)


def test_evaluate_and_bench_a_history_model(untrained_history_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(untrained_history_dir),
            "--events",
            "3000",
            "--variants",
            "fp32,int8",
            "--seconds",
            "0.05",
            "--buckets",
            "8",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["source"] == {"synthetic": True, "world": "history", "seed": 1_000_003}
    assert report["variants"]["fp32"]["max_score_diff_across_buckets"] <= 1e-5
    bench = runner.invoke(
        app,
        [
            "bench-engine",
            "--model",
            str(untrained_history_dir),
            "--variants",
            "fp32",
            "--buckets",
            "1,8",
            "--seconds",
            "0.05",
            "--rounds",
            "1",
            "--json",
        ],
    )
    assert bench.exit_code == 0, bench.output
    assert {point["batch_size"] for point in json.loads(bench.stdout)["points"]} == {1, 8}


def test_holdout_accounts_need_data(untrained_model_dir: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(untrained_model_dir), "--holdout-accounts", "0.2"])
    assert result.exit_code == 2
    assert "--holdout-accounts needs --data" in result.output


def test_train_help_lists_the_sequence_presets() -> None:
    result = runner.invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "sequence" in result.output


def test_evaluate_prints_the_lift_over_a_baseline_on_the_same_events(
    untrained_history_dir: Path, untrained_model_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "history"
    assert (
        runner.invoke(
            app, ["data", "history", "--out", str(data), "--events", "2000", "--fraud-rate", "0.05"]
        ).exit_code
        == 0
    )
    args = ["evaluate", "--model", str(untrained_history_dir), "--data", str(data / "transactions.jsonl")]
    args += ["--baseline", str(untrained_model_dir), "--variants", "fp32", "--seconds", "0.05", "--buckets", "8"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    lift = report["lift"]
    assert report["baseline"]["events"] == report["events"] == 2_000
    for name in ("auc", "average_precision", "recall_at_1%", "recall_at_2%"):
        row = lift[name]
        assert row["lift"] == pytest.approx(row["model"] - row["baseline"])
    assert lift["auc"]["model"] == report["variants"]["fp32"]["auc"]
    assert lift["auc"]["baseline"] == report["baseline"]["variants"]["fp32"]["auc"]
    table = runner.invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "against" in table.stdout and "recall at 1%" in table.stdout
