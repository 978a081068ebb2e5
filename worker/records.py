"""What flows between the pipeline stages."""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from kafka.structs import TopicPartition

from schemas import ErrorKind, TransactionEvent
from worker.state import StateUpdate


@dataclass(slots=True)
class ConsumedRecord:
    """One Kafka record after decode and featurize, on its way to a score or a dead letter."""

    tp: TopicPartition
    offset: int
    timestamp_ms: int
    key: bytes | None
    epoch: int
    arrived_s: float
    late: bool
    headers: tuple[tuple[str, bytes], ...] = ()
    """The input's headers that pass through to its outcome (W3C trace context and configured ones)."""
    event: TransactionEvent | None = None
    features: Any = None
    value: bytes | None = None
    """Kept only for records that become dead letters (their redacted payload)."""
    error_kind: ErrorKind | None = None
    error: str | None = None
    state_update: StateUpdate | None = None
    """The account's state after this event, for the changelog (None: no state kept, or already counted)."""

    @property
    def event_time_s(self) -> float:
        return self.timestamp_ms / 1000.0

    @property
    def scoreable(self) -> bool:
        return self.features is not None

    def where(self) -> str:
        return f"{self.tp.topic}[{self.tp.partition}]@{self.offset}"


@dataclass(slots=True)
class ScoredBatch:
    """A closed batch after inference: ``scores[i]`` belongs to ``records[i]`` (NaN for a record that
    was not scored: a dead letter, or an index in ``failures``)."""

    records: list[ConsumedRecord]
    scores: npt.NDArray[np.float32]
    failures: dict[int, str] = field(default_factory=dict)
    """Index into ``records`` -> why that record could not be scored."""
    batch_size: int = 0
    wait_s: float = 0.0
    inference_s: float = 0.0
    epoch: int = 0


Outbox = queue.SimpleQueue[ScoredBatch | None]
"""The scoring stage's scored batches for the publisher; None only wakes the publisher."""
