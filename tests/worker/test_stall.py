"""The stall watch: a process that stood still (SIGSTOP, a frozen VM) is told from one that ran.

Exactly-once stops on a fenced producer only after a stall (a zombie); a fence while the process ran
(the coordinator timed out a transaction during a broker outage) is recovered from. No sleeps: the
clock is a fake.
"""

from __future__ import annotations

import pytest

from worker.stall import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_process_that_kept_ticking_has_not_stalled() -> None:
    clock = Clock()
    watch = StallWatch(threshold_s=3.0, clock=clock)
    for _ in range(200):
        clock.now += 0.3
        watch.tick()
    assert not watch.stalled_within(30.0)
    assert watch.longest_stall_s == 0.0


def test_a_freeze_counts_before_and_after_the_watch_runs_again() -> None:
    clock = Clock()
    watch = StallWatch(threshold_s=3.0, clock=clock)
    clock.now += 10.0  # SIGSTOP for 10 s; the fence can arrive before the watch's thread wakes
    assert watch.stalled_within(30.0)
    watch.tick()
    assert watch.stalled_within(30.0)
    assert watch.longest_stall_s == pytest.approx(10.0)
    for _ in range(100):  # 30 s of normal running later, the freeze is forgotten
        clock.now += 0.31
        watch.tick()
    assert not watch.stalled_within(30.0)


def test_a_threshold_shorter_than_the_tick_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than the tick"):
        StallWatch(threshold_s=0.1)
