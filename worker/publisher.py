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
from typing import Any

import kafka.errors as kafka_errors
import structlog
from kafka import KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas import DeadLetter, ErrorKind, ModelRef, RiskScore, SourceRef, build_dead_letter
from worker.engine import ScoringEngine
from worker.errors import FencedError
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.records import ConsumedRecord, ScoredBatch

log = structlog.get_logger("riskstream.publisher")

CONTENT_TYPE = ("content-type", b"application/json")
TRACE_HEADER = "traceparent"
_POLL_S = 0.05
_MAX_RECORDS_PER_TRANSACTION = 4096
_FENCED = (kafka_errors.ProducerFencedError, kafka_errors.InvalidProducerEpochError)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to publish, and the input record it settles."""

    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]
    source: ConsumedRecord
    decision: str | None  # None for a dead letter
    reason: str | None  # the dead letter's error type


class OutcomeWriter:
    """Turns a scored batch into wire records: a RiskScore or a DeadLetter per input record."""

    def __init__(self, *, engine: ScoringEngine, scores_topic: str, dead_letter_topic: str, worker_id: str) -> None:
        info = engine.info
        self._model = ModelRef(name=info.name, version=info.version, quantization=info.quantization, device=info.device)
        self._thresholds = engine.thresholds
        self._scores_topic = scores_topic
        self._dead_letter_topic = dead_letter_topic
        self._worker_id = worker_id
        self._score_headers = [CONTENT_TYPE, ("riskstream-schema", b"risk-score.v1")]

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
            transaction_id=event.transaction_id,
            account_id=event.account_id,
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
        headers = list(self._score_headers)
        if record.trace is not None:
            headers.append((TRACE_HEADER, record.trace))
        return Outgoing(
            self._scores_topic, record.key, message.model_dump_json().encode(), headers, record, decision.value, None
        )

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
        ]
        if record.trace is not None:
            headers.append((TRACE_HEADER, record.trace))
        # The dead letter keeps the input's key so that its partition (and per-key order) follows the input.
        return Outgoing(
            self._dead_letter_topic, record.key, letter.model_dump_json().encode(), headers, record, None, kind.value
        )


class _PublisherBase:
    def __init__(
        self,
        *,
        producer: KafkaProducer,
        writer: OutcomeWriter,
        outbox: queue.SimpleQueue[ScoredBatch],
        tracker: OffsetTracker,
        metrics: WorkerMetrics,
        latency_budget_s: float,
        request_rewind: Callable[[str], None],
        on_dropped: Callable[[int], None],
        on_publish_latency: Callable[[float], None],
    ) -> None:
        self._producer = producer
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
    def _publish(self, batch: ScoredBatch) -> None:
        if batch.epoch != self._tracker.epoch:
            self._on_dropped(len(batch.records))
            return
        sent_at = time.time()
        for item in self._writer.write(batch, datetime.now(UTC)):
            try:
                future = self._producer.send(item.topic, value=item.value, key=item.key, headers=item.headers)
            except kafka_errors.KafkaError as exc:
                log.warning("publish failed; replaying from the last commit", error=type(exc).__name__,
                            where=item.source.where())  # fmt: skip
                self._request_rewind("publish_failed")
                return
            future.add_callback(self._acked, item, batch.epoch, sent_at)
            future.add_errback(self._failed, item)

    def _acked(self, item: Outgoing, epoch: int, sent_at: float, _metadata: Any) -> None:
        now = time.time()
        self._on_publish_latency(now - sent_at)
        self._settled(item, epoch, now)

    def _failed(self, item: Outgoing, exc: BaseException) -> None:
        log.warning("publish not acknowledged; replaying from the last commit", error=type(exc).__name__,
                    where=item.source.where(), topic=item.topic)  # fmt: skip
        self._request_rewind("publish_failed")


class TransactionalPublisher(_PublisherBase):
    def __init__(self, *, group_metadata: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._group_metadata = group_metadata
        self._stale_below = 0  # epochs below this belong to an aborted transaction

    def _publish(self, batch: ScoredBatch) -> None:
        batches = [batch]
        records = len(batch.records)
        while records < _MAX_RECORDS_PER_TRANSACTION:
            try:
                more = self._outbox.get_nowait()
            except queue.Empty:
                break
            batches.append(more)
            records += len(more.records)
        epoch = self._tracker.epoch
        live = [b for b in batches if b.epoch == epoch and b.epoch >= self._stale_below]
        dropped = sum(len(b.records) for b in batches if b not in live)
        if dropped:
            self._on_dropped(dropped)
        if live:
            self._transact(live, epoch)

    def _transact(self, batches: list[ScoredBatch], epoch: int) -> None:
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
            for item in items:
                self._producer.send(item.topic, value=item.value, key=item.key, headers=item.headers)
            self._producer.send_offsets_to_transaction(offsets, self._group_metadata())
            self._producer.commit_transaction()
        except _FENCED as exc:
            log.error("fenced: another instance owns this transactional id; stopping without publishing",
                      error=type(exc).__name__)  # fmt: skip
            raise FencedError(str(type(exc).__name__)) from exc
        except kafka_errors.KafkaError as exc:
            self._abort(exc, epoch)
            return
        elapsed = time.perf_counter() - started
        self._metrics.commit_latency.observe(elapsed)
        self._metrics.commits.inc()
        self._on_publish_latency(elapsed)
        settled_at = time.time()
        for item in items:
            self._settled(item, epoch, settled_at)

    def _abort(self, exc: BaseException, epoch: int) -> None:
        log.warning("transaction failed; aborting and replaying from the last commit", error=type(exc).__name__)
        self._metrics.transaction_aborts.inc()
        self._stale_below = epoch + 1
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self._producer.abort_transaction()
                break
            except _FENCED as fenced:
                raise FencedError(type(fenced).__name__) from fenced
            except kafka_errors.KafkaError as abort_exc:
                log.warning("abort failed; retrying", error=type(abort_exc).__name__, retry_in_s=backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._request_rewind("transaction_aborted")
