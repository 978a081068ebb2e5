"""The autoscaling signal ``riskstream_scaling_pressure``: how many workers' worth of work this one has.

    pressure = arrival_rate / capacity                  (keeping up with new events)
             + lag / (capacity * backlog_drain_s)       (working off the backlog in time)
    and at least 1 + miss_ratio while more than ``miss_tolerance`` of scores miss the budget

* ``arrival_rate`` = events consumed per second + the lag's growth per second, over the window;
* ``capacity`` = events per second this worker can score while meeting the budget: the largest
  batch whose estimated service time fits in half the budget, divided by that time;
* ``miss_ratio`` = budget misses / scores in the window.

Summed over all workers it is the number of workers needed, so a KEDA Prometheus trigger on
``sum(riskstream_scaling_pressure)`` with threshold 1 per replica scales the deployment (replicas
never above the partition count: extra workers would sit idle). Below 1 a worker has slack.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from worker.metrics import WorkerMetrics


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    consumed: float
    lag: float
    scored: float
    misses: float


def capacity_events_per_s(service_time: Callable[[int], float], budget_s: float, buckets: tuple[int, ...]) -> float:
    """Events/s at the largest batch that still fits in half the budget (0 if nothing is known)."""
    best = 0.0
    for size in buckets:
        seconds = service_time(size)
        if 0 < seconds <= budget_s / 2:
            best = max(best, size / seconds)
    return best


class ScalingSignal:
    def __init__(self, *, window_s: float = 30.0, backlog_drain_s: float = 60.0, miss_tolerance: float = 0.01) -> None:
        if window_s <= 0 or backlog_drain_s <= 0:
            raise ValueError("window_s and backlog_drain_s must be positive")
        self._window_s = window_s
        self._backlog_drain_s = backlog_drain_s
        self._miss_tolerance = miss_tolerance
        self._samples: deque[Sample] = deque()

    def observe(self, sample: Sample) -> None:
        self._samples.append(sample)
        while len(self._samples) > 2 and sample.at - self._samples[1].at >= self._window_s:
            self._samples.popleft()

    def pressure(self, capacity: float) -> float | None:
        """The signal, or None until the window holds two samples and the capacity is known."""
        if len(self._samples) < 2 or capacity <= 0:
            return None
        first, last = self._samples[0], self._samples[-1]
        elapsed = last.at - first.at
        if elapsed <= 0:
            return None
        arrival = max(0.0, (last.consumed - first.consumed + last.lag - first.lag) / elapsed)
        pressure = arrival / capacity + last.lag / (capacity * self._backlog_drain_s)
        scored = last.scored - first.scored
        if scored > 0:
            miss_ratio = (last.misses - first.misses) / scored
            if miss_ratio > self._miss_tolerance:
                pressure = max(pressure, 1.0 + miss_ratio)
        return pressure


class ScalingReporter:
    """Publishes ``riskstream_scaling_pressure`` from the worker's totals, its lag and its capacity.

    ``update`` is called by the worker's supervisor every few seconds; the capacity is re-estimated
    each time from the current service times and the buckets the memory cap allows.
    """

    def __init__(
        self,
        *,
        metrics: WorkerMetrics,
        lag: Callable[[], int],
        service_time: Callable[[int], float],
        buckets: Callable[[], tuple[int, ...]],
        latency_budget_s: float,
        signal: ScalingSignal | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._lag = lag
        self._service_time = service_time
        self._buckets = buckets
        self._budget_s = latency_budget_s
        self._signal = signal if signal is not None else ScalingSignal()
        self._clock = clock

    def update(self) -> float | None:
        """Take a sample and set the gauge; returns the pressure (None until it is known)."""
        totals = self._metrics.totals()
        self._signal.observe(
            Sample(
                at=self._clock(),
                consumed=totals.consumed,
                lag=float(self._lag()),
                scored=totals.scored,
                misses=totals.budget_misses,
            )
        )
        pressure = self._signal.pressure(capacity_events_per_s(self._service_time, self._budget_s, self._buckets()))
        if pressure is not None:
            self._metrics.scaling_pressure.set(round(pressure, 3))
        return pressure
