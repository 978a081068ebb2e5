"""Training history models (slow): the synthetic history world and the own-data path end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from inference.checkpoint import METADATA_FILE
from inference.history import replay
from inference.metrics import roc_auc
from inference.scorer import Scorer
from inference.synthetic_history import generate_histories
from inference.train import train
from worker.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_train_a_sequence_preset_on_the_history_world(tmp_path: Path) -> None:
    first = train(tmp_path / "a", preset="tiny-sequence", events=4_000, seed=1, max_epochs=1)
    again = train(tmp_path / "b", preset="tiny-sequence", events=4_000, seed=1, max_epochs=1)
    assert first.metadata.weights_sha256 == again.metadata.weights_sha256  # deterministic for a seed
    data = json.loads((first.out_dir / METADATA_FILE).read_text())
    assert data["format_version"] == 2 and data["history"]["rows"] == 4
    assert data["training"]["world"] == "history"
    scorer = Scorer.load(first.out_dir, quantization="fp32")
    items = list(generate_histories(3_000, seed=99, fraud_rate=0.05))
    scores = scorer.score(replay([item.event for item in items], scorer.featurize)).scores
    assert roc_auc([item.is_fraud for item in items], scores) > 0.6


def _invoke(args: list[str]) -> Any:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_own_data_history_path_splits_by_time_and_account(tmp_path: Path) -> None:
    data = tmp_path / "transactions.jsonl"
    _invoke(["data", "history", "--out", str(tmp_path), "--events", "12000", "--fraud-rate", "0.04", "--seed", "2"])
    trained = _invoke(
        [
            "train",
            "--out",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--preset",
            "tiny-sequence",
            "--split",
            "time+account",
            "--holdout-fraction",
            "0.3",
            "--max-epochs",
            "1",
            "--json",
        ]
    )
    record = json.loads(trained.stdout)
    split = record["data"]["split"]
    assert split["mode"] == "time+account" and record["data"]["sets"]["holdout"]["rows"] > 0
    # The hint train prints for the holdout: later rows of other accounts.
    table = _invoke(
        [
            "train",
            "--out",
            str(tmp_path / "again"),
            "--data",
            str(data),
            "--preset",
            "tiny-sequence",
            "--split",
            "time+account",
            "--holdout-fraction",
            "0.3",
            "--max-epochs",
            "1",
        ]
    )
    assert (
        f"--since {split['holdout_from']}" in table.stdout and "--holdout-accounts 0.3 --split-seed 0" in table.stdout
    )
    evaluated = _invoke(
        [
            "evaluate",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--since",
            split["holdout_from"],
            "--holdout-accounts",
            "0.3",
            "--variants",
            "fp32",
            "--seconds",
            "0.05",
            "--buckets",
            "64",
            "--json",
        ]
    )
    report = json.loads(evaluated.stdout)
    # evaluate scores exactly the rows train held out, each against its account's whole past.
    assert report["events"] == record["data"]["sets"]["holdout"]["rows"]
    assert report["fraud_events"] == record["data"]["sets"]["holdout"]["fraud"]
    assert report["source"]["history"].startswith("each account's rows replayed")
    assert report["variants"]["fp32"]["auc"] == pytest.approx(record["holdout_auc"], abs=1e-4)
    thresholds = _invoke(
        [
            "thresholds",
            "--model",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--since",
            split["holdout_from"],
            "--holdout-accounts",
            "0.3",
            "--review-rate",
            "2%",
            "--dry-run",
            "--json",
        ]
    )
    assert json.loads(thresholds.stdout)["events"] == report["events"]


def test_a_stateless_preset_refuses_data_prepared_with_history(tmp_path: Path) -> None:
    from inference.dataset import prepare_events
    from inference.sequence import HistorySpec
    from inference.train import train_prepared

    items = list(generate_histories(3_000, seed=3, fraud_rate=0.05))
    prepared = prepare_events(
        [item.event for item in items], [int(item.is_fraud) for item in items], history=HistorySpec(rows=4)
    )
    with pytest.raises(ValueError, match="does not read account history"):
        train_prepared(tmp_path / "m", prepared, preset="tiny")
    assert np.all(prepared.inputs["train"] >= 0)
