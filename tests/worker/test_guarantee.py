"""Exactly-once publish steps against a fake transactional producer: no broker, no sleeps.

One step is one transaction: outcomes, then the consumed offsets with the pinned generation, then the
commit; the input offsets count as done only after it. A failed record aborts (first with the current
epoch, then by a new producer) and replays; a fenced producer stops the worker; a batch whose
generation is gone is never published.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kafka.errors as kafka_errors
import numpy as np
import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition

from tests.worker.fakes import publish_context
from worker import guarantee
from worker.errors import FencedError
from worker.guarantee import AtLeastOnce, ExactlyOnce, guarantee_for
from worker.offsets import OffsetTracker
from worker.publisher import Outgoing
from worker.records import ConsumedRecord, ScoredBatch
from worker.settings import load_settings

TP0, TP1 = TopicPartition("tx", 0), TopicPartition("tx", 1)


class _Future:
    def __init__(self, error: BaseException | None) -> None:
        self._error = error

    def get(self, timeout: float | None = None) -> None:
        if self._error is not None:
            raise self._error


class _Done:
    def wait(self, timeout_ms: int | None = None) -> bool:
        return True


class _Lost:
    """A transactional request kafka-python lost: its result never completes."""

    def wait(self, timeout_ms: int | None = None) -> bool:
        return False


class _Manager:
    def __init__(self, producer: FakeTransactionalProducer) -> None:
        self.producer_id_and_epoch = (7, 0)
        self._last_error: BaseException | None = None
        self._producer = producer
        self.aborts = 0
        self.partitions_added: list[TopicPartition] = []
        self.added_before_send: list[TopicPartition] = []

    def maybe_add_partition_to_transaction(self, tp: TopicPartition) -> None:
        self.partitions_added.append(tp)
        if not self._producer.sent:
            self.added_before_send.append(tp)

    def send_offsets_to_transaction(self, offsets: dict[TopicPartition, OffsetAndMetadata], metadata: Any) -> Any:
        self._producer.send_offsets_to_transaction(offsets, metadata)
        return _Lost() if self._producer.lose == "offsets" else _Done()

    def begin_commit(self) -> Any:
        self._producer.commit_transaction()
        return _Lost() if self._producer.lose == "commit" else _Done()

    def has_fatal_error(self) -> bool:
        return self._last_error is not None

    def begin_abort(self) -> _Done:
        self.aborts += 1
        return _Done()


class _Sender:
    def force_close(self) -> None:
        return None

    def wakeup(self) -> None:
        return None

    def join(self, timeout: float | None = None) -> None:
        return None


class FakeTransactionalProducer:
    """Records what a transactional producer is asked to do; fails the sends or the commit it is told to."""

    def __init__(
        self, *, fail_send_at: int | None = None, commit_error: BaseException | None = None, lose: str | None = None
    ) -> None:
        self.lose = lose  # "offsets" or "commit": kafka-python loses that request (its result never completes)
        self.calls: list[str] = []
        self.sent: list[bytes] = []
        self.offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        self.group_metadata: Any = None
        self._fail_send_at = fail_send_at
        self._commit_error = commit_error
        self._transaction_manager = _Manager(self)
        self._sender = _Sender()
        self.config: dict[str, Any] = {}

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send(self, topic: str, *, value: bytes, key: Any, headers: Any, partition: int | None) -> _Future:
        index = len(self.sent)
        self.sent.append(value)
        error = kafka_errors.KafkaTimeoutError("batch expired") if index == self._fail_send_at else None
        return _Future(error)

    def send_offsets_to_transaction(self, offsets: dict[TopicPartition, OffsetAndMetadata], metadata: Any) -> None:
        self.calls.append("offsets")
        self.offsets, self.group_metadata = offsets, metadata

    def commit_transaction(self) -> None:
        self.calls.append("commit")
        if self._commit_error is not None:
            raise self._commit_error

    def close(self, timeout: float | None = None) -> None:
        self.calls.append("close")


class _Writer:
    def write(self, batch: ScoredBatch, now: Any) -> list[Outgoing]:
        return [
            Outgoing("scores", r.tp.partition, b"k", f"{r.tp.partition}/{r.offset}".encode(), [], r, "approve", None)
            for r in batch.records
        ]


class Rig:
    def __init__(
        self,
        *producers: FakeTransactionalProducer,
        generation: Any = "gen-3",
        stalled: bool = True,
        rewind_pending: Callable[[], bool] = lambda: False,
    ) -> None:
        self.producers = list(producers)
        self.opened: list[FakeTransactionalProducer] = []
        self.rewinds: list[str] = []
        self.tracker = OffsetTracker()
        self.generation = generation
        self.publisher = ExactlyOnce(
            publish_context(
                producer_factory=self._open,
                writer=_Writer(),
                tracker=self.tracker,
                rewinds=self.rewinds,
                group_metadata=lambda epoch: self.generation if epoch == self.tracker.epoch else None,
                stalled=lambda: stalled,
                rewind_pending=rewind_pending,
            )
        )

    def _open(self) -> FakeTransactionalProducer:
        producer = self.producers.pop(0) if self.producers else FakeTransactionalProducer()
        self.opened.append(producer)
        return producer

    def step(self, offsets: list[tuple[TopicPartition, int]]) -> None:
        records = []
        for tp, offset in offsets:
            epoch = self.tracker.track(tp, offset)
            records.append(
                ConsumedRecord(
                    tp=tp, offset=offset, timestamp_ms=0, key=b"k", epoch=epoch, arrived_s=0.0, late=False, features=1.0
                )
            )
        scores = np.zeros(len(records), dtype=np.float32)
        self.publisher._publish(ScoredBatch(records, scores, batch_size=len(records), epoch=self.tracker.epoch))


def test_a_step_is_one_transaction_committing_outcomes_and_offsets_together() -> None:
    rig = Rig()
    rig.step([(TP0, 4), (TP0, 5), (TP1, 9)])
    producer = rig.opened[0]
    assert producer.calls == ["begin", "offsets", "commit"]  # the commit after every acknowledgement
    assert producer.offsets == {TP0: OffsetAndMetadata(6, "", -1), TP1: OffsetAndMetadata(10, "", -1)}
    assert producer.group_metadata == "gen-3"  # the generation that consumed them (KIP-447)
    assert rig.tracker.pending() == 0 and rig.tracker.committable() == {TP0: 6, TP1: 10}
    assert rig.rewinds == []


def test_every_partition_of_a_step_joins_the_transaction_before_its_first_send() -> None:
    rig = Rig()
    rig.step([(TP0, 4), (TP1, 9), (TP0, 5)])
    manager = rig.opened[0]._transaction_manager
    # Both output partitions (the writer places each outcome on its input's partition), each once,
    # before any record went out: the sender asks for them in one AddPartitionsToTxn request.
    assert manager.added_before_send == [TopicPartition("scores", 0), TopicPartition("scores", 1)]
    assert manager.partitions_added == manager.added_before_send


def test_the_transactional_retry_backoff_is_lowered_on_the_sender_only(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Producer:
        def __init__(self, **config: Any) -> None:
            self.config = config
            self._sender = type("Sender", (), {"config": {"retry_backoff_ms": config["retry_backoff_ms"]}})()
            self.initialised = False

        def init_transactions(self) -> None:
            self.initialised = True

    monkeypatch.setattr(guarantee, "KafkaProducer", _Producer)
    settings = load_settings(guarantee="exactly_once", worker_id="w-1")
    producer: Any = ExactlyOnce.open_producer(settings)
    assert producer._sender.config["retry_backoff_ms"] == guarantee._TXN_RETRY_BACKOFF_MS < 10
    assert producer.config["retry_backoff_ms"] == 10  # produce retries and metadata refreshes keep theirs
    assert producer.initialised


def test_a_failed_record_aborts_the_transaction_with_a_new_producer_and_replays() -> None:
    failing = FakeTransactionalProducer(fail_send_at=1)
    rig = Rig(failing)
    rig.step([(TP0, 4), (TP0, 5), (TP0, 6)])
    # The offsets joined the transaction while its records were in flight; it was never committed.
    assert failing.calls == ["begin", "offsets", "close"]  # then aborted by closing it
    assert failing._transaction_manager.aborts == 1  # aborted with the current epoch first
    assert len(rig.opened) == 2  # then a new producer (its init_transactions aborts the rest)
    assert rig.rewinds == ["transaction_aborted"]
    assert rig.tracker.pending() == 3 and rig.tracker.committable() == {}  # nothing counted as done


def test_a_step_of_an_aborted_epoch_is_never_published() -> None:
    rig = Rig(FakeTransactionalProducer(fail_send_at=0))
    rig.step([(TP0, 1)])
    stale_epoch = rig.tracker.epoch
    records = [
        ConsumedRecord(
            tp=TP0, offset=2, timestamp_ms=0, key=b"k", epoch=stale_epoch, arrived_s=0.0, late=False, features=1.0
        )
    ]
    rig.publisher._publish(ScoredBatch(records, np.zeros(1, dtype=np.float32), batch_size=1, epoch=stale_epoch))
    assert rig.opened[1].calls == []  # the replay of the epoch is under way; this batch is dropped


def test_a_batch_whose_generation_is_gone_is_never_published() -> None:
    rig = Rig(generation=None)
    rig.step([(TP0, 1)])
    assert rig.opened[0].calls == [] and rig.opened[0].sent == []


def test_a_fenced_producer_stops_a_worker_that_stood_still() -> None:
    fenced = FakeTransactionalProducer(commit_error=kafka_errors.ProducerFencedError("another instance"))
    rig = Rig(fenced, stalled=True)
    with pytest.raises(FencedError):
        rig.step([(TP0, 1)])
    assert rig.tracker.pending() == 1
    assert len(rig.opened) == 1, "a zombie starts no new producer: it would fence the instance that owns the id"


@pytest.mark.parametrize("error", [kafka_errors.ProducerFencedError, kafka_errors.InvalidProducerEpochError])
def test_a_fence_while_the_worker_kept_running_replaces_the_producer_and_replays(
    error: type[kafka_errors.KafkaError],
) -> None:
    # The broker was away longer than transaction_timeout_ms: the coordinator aborted the open
    # transaction and bumped the epoch. The worker was never frozen, so no other instance took its id.
    fenced = FakeTransactionalProducer(commit_error=error("epoch bumped by a timeout abort"))
    rig = Rig(fenced, stalled=False)
    rig.step([(TP0, 1)])
    # The first rewind asked for wins: from the broker's committed offsets (the last outcome is unknown).
    assert len(rig.opened) == 2 and rig.rewinds[0] == "producer_fenced"
    assert rig.tracker.pending() == 1, "the aborted record is replayed, not settled"
    assert "commit" not in rig.opened[1].calls


def test_after_a_fence_nothing_is_published_until_the_poll_loop_has_rewound() -> None:
    # The fresh-clone CI of 2026-12-01 (3,710 duplicates of 30,000): the broker was away past the
    # transaction timeout, so the worker was also evicted and reassigned (a new epoch, consumed again
    # from the committed offset) while its transaction hung. The fence then asked for a rewind from
    # the broker's committed offsets; before the poll loop had read them, the new producer published
    # and committed the new epoch's batches; the rewind then sought back to offsets read before that
    # commit, and the replay repeated committed outcomes.
    rewound: list[bool] = []
    fenced = FakeTransactionalProducer(commit_error=kafka_errors.ProducerFencedError("timeout abort"))
    rig = Rig(fenced, stalled=False, rewind_pending=lambda: bool(rig.rewinds) and not rewound)
    rig.step([(TP0, 1036), (TP0, 1037)])
    assert rig.rewinds[0] == "producer_fenced"
    rig.tracker.reset()  # evicted and reassigned meanwhile: a new epoch, consumed again from 1036
    rig.step([(TP0, 1036), (TP0, 1037), (TP0, 1038)])
    replacement = rig.opened[1]
    assert replacement.calls == [] and replacement.sent == [], "nothing is published while the rewind is pending"
    assert rig.tracker.pending() == 3, "held records stay in flight: the rewind replays them"
    rewound.append(True)
    rig.tracker.reset()  # the poll loop's rewind: sought back to the committed offsets, a new epoch
    rig.step([(TP0, 1036)])
    assert replacement.calls == ["begin", "offsets", "commit"]
    assert replacement.offsets == {TP0: OffsetAndMetadata(1037, "", -1)}


@pytest.mark.parametrize("lost", ["offsets", "commit"])
def test_a_transactional_request_kafka_python_lost_fails_the_step_instead_of_hanging(
    lost: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen in CI (kafka-python 3.0.12): a request whose coordinator connection failed inside the
    # sender's await_ready is never re-enqueued, and KafkaProducer's own wait for it never returns.
    monkeypatch.setattr(guarantee, "_TXN_REQUEST_TIMEOUT_S", 0.0)
    rig = Rig(FakeTransactionalProducer(lose=lost), stalled=False)
    rig.step([(TP0, 1)])
    assert len(rig.opened) == 2, "the step failed: aborted with a new producer"
    assert rig.tracker.pending() == 1 and rig.tracker.committable() == {}
    # A lost EndTxn may still have committed: the replay starts from the broker's committed offsets.
    assert rig.rewinds[0] == ("producer_fenced" if lost == "commit" else "transaction_aborted")


@pytest.mark.timeout(60)
def test_a_lost_transactional_request_is_waited_for_no_longer_than_the_transaction_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Past transaction_timeout_ms the coordinator may abort the transaction and fence this producer:
    # waiting longer only delays the replay (a 20 s broker outage took 54.5 s to recover from).
    monkeypatch.setattr(guarantee, "_TXN_REQUEST_TIMEOUT_S", 3600.0)
    lost = FakeTransactionalProducer(lose="offsets")
    lost.config = {"transaction_timeout_ms": 1}
    rig = Rig(lost, stalled=False)
    rig.step([(TP0, 1)])  # without the shorter bound this waits an hour (and the timeout fails the test)
    assert len(rig.opened) == 2 and rig.rewinds == ["transaction_aborted"]

    monkeypatch.setattr(guarantee, "_TXN_REQUEST_TIMEOUT_S", 30.0)
    assert rig.publisher._transactional_request_bound_s() == 30.0  # the fake replacement has no config
    for configured_ms, bound_s in ((15_000, 15.0), (60_000, 30.0)):
        rig.opened[-1].config = {"transaction_timeout_ms": configured_ms}
        assert rig.publisher._transactional_request_bound_s() == bound_s


def test_a_fatal_producer_error_ends_the_wait_for_a_transactional_request() -> None:
    producer = FakeTransactionalProducer(lose="offsets")
    producer._transaction_manager._last_error = kafka_errors.InvalidProducerEpochError("epoch bumped")
    rig = Rig(producer, stalled=False)
    rig.step([(TP0, 1)])
    assert len(rig.opened) == 2 and rig.rewinds[0] == "producer_fenced"
    assert rig.tracker.pending() == 1


def test_the_guarantee_is_chosen_once_from_the_settings() -> None:
    assert guarantee_for(load_settings()) is AtLeastOnce
    assert guarantee_for(load_settings(guarantee="exactly_once")) is ExactlyOnce
    assert AtLeastOnce.source_commits and not ExactlyOnce.source_commits
