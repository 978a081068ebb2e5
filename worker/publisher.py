"""The publisher: scores and dead letters to Kafka, and what counts as "done" for each guarantee.

* At-least-once: every record is sent with a callback; only the broker's acknowledgement marks
  its input offset done in the :class:`~worker.offsets.OffsetTracker` (the poll loop commits the
  contiguous done watermark). A failed send asks the poll loop to *rewind*: uncommitted work is
  replayed from the first unacknowledged offset, so nothing is ever committed past it.
* Exactly-once: each step is one Kafka transaction: begin, send the scores and dead letters of
  one or more batches, add the consumed offsets with the consumer's group metadata (so the broker
  fences a stale group member, KIP-447), commit. An abortable error aborts and rewinds; a fenced
  producer (another instance owns our transactional id) stops the worker.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import kafka.errors as kafka_errors
import structlog
from kafka import KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas import DeadLetter, ErrorKind, ModelRef, RiskScore, SourceRef, build_dead_letter, mask_identifier
from worker.engine import ScoringEngine
from worker.errors import FencedError
from worker.kafka_clients import abort_producer, halt_on_failure
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.records import ConsumedRecord, ScoredBatch

log = structlog.get_logger("riskstream.publisher")

CONTENT_TYPE = ("content-type", b"application/json")
_POLL_S = 0.05
_MAX_RECORDS_PER_STEP = 4096  # per publish step (a transaction in exactly-once mode)
_ACK_TIMEOUT_S = 30.0
_ABORT_PROBE_TIMEOUT_MS = 10_000
_FENCED = (kafka_errors.ProducerFencedError, kafka_errors.InvalidProducerEpochError)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish, and the input record it settles."""

    topic: str
    partition: int | None
    """The input's partition number when the output topic is co-partitioned with the input, else None (key hash)."""
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    source: ConsumedRecord
    decision: str | None  # None for a dead letter
    reason: str | None  # the dead letter's error type


class OutcomeWriter:
    """Turns a scored batch into wire records: a RiskScore or a DeadLetter per input record.

    Placement: an output topic with as many partitions as the input takes each result on its input's
    partition number, so results co-partition with their inputs (and keep per-key order) whatever
    partitioner the upstream producer used: librdkafka's default hashes keys with CRC32, Java's and
    kafka-python's with murmur2, so "same key" does not mean "same partition number" across clients.
    Any other output topic is placed by key hash (the preflight warns about it).
    """

    def __init__(
        self,
        *,
        engine: ScoringEngine,
        scores_topic: str,
        dead_letter_topic: str,
        worker_id: str,
        co_partitioned: dict[str, int] | None = None,
    ) -> None:
        """``co_partitioned``: output topic -> its partition count, for the topics placed by input partition."""
        info = engine.info
        self._model = ModelRef(name=info.name, version=info.version, quantization=info.quantization, device=info.device)
        self._thresholds = engine.thresholds
        self._scores_topic = scores_topic
        self._dead_letter_topic = dead_letter_topic
        self._worker_id = worker_id
        self._co_partitioned = dict(co_partitioned or {})
        self._score_headers = [CONTENT_TYPE, ("riskstream-schema", b"risk-score.v1")]

    def _partition(self, topic: str, record: ConsumedRecord) -> int | None:
        count = self._co_partitioned.get(topic)
        # An input partition added after start-up has no counterpart: key hashing is all that is left.
        return record.tp.partition if count is not None and record.tp.partition < count else None

    def write(self, batch: ScoredBatch, now: datetime) -> list[Outgoing]:
        out: list[Outgoing] = []
        for index, record in enumerate(batch.records):
            if record.scoreable and index not in batch.failures:
                out.append(self._score(record, float(batch.scores[index]), batch.batch_size, now))
            elif record.scoreable:
                reason = batch.failures[index]
                kind = ErrorKind.OUT_OF_MEMORY if reason.startswith("out_of_memory") else ErrorKind.SCORING_FAILED
                out.append(self._dead_letter(record, kind, reason, now))
            else:
                out.append(
                    self._dead_letter(record, record.error_kind or ErrorKind.SCHEMA_INVALID, record.error or "", now)
                )
        return out

    def _score(self, record: ConsumedRecord, score: float, batch_size: int, now: datetime) -> Outgoing:
        event = record.event
        assert event is not None  # scoreable records carry their event
        decision = self._thresholds.decide(score)
        message = RiskScore(
            # A card number used as an id is masked (BIN + last four); other ids come back unchanged.
            transaction_id=mask_identifier(event.transaction_id),
            account_id=mask_identifier(event.account_id),
            # Rounded: six decimals is finer than any threshold, and long digit runs in floats would
            # trip PAN scanners downstream.
            score=round(min(1.0, max(0.0, score)), 6),
            decision=decision,
            model=self._model,
            event_time=event.event_time,
            scored_time=now,
            latency_ms=round(max(0.0, now.timestamp() * 1000.0 - record.timestamp_ms), 3),
            batch_size=max(1, batch_size),
            late=record.late,
            worker_id=self._worker_id,
            source=SourceRef(topic=record.tp.topic, partition=record.tp.partition, offset=record.offset),
        )
        headers = [*self._score_headers, *record.headers]
        topic = self._scores_topic
        value = message.model_dump_json().encode()
        key = _masked_key(record.key)
        return Outgoing(topic, self._partition(topic, record), key, value, headers, record, decision.value, None)

    def _dead_letter(self, record: ConsumedRecord, kind: ErrorKind, error: str, now: datetime) -> Outgoing:
        letter: DeadLetter = build_dead_letter(
            topic=record.tp.topic,
            partition=record.tp.partition,
            offset=record.offset,
            timestamp=datetime.fromtimestamp(record.timestamp_ms / 1000, UTC),
            key=record.key,
            value=record.value,
            kind=kind,
            error=error,
            worker_id=self._worker_id,
            failed_time=now,
        )
        headers = [
            CONTENT_TYPE,
            ("riskstream-schema", b"dead-letter.v1"),
            ("riskstream-error-type", kind.value.encode()),
            ("riskstream-source", f"{record.tp.topic}/{record.tp.partition}/{record.offset}".encode()),
            *record.headers,
        ]
        # The dead letter keeps the input's key and placement, so that per-key order follows the input.
        topic = self._dead_letter_topic
        value = letter.model_dump_json().encode()
        key = _masked_key(record.key)
        return Outgoing(topic, self._partition(topic, record), key, value, headers, record, None, kind.value)


