"""The publisher: scores and dead letters as wire records, and the thread that publishes them.

:class:`OutcomeWriter` turns a scored batch into one record per input record (a RiskScore or a
DeadLetter, placed on the input's partition number). :class:`Publisher` is the thread both delivery
guarantees share; each guarantee's publish step, and what "done" means for it, is in
:mod:`worker.guarantee`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kafka.errors as kafka_errors
import structlog
from kafka import KafkaProducer

from schemas import DeadLetter, ErrorKind, ModelRef, ScoreEncoder, build_dead_letter, mask_identifier
from worker.batcher import PublishLatency
from worker.engine import ScoringEngine
from worker.errors import FencedError
from worker.kafka_clients import abort_producer
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.records import ConsumedRecord, Outbox, ScoredBatch
from worker.state import ChangelogRecord, StateStore

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
        self._encoder = ScoreEncoder(self._model, worker_id)
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
        value = self._encoder.encode(  # what RiskScore(...).model_dump_json() writes, without the model
            # A card number used as an id is masked (BIN + last four); other ids come back unchanged.
            transaction_id=mask_identifier(event.transaction_id),
            account_id=mask_identifier(event.account_id),
            # Rounded: six decimals is finer than any threshold, and long digit runs in floats would
            # trip PAN scanners downstream.
            score=round(min(1.0, max(0.0, score)), 6),
            decision=decision,
            event_time=event.event_time,
            scored_time=now,
            latency_ms=round(max(0.0, now.timestamp() * 1000.0 - record.timestamp_ms), 3),
            batch_size=max(1, batch_size),
            late=record.late,
            topic=record.tp.topic,
            partition=record.tp.partition,
            offset=record.offset,
        )
        headers = [*self._score_headers, *record.headers]
        topic = self._scores_topic
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


@dataclass(frozen=True)
class PublishContext:
    """What a publisher works with (built by :func:`worker.app.build_pipeline`)."""

    producer_factory: Callable[[], KafkaProducer]
    writer: OutcomeWriter
    outbox: Outbox
    """Scored batches from the scoring stage; None wakes the publisher (a step's acknowledgements are in)."""
    tracker: OffsetTracker
    metrics: WorkerMetrics
    latency_budget_s: float
    request_rewind: Callable[[str], None]
    """Ask the poll loop to replay uncommitted work (a failed publish, an aborted transaction)."""
    rewind_pending: Callable[[], bool]
    """Whether a rewind asked for is not yet carried out; nothing is published meanwhile."""
    publish_latency: PublishLatency
    """Fed with each step's broker round trip; the batcher leaves room for it in the budget."""
    group_metadata: Callable[[int], Any | None]
    """The consumer-group generation that consumed an epoch's records (exactly-once commits with it)."""
    state: StateStore | None = None
    """Behavioural state (a history model): its changelog records go out with each step."""
    stalled: Callable[[], bool] = lambda: True
    """Whether this process stood still lately (:class:`worker.stall.StallWatch`); exactly-once
    stops on a fenced producer only then. Without a watch: always, the safe answer."""


class Publisher:
    """The publisher thread: takes scored batches off the outbox and publishes them a step at a time.

    What a step is, and when an input offset counts as done, is the delivery guarantee's: see
    :mod:`worker.guarantee`. Here is what both share: the thread, gathering a step, settling a
    record in the offset tracker and the metrics once, and replacing a producer that failed.
    """

    name = ""
    source_commits = True
    """Whether the poll loop commits offsets (at-least-once) or the publish step does (exactly-once)."""

    def __init__(self, context: PublishContext) -> None:
        self._producer_factory = context.producer_factory
        self._producer = context.producer_factory()
        self._writer = context.writer
        self._outbox = context.outbox
        self._tracker = context.tracker
        self._metrics = context.metrics
        self._budget_s = context.latency_budget_s
        self._request_rewind = context.request_rewind
        self._rewind_pending = context.rewind_pending
        self._stale_below = 0  # epochs below this had a failed step; their replay is under way
        self._publish_latency = context.publish_latency
        self._state = context.state
        self._stalled = context.stalled
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
                    batch = None
                if batch is None:
                    self._idle()
                else:
                    self._publish(batch)
        except BaseException as exc:  # surfaced by the worker's supervisor
            self.failure = exc
            if not isinstance(exc, FencedError):
                log.exception("publisher failed")

    def _publish(self, batch: ScoredBatch) -> None:
        """One publish step starting with ``batch`` (the guarantee's)."""
        raise NotImplementedError

    def _idle(self) -> None:
        """Nothing to publish just now (a wake-up, or the poll interval passed)."""

    def _gather(self, first: ScoredBatch) -> list[ScoredBatch]:
        """``first`` and whatever else is already scored, up to one step's worth."""
        batches, records = [first], len(first.records)
        while records < _MAX_RECORDS_PER_STEP:
            try:
                more = self._outbox.get_nowait()
            except queue.Empty:
                break
            if more is None:  # a wake-up: the step after this one counts what came in
                continue
            batches.append(more)
            records += len(more.records)
        return batches

    def _live(self, batches: list[ScoredBatch]) -> tuple[int, list[ScoredBatch]]:
        """The current epoch and the batches of it this step may publish.

        None while a rewind is pending: everything held now was consumed before the rewind and is
        consumed again after it (the poll loop seeks back and starts a new epoch), and publishing it
        meanwhile could commit outcomes the replay then repeats. Otherwise only batches of the
        current epoch, and none of an epoch whose step failed. The pending flag is read before the
        epoch: a rewind counts as carried out only once its new epoch has begun.
        """
        if self._rewind_pending():
            return self._tracker.epoch, []
        epoch = self._tracker.epoch
        return epoch, [b for b in batches if b.epoch == epoch and b.epoch >= self._stale_below]

    def _changelog(self, batches: list[ScoredBatch]) -> list[ChangelogRecord]:
        """The step's changelog records (none without behavioural state)."""
        if self._state is None:
            return []
        return self._state.records([record for batch in batches for record in batch.records])

    def _send_changelog(self, records: list[ChangelogRecord]) -> list[Any]:
        return [
            self._producer.send(r.topic, value=r.value, key=r.key, headers=r.headers, partition=r.partition)
            for r in records
        ]

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
