"""A deterministic stand-in for the model, for tests of the stream mechanics only.

The acceptance tests run the real DeepSeek-architecture scorer; these fakes keep the unit-level
pipeline tests fast and independent of training.
"""

from __future__ import annotations

import hashlib
import queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas import Decision, TransactionEvent
from worker.batcher import PublishLatency
from worker.engine import LoadedEngine
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.publisher import PublishContext


@dataclass(frozen=True)
class FakeInfo:
    name: str = "fake"
    version: str = "0"
    quantization: str = "none"
    device: str = "cpu"


@dataclass(frozen=True)
class FakeThresholds:
    review: float = 0.5
    decline: float = 0.9

    def decide(self, score: float) -> Decision:
        if score >= self.decline:
            return Decision.DECLINE
        return Decision.REVIEW if score >= self.review else Decision.APPROVE


@dataclass
class FakeResult:
    scores: npt.NDArray[np.float32]
    failures: Mapping[int, str] = field(default_factory=dict)


class FakeEngine:
    """Score = a hash of the transaction id in [0, 1); optional per-batch delay."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.info = FakeInfo()
        self.thresholds = FakeThresholds()
        self.buckets = (1, 2, 4, 8, 16, 32, 64, 128, 256)
        self.delay_s = delay_s
        self.batches: list[int] = []

    history_spec = None

    def featurize(self, event: TransactionEvent, history: object = None) -> float:
        digest = hashlib.blake2b(event.transaction_id.encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big") / 2**32

    def score(self, batch: Sequence[float]) -> FakeResult:
        if self.delay_s:
            time.sleep(self.delay_s)
        self.batches.append(len(batch))
        return FakeResult(np.asarray(batch, dtype=np.float32))


def fake_loaded(engine: FakeEngine | None = None, free_bytes: int = 8 << 30) -> LoadedEngine:
    return LoadedEngine(
        engine=engine or FakeEngine(),
        sample_memory=lambda: (free_bytes, 16 << 30),
        cap_for_free_bytes=lambda free: 256,
        service_times={1: 0.001, 256: 0.01},
    )


def publish_context(
    *,
    producer_factory: Callable[[], Any],
    writer: Any,
    tracker: OffsetTracker,
    rewinds: list[str],
    group_metadata: Callable[[int], Any | None] = lambda epoch: None,
    stalled: Callable[[], bool] = lambda: True,
    rewind_pending: Callable[[], bool] = lambda: False,
) -> PublishContext:
    """A publisher's context around fakes: a fresh outbox and metrics, a 50 ms budget."""
    return PublishContext(
        producer_factory=producer_factory,
        writer=writer,
        outbox=queue.SimpleQueue(),
        tracker=tracker,
        metrics=WorkerMetrics(),
        latency_budget_s=0.05,
        request_rewind=rewinds.append,
        rewind_pending=rewind_pending,
        publish_latency=PublishLatency(),
        group_metadata=group_metadata,
        stalled=stalled,
    )
