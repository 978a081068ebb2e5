"""Decision thresholds set by policy on labelled data, saved as a new model version without retraining.

An operator states targets — how many events may go to review (``review_rate``) or how much fraud
review must catch (``review_recall``); how precise declines must be (``decline_precision``) or how
many events may be declined (``decline_rate``) — and :func:`set_thresholds` scores the data with
the variant that is served (the checkpoint's default quantization for the device unless told
otherwise), finds the thresholds that meet them, and rewrites only ``riskstream.json``: new
thresholds, a new version (``<weights version>.t<6 hex digits of the thresholds>``, the same for the
same thresholds), and a ``threshold_policy`` record of the targets, the data and what they replaced.
The weights and their SHA-256 are untouched, so the checkpoint's integrity checks still pass.

Review means ``score >= review`` (declines included: every decline is also an alert), decline
``score >= decline``; review never exceeds decline (a stricter review target makes review equal
decline, and the result says so).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.checkpoint import DecisionThresholds, RiskMetadata, write_metadata
from inference.data import DEFAULT_LABEL_FIELD
from inference.dataset import DEFAULT_MAX_BAD_FRACTION
from inference.evaluate import HoldoutAccounts, load_evaluation_data
from inference.metrics import (
    OperatingPoint,
    operating_point,
    threshold_for_precision,
    threshold_for_rate,
    threshold_for_recall,
)
from inference.scorer import Scorer
from schemas.mapping import EventMapping

_HISTORY_KEPT = 20
_THRESHOLD_SUFFIX = re.compile(r"\.t[0-9a-f]{6}$")


@dataclass(frozen=True)
class ThresholdTargets:
    """At most one target per band; a band without one keeps its threshold."""

    review_rate: float | None = None
    review_recall: float | None = None
    decline_precision: float | None = None
    decline_rate: float | None = None
    min_decline_hits: int = 5

    def __post_init__(self) -> None:
        if self.review_rate is not None and self.review_recall is not None:
            raise ValueError("give either a review rate or a review recall, not both")
        if self.decline_precision is not None and self.decline_rate is not None:
            raise ValueError("give either a decline precision or a decline rate, not both")
        if all(
            value is None for value in (self.review_rate, self.review_recall, self.decline_precision, self.decline_rate)
        ):
            raise ValueError("give at least one target: review rate/recall or decline precision/rate")
        for name in ("review_rate", "review_recall", "decline_precision", "decline_rate"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name.replace('_', ' ')} must be within (0, 1], e.g. 0.02 or 2%")

    def to_json(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in ("review_rate", "review_recall", "decline_precision", "decline_rate", "min_decline_hits")
            if getattr(self, name) is not None
        }


@dataclass(frozen=True)
class ThresholdChange:
    """What :func:`set_thresholds` found (and wrote, unless ``written`` is False)."""

    model_dir: Path
    old_version: str
    new_version: str
    old: DecisionThresholds
    new: DecisionThresholds
    quantization: str
    events: int
    fraud_events: int
    expected_old: dict[str, OperatingPoint]
    expected_new: dict[str, OperatingPoint]
    notes: tuple[str, ...]
    written: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "old_version": self.old_version,
            "new_version": self.new_version,
            "old": {"review": self.old.review, "decline": self.old.decline},
            "new": {"review": self.new.review, "decline": self.new.decline},
            "quantization": self.quantization,
            "events": self.events,
            "fraud_events": self.fraud_events,
            "expected_old": {name: point.to_json() for name, point in self.expected_old.items()},
            "expected_new": {name: point.to_json() for name, point in self.expected_new.items()},
            "notes": list(self.notes),
            "written": self.written,
        }


def choose_by_policy(
    labels: npt.NDArray[np.integer],
    scores: npt.NDArray[np.floating],
    targets: ThresholdTargets,
    current: DecisionThresholds,
) -> tuple[DecisionThresholds, tuple[str, ...]]:
    """Thresholds meeting ``targets`` on these scores; ``ValueError`` when a target is out of reach."""
    notes: list[str] = []
    review, decline = current.review, current.decline
    if targets.review_rate is not None:
        review = threshold_for_rate(scores, targets.review_rate)
    elif targets.review_recall is not None:
        review = threshold_for_recall(labels, scores, targets.review_recall)
    if targets.decline_precision is not None:
        found = threshold_for_precision(labels, scores, targets.decline_precision, min_hits=targets.min_decline_hits)
        if found is None:
            best = max(
                (operating_point(labels, scores, t).precision or 0.0 for t in np.quantile(scores, [0.99, 0.999])),
                default=0.0,
            )
            raise ValueError(
                f"no threshold reaches decline precision {targets.decline_precision:.1%} with at least "
                f"{targets.min_decline_hits} frauds on this data (the top 1%/0.1% of scores reach at most "
                f"{best:.1%}); lower the target or use --decline-rate"
            )
        decline = found
    elif targets.decline_rate is not None:
        decline = threshold_for_rate(scores, targets.decline_rate)
    if review > decline:
        notes.append(f"the review target ({review:.4g}) is stricter than decline ({decline:.4g}): review = decline")
        review = decline
    return DecisionThresholds(review=float(review), decline=float(decline)), tuple(notes)


def threshold_version(base_version: str, thresholds: DecisionThresholds) -> str:
    """``<weights version>.t<hash>``: a new version per threshold pair, the same for the same pair."""
    base = _THRESHOLD_SUFFIX.sub("", base_version)
    digest = hashlib.sha256(json.dumps([thresholds.review, thresholds.decline]).encode()).hexdigest()[:6]
    return f"{base}.t{digest}"


def _expected(
    labels: npt.NDArray[np.integer],
    scores: npt.NDArray[np.floating],
    amounts: npt.NDArray[np.floating],
    thresholds: DecisionThresholds,
) -> dict[str, OperatingPoint]:
    return {
        "review": operating_point(labels, scores, thresholds.review, values=amounts, name="review or decline"),
        "decline": operating_point(labels, scores, thresholds.decline, values=amounts, name="decline"),
    }


def _copy_checkpoint(source: Path, target: Path) -> None:
    """Copy a checkpoint directory to ``target`` (atomically replacing an older copy)."""
    target = target.resolve()
    if target == source.resolve():
        return
    if target.exists() and not (target / "riskstream.json").is_file():
        raise ValueError(f"{target} exists and is not a riskstream model directory; refusing to replace it")
    staging = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, staging)
        if target.exists():
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, retired)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def set_thresholds(
    model_dir: Path,
    data: Path,
    targets: ThresholdTargets,
    *,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    since: datetime | None = None,
    accounts: HoldoutAccounts | None = None,
    quantization: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    out_dir: Path | None = None,
    dry_run: bool = False,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    on_progress: Callable[[str], None] | None = None,
) -> ThresholdChange:
    """Choose thresholds for ``targets`` on ``data`` and save them as a new version (module docstring).

    ``out_dir`` writes a copy of the checkpoint there instead of changing ``model_dir``;
    ``dry_run`` writes nothing. Identical thresholds are not rewritten.
    """
    report = on_progress or (lambda message: None)
    model_dir = Path(model_dir)
    report("loading")
    scorer = Scorer.load(model_dir, device=device, quantization=quantization, threads=threads)
    metadata = scorer.metadata
    report(f"reading {Path(data).name}")
    prepared = load_evaluation_data(
        scorer,
        Path(data),
        mapping=mapping,
        label_field=label_field,
        since=since,
        accounts=accounts,
        max_bad_fraction=max_bad_fraction,
    )
    report(f"scoring {prepared.events:,} events")
    scores = np.empty(prepared.events, dtype=np.float32)
    for start in range(0, prepared.events, 8192):
        batch = scorer.score(list(prepared.features[start : start + 8192]))
        if batch.failures:
            raise RuntimeError(f"{len(batch.failures)} events could not be scored")
        scores[start : start + 8192] = batch.scores
    labels, amounts = prepared.labels, prepared.amounts_usd
    new, notes = choose_by_policy(labels, scores, targets, metadata.thresholds)
    unchanged = new == metadata.thresholds
    new_version = metadata.version if unchanged else threshold_version(metadata.version, new)
    change = ThresholdChange(
        model_dir=Path(out_dir) if out_dir is not None else model_dir,
        old_version=metadata.version,
        new_version=new_version,
        old=metadata.thresholds,
        new=new,
        quantization=scorer.info.quantization,
        events=prepared.events,
        fraud_events=int(labels.sum()),
        expected_old=_expected(labels, scores, amounts, metadata.thresholds),
        expected_new=_expected(labels, scores, amounts, new),
        notes=(*notes, "thresholds unchanged: nothing written") if unchanged else notes,
        written=False,
    )
    if dry_run or unchanged:
        return change
    target = model_dir
    if out_dir is not None:
        _copy_checkpoint(model_dir, Path(out_dir))
        target = Path(out_dir)
    write_metadata(target, _updated(metadata, change, targets, prepared.source))
    return replace(change, written=True)


def _updated(
    metadata: RiskMetadata, change: ThresholdChange, targets: ThresholdTargets, source: dict[str, Any]
) -> RiskMetadata:
    previous = dict(metadata.threshold_policy)
    history = list(previous.get("history", []))
    history.append(
        {"version": metadata.version, "review": metadata.thresholds.review, "decline": metadata.thresholds.decline}
    )
    policy = {
        "set_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "targets": targets.to_json(),
        "data": {key: source.get(key) for key in ("file", "format", "rows_read", "since")},
        "events": change.events,
        "fraud_events": change.fraud_events,
        "quantization": change.quantization,
        "expected": {name: point.to_json() for name, point in change.expected_new.items()},
        "notes": list(change.notes),
        "history": history[-_HISTORY_KEPT:],
    }
    return replace(metadata, version=change.new_version, thresholds=change.new, threshold_policy=policy)
