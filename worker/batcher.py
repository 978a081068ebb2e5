"""The latency-budget micro-batcher: pure logic, driven by an injected clock.

A batch closes when any of these holds (checked by :meth:`LatencyBudgetBatcher.should_close`):

1. it holds ``cap`` scoreable items (the cap is the smaller of the configured maximum and what
   free device memory allows);
2. its oldest on-time event would miss the budget if we waited longer: the close time is the
   event's timestamp + budget - estimated service time for the current size - publish estimate -
   safety margin;
3. it has lingered ``max_linger`` since its oldest item arrived (throughput comes from batches
   forming while the model is busy; lingering longer than that only adds latency);
4. it holds only dead-letter items (nothing to score, nothing to wait for).

Events already past the budget when polled (a backlog after a restart, say) are flagged late and
do not trigger rule 2 or 3: they are scored in full batches for throughput, or as soon as the input
runs dry, never dropped.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from inference.buckets import bucket_for


class Batchable(Protocol):
    @property
    def event_time_s(self) -> float:
        """Event timestamp (Kafka CreateTime), seconds since the epoch."""
        ...

    @property
    def arrived_s(self) -> float:
        """When the worker polled it, on the same clock."""
        ...

    @property
    def late(self) -> bool:
        """Already past the budget when polled."""
        ...

    @property
    def scoreable(self) -> bool:
        """False for records that only need a dead letter."""
        ...


T = TypeVar("T", bound=Batchable)


class ServiceTimeEstimator:
    """Online estimate of inference seconds per batch size, one EWMA per power-of-two bucket.

    Seeded from the scorer's warm-up; every scored batch updates its bucket. Buckets never
    observed are extrapolated linearly from the nearest observed one, which errs on the slow side
    for larger buckets (per-item cost falls with batch size).
    """

    def __init__(self, initial: dict[int, float] | None = None, *, alpha: float = 0.2) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._seconds: dict[int, float] = {}
        for size, seconds in (initial or {}).items():
            if seconds < 0:
                raise ValueError("service times cannot be negative")
            self._seconds[bucket_for(size)] = seconds

    def observe(self, size: int, seconds: float) -> None:
        bucket = bucket_for(size)
        previous = self._seconds.get(bucket)
        self._seconds[bucket] = seconds if previous is None else previous + self._alpha * (seconds - previous)

    def estimate(self, size: int) -> float:
        bucket = bucket_for(size)
        if bucket in self._seconds:
            return self._seconds[bucket]
        if not self._seconds:
            return 0.0
        nearest = min(self._seconds, key=lambda known: abs(math.log2(known) - math.log2(bucket)))
        return self._seconds[nearest] * max(1.0, bucket / nearest)

    def snapshot(self) -> dict[int, float]:
        return dict(sorted(self._seconds.items()))


class PublishLatency:
    """Smoothed seconds a publish step takes, first send to last acknowledgement (an EWMA).

    The publisher observes each step; the batcher leaves room for the estimate in the budget. One
    float, written by the publisher thread and read by the scoring thread.
    """

    def __init__(self, *, alpha: float = 0.1) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        self.seconds += self._alpha * (seconds - self.seconds)


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    latency_budget_s: float
    max_linger_s: float
    safety_margin_s: float

    def __post_init__(self) -> None:
        if self.latency_budget_s <= 0:
            raise ValueError("latency_budget_s must be positive")
        if self.max_linger_s < 0 or self.safety_margin_s < 0:
            raise ValueError("max_linger_s and safety_margin_s cannot be negative")


class LatencyBudgetBatcher(Generic[T]):
    """Accumulates items in arrival order and decides when the current batch closes."""

    def __init__(
        self, policy: BatchPolicy, service_time: ServiceTimeEstimator, publish_latency: PublishLatency | None = None
    ) -> None:
        self._policy = policy
        self._service_time = service_time
        self._publish_latency = publish_latency if publish_latency is not None else PublishLatency()
        self._items: deque[T] = deque()
        self._scoreable = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def scoreable_count(self) -> int:
        return self._scoreable

    def add(self, item: T) -> None:
        self._items.append(item)
        if item.scoreable:
            self._scoreable += 1

    def _oldest_scoreable(self) -> T | None:
        return next((item for item in self._items if item.scoreable), None)

    def close_at(self, cap: int) -> float | None:
        """The clock time at which the current batch must close, or None if no rule sets one."""
        oldest = self._oldest_scoreable()
        if oldest is None or oldest.late:
            return None
        size = min(self._scoreable, cap)
        finish = self._service_time.estimate(size) + self._publish_latency.seconds + self._policy.safety_margin_s
        budget_close = oldest.event_time_s + self._policy.latency_budget_s - finish
        linger_close = oldest.arrived_s + self._policy.max_linger_s
        return min(budget_close, linger_close)

    def should_close(self, now: float, cap: int, *, input_idle: bool) -> bool:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        if not self._items:
            return False
        if self._scoreable == 0 or self._scoreable >= cap:
            return True
        oldest = self._oldest_scoreable()
        if oldest is not None and oldest.late:
            # Backlog: fill the batch, unless nothing more is waiting to join it.
            return input_idle
        deadline = self.close_at(cap)
        return deadline is not None and now >= deadline

    def take(self, cap: int) -> list[T]:
        """Remove and return the next batch: up to ``cap`` scoreable items, in arrival order,
        plus the dead-letter items among them (they cost nothing to carry)."""
        batch: list[T] = []
        taken = 0
        while self._items and (taken < cap or not self._items[0].scoreable):
            item = self._items.popleft()
            batch.append(item)
            if item.scoreable:
                taken += 1
        self._scoreable -= taken
        return batch

    def items(self) -> list[T]:
        return list(self._items)
