"""Commit watermarks: only contiguous completed offsets are committable, whatever the ack order."""

from __future__ import annotations

import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.structs import TopicPartition

from worker.offsets import OffsetTracker

TP = TopicPartition("transactions", 3)
TP2 = TopicPartition("transactions", 4)


def test_worked_example_from_the_docstring() -> None:
    tracker = OffsetTracker()
    epoch = 0
    for offset in range(10, 15):
        epoch = tracker.track(TP, offset)
    for offset in (10, 12, 13):
        assert tracker.complete(TP, offset, epoch)
    assert tracker.committable() == {TP: 11}
    tracker.mark_committed({TP: 11})
    assert tracker.committable() == {}
    tracker.complete(TP, 11, epoch)
    assert tracker.committable() == {TP: 14}
    tracker.complete(TP, 14, epoch)
    assert tracker.committable() == {TP: 15}
    assert tracker.pending() == 0


def test_gaps_in_offsets_are_fine() -> None:
    tracker = OffsetTracker()
    epoch = 0
    for offset in (5, 7, 10):  # transaction markers or compaction leave holes
        epoch = tracker.track(TP, offset)
    tracker.complete(TP, 7, epoch)
    assert tracker.committable() == {}
    tracker.complete(TP, 5, epoch)
    assert tracker.committable() == {TP: 8}
    assert tracker.replay_points() == {TP: 10}


def test_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    e = tracker.track(TP, 0)
    tracker.track(TP2, 0)
    tracker.complete(TP2, 0, e)
    assert tracker.committable() == {TP2: 1}
    assert tracker.pending_by_partition() == {TP: 1}


def test_reset_starts_a_new_epoch_and_ignores_stale_acks() -> None:
    tracker = OffsetTracker()
    old = tracker.track(TP, 0)
    new = tracker.reset()
    assert new == old + 1 and tracker.pending() == 0
    tracker.track(TP, 0)  # the same offset, replayed
    assert not tracker.complete(TP, 0, old)  # the abandoned attempt's ack must not count
    assert tracker.committable() == {}
    assert tracker.complete(TP, 0, new)
    assert tracker.committable() == {TP: 1}


def test_double_ack_and_unknown_offsets_are_ignored() -> None:
    tracker = OffsetTracker()
    e = tracker.track(TP, 0)
    assert tracker.complete(TP, 0, e)
    assert not tracker.complete(TP, 0, e)
    assert not tracker.complete(TP, 99, e)
    assert not tracker.complete(TP2, 0, e)
    assert tracker.pending() == 0


def test_out_of_order_consumption_is_a_bug() -> None:
    tracker = OffsetTracker()
    tracker.track(TP, 5)
    with pytest.raises(ValueError, match=r"transactions\[3\]@5"):
        tracker.track(TP, 5)


@given(st.lists(st.integers(min_value=1, max_value=3), min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_watermark_never_passes_an_unacknowledged_offset(gaps: list[int], rng: random.Random) -> None:
    tracker = OffsetTracker()
    offsets, offset, epoch = [], 0, 0
    for gap in gaps:
        offset += gap
        offsets.append(offset)
        epoch = tracker.track(TP, offset)
    order = offsets[:]
    rng.shuffle(order)
    acked: set[int] = set()
    for o in order:
        tracker.complete(TP, o, epoch)
        acked.add(o)
        mark = tracker.committable().get(TP)
        if mark is not None:
            assert all(x in acked for x in offsets if x < mark)
            assert mark - 1 in acked
    assert tracker.committable() == {TP: offsets[-1] + 1}


def test_wait_drained_returns_when_the_last_ack_arrives() -> None:
    tracker = OffsetTracker()
    e = tracker.track(TP, 0)
    assert not tracker.wait_drained(0.0)
    acker = threading.Thread(target=tracker.complete, args=(TP, 0, e))
    acker.start()
    assert tracker.wait_drained(5.0)
    acker.join()


def test_an_idle_partition_commits_the_consumer_position_past_trailing_markers() -> None:
    tracker = OffsetTracker()
    epoch = tracker.track(TP, 10)
    tracker.advance_idle(TP, 12)  # 10 is in flight: the position says nothing yet
    assert tracker.committable() == {}
    tracker.complete(TP, 10, epoch)
    assert tracker.committable() == {TP: 11}
    tracker.advance_idle(TP, 12)  # offset 11 is the transaction's commit marker
    assert tracker.committable() == {TP: 12}
    tracker.mark_committed({TP: 12})
    tracker.advance_idle(TP, 12)
    assert tracker.committable() == {}
    tracker.advance_idle(TP, 5)  # a position behind the watermark (a seek back) never moves it down
    assert tracker.committable() == {}


def test_a_partition_with_nothing_consumed_yet_commits_its_position() -> None:
    tracker = OffsetTracker()
    tracker.advance_idle(TP, 40)  # e.g. only an aborted transaction since the last commit
    assert tracker.committable() == {TP: 40}
