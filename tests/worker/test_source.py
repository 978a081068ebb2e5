"""The poll loop's rules, against a spec'd fake consumer: no broker, no sleeps, a fake clock.

Tracking before hand-off, pause and resume at the water marks, rewind to the first unacknowledged
offset, drain-and-abandon on revoke, no commits in exactly-once mode, and undecodable batches.
"""

from __future__ import annotations

import json
import queue
from typing import Any
from unittest.mock import MagicMock

import kafka.errors as kafka_errors
import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas import ErrorKind
from tests.schemas.test_decode import valid_event
from tests.worker.fakes import FakeEngine
from worker.admission import AdmissionController
from worker.errors import UndecodableInputError
from worker.kafka_clients import UndecodableBatchError
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.records import ConsumedRecord
from worker.source import Source

TOPIC = "transactions"
TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)
VALID = json.dumps(valid_event()).encode()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_consumer(assigned: set[TopicPartition]) -> MagicMock:
    """A ``KafkaConsumer`` stand-in (spec'd, so a misspelt call fails) that keeps pause state."""
    consumer = MagicMock(spec=KafkaConsumer)
    paused: set[TopicPartition] = set()
    consumer.assignment.return_value = set(assigned)
    consumer.paused.side_effect = lambda: set(paused)
    consumer.pause.side_effect = lambda *tps: paused.update(tps)
    consumer.resume.side_effect = lambda *tps: paused.difference_update(tps)
    consumer.poll.return_value = {}
    consumer.highwater.return_value = None
    consumer.position.return_value = None
    consumer.group_metadata.return_value = "generation-7"
    return consumer


def record(tp: TopicPartition, offset: int, value: bytes = VALID, headers: Any = None) -> ConsumerRecord:
    return ConsumerRecord(
        TOPIC, tp.partition, -1, offset, 999_990, 0, b"acct", value, headers or [], None, 4, len(value), -1
    )