def _masked_key(key: bytes | None) -> bytes | None:
    """The input's key as the outputs carry it: a card number used as the key is masked (BIN + last four).

    Masking keeps the length and the BIN and last four, and placement follows the input's partition
    number (see ``OutcomeWriter``), so per-key order holds; only a reader joining on the raw key sees
    the masked form.
    """
    if key is None:
        return None
    text = key.decode("utf-8", "replace")
    masked = mask_identifier(text)
    return key if masked == text else masked.encode()


class _PublisherBase:
    def __init__(
        self,
        *,
        producer_factory: Callable[[], KafkaProducer],
        writer: OutcomeWriter,
        outbox: queue.SimpleQueue[ScoredBatch],
        tracker: OffsetTracker,
        metrics: WorkerMetrics,
        latency_budget_s: float,
        request_rewind: Callable[[str], None],
        on_dropped: Callable[[int], None],
        on_publish_latency: Callable[[float], None],
    ) -> None:
        self._producer_factory = producer_factory
        self._producer = producer_factory()
        self._writer = writer
        self._outbox = outbox
        self._tracker = tracker
        self._metrics = metrics
        self._budget_s = latency_budget_s
        self._request_rewind = request_rewind
        self._on_dropped = on_dropped
        self._on_publish_latency = on_publish_latency
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="riskstream-publisher", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def close(self, timeout_s: float) -> None:
        """Flush and close the producer (after :meth:`stop` and the thread has ended)."""
        try:
            self._producer.close(timeout=timeout_s)
        except Exception as exc:  # best effort: unsent records are uncommitted and will be replayed
            log.warning("producer close failed", error=type(exc).__name__)

    def _fatal_error(self) -> BaseException | None:
        """The error that put the producer in kafka-python's fatal state, if it is in it.

        A fatally failed producer fails every later send (kafka-python reports them as plain
        KafkaErrors); like the Java client, the only way on is a new producer.
        """
        manager = getattr(self._producer, "_transaction_manager", None)
        if manager is not None and manager.has_fatal_error():
            error = getattr(manager, "_last_error", None)
            return error if isinstance(error, BaseException) else kafka_errors.KafkaError("fatal producer error")
        return None

    def _replace_producer(self, cause: BaseException) -> None:
        """Abort the producer (nothing still queued in it is sent) and start a new one."""
        log.warning("replacing the producer", cause=type(cause).__name__)
        try:
            abort_producer(self._producer)
        except Exception as exc:  # it is broken anyway
            log.debug("closing the failed producer", error=type(exc).__name__)
        self._producer = self._producer_factory()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    batch = self._outbox.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                self._publish(batch)
        except BaseException as exc:  # surfaced by the worker's supervisor
            self.failure = exc
            if not isinstance(exc, FencedError):
                log.exception("publisher failed")

    def _publish(self, batch: ScoredBatch) -> None:
        raise NotImplementedError

    def _gather(self, first: ScoredBatch) -> list[ScoredBatch]:
        """``first`` and whatever else is already scored, up to one step's worth."""
        batches, records = [first], len(first.records)
        while records < _MAX_RECORDS_PER_STEP:
            try:
                more = self._outbox.get_nowait()
            except queue.Empty:
                break
            batches.append(more)
            records += len(more.records)
        return batches

    def _settled(self, item: Outgoing, epoch: int, now: float) -> None:
        """The input record of ``item`` is done: count it once, in the epoch it belongs to."""
        if not self._tracker.complete(item.source.tp, item.source.offset, epoch):
            return
        latency = max(0.0, now - item.source.event_time_s)
        if item.decision is not None:
            self._metrics.scored.labels(item.decision).inc()
            self._metrics.latency.observe(latency)
            if latency > self._budget_s:
                self._metrics.budget_misses.inc()
        else:
            self._metrics.dead_letters.labels(item.reason or "unknown").inc()


