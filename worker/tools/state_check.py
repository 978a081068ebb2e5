"""Check a deployment's account state and scores against one clean pass over the same input.

The clean pass reads the input topic partition by partition in offset order, takes the events that
were scored (a score on the scores topic names its input offset), and replays them one at a time
(:func:`inference.history.replay` semantics: each event is featurized against its account's history
before it, then observed). It then compares:

* **state**: the changelog (read ``read_committed``, last value per key, tombstones delete) against
  the clean pass's state, account by account, byte for byte (the serialization is deterministic);
* **scores** (with ``model_dir``): every published score against the score the same model gives the
  event in the clean pass (fp32; published scores are rounded to six decimals).

Used by the reliability suite and the state tests; the figures go into ``StateReport``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import DecodeError, decode
from worker.state import state_key
from worker.tools.verify import read_topic

Coordinate = tuple[int, int]
_SCORE_ROUNDING = 5e-7


@dataclass
class StateReport:
    accounts: int = 0
    """Accounts in the clean pass."""
    changelog_accounts: int = 0
    events: int = 0
    """Scored events the clean pass replayed."""
    missing: list[str] = field(default_factory=list)
    """Accounts of the clean pass without a changelog state."""
    extra: list[str] = field(default_factory=list)
    """Changelog states of accounts the clean pass does not have."""
    different: list[str] = field(default_factory=list)
    """Accounts whose changelog state differs from the clean pass's."""
    scores_compared: int = 0
    score_mismatches: list[tuple[Coordinate, float, float]] = field(default_factory=list)
    """(input partition, offset), published score, clean-pass score: beyond the tolerance."""
    max_score_difference: float = 0.0

    @property
    def state_equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def summary(self) -> str:
        return (
            f"accounts={self.accounts} changelog={self.changelog_accounts} events={self.events} "
            f"missing={len(self.missing)} extra={len(self.extra)} different={len(self.different)} "
            f"scores={self.scores_compared} mismatches={len(self.score_mismatches)} "
            f"max_diff={self.max_score_difference:.2e}"
        )


def _published_scores(config: dict[str, Any], scores_topic: str) -> dict[Coordinate, list[float]]:
    scores: dict[Coordinate, list[float]] = defaultdict(list)
    for record in read_topic(config, scores_topic):
        body = json.loads(record.value)
        source = body["source"]
        scores[(int(source["partition"]), int(source["offset"]))].append(float(body["score"]))
    return scores


def _changelog(config: dict[str, Any], changelog_topic: str) -> dict[str, bytes]:
    states: dict[str, bytes] = {}
    for record in read_topic(config, changelog_topic):
        key = record.key.decode()
        if record.value is None:
            states.pop(key, None)
        else:
            states[key] = bytes(record.value)
    return states


def check_state(
    config: dict[str, Any],
    *,
    input_topic: str,
    scores_topic: str,
    changelog_topic: str,
    key_secret: bytes = b"riskstream-state",
    capacity: int = 32,
    model_dir: Path | None = None,
    tolerance: float = 1e-5,
    max_event_bytes: int = 65_536,
) -> StateReport:
    """Compare the changelog (and, with ``model_dir``, every published score) with one clean pass."""
    from inference.history import AccountHistory

    scorer: Any = None
    if model_dir is not None:
        from inference.scorer import Scorer

        scorer = Scorer.load(model_dir, quantization="fp32", max_batch=256)
        spec = scorer.history_spec
        capacity = spec.capacity if spec is not None else capacity
    published = _published_scores(config, scores_topic)
    histories: dict[str, AccountHistory] = {}
    coordinates: list[Coordinate] = []
    features: list[Any] = []
    report = StateReport()
    for record in read_topic(config, input_topic):
        coordinate = (record.partition, record.offset)
        if coordinate not in published:
            continue  # a dead letter (or not scored yet): never applied
        event = decode(record.value, max_bytes=max_event_bytes)
        if isinstance(event, DecodeError):
            continue
        key = state_key(event.account_id, key_secret)
        history = histories.get(key)
        if history is None:
            history = histories[key] = AccountHistory(capacity)
        if scorer is not None:
            features.append(scorer.featurize(event, history))
            coordinates.append(coordinate)
        history.observe(event)
        report.events += 1
    expected = {key: history.to_bytes() for key, history in histories.items()}
    actual = _changelog(config, changelog_topic)
    report.accounts, report.changelog_accounts = len(expected), len(actual)
    report.missing = sorted(set(expected) - set(actual))
    report.extra = sorted(set(actual) - set(expected))
    report.different = sorted(key for key in set(expected) & set(actual) if expected[key] != actual[key])
    if scorer is not None:
        for start in range(0, len(features), 256):
            clean = scorer.score(features[start : start + 256]).scores
            for coordinate, reference in zip(coordinates[start : start + 256], clean, strict=True):
                for score in published[coordinate]:
                    difference = abs(score - float(reference))
                    report.scores_compared += 1
                    report.max_score_difference = max(report.max_score_difference, difference)
                    if difference > tolerance + _SCORE_ROUNDING:
                        report.score_mismatches.append((coordinate, score, float(reference)))
    return report
