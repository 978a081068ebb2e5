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


#: Alert rates of the operating table (share of all events flagged).
DEFAULT_ALERT_RATES = (0.001, 0.005, 0.01, 0.02, 0.05)


@dataclass(frozen=True)
class OperatingPoint:
    """What flagging every event with ``score >= threshold`` does on labelled data.

    ``precision`` is None when nothing is flagged. ``value_recall`` is the share of the fraud
    *amount* caught (None without amounts); the amounts' unit is the caller's (``evaluate`` uses
    USD at the checkpoint's reference rates, so currencies add up).
    """

    name: str
    threshold: float
    alerts: int
    alert_rate: float
    true_positives: int
    precision: float | None
    recall: float
    value_recall: float | None

    @property
    def alerts_per_10k(self) -> float:
        return self.alert_rate * 10_000

    def to_json(self) -> dict[str, float | int | str | None]:
        return {
            "name": self.name,
            "threshold": self.threshold,
            "alerts": self.alerts,
            "alert_rate": self.alert_rate,
            "alerts_per_10k": round(self.alerts_per_10k, 2),
            "true_positives": self.true_positives,
            "precision": self.precision,
            "recall": self.recall,
            "value_recall": self.value_recall,
        }


def operating_point(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    threshold: float,
    *,
    values: npt.ArrayLike | None = None,
    name: str = "",
) -> OperatingPoint:
    """The operating point of ``threshold`` (flag ``score >= threshold``)."""
    y, s = _validated(labels, scores)
    flagged = s >= threshold
    alerts = int(flagged.sum())
    hits = int((flagged & y).sum())
    value_recall: float | None = None
    if values is not None:
        amounts = np.asarray(values, dtype=np.float64).ravel()
        if amounts.shape != s.shape:
            raise ValueError("values and scores differ in length")
        total = float(amounts[y].sum())
        value_recall = float(amounts[flagged & y].sum()) / total if total > 0 else None
    return OperatingPoint(
        name=name,
        threshold=float(threshold),
        alerts=alerts,
        alert_rate=alerts / s.size,
        true_positives=hits,
        precision=hits / alerts if alerts else None,
        recall=hits / int(y.sum()),
        value_recall=value_recall,
    )


def threshold_for_rate(scores: npt.ArrayLike, rate: float) -> float:
    """The threshold that flags the top ``rate`` of events: the k-th highest score, k = ceil(rate * n).

    Ties at the threshold are all flagged, so the realised rate can be a little higher.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError("no scores")
    if not 0.0 < rate <= 1.0:
        raise ValueError("rate must be within (0, 1]")
    k = min(s.size, max(1, int(np.ceil(rate * s.size - 1e-9))))
    return float(np.partition(s, s.size - k)[s.size - k])


def threshold_for_precision(
    labels: npt.ArrayLike, scores: npt.ArrayLike, precision: float, *, min_hits: int = 5
) -> float | None:
    """The lowest threshold whose flagged set has at least ``precision`` (and ``min_hits`` frauds).

    None when no threshold reaches it: the model cannot be that precise on this data.
    """
    y, s = _validated(labels, scores)
    thresholds, true_positives, flagged = _curve(y, s)
    eligible = np.flatnonzero((true_positives / flagged >= precision) & (true_positives >= min_hits))
    return float(thresholds[eligible[-1]]) if eligible.size else None


def threshold_for_recall(labels: npt.ArrayLike, scores: npt.ArrayLike, recall: float) -> float:
    """The highest threshold that still flags at least ``recall`` of the fraud."""
    y, s = _validated(labels, scores)
    thresholds, true_positives, _ = _curve(y, s)
    index = int(np.searchsorted(true_positives / true_positives[-1], recall - 1e-12, side="left"))
    return float(thresholds[min(index, thresholds.size - 1)])


def operating_table(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    values: npt.ArrayLike | None = None,
    alert_rates: tuple[float, ...] = DEFAULT_ALERT_RATES,
    thresholds: dict[str, float] | None = None,
) -> list[OperatingPoint]:
    """One row per alert rate (the threshold that flags it), then one per named threshold."""
    rows = [
        operating_point(labels, scores, threshold_for_rate(scores, rate), values=values, name=f"rate {rate:.1%}")
        for rate in alert_rates
    ]
    for name, threshold in (thresholds or {}).items():
        rows.append(operating_point(labels, scores, threshold, values=values, name=name))
    return rows


def roc_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(false positive rate, true positive rate) at each distinct score, from (0, 0) to (1, 1)."""
    y, s = _validated(labels, scores)
    _, true_positives, flagged = _curve(y, s)
    false_positives = flagged - true_positives
    tpr = np.concatenate(([0.0], true_positives / true_positives[-1]))
    fpr = np.concatenate(([0.0], false_positives / false_positives[-1]))
    return fpr, tpr


def precision_recall_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(recall, precision) at each distinct score, highest threshold first."""
    y, s = _validated(labels, scores)
    _, true_positives, flagged = _curve(y, s)
    return true_positives / true_positives[-1], true_positives / flagged
