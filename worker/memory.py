"""Device memory as the worker sees it: a rate-limited probe and the batch cap derived from it."""

from __future__ import annotations

import time
from collections.abc import Callable

from worker.engine import MemorySampler
from worker.metrics import WorkerMetrics


class MemoryWatch:
    def __init__(
        self,
        *,
        sample: MemorySampler,
        interval_s: float,
        cap_for_free_bytes: Callable[[int], int],
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sample = sample
        self._interval_s = interval_s
        self._cap_for = cap_for_free_bytes
        self._metrics = metrics
        self._clock = clock
        self._next_sample = 0.0
        self._free: int | None = None
        self._cap = max(1, cap_for_free_bytes(1 << 62))

    def free_bytes(self) -> int | None:
        """Free device bytes, sampled at most once per interval (cheap to call often)."""
        now = self._clock()
        if now >= self._next_sample:
            free, total = self._sample()
            self._free = free
            self._cap = max(1, self._cap_for(free))
            self._metrics.device_free.set(free)
            self._metrics.device_total.set(total)
            self._metrics.batch_cap.set(self._cap)
            self._next_sample = now + self._interval_s
        return self._free

    def batch_cap(self) -> int:
        return self._cap


class PressureWindow:
    """Fault injection: a sampler that reports no free memory during a time window."""

    def __init__(
        self, inner: MemorySampler, *, start_s: float, duration_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._start = clock() + start_s
        self._end = self._start + duration_s
        self._clock = clock

    def __call__(self) -> tuple[int, int]:
        free, total = self._inner()
        now = self._clock()
        return (0, total) if self._start <= now < self._end else (free, total)
