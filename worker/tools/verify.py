"""Reconcile a run: does every input record have its outcome, once, in order, with no card data?

Reads the input, scores and dead-letter topics from the beginning (``read_committed``, so aborted
transactions do not count), and checks what riskstream promises:

* every input offset ends as a score or a dead letter: ``lost`` counts offsets with neither;
* ``duplicates`` counts outcomes beyond the first for an offset (0 is required in exactly-once mode;
  at-least-once allows them inside the uncommitted window);
* per-key order: for each key, the *first* publication of each input offset must follow input order
  (a replay may repeat earlier offsets later, but may never publish a later one first);
* the consumer group's committed offsets equal the input's end offsets once the run has drained;
* no Luhn-valid card number (PAN) in any key, value or header of the scores or dead letters.

Used by the integration and fault-injection tests, and by ``riskstream verify`` for operators.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.structs import TopicPartition

from schemas.redaction import contains_pan

Coordinate = tuple[int, int]  # (input partition, offset)


@dataclass
class Outcome:
    coordinate: Coordinate
    kind: str  # "score" or "dead_letter"
    key: bytes | None
    out_partition: int
    out_offset: int
    payload: dict[str, Any]

    def describe(self) -> str:
        """Input offset, where its outcome landed, and when it was written."""
        written = self.payload.get("scored_time") or self.payload.get("failed_time")
        return f"offset {self.coordinate} (out {self.out_partition}@{self.out_offset}, {written})"


@dataclass
class VerifyReport:
    inputs: int = 0
    scores: int = 0
    dead_letters: int = 0
    lost: list[Coordinate] = field(default_factory=list)
    duplicates: int = 0
    duplicated_offsets: int = 0
    order_violations: list[str] = field(default_factory=list)
    committed_behind: dict[int, tuple[int | None, int]] = field(default_factory=dict)
    pans_found: int = 0
    pan_locations: list[str] = field(default_factory=list)
    """Where a PAN was found (topic[partition]@offset), never the text itself."""
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    late: int = 0

    @property
    def ok_at_least_once(self) -> bool:
        return not self.lost and not self.order_violations and not self.pans_found

    @property
    def ok_exactly_once(self) -> bool:
        return self.ok_at_least_once and self.duplicates == 0

    def summary(self) -> str:
        return (
            f"inputs={self.inputs} scores={self.scores} dead_letters={self.dead_letters} lost={len(self.lost)} "
            f"duplicates={self.duplicates} order_violations={len(self.order_violations)} "
            f"committed_behind={len(self.committed_behind)} pans={self.pans_found}"
        )


def read_topic(
    config: dict[str, Any], topic: str, *, isolation_level: str = "read_committed", timeout_s: float = 60.0
) -> Iterator[Any]:
    """Every record of ``topic`` up to its current end (the last stable offset for read_committed)."""
    consumer = KafkaConsumer(
        **config,
        group_id=None,
        enable_auto_commit=False,
        isolation_level=isolation_level,
        max_poll_records=5000,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic}: still behind on {sorted(tp.partition for tp in remaining)}")
            for records in consumer.poll(timeout_ms=200).values():
                yield from records
            remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    finally:
        consumer.close(autocommit=False)


def _outcomes(config: dict[str, Any], topic: str, kind: str, report: VerifyReport) -> list[Outcome]:
    found: list[Outcome] = []
    for record in read_topic(config, topic):
        texts = [record.value.decode("utf-8", "replace") if record.value else ""]
        if record.key:
            texts.append(record.key.decode("utf-8", "replace"))
        texts.extend(value.decode("utf-8", "replace") for _, value in record.headers or () if value)
        if any(contains_pan(text) for text in texts):
            report.pans_found += 1
            report.pan_locations.append(f"{topic}[{record.partition}]@{record.offset}")
        payload = json.loads(record.value)
        source = payload["source"]
        if kind == "dead_letter":
            reason = payload["error_type"]
            report.dead_letter_reasons[reason] = report.dead_letter_reasons.get(reason, 0) + 1
        elif payload.get("late"):
            report.late += 1
        found.append(
            Outcome((source["partition"], source["offset"]), kind, record.key, record.partition, record.offset, payload)
        )
    return found


def verify(
    config: dict[str, Any],
    *,
    input_topic: str,
    scores_topic: str,
    dead_letter_topic: str,
    group_id: str | None = None,
) -> VerifyReport:
    """Check a run end to end; ``config`` holds kafka-python connection kwargs (bootstrap, security)."""
    report = VerifyReport()
    inputs: dict[Coordinate, bytes | None] = {}
    for record in read_topic(config, input_topic):
        inputs[(record.partition, record.offset)] = record.key
    report.inputs = len(inputs)

    scores = _outcomes(config, scores_topic, "score", report)
    letters = _outcomes(config, dead_letter_topic, "dead_letter", report)
    report.scores, report.dead_letters = len(scores), len(letters)

    seen: dict[Coordinate, int] = defaultdict(int)
    for outcome in (*scores, *letters):
        seen[outcome.coordinate] += 1
    report.lost = sorted(c for c in inputs if seen.get(c, 0) == 0)
    report.duplicates = sum(n - 1 for c, n in seen.items() if n > 1)
    report.duplicated_offsets = sum(1 for n in seen.values() if n > 1)

    # Per key, in each output topic's partition order: first publications must follow input order.
    for outcomes in (scores, letters):
        by_key: dict[bytes | None, list[Outcome]] = defaultdict(list)
        for outcome in sorted(outcomes, key=lambda o: (o.out_partition, o.out_offset)):
            by_key[outcome.key].append(outcome)
        for key, sequence in by_key.items():
            first_seen: set[Coordinate] = set()
            last: Outcome | None = None
            for outcome in sequence:
                if outcome.coordinate in first_seen:
                    continue
                first_seen.add(outcome.coordinate)
                if (
                    last is not None
                    and outcome.coordinate[0] == last.coordinate[0]
                    and outcome.coordinate[1] < last.coordinate[1]
                ):
                    report.order_violations.append(f"key {key!r}: {outcome.describe()} after {last.describe()}")
                last = outcome

    if group_id is not None:
        report.committed_behind = committed_behind(config, group_id, input_topic)
    return report


def outcome_counts(config: dict[str, Any], topics: list[str]) -> Counter[Coordinate]:
    """How many outcomes (scores and dead letters) each input coordinate has in ``topics``."""
    counts: Counter[Coordinate] = Counter()
    for topic in topics:
        for record in read_topic(config, topic):
            source = json.loads(record.value)["source"]
            counts[(source["partition"], source["offset"])] += 1
    return counts


def committed_behind(config: dict[str, Any], group_id: str, topic: str) -> dict[int, tuple[int | None, int]]:
    """Partitions with records past the group's committed offset: partition -> (committed, end).

    "End" is the last stable offset (read_committed). A committed offset short of it counts only when
    a readable record lies in between: transaction markers and the records of aborted transactions
    occupy offsets too, and a consumer that has processed every record need not have committed past
    the markers that follow the last one (an exactly-once worker commits inside the transaction that
    published its last outcome, which cannot cover that transaction's own marker).
    """
    admin = KafkaAdminClient(**config)
    consumer = KafkaConsumer(**config, group_id=None, enable_auto_commit=False, isolation_level="read_committed")
    try:
        committed = admin.list_group_offsets({group_id: None}).get(group_id, {})
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        ends = consumer.end_offsets(tps)
        behind: dict[int, tuple[int | None, int]] = {}
        for tp in tps:
            meta = committed.get(tp)
            offset = meta.offset if meta is not None and meta.offset >= 0 else None
            if (offset or 0) < ends[tp] and _records_between(consumer, tp, offset, ends[tp]):
                behind[tp.partition] = (offset, ends[tp])
        return behind
    finally:
        admin.close()
        consumer.close(autocommit=False)


def _records_between(consumer: KafkaConsumer, tp: TopicPartition, start: int | None, end: int) -> bool:
    """Whether a read_committed read of ``tp`` from ``start`` (None: the beginning) to ``end`` returns a record."""
    consumer.assign([tp])
    if start is None:
        consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, start)
    deadline = time.monotonic() + 30.0
    while consumer.position(tp) < end:
        if time.monotonic() > deadline:
            return True  # cannot tell: report it behind rather than hide a gap
        if consumer.poll(timeout_ms=200, max_records=1).get(tp):
            return True
    return False
