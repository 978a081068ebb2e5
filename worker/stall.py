"""Noticing that this process stopped running: SIGSTOP, a frozen VM or container, a long pause.

Exactly-once needs to tell two reasons for a fenced producer apart. If *this process* was frozen,
another instance may own its transactional id by now (a zombie): it must stop and publish nothing.
If it kept running and the broker was away instead, the transaction coordinator aborted a
transaction that outlived ``transaction_timeout_ms`` and bumped the epoch; then the way on is the one
Kafka Streams takes (EOS v2): a new producer and a replay from the last commit — zombie commits are
fenced by the consumer-group generation (KIP-447), not by the producer epoch.

A daemon thread ticks every ``tick_s``; a tick later than ``threshold_s`` is a stall.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class StallWatch:
    def __init__(
        self, threshold_s: float, *, tick_s: float = 0.25, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold_s <= tick_s:
            raise ValueError("the stall threshold must be longer than the tick")
        self.threshold_s = threshold_s
        self._tick_s = tick_s
        self._clock = clock
        self._last_tick = clock()
        self._last_stall_end = -math.inf
        self.longest_stall_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="riskstream-stall-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def tick(self) -> None:
        """One step of the watch (the thread calls it every ``tick_s``)."""
        now = self._clock()
        gap = now - self._last_tick
        if gap > self.threshold_s:
            self._last_stall_end = now
            self.longest_stall_s = max(self.longest_stall_s, gap)
        self._last_tick = now

    def stalled_within(self, window_s: float) -> bool:
        """Whether the process stood still for longer than the threshold in the last ``window_s``
        seconds — including right now, before the watch's thread has run again after a freeze."""
        now = self._clock()
        return now - self._last_tick > self.threshold_s or now - self._last_stall_end <= window_s

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            self.tick()
