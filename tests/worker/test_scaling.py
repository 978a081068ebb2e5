"""The autoscaling signal: arrival vs capacity, backlog, and budget misses."""

from __future__ import annotations

import pytest

from worker.scaling import Sample, ScalingSignal, capacity_events_per_s


def test_capacity_uses_the_largest_batch_within_half_the_budget() -> None:
    times = {1: 0.002, 2: 0.003, 4: 0.004, 8: 0.006, 16: 0.010, 32: 0.030}
    # 16 events in 10 ms fits in 25 ms (half of 50): 1,600/s; 32 in 30 ms does not fit.
    assert capacity_events_per_s(times.__getitem__, 0.050, tuple(times)) == pytest.approx(1600)
    assert capacity_events_per_s(lambda n: 0.0, 0.050, (1, 2)) == 0.0


def test_keeping_up_without_backlog_is_below_one() -> None:
    signal = ScalingSignal(window_s=30)
    signal.observe(Sample(at=0, consumed=0, lag=0, scored=0, misses=0))
    signal.observe(Sample(at=10, consumed=5000, lag=0, scored=5000, misses=0))
    assert signal.pressure(capacity=1000) == pytest.approx(0.5)


def test_growing_lag_counts_as_arrivals_and_backlog() -> None:
    signal = ScalingSignal(window_s=30, backlog_drain_s=60)
    signal.observe(Sample(at=0, consumed=0, lag=0, scored=0, misses=0))
    signal.observe(Sample(at=10, consumed=10_000, lag=6_000, scored=10_000, misses=0))
    # arrivals 1,600/s over capacity 1,000/s, plus 6,000 lag to drain in 60 s at 1,000/s.
    assert signal.pressure(capacity=1000) == pytest.approx(1.6 + 0.1)


def test_budget_misses_above_tolerance_ask_for_help() -> None:
    signal = ScalingSignal(window_s=30, miss_tolerance=0.01)
    signal.observe(Sample(at=0, consumed=0, lag=0, scored=0, misses=0))
    signal.observe(Sample(at=10, consumed=1000, lag=0, scored=1000, misses=50))
    assert signal.pressure(capacity=1000) == pytest.approx(1.05)


def test_window_slides_and_needs_two_samples() -> None:
    signal = ScalingSignal(window_s=10)
    assert signal.pressure(capacity=100) is None
    signal.observe(Sample(at=0, consumed=0, lag=0, scored=0, misses=0))
    assert signal.pressure(capacity=100) is None
    for t in range(1, 40):
        signal.observe(Sample(at=t, consumed=t * 50, lag=0, scored=t * 50, misses=0))
    assert signal.pressure(capacity=100) == pytest.approx(0.5)
    assert signal.pressure(capacity=0) is None


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError):
        ScalingSignal(window_s=0)
