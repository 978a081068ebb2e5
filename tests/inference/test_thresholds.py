"""Thresholds by policy: targets met, a new version written beside untouched weights, no-ops and copies."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from inference.checkpoint import METADATA_FILE, DecisionThresholds, load_checkpoint, sha256_of
from inference.scorer import Scorer
from inference.synthetic import generate, write_jsonl
from inference.thresholds import ThresholdTargets, choose_by_policy, set_thresholds, threshold_version


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("labelled") / "history.jsonl"
    write_jsonl(path, generate(2_000, seed=21, fraud_rate=0.05))
    return path


def _scores(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(10_000) < 0.02).astype(int)
    scores = np.clip(rng.normal(0.1, 0.05, labels.size) + labels * rng.normal(0.6, 0.2, labels.size), 0, 1)
    return labels, scores


def test_targets_are_met_on_the_data() -> None:
    labels, scores = _scores()
    current = DecisionThresholds(review=0.5, decline=0.9)
    chosen, notes = choose_by_policy(labels, scores, ThresholdTargets(review_rate=0.04, decline_precision=0.9), current)
    assert notes == ()
    assert (scores >= chosen.review).mean() == pytest.approx(0.04, abs=1e-3)
    declined = scores >= chosen.decline
    assert labels[declined].mean() >= 0.9
    recall_only, _ = choose_by_policy(labels, scores, ThresholdTargets(review_recall=0.8), current)
    assert recall_only.decline == 0.9  # the band without a target keeps its threshold
    assert labels[scores >= recall_only.review].sum() >= 0.8 * labels.sum()


def test_a_stricter_review_than_decline_is_clamped_and_said() -> None:
    labels, scores = _scores()
    chosen, notes = choose_by_policy(
        labels, scores, ThresholdTargets(review_rate=0.001, decline_rate=0.01), DecisionThresholds(0.5, 0.9)
    )
    assert chosen.review == chosen.decline and "review = decline" in notes[0]


def test_unreachable_and_conflicting_targets_are_errors() -> None:
    labels, scores = _scores()
    with pytest.raises(ValueError, match="no threshold reaches decline precision"):
        choose_by_policy(
            labels,
            np.zeros_like(scores) + labels * 0.0,
            ThresholdTargets(decline_precision=0.9),
            DecisionThresholds(0.5, 0.9),
        )
    with pytest.raises(ValueError, match="either a review rate or a review recall"):
        ThresholdTargets(review_rate=0.02, review_recall=0.9)
    with pytest.raises(ValueError, match="at least one target"):
        ThresholdTargets()
    with pytest.raises(ValueError, match="within"):
        ThresholdTargets(decline_rate=2.0)


def test_versions_follow_the_thresholds() -> None:
    first = threshold_version("2026.01.05-3fa9c2d1", DecisionThresholds(0.2, 0.8))
    assert first.startswith("2026.01.05-3fa9c2d1.t") and len(first) == len("2026.01.05-3fa9c2d1") + 8
    assert threshold_version(first, DecisionThresholds(0.2, 0.8)) == first  # no growing suffixes
    assert threshold_version(first, DecisionThresholds(0.3, 0.8)) != first


def test_set_thresholds_writes_a_new_version_and_keeps_the_weights(
    model_copy: Callable[[], Path], labelled: Path
) -> None:
    model = model_copy()
    weights = sha256_of(model / "model.safetensors")
    before = load_checkpoint(model).metadata
    targets = ThresholdTargets(review_rate=0.05, decline_rate=0.01)
    change = set_thresholds(model, labelled, targets, quantization="fp32")
    assert change.written and change.new_version != before.version
    assert change.expected_new["review"].alert_rate == pytest.approx(0.05, abs=0.01)
    assert change.expected_new["decline"].alert_rate == pytest.approx(0.01, abs=0.005)
    assert sha256_of(model / "model.safetensors") == weights
    after = load_checkpoint(model).metadata  # the integrity checks still pass
    assert after.version == change.new_version
    assert (after.thresholds.review, after.thresholds.decline) == (change.new.review, change.new.decline)
    assert after.weights_sha256 == before.weights_sha256 and after.feature_spec == before.feature_spec
    policy = json.loads((model / METADATA_FILE).read_text())["threshold_policy"]
    assert policy["history"] == [{"version": before.version, "review": 0.5, "decline": 0.8}]
    assert policy["targets"] == {"review_rate": 0.05, "decline_rate": 0.01, "min_decline_hits": 5}
    assert policy["data"]["file"] == "history.jsonl" and policy["quantization"] == "fp32"
    assert Scorer.load(model, quantization="fp32").info.version == change.new_version
    again = set_thresholds(model, labelled, targets, quantization="fp32")
    assert not again.written and again.new_version == change.new_version
    assert "unchanged" in again.notes[-1]


def test_dry_runs_and_copies_leave_the_original_alone(model_copy: Callable[[], Path], labelled: Path) -> None:
    model = model_copy()
    original = (model / METADATA_FILE).read_text()
    targets = ThresholdTargets(review_rate=0.03)
    preview = set_thresholds(model, labelled, targets, dry_run=True)
    assert not preview.written and (model / METADATA_FILE).read_text() == original
    copy = model.parent / "tuned"
    change = set_thresholds(model, labelled, targets, out_dir=copy)
    assert change.written and change.model_dir == copy
    assert (model / METADATA_FILE).read_text() == original
    assert load_checkpoint(copy).metadata.version == change.new_version
    assert preview.new == change.new  # the served variant (int8 on CPU) both times
