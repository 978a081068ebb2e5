"""The latency-budget batcher, driven by a fake clock (no sleeps, no Kafka, no torch)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from worker.batcher import BatchPolicy, LatencyBudgetBatcher, PublishLatency, ServiceTimeEstimator, bucket_for


@dataclass
class Item:
    event_time_s: float
    arrived_s: float
    late: bool = False
    scoreable: bool = True
    name: str = ""


def make(budget: float = 0.050, linger: float = 0.010, margin: float = 0.005, service: dict[int, float] | None = None):
    estimator = ServiceTimeEstimator(service if service is not None else {1: 0.002, 8: 0.004, 64: 0.010})
    return LatencyBudgetBatcher[Item](
        BatchPolicy(latency_budget_s=budget, max_linger_s=linger, safety_margin_s=margin), estimator
    )


def test_bucket_for() -> None:
    assert [bucket_for(n) for n in (0, 1, 2, 3, 4, 5, 64, 65)] == [1, 1, 2, 4, 4, 8, 64, 128]


def test_closes_when_the_cap_is_reached() -> None:
    batcher = make()
    for i in range(4):
        batcher.add(Item(event_time_s=100.0, arrived_s=100.0, name=str(i)))
    assert not batcher.should_close(100.0, cap=5, input_idle=False)
    batcher.add(Item(event_time_s=100.0, arrived_s=100.0))
    assert batcher.should_close(100.0, cap=5, input_idle=False)
    assert len(batcher.take(5)) == 5 and len(batcher) == 0


def test_closes_at_the_linger_limit_when_the_budget_is_far() -> None:
    batcher = make(budget=1.0, linger=0.010)
    batcher.add(Item(event_time_s=100.0, arrived_s=100.001))
    assert batcher.close_at(cap=64) == pytest.approx(100.011)
    assert not batcher.should_close(100.0109, cap=64, input_idle=False)
    assert batcher.should_close(100.0111, cap=64, input_idle=False)


def test_closes_early_enough_to_meet_the_budget_given_service_time() -> None:
    # The event is already 35 ms old when it arrives: 50 ms budget - 2 ms service - 5 ms margin
    # leaves 8 ms before it must close, which is earlier than the 10 ms linger.
    batcher = make(budget=0.050, linger=0.010, margin=0.005)
    batcher.add(Item(event_time_s=100.000, arrived_s=100.035))
    assert batcher.close_at(cap=64) == pytest.approx(100.043)
    # A bigger batch takes longer, so it must close earlier.
    for _ in range(7):
        batcher.add(Item(event_time_s=100.036, arrived_s=100.036))
    assert batcher.close_at(cap=64) == pytest.approx(100.041)
    assert batcher.should_close(100.041, cap=64, input_idle=False)


def test_publish_estimate_is_part_of_the_budget() -> None:
    publish = PublishLatency(alpha=1.0)
    batcher = LatencyBudgetBatcher[Item](
        BatchPolicy(latency_budget_s=0.050, max_linger_s=1.0, safety_margin_s=0.0),
        ServiceTimeEstimator({1: 0.002}),
        publish,
    )
    publish.observe(0.010)
    batcher.add(Item(event_time_s=100.0, arrived_s=100.0))
    assert batcher.close_at(cap=1) == pytest.approx(100.0 + 0.050 - 0.002 - 0.010)


def test_late_events_wait_for_a_full_batch_unless_input_is_idle() -> None:
    batcher = make()
    for _ in range(3):
        batcher.add(Item(event_time_s=10.0, arrived_s=100.0, late=True))
    assert batcher.close_at(cap=4) is None
    assert not batcher.should_close(1000.0, cap=4, input_idle=False)  # never on time, never on linger
    assert batcher.should_close(1000.0, cap=4, input_idle=True)
    batcher.add(Item(event_time_s=10.0, arrived_s=100.0, late=True))
    assert batcher.should_close(100.0, cap=4, input_idle=False)


def test_dead_letter_only_batches_close_at_once_and_ride_along_otherwise() -> None:
    batcher = make()
    batcher.add(Item(event_time_s=1.0, arrived_s=1.0, scoreable=False, name="poison"))
    assert batcher.should_close(1.0, cap=8, input_idle=False)
    batcher.add(Item(event_time_s=1.0, arrived_s=1.0, name="a"))
    batcher.add(Item(event_time_s=1.0, arrived_s=1.0, scoreable=False, name="poison2"))
    batcher.add(Item(event_time_s=1.0, arrived_s=1.0, name="b"))
    assert batcher.scoreable_count == 2
    taken = batcher.take(1)
    # Up to the cap of scoreable items, plus the dead-letter items in between, in arrival order.
    assert [i.name for i in taken] == ["poison", "a", "poison2"]
    assert [i.name for i in batcher.items()] == ["b"]


def test_take_preserves_arrival_order() -> None:
    batcher = make()
    for i in range(10):
        batcher.add(Item(event_time_s=1.0, arrived_s=1.0, name=str(i)))
    assert [i.name for i in batcher.take(4)] == ["0", "1", "2", "3"]
    assert [i.name for i in batcher.take(100)] == [str(i) for i in range(4, 10)]


def test_empty_batcher_never_closes() -> None:
    assert not make().should_close(1e9, cap=1, input_idle=True)


def test_invalid_parameters_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="latency_budget_s"):
        BatchPolicy(latency_budget_s=0, max_linger_s=0, safety_margin_s=0)
    with pytest.raises(ValueError, match="negative"):
        BatchPolicy(latency_budget_s=1, max_linger_s=-1, safety_margin_s=0)
    with pytest.raises(ValueError, match="alpha"):
        ServiceTimeEstimator(alpha=0)
    with pytest.raises(ValueError, match="cap"):
        make().should_close(0.0, cap=0, input_idle=True)


def test_service_time_estimator_learns_and_extrapolates() -> None:
    estimator = ServiceTimeEstimator({8: 0.004}, alpha=0.5)
    assert estimator.estimate(5) == pytest.approx(0.004)  # same bucket (8)
    assert estimator.estimate(32) == pytest.approx(0.016)  # 4x the nearest known bucket
    assert estimator.estimate(2) == pytest.approx(0.004)  # never extrapolated below the known one
    estimator.observe(8, 0.008)
    assert estimator.estimate(8) == pytest.approx(0.006)
    assert ServiceTimeEstimator().estimate(64) == 0.0


def test_publish_latency_is_a_smoothed_round_trip() -> None:
    publish = PublishLatency(alpha=0.5)
    assert publish.seconds == 0.0
    publish.observe(0.020)
    publish.observe(0.020)
    assert publish.seconds == pytest.approx(0.015)
    with pytest.raises(ValueError, match="alpha"):
        PublishLatency(alpha=0.0)
