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


# --- operating table ------------------------------------------------------------------------


def _independent_row(labels: np.ndarray, scores: np.ndarray, amounts: np.ndarray, rate: float) -> dict[str, float]:
    """The operating point at an alert rate, computed the plain way: sort, count, divide."""
    ranked = np.sort(scores)[::-1]
    k = int(np.ceil(rate * len(scores) - 1e-9))
    threshold = ranked[max(k, 1) - 1]
    return _independent_at(labels, scores, amounts, float(threshold))


def _independent_at(labels: np.ndarray, scores: np.ndarray, amounts: np.ndarray, threshold: float) -> dict[str, float]:
    alerts = [index for index in range(len(scores)) if scores[index] >= threshold]
    hits = [index for index in alerts if labels[index] == 1]
    fraud = [index for index in range(len(scores)) if labels[index] == 1]
    return {
        "threshold": threshold,
        "alerts": len(alerts),
        "precision": len(hits) / len(alerts),
        "recall": len(hits) / len(fraud),
        "value_recall": sum(amounts[i] for i in hits) / sum(amounts[i] for i in fraud),
        "alerts_per_10k": 10_000 * len(alerts) / len(scores),
    }


def test_operating_table_agrees_with_an_independent_computation() -> None:
    from inference.metrics import DEFAULT_ALERT_RATES, operating_table

    rng = np.random.default_rng(7)
    n = 20_000
    labels = (rng.random(n) < 0.01).astype(int)
    # Rounded scores: plenty of ties at every threshold.
    scores = np.round(np.clip(rng.normal(0.2, 0.1, n) + labels * rng.normal(0.5, 0.2, n), 0, 1), 3)
    amounts = rng.lognormal(3.5, 1.0, n)
    rows = operating_table(labels, scores, values=amounts, thresholds={"review": 0.45, "decline": 0.8})
    assert [row.name for row in rows] == [
        "rate 0.1%",
        "rate 0.5%",
        "rate 1.0%",
        "rate 2.0%",
        "rate 5.0%",
        "review",
        "decline",
    ]
    expected = [_independent_row(labels, scores, amounts, rate) for rate in DEFAULT_ALERT_RATES]
    expected += [_independent_at(labels, scores, amounts, 0.45), _independent_at(labels, scores, amounts, 0.8)]
    for row, want in zip(rows, expected, strict=True):
        assert row.threshold == pytest.approx(want["threshold"])
        assert row.alerts == want["alerts"]
        assert row.precision == pytest.approx(want["precision"])
        assert row.recall == pytest.approx(want["recall"])
        assert row.value_recall == pytest.approx(want["value_recall"])
        assert row.alerts_per_10k == pytest.approx(want["alerts_per_10k"])
    # The rate rows flag at least their share (ties at the threshold are all flagged).
    for row, rate in zip(rows, DEFAULT_ALERT_RATES, strict=False):
        assert row.alert_rate >= rate - 1e-12


def test_policy_thresholds_meet_their_targets_against_brute_force() -> None:
    from inference.metrics import threshold_for_precision, threshold_for_rate, threshold_for_recall

    rng = np.random.default_rng(3)
    labels = (rng.random(3_000) < 0.03).astype(int)
    scores = np.round(rng.random(3_000) * 0.6 + labels * rng.random(3_000) * 0.5, 2)
    candidates = np.unique(scores)

    def at(threshold: float) -> tuple[float, float, int]:
        flagged = scores >= threshold
        hits = int((flagged & (labels == 1)).sum())
        return hits / flagged.sum(), hits / labels.sum(), hits

    lowest = min(t for t in candidates if at(t)[0] >= 0.6 and at(t)[2] >= 5)
    assert threshold_for_precision(labels, scores, 0.6) == pytest.approx(lowest)
    assert threshold_for_precision(labels, scores, 1.01) is None
    highest = max(t for t in candidates if at(t)[1] >= 0.8)
    assert threshold_for_recall(labels, scores, 0.8) == pytest.approx(highest)
    rate_threshold = threshold_for_rate(scores, 0.02)
    assert (scores >= rate_threshold).mean() >= 0.02 > (scores > rate_threshold).mean()


def test_curves_span_the_unit_square_and_integrate_to_the_auc() -> None:
    from inference.metrics import precision_recall_curve, roc_curve

    rng = np.random.default_rng(5)
    labels = (rng.random(2_000) < 0.1).astype(int)
    scores = rng.random(2_000) + labels * 0.3
    fpr, tpr = roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores))
    recall, precision = precision_recall_curve(labels, scores)
    assert recall[-1] == 1.0 and precision[-1] == pytest.approx(labels.mean())
