"""Admission control: hysteresis between high- and low-water marks, and memory headroom."""

from __future__ import annotations

import pytest

from worker.admission import AdmissionController


def controller() -> AdmissionController:
    return AdmissionController(high_water=100, low_water=50, headroom_bytes=1000)


def test_pauses_at_high_water_and_resumes_only_at_low_water() -> None:
    ac = controller()
    assert not ac.evaluate(in_flight=99, free_bytes=10_000, now=0.0).paused
    state = ac.evaluate(in_flight=100, free_bytes=10_000, now=1.0)
    assert state.paused and state.changed and state.reason == "in_flight"
    assert ac.evaluate(in_flight=51, free_bytes=10_000, now=2.0).paused  # between the marks: stay paused
    state = ac.evaluate(in_flight=50, free_bytes=10_000, now=3.5)
    assert not state.paused and state.changed
    assert ac.paused_seconds == pytest.approx(2.5)
    assert ac.pause_count == 1


def test_pauses_on_memory_pressure_until_headroom_is_back() -> None:
    ac = controller()
    state = ac.evaluate(in_flight=0, free_bytes=999, now=0.0)
    assert state.paused and state.reason == "memory"
    assert ac.evaluate(in_flight=0, free_bytes=999, now=1.0).paused
    assert not ac.evaluate(in_flight=0, free_bytes=1000, now=2.0).paused


def test_memory_pressure_keeps_it_paused_below_low_water() -> None:
    ac = controller()
    ac.evaluate(in_flight=100, free_bytes=None, now=0.0)
    state = ac.evaluate(in_flight=0, free_bytes=10, now=1.0)
    assert state.paused and state.reason == "memory"


def test_room_and_ongoing_pause_time() -> None:
    ac = controller()
    assert ac.room(30) == 70 and ac.room(150) == 0
    ac.evaluate(in_flight=100, free_bytes=None, now=10.0)
    assert ac.total_paused_seconds(12.0) == pytest.approx(2.0)


@pytest.mark.parametrize(("high", "low", "headroom"), [(0, 0, 0), (10, 10, 0), (10, -1, 0), (10, 5, -1)])
def test_invalid_marks_fail_at_construction(high: int, low: int, headroom: int) -> None:
    with pytest.raises(ValueError):
        AdmissionController(high_water=high, low_water=low, headroom_bytes=headroom)
