"""Admission control: when to stop taking records from Kafka, and when to take them again.

Consumption pauses when in-flight events (consumed, not yet published) reach the high-water mark
or free device memory falls below the headroom; it resumes only when both are back under the
low-water mark and above the headroom. The gap between the marks stops the worker from flapping.
While paused the poll loop keeps calling ``poll()``, so the member stays in its group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PauseReason = Literal["in_flight", "memory"]


@dataclass(frozen=True, slots=True)
class AdmissionState:
    paused: bool
    reason: PauseReason | None
    changed: bool


class AdmissionController:
    def __init__(self, *, high_water: int, low_water: int, headroom_bytes: int) -> None:
        if high_water < 1:
            raise ValueError("high_water must be at least 1")
        if not 0 <= low_water < high_water:
            raise ValueError("low_water must be in [0, high_water)")
        if headroom_bytes < 0:
            raise ValueError("headroom_bytes cannot be negative")
        self.high_water = high_water
        self.low_water = low_water
        self.headroom_bytes = headroom_bytes
        self.paused = False
        self.reason: PauseReason | None = None
        self.paused_seconds = 0.0
        self._paused_since: float | None = None
        self.pause_count = 0

    def evaluate(self, *, in_flight: int, free_bytes: int | None, now: float) -> AdmissionState:
        """Decide whether consumption is paused given the current load; ``now`` is a monotonic clock."""
        short_of_memory = free_bytes is not None and free_bytes < self.headroom_bytes
        changed = False
        if not self.paused:
            if in_flight >= self.high_water or short_of_memory:
                self.paused, changed = True, True
                self.reason = "memory" if short_of_memory else "in_flight"
                self._paused_since = now
                self.pause_count += 1
        elif in_flight <= self.low_water and not short_of_memory:
            self.paused, changed = False, True
            self.reason = None
            if self._paused_since is not None:
                self.paused_seconds += now - self._paused_since
            self._paused_since = None
        elif short_of_memory:
            self.reason = "memory"
        return AdmissionState(self.paused, self.reason, changed)

    def room(self, in_flight: int) -> int:
        """How many more records may be taken now without crossing the high-water mark."""
        return max(0, self.high_water - in_flight)

    def total_paused_seconds(self, now: float) -> float:
        ongoing = now - self._paused_since if self._paused_since is not None else 0.0
        return self.paused_seconds + ongoing
