"""At-least-once publish steps: after a failed send, nothing queued behind it may reach the broker.

A fake producer stands in for kafka-python's: it delivers in send order, and fails the records
it is told to fail. What is checked is the publisher's side of per-key order: the records that
land, per input partition, never include one that came after a record that failed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

import kafka.errors as kafka_errors
import numpy as np
import pytest
from kafka.structs import TopicPartition

from schemas import Decision, RiskScore, TransactionEvent, decode
from schemas.redaction import contains_pan
from tests.schemas.test_decode import valid_event
from tests.worker.fakes import publish_context
from worker.guarantee import AtLeastOnce
from worker.offsets import OffsetTracker
from worker.publisher import OutcomeWriter, Outgoing
from worker.records import ConsumedRecord, ScoredBatch

TP = TopicPartition("tx", 0)


class FakeFuture:
    def __init__(self, producer: FakeProducer, index: int) -> None:
        self._producer = producer
        self.index = index
        self.is_done = False
        self.exception: BaseException | None = None
        self._errbacks: list[Callable[[BaseException], None]] = []
        self._callbacks: list[Callable[[Any], None]] = []

    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def add_errback(self, fn: Callable[[BaseException], None]) -> FakeFuture:
        if self.failed():
            fn(self.exception)  # type: ignore[arg-type]
        elif not self.is_done:
            self._errbacks.append(fn)
        return self

    def add_both(self, fn: Callable[[Any], None]) -> FakeFuture:
        if self.is_done:
            fn(self.exception)
        else:
            self._callbacks.append(fn)
            self._errbacks.append(fn)
        return self

    def succeed(self) -> None:
        self.is_done = True
        for fn in self._callbacks:
            fn(None)

    def fail(self, exc: BaseException) -> None:
        self.is_done, self.exception = True, exc
        for fn in self._errbacks:
            fn(exc)

    def get(self, timeout: float | None = None) -> Any:
        self._producer.run_sender()
        if not self.is_done:
            raise kafka_errors.KafkaTimeoutError("no answer")
        if self.exception is not None:
            raise self.exception
        return None


class FakeSender:
    def __init__(self) -> None:
        self.forced = False

    def force_close(self) -> None:
        self.forced = True

    def join(self, timeout: float | None = None) -> None:
        return None


class FakeProducer:
    """Sends in order when a future is awaited; ``fail_at_send`` fails a send before it is queued
    (kafka-python's metadata path), ``fail_in_flight`` fails it when the broker answers."""

    def __init__(self, delivered: list[int], *, fail_at_send: set[int], fail_in_flight: set[int]) -> None:
        self._sender = FakeSender()
        self.delivered = delivered
        self.fail_at_send = fail_at_send
        self.fail_in_flight = fail_in_flight
        self.queued: list[tuple[int, FakeFuture]] = []
        self.sends = 0
        self.closed = False
        self.answers = True

    def send(
        self, topic: str, *, value: bytes, key: bytes | None, headers: Any, partition: int | None = None
    ) -> FakeFuture:
        offset = int(value)
        future = FakeFuture(self, offset)
        self.sends += 1
        if offset in self.fail_at_send:
            self.fail_at_send.discard(offset)
            future.fail(kafka_errors.TopicAuthorizationFailedError(topic))
            return future
        self.queued.append((offset, future))
        return future

    def run_sender(self) -> None:
        while self.queued and self.answers:
            offset, future = self.queued.pop(0)
            if self._sender.forced:
                future.fail(kafka_errors.KafkaError("producer force-closed"))
            elif offset in self.fail_in_flight:
                self.fail_in_flight.discard(offset)
                future.fail(kafka_errors.KafkaTimeoutError("expired"))
            else:
                self.delivered.append(offset)
                future.succeed()

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


class OffsetWriter:
    """One score per record whose value is just the input offset."""

    def write(self, batch: ScoredBatch, now: datetime) -> list[Outgoing]:
        return [Outgoing("scores", None, b"k", str(r.offset).encode(), [], r, "approve", None) for r in batch.records]


class Harness:
    def __init__(self, *, fail_at_send: Collection[int] = (), fail_in_flight: Collection[int] = ()) -> None:
        self.delivered: list[int] = []
        self.producers: list[FakeProducer] = []
        self.rewinds: list[str] = []
        self.tracker = OffsetTracker()
        self._fail_at_send = set(fail_at_send)
        self._fail_in_flight = set(fail_in_flight)
        self.publisher = AtLeastOnce(
            publish_context(
                producer_factory=self._new_producer, writer=OffsetWriter(), tracker=self.tracker, rewinds=self.rewinds
            )
        )

    def _new_producer(self) -> Any:
        producer = FakeProducer(self.delivered, fail_at_send=self._fail_at_send, fail_in_flight=self._fail_in_flight)
        self.producers.append(producer)
        return producer

    def publish(self, offsets: range) -> None:
        """One publish step, then every step counted (as the broker's acknowledgements wake it)."""
        self.send(offsets)
        self.publisher._settle(wait=True)

    def send(self, offsets: range) -> None:
        """One publish step, its acknowledgements not yet in."""
        records = []
        for offset in offsets:
            epoch = self.tracker.track(TP, offset)
            records.append(
                ConsumedRecord(
                    tp=TP, offset=offset, timestamp_ms=0, key=b"k", epoch=epoch, arrived_s=0.0, late=False, features=1.0
                )
            )
        scores = np.zeros(len(records), dtype=np.float32)
        self.publisher._publish(ScoredBatch(records, scores, batch_size=len(records), epoch=self.tracker.epoch))

    def broker_answers(self) -> None:
        """The broker answers everything sent so far (in send order)."""
        self.producers[-1].run_sender()

    def replay(self, offsets: range) -> None:
        """What the source does on a rewind: a new epoch, the uncommitted offsets consumed again."""
        self.tracker.reset()
        self.publish(offsets)


@pytest.mark.parametrize("failure", ["at_send", "in_flight"])
def test_nothing_after_a_failed_record_is_delivered_and_the_replay_restores_order(failure: str) -> None:
    h = Harness(fail_at_send={5}) if failure == "at_send" else Harness(fail_in_flight={5})
    h.publish(range(10))

    assert h.delivered == [0, 1, 2, 3, 4], "only records sent before the failed one may land"
    assert h.rewinds == ["publish_failed"]
    assert h.tracker.committable() == {TP: 5}, "the first five are done, the rest replays"
    if failure == "at_send":
        assert h.producers[0].sends == 6, "sending stops at the record whose send failed"

    h.replay(range(5, 10))
    assert h.delivered == list(range(10)), "the replay continues in input order"
    assert len(h.producers) == 2 and h.producers[0].closed, "the failed producer is aborted and replaced"
    assert h.producers[0]._sender.forced
    assert h.tracker.committable() == {TP: 10}


def test_steps_are_sent_before_the_previous_steps_acknowledgements_are_in() -> None:
    h = Harness()
    h.send(range(3))
    h.send(range(3, 6))
    assert h.producers[0].sends == 6 and h.delivered == [], "the second step did not wait for the first's acks"
    assert h.tracker.pending() == 6, "nothing counts as done before it is acknowledged"
    h.broker_answers()
    assert h.tracker.pending() == 6, "acknowledgements are counted by the publisher thread, when woken"
    wakes = 0
    while not h.publisher._outbox.empty():
        assert h.publisher._outbox.get_nowait() is None
        wakes += 1
    assert wakes == 2, "each step's last acknowledgement wakes the publisher once"
    h.publisher._idle()
    assert h.tracker.committable() == {TP: 6} and h.tracker.pending() == 0


def test_a_failure_in_an_earlier_step_keeps_every_later_step_off_the_broker() -> None:
    # Step two was sent while step one was in flight; step one's record 3 then fails for good.
    h = Harness(fail_in_flight={3})
    h.send(range(3))
    h.send(range(3, 6))
    h.send(range(6, 9))
    h.publisher._settle(wait=True)
    assert h.delivered == [0, 1, 2], "nothing sent after the failed record lands, whichever step it was in"
    assert h.rewinds == ["publish_failed"], "one rewind for the whole failure"
    assert h.tracker.committable() == {TP: 3}
    h.replay(range(3, 9))
    assert h.delivered == list(range(9)), "the replay continues in input order"
    assert len(h.producers) == 2 and h.producers[0]._sender.forced


def test_a_send_that_fails_at_once_stops_later_steps_until_the_earlier_ones_are_counted() -> None:
    h = Harness(fail_at_send={4})
    h.send(range(3))  # in flight
    h.send(range(3, 6))  # record 4 fails at send: 5 is never sent
    assert h.producers[0].sends == 5
    h.send(range(6, 8))  # the epoch is stale: dropped, and the earlier steps were counted first
    assert h.producers[0].sends == 5 and len(h.producers) == 1
    assert h.delivered == [0, 1, 2, 3] and h.tracker.committable() == {TP: 4}
    h.replay(range(4, 8))
    assert h.delivered == list(range(8)) and len(h.producers) == 2


def test_a_step_unanswered_past_its_deadline_fails_and_replays(monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness()
    h.send(range(2))
    h.publisher._idle()
    assert h.tracker.pending() == 2 and h.rewinds == [], "before its deadline an unanswered step just waits"
    clock = time.monotonic() + 31.0
    monkeypatch.setattr(time, "monotonic", lambda: clock)
    h.producers[0].answers = False  # the broker never answers: get() times out
    h.publisher._idle()
    assert h.rewinds == ["publish_failed"] and h.tracker.committable() == {}
    assert len(h.publisher._in_flight) == 0


def test_the_steps_in_flight_are_bounded() -> None:
    h = Harness()
    for start in range(0, 10, 2):
        h.send(range(start, start + 2))
    # Four steps may wait for their acknowledgements; the fifth waited for the oldest first.
    assert len(h.publisher._in_flight) <= 4
    assert h.tracker.pending() < 10
    h.publisher._settle(wait=True)
    assert h.tracker.committable() == {TP: 10}


def test_a_step_without_failures_keeps_its_producer() -> None:
    h = Harness()
    h.publish(range(3))
    h.publish(range(3, 6))
    assert h.delivered == list(range(6))
    assert len(h.producers) == 1 and not h.producers[0]._sender.forced
    assert h.rewinds == []


class _Identity:
    name, version, quantization, device = "m", "1", "int8", "cpu"


class _Thresholds:
    def decide(self, score: float) -> Decision:
        return Decision.REVIEW if score > 0.5 else Decision.APPROVE


class _Engine:
    info = _Identity()
    thresholds = _Thresholds()


def test_a_card_number_used_as_an_id_is_masked_in_the_score() -> None:
    event = decode(
        json.dumps(
            {**valid_event(), "transaction_id": "4111111111111111", "account_id": "acct:5555555555554444"}
        ).encode()
    )
    assert isinstance(event, TransactionEvent)
    record = ConsumedRecord(
        tp=TopicPartition("transactions", 0),
        offset=7,
        timestamp_ms=1_700_000_000_000,
        key=b"k",
        epoch=0,
        arrived_s=0.0,
        late=False,
        event=event,
        features=object(),
    )
    writer = OutcomeWriter(engine=_Engine(), scores_topic="s", dead_letter_topic="d", worker_id="w-1")  # type: ignore[arg-type]
    (out,) = writer.write(ScoredBatch(records=[record], scores=np.array([0.7], dtype=np.float32)), datetime.now(UTC))
    score = RiskScore.model_validate_json(out.value)
    assert (score.transaction_id, score.account_id) == ("411111******1111", "acct:555555******4444")
    assert not contains_pan(out.value.decode())
