"""AUC, average precision and threshold choice against brute force and known values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.metrics import average_precision, choose_thresholds, roc_auc


def _pairwise_auc(labels: list[int], scores: list[float]) -> float:
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


def test_known_values() -> None:
    # scikit-learn's documented example: roc_auc_score 0.75, average_precision_score 0.8333...
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    assert roc_auc(labels, scores) == pytest.approx(0.75)
    assert average_precision(labels, scores) == pytest.approx(0.8333333333)


@settings(max_examples=200, deadline=None)
@given(
    data=st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0])), min_size=2, max_size=40)
)
def test_auc_equals_the_pairwise_definition_with_ties(data: list[tuple[bool, float]]) -> None:
    labels = [int(label) for label, _ in data]
    scores = [score for _, score in data]
    if len(set(labels)) < 2:
        return
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))


def test_perfect_and_inverted_rankings() -> None:
    labels = np.array([0] * 50 + [1] * 5)
    scores = np.linspace(0, 1, 55)
    assert roc_auc(labels, scores) == 1.0
    assert average_precision(labels, scores) == 1.0
    assert roc_auc(labels, -scores) == 0.0


def test_one_class_or_nan_is_rejected() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        average_precision([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="length"):
        roc_auc([0, 1], [0.1])


def test_thresholds_are_ordered_and_meet_their_targets() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(20_000) < 0.01).astype(int)
    scores = np.clip(rng.normal(0.2, 0.1, labels.size) + labels * rng.normal(0.6, 0.15, labels.size), 0, 1)
    choice = choose_thresholds(labels, scores)
    assert 0.0 <= choice.review <= choice.decline <= 1.0
    flagged = scores >= choice.decline
    assert labels[flagged].mean() >= 0.9
    assert choice.review_rate <= 0.03 + 1e-9
    assert choice.decline_precision == pytest.approx(labels[flagged].mean())
