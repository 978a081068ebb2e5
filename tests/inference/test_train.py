"""Training (slow): the tiny preset end to end, determinism, and what the checkpoint records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.checkpoint import METADATA_FILE, load_checkpoint
from inference.metrics import roc_auc
from inference.scorer import Scorer
from inference.synthetic import generate
from inference.train import TrainProgress, TrainResult, train

pytestmark = pytest.mark.slow


def test_tiny_preset_learns_the_patterns(trained_tiny: TrainResult) -> None:
    training = trained_tiny.metadata.training
    assert trained_tiny.holdout_auc >= 0.9
    assert 0.0 < trained_tiny.holdout_ap <= 1.0
    assert training["holdout_fraud_rate"] == 0.01
    assert 1 <= training["best_epoch"] <= training["epochs_run"]
    assert trained_tiny.metadata.name == "riskstream-deepseek-v3-tiny"
    thresholds = trained_tiny.metadata.thresholds
    assert 0.0 < thresholds.review <= thresholds.decline < 1.0


def test_checkpoint_records_what_serving_needs(trained_tiny: TrainResult) -> None:
    data = json.loads((trained_tiny.out_dir / METADATA_FILE).read_text())
    assert data["feature_spec"]["version"] == 1
    assert data["training"]["preset"]["name"] == "tiny"
    assert data["training"]["seed"] == 0
    assert {"holdout_auc", "holdout_ap", "history", "thresholds", "seconds"} <= set(data["training"])


def test_trained_model_scores_fresh_events_well(trained_tiny: TrainResult) -> None:
    scorer = Scorer.load(trained_tiny.out_dir, quantization="fp32", max_batch=256)
    items = list(generate(4_000, seed=123, fraud_rate=0.05))
    scores = scorer.score([scorer.featurize(item.event) for item in items]).scores
    assert roc_auc([item.is_fraud for item in items], scores) >= 0.9


def test_save_load_round_trip_of_a_trained_model(trained_tiny: TrainResult) -> None:
    loaded = load_checkpoint(trained_tiny.out_dir)
    scorer = Scorer.load(trained_tiny.out_dir, quantization="fp32")
    rows = np.stack([scorer.featurize(item.event) for item in generate(64, seed=5)])
    import torch

    with torch.inference_mode():
        direct = torch.softmax(loaded.model(input_ids=torch.from_numpy(rows)).logits, -1)[:, 1].numpy()
    np.testing.assert_allclose(scorer.score(list(rows)).scores, direct, atol=1e-6)


def test_training_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    updates: list[TrainProgress] = []
    first = train(tmp_path / "a", preset="tiny", events=1_500, seed=3, max_epochs=1, on_progress=updates.append)
    second = train(tmp_path / "b", preset="tiny", events=1_500, seed=3, max_epochs=1)
    assert first.metadata.weights_sha256 == second.metadata.weights_sha256
    assert first.metadata.thresholds == second.metadata.thresholds
    assert {update.phase for update in updates} == {"data", "train", "evaluate"}
    other = train(tmp_path / "c", preset="tiny", events=1_500, seed=4, max_epochs=1)
    assert other.metadata.weights_sha256 != first.metadata.weights_sha256


def test_too_few_events_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 500"):
        train(tmp_path / "m", preset="tiny", events=10)
    with pytest.raises(ValueError, match="unknown preset"):
        train(tmp_path / "m", preset="huge")