class AtLeastOncePublisher(_PublisherBase):
    """Publishes in steps: everything scored so far is sent, then every acknowledgement awaited.

    Waiting for a step's acknowledgements before sending the next step is what keeps per-key
    order through failures: if a record fails, nothing published after it can already be on the
    broker when its replay starts. The scoring stage keeps working meanwhile, so the wait costs
    one broker round trip per step, not per batch.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stale_below = 0  # epochs below this had a failed send; their replay is under way
        self._needs_new_producer: BaseException | None = None  # why the current producer must go

    def _publish(self, batch: ScoredBatch) -> None:
        batches = self._gather(batch)
        epoch = self._tracker.epoch
        live = [b for b in batches if b.epoch == epoch and b.epoch >= self._stale_below]
        dropped = sum(len(b.records) for b in batches if b not in live)
        if dropped:
            self._on_dropped(dropped)
        if not live:
            return
        cause = self._needs_new_producer or self._fatal_error()
        if cause is not None:
            self._replace_producer(cause)
            self._needs_new_producer = None
        halt = halt_on_failure(self._producer)
        sent_at = time.time()
        sent: list[tuple[Outgoing, Any]] = []
        failure: BaseException | None = None
        for item in (item for b in live for item in self._writer.write(b, datetime.now(UTC))):
            try:
                future = self._producer.send(
                    item.topic, value=item.value, key=item.key, headers=item.headers, partition=item.partition
                )
            except kafka_errors.KafkaError as exc:
                failure = exc
            else:
                # kafka-python hands back an already failed future when the topic's metadata cannot
                # be had (not authorized, for one) instead of raising. Sending on past it would let
                # a later record of the same key through once the topic is writable again.
                if future.is_done and future.failed():
                    failure = future.exception
                else:
                    future.add_errback(halt)
                    sent.append((item, future))
            if failure is not None:
                self._failed(failure, item, epoch)
                break
        deadline = time.monotonic() + _ACK_TIMEOUT_S
        for item, future in sent:
            try:
                future.get(timeout=max(0.001, deadline - time.monotonic()))
            except kafka_errors.KafkaError as exc:
                if failure is None:  # records of one batch share one exception: report the first only
                    failure = exc
                    self._failed(exc, item, epoch)
                continue
            self._settled(item, epoch, time.time())
        if failure is not None:
            # Whatever is still queued in this producer was sent after the failed record: it must
            # never be delivered. The next step starts on a fresh producer.
            self._needs_new_producer = failure
        elif sent:
            elapsed = time.time() - sent_at
            self._metrics.publish.observe(elapsed)
            self._on_publish_latency(elapsed)

    def _failed(self, exc: BaseException, item: Outgoing | None, epoch: int) -> None:
        self._stale_below = epoch + 1
        log.warning("publish failed; replaying from the first unacknowledged record", error=type(exc).__name__,
                    where=item.source.where() if item else None, topic=item.topic if item else None)  # fmt: skip
        self._request_rewind("publish_failed")


class TransactionalPublisher(_PublisherBase):
    def __init__(self, *, group_metadata: Callable[[int], Any | None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._group_metadata = group_metadata
        self._stale_below = 0  # epochs below this belong to an aborted transaction

    def _publish(self, batch: ScoredBatch) -> None:
        batches = self._gather(batch)
        epoch = self._tracker.epoch
        metadata = self._group_metadata(epoch)
        live = [b for b in batches if b.epoch == epoch and b.epoch >= self._stale_below and metadata is not None]
        dropped = sum(len(b.records) for b in batches if b not in live)
        if dropped:
            self._on_dropped(dropped)
        if live:
            self._transact(live, epoch, metadata)

    def _transact(self, batches: list[ScoredBatch], epoch: int, group_metadata: Any) -> None:
        now = datetime.now(UTC)
        items = [item for b in batches for item in self._writer.write(b, now)]
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for item in items:
            tp = item.source.tp
            next_offset = item.source.offset + 1
            if tp not in offsets or offsets[tp].offset < next_offset:
                offsets[tp] = OffsetAndMetadata(next_offset, "", -1)
        started = time.perf_counter()
        try:
            self._producer.begin_transaction()
            identity = self._producer_identity()
            futures = [
                self._producer.send(
                    item.topic, value=item.value, key=item.key, headers=item.headers, partition=item.partition
                )
                for item in items
            ]
            # Every record must be acknowledged before its input offsets join the transaction: the
            # commit must never cover an offset whose outcome is not written. (kafka-python can
            # recover a failed batch by bumping the producer epoch mid-transaction and then commit
            # without it; the checks below turn that into an abort.)
            deadline = time.monotonic() + _ACK_TIMEOUT_S
            for future in futures:
                future.get(timeout=max(0.001, deadline - time.monotonic()))
            if self._producer_identity() != identity:
                raise kafka_errors.KafkaError("producer epoch changed inside the transaction")
            self._producer.send_offsets_to_transaction(offsets, group_metadata)
            self._producer.commit_transaction()
        except kafka_errors.KafkaError as exc:
            self._metrics.transaction_aborts.inc()
            self._stale_below = epoch + 1
            if not self._recover_if_fatal(exc):
                self._abort(exc)
            self._request_rewind("transaction_aborted")
            return
        elapsed = time.perf_counter() - started
        self._metrics.commit_latency.observe(elapsed)
        self._metrics.publish.observe(elapsed)
        self._metrics.commits.inc()
        self._on_publish_latency(elapsed)
        settled_at = time.time()
        for item in items:
            self._settled(item, epoch, settled_at)

    def _recover_if_fatal(self, exc: BaseException) -> bool:
        """Deal with errors no abort can recover from; True if the producer was replaced.

        Fenced (another instance owns our transactional id): stop, publishing nothing more. Any
        other fatal state: a new producer, whose ``init_transactions`` aborts whatever the old one
        left open; the caller then replays from the last commit.
        """
        fatal = self._fatal_error()
        cause = fatal if fatal is not None else exc
        if isinstance(cause, _FENCED) or isinstance(exc, _FENCED):
            self._fenced(cause, exc)
        if fatal is not None:
            self._replace_producer(fatal)
            return True
        return False

    def _abort_with_current_epoch(self) -> None:
        """Ask the coordinator to abort with this producer's epoch before starting a new producer.

        A zombie (frozen, its transactional id since taken over) learns here that it is fenced. A
        new producer's ``init_transactions`` would instead bump the epoch and fence the instance
        that owns the id now. Bounded: kafka-python's ``abort_transaction()`` waits forever.
        """
        manager = getattr(self._producer, "_transaction_manager", None)
        sender = getattr(self._producer, "_sender", None)
        if manager is None or sender is None:
            return
        try:
            result = manager.begin_abort()
            sender.wakeup()
            result.wait(timeout_ms=_ABORT_PROBE_TIMEOUT_MS)
        except _FENCED as exc:
            self._fenced(exc, exc)
        except Exception as exc:  # no transaction to abort, an abortable error: the new producer will do
            log.debug("abort with the current epoch did not complete", error=type(exc).__name__)
        fatal = self._fatal_error()
        if isinstance(fatal, _FENCED):
            self._fenced(fatal, fatal)

    def _fenced(self, cause: BaseException, exc: BaseException) -> NoReturn:
        # The producer epoch moved on: another instance took this transactional id, or this
        # process was frozen past transaction_timeout_ms and the coordinator aborted its
        # transaction. Either way it may not publish again; a restart starts from the commits.
        log.error("fenced: the producer epoch moved on (another instance owns this transactional id, or its "
                  "transaction timed out); stopping without publishing", error=type(cause).__name__)  # fmt: skip
        raise FencedError(type(cause).__name__) from exc

    def _producer_identity(self) -> Any:
        manager = getattr(self._producer, "_transaction_manager", None)
        return getattr(manager, "producer_id_and_epoch", None)

    def _abort(self, exc: BaseException) -> None:
        """Abort by starting over with a new producer: its ``init_transactions`` bumps the epoch,
        which makes the broker abort the open transaction and fences the old producer.

        Aborting in place would be cheaper, but kafka-python's recovery after a failed batch
        (sequence numbers, epoch bumps) has proved unreliable; a failed transaction is rare, a fresh
        producer is simple and certain.
        """
        log.warning("transaction failed; aborting and replaying from the last commit", error=type(exc).__name__)
        self._abort_with_current_epoch()
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._replace_producer(exc)
                return
            except kafka_errors.KafkaError as init_exc:
                if isinstance(init_exc, _FENCED):
                    raise FencedError(type(init_exc).__name__) from init_exc
                log.warning("new transactional producer failed; retrying", error=type(init_exc).__name__,
                            retry_in_s=backoff)  # fmt: skip
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