class Rig:
    def __init__(
        self, *, commits_offsets: bool = True, high_water: int = 100, undecodable: str = "dead_letter"
    ) -> None:
        self.consumer = fake_consumer({TP0, TP1})
        self.tracker = OffsetTracker()
        self.outbox: queue.SimpleQueue[ConsumedRecord] = queue.SimpleQueue()
        self.clock = Clock()
        self.source = Source(
            consumer=self.consumer,
            engine=FakeEngine(),
            topic=TOPIC,
            tracker=self.tracker,
            outbox=self.outbox,
            admission=AdmissionController(high_water=high_water, low_water=high_water // 2, headroom_bytes=0),
            metrics=WorkerMetrics(),
            free_device_bytes=lambda: None,
            latency_budget_s=0.05,
            max_event_bytes=65_536,
            max_poll_records=1000,
            commits_offsets=commits_offsets,
            commit_interval_s=1.0,
            rebalance_drain_timeout_s=0.0,
            passthrough_headers=("x-request-id",),
            undecodable_batch=undecodable,
            clock=lambda: 1000.0,
            monotonic=self.clock,
        )

    def poll_once(self, records: dict[TopicPartition, list[ConsumerRecord]] | None = None) -> list[ConsumedRecord]:
        self.consumer.poll.return_value = records or {}
        self.source.iteration()
        handed = []
        while not self.outbox.empty():
            handed.append(self.outbox.get_nowait())
        return handed

    def complete(self, handed: list[ConsumedRecord]) -> None:
        for item in handed:
            self.tracker.complete(item.tp, item.offset, item.epoch)


def test_every_record_is_tracked_before_it_is_handed_on_and_bad_ones_carry_their_error() -> None:
    rig = Rig()
    headers = [("traceparent", b"00-ab-cd-01"), ("x-request-id", b"r-1"), ("internal", b"no")]
    handed = rig.poll_once({TP0: [record(TP0, 10, headers=headers), record(TP0, 11, b"{broken")]})
    assert [(item.offset, item.scoreable) for item in handed] == [(10, True), (11, False)]
    assert handed[1].error_kind is ErrorKind.MALFORMED_JSON and handed[1].value == b"{broken"
    assert handed[0].headers == (("traceparent", b"00-ab-cd-01"), ("x-request-id", b"r-1"))
    assert rig.tracker.pending() == 2  # in flight from the moment it was taken


def test_admission_pauses_at_the_high_water_mark_and_resumes_at_the_low_one() -> None:
    rig = Rig(high_water=4)
    handed = rig.poll_once({TP0: [record(TP0, o) for o in range(4)]})
    rig.poll_once()
    assert rig.consumer.paused() == {TP0, TP1}  # still polled (the member stays in the group), but paused
    assert rig.consumer.poll.call_args.kwargs["max_records"] == 1  # no room: never more than the mark allows
    rig.complete(handed[:1])
    rig.poll_once()
    assert rig.consumer.paused() == {TP0, TP1}, "3 in flight is above the low-water mark of 2"
    rig.complete(handed[1:3])
    rig.poll_once()
    assert rig.consumer.paused() == set()


def test_a_rewind_commits_what_is_done_and_replays_from_the_first_unacknowledged_offset() -> None:
    rig = Rig()
    handed = rig.poll_once({TP0: [record(TP0, o) for o in (5, 6, 7)], TP1: [record(TP1, 20)]})
    rig.complete([handed[0], handed[3]])  # 5 and 20 acknowledged, 6 failed, 7 was in flight behind it
    epoch = rig.tracker.epoch
    rig.source.request_rewind("publish_failed")
    rig.poll_once()
    rig.consumer.commit.assert_called_once_with({TP0: OffsetAndMetadata(6, "", -1), TP1: OffsetAndMetadata(21, "", -1)})
    rig.consumer.seek.assert_called_once_with(TP0, 6)
    assert rig.tracker.epoch == epoch + 1 and rig.tracker.pending() == 0  # the old epoch's work is abandoned
    assert rig.consumer.paused() == {TP0, TP1}, "the replay waits out a short backoff"
    rig.clock.now += 0.2
    rig.poll_once()
    assert rig.consumer.paused() == set()


def test_a_rewind_is_pending_until_the_poll_loop_has_sought_back_and_begun_a_new_epoch() -> None:
    # The publisher publishes nothing while a rewind is pending (see the exactly-once fence test in
    # test_guarantee.py): the flag must stay up until the seek and the new epoch, not just until the
    # poll loop has taken the request.
    rig = Rig(commits_offsets=False)
    rig.poll_once({TP0: [record(TP0, 1036)]})
    epoch = rig.tracker.epoch
    assert not rig.source.rewind_pending()
    rig.source.request_rewind("transaction_aborted")
    rig.source.request_rewind("producer_fenced")  # a fence wins: replay from the broker's committed offsets
    assert rig.source.rewind_pending()
    rig.consumer.committed.side_effect = lambda tp: {TP0: 1036, TP1: 7}[tp]
    rig.poll_once()
    assert not rig.source.rewind_pending() and rig.tracker.epoch == epoch + 1
    assert sorted(c.args for c in rig.consumer.seek.call_args_list) == [(TP0, 1036), (TP1, 7)]


def test_a_rewind_that_fails_stays_pending_and_is_tried_again() -> None:
    rig = Rig(commits_offsets=False)
    rig.source.request_rewind("producer_fenced")
    rig.consumer.committed.side_effect = kafka_errors.KafkaTimeoutError("offset fetch")
    with pytest.raises(kafka_errors.KafkaTimeoutError):
        rig.poll_once()
    assert rig.source.rewind_pending()
    rig.consumer.committed.side_effect = lambda tp: 5
    rig.poll_once()
    assert not rig.source.rewind_pending()
    assert {c.args for c in rig.consumer.seek.call_args_list} == {(TP0, 5), (TP1, 5)}


def test_on_revoke_the_done_prefix_is_committed_and_the_rest_abandoned_and_sought_back() -> None:
    rig = Rig()
    handed = rig.poll_once({TP0: [record(TP0, o) for o in (1, 2, 3)], TP1: [record(TP1, 8)]})
    rig.complete(handed[:1])  # offset 1 done; 2, 3 and 8 never finish (drain timeout 0)
    offsets = rig.source.on_revoked({TP0, TP1})
    assert offsets == {TP0: OffsetAndMetadata(2, "", -1)}
    assert rig.tracker.pending() == 0
    rig.source.on_assigned({TP0})  # this worker keeps partition 0 only
    rig.consumer.seek.assert_called_once_with(TP0, 2)
    assert rig.source.assigned == frozenset({TP0})


def test_exactly_once_never_commits_from_the_poll_loop_and_pins_the_generation() -> None:
    rig = Rig(commits_offsets=False)
    rig.source.on_assigned({TP0, TP1})
    handed = rig.poll_once({TP0: [record(TP0, 3)]})
    rig.complete(handed)
    rig.clock.now += 5
    rig.poll_once()
    assert rig.source.commit() is True
    rig.consumer.commit.assert_not_called()
    rig.consumer.commit_async.assert_not_called()
    epoch = rig.tracker.epoch
    assert rig.source.group_metadata_for(epoch) == "generation-7"
    assert rig.source.group_metadata_for(epoch - 1) is None  # never commit with another epoch's generation
    rig.source.on_lost({TP0, TP1})
    assert rig.source.group_metadata_for(rig.tracker.epoch) is None


def _undecodable(rig: Rig, first: int, last: int) -> None:
    part = MagicMock()
    part.topic_partition = TP1
    part.next_fetch_offset = first
    rig.consumer._fetcher = MagicMock()
    rig.consumer._fetcher._next_partition_records = part
    rig.consumer.poll.side_effect = [UndecodableBatchError(first, last, RuntimeError("zstd missing")), {}]


def test_an_undecodable_batch_becomes_one_dead_letter_per_offset_and_is_skipped() -> None:
    rig = Rig()
    _undecodable(rig, 40, 43)
    rig.source.iteration()
    handed = [rig.outbox.get_nowait() for _ in range(4)]
    assert [(item.tp, item.offset, item.error_kind) for item in handed] == [
        (TP1, offset, ErrorKind.UNDECODABLE_BATCH) for offset in range(40, 44)
    ]
    assert all("zstd missing" in (item.error or "") and item.value is None for item in handed)
    rig.consumer.seek.assert_called_once_with(TP1, 44)
    assert rig.tracker.pending() == 4


def test_an_undecodable_batch_stops_the_loop_when_told_to() -> None:
    rig = Rig(undecodable="stop")
    _undecodable(rig, 40, 43)
    with pytest.raises(UndecodableInputError, match=r"transactions\[1\]@40-43"):
        rig.source.iteration()
    assert rig.outbox.empty()
