"""Ranking metrics and decision thresholds, in numpy (no scikit-learn dependency).

Definitions follow scikit-learn's ``roc_auc_score`` and ``average_precision_score``, so numbers are
comparable with what a data scientist computes elsewhere: AUC is the Mann-Whitney statistic with
ties counted as one half; AP is the step-wise sum of precision over recall increments at each
distinct score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.floating]
IntArray = npt.NDArray[np.integer]


def _validated(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if y.all() or not y.any():
        raise ValueError("both classes must be present")
    return y, s


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative)."""
    y, s = _validated(labels, scores)
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average ranks over ties (1-based), so tied pairs count one half.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    positives = int(y.sum())
    negatives = y.size - positives
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _curve(y: npt.NDArray[np.bool_], s: npt.NDArray[np.float64]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(thresholds descending, true positives, flagged count) at each distinct score."""
    order = np.argsort(-s, kind="mergesort")
    sorted_scores = s[order]
    hits = y[order].astype(np.float64)
    last_of_each = np.concatenate((np.flatnonzero(np.diff(sorted_scores)), [s.size - 1]))
    true_positives = np.cumsum(hits)[last_of_each]
    flagged = (last_of_each + 1).astype(np.float64)
    return sorted_scores[last_of_each], true_positives, flagged


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Average precision: sum over distinct thresholds of precision x recall increment."""
    y, s = _validated(labels, scores)
    _, true_positives, flagged = _curve(y, s)
    precision = true_positives / flagged
    recall = true_positives / true_positives[-1]
    increments = np.diff(np.concatenate(([0.0], recall)))
    return float(np.sum(increments * precision))


@dataclass(frozen=True)
class ThresholdChoice:
    """Review/decline thresholds and what they do on the data they were chosen on."""

    review: float
    decline: float
    review_rate: float
    review_recall: float
    decline_rate: float
    decline_precision: float


def choose_thresholds(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    decline_precision: float = 0.9,
    review_recall: float = 0.9,
    max_review_rate: float = 0.03,
    min_decline_hits: int = 5,
) -> ThresholdChoice:
    """Thresholds for the decision policy ``score >= decline -> decline``, ``>= review -> review``.

    * decline: the lowest score whose flagged set has precision >= ``decline_precision`` with at
      least ``min_decline_hits`` true positives (declining legitimate customers is expensive); if
      no threshold reaches that precision, the score of the top 0.1% of events.
    * review: the highest score that still reaches ``review_recall`` of all fraud, but never so low
      that more than ``max_review_rate`` of events go to review; never above ``decline``.
    """
    y, s = _validated(labels, scores)
    thresholds, true_positives, flagged = _curve(y, s)
    precision = true_positives / flagged
    recall = true_positives / true_positives[-1]
    rate = flagged / s.size
    eligible = np.flatnonzero((precision >= decline_precision) & (true_positives >= min_decline_hits))
    fallback = int(np.searchsorted(rate, 0.001, side="left"))
    decline_index = min(int(eligible[-1]) if eligible.size else fallback, thresholds.size - 1)
    review_index = int(np.searchsorted(recall, review_recall, side="left"))
    rate_cap_index = int(np.searchsorted(rate, max_review_rate, side="right")) - 1
    review_index = max(min(review_index, max(rate_cap_index, 0)), decline_index)
    review_index = min(review_index, thresholds.size - 1)
    return ThresholdChoice(
        review=float(thresholds[review_index]),
        decline=float(thresholds[decline_index]),
        review_rate=float(rate[review_index]),
        review_recall=float(recall[review_index]),
        decline_rate=float(rate[decline_index]),
        decline_precision=float(precision[decline_index]),
    )
