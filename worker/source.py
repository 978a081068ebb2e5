"""The poll loop: the only thread that touches the KafkaConsumer.

Read :meth:`Source.iteration` top to bottom and it states the poll loop's part of the delivery
guarantee (the publish step's part is in :mod:`worker.guarantee`):

1. replay uncommitted work if a stage asked for it (failed publish, aborted transaction): commit
   what is done, seek back to the first unacknowledged offset, hold consumption for a backoff;
2. apply backpressure (pause/resume every assigned partition; keep polling either way, so the
   member stays in its group);
3. poll, decode, validate and featurize; every record is tracked as in flight *before* it is
   handed to the inference stage, and becomes exactly one score or one dead letter;
4. at-least-once: commit the contiguous done watermark (never past an unacknowledged record).
   Exactly-once: the publisher commits offsets inside its transactions instead.

Rebalances: kafka-python 3 runs the rebalance listener on its I/O thread, where blocking
consumer calls raise. The listener is therefore an ``AsyncConsumerRebalanceListener`` that only
waits on our own stages (not on the consumer) and *awaits* the commit future.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import kafka.errors as kafka_errors
import structlog
from kafka import KafkaConsumer
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition

from schemas import DecodeError, ErrorKind, TransactionEvent, decode
from schemas.decode import identifier_fields_with_pan
from schemas.redaction import redact_text
from worker.admission import AdmissionController
from worker.decoding import Decoder
from worker.engine import ScoringEngine
from worker.errors import UndecodableInputError
from worker.kafka_clients import UNDECODABLE_ERRORS, undecodable_position
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.records import ConsumedRecord
from worker.state import StateStore

log = structlog.get_logger("riskstream.source")
FENCED_REWIND = "producer_fenced"
"""The rewind cause that replays from the broker's committed offsets (an exactly-once fence: the last
transaction's outcome is unknown)."""

#: W3C Trace Context headers: always passed from an input record to its score or dead letter.
TRACE_CONTEXT_HEADERS = ("traceparent", "tracestate", "baggage")
_POLL_TIMEOUT_MS = 50
_LAG_INTERVAL_S = 2.0
_REWIND_BACKOFF_S = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class Source:
    def __init__(
        self,
        *,
        consumer: KafkaConsumer,
        engine: ScoringEngine,
        topic: str,
        tracker: OffsetTracker,
        outbox: queue.SimpleQueue[ConsumedRecord],
        admission: AdmissionController,
        metrics: WorkerMetrics,
        free_device_bytes: Callable[[], int | None],
        latency_budget_s: float,
        max_event_bytes: int,
        max_poll_records: int,
        commits_offsets: bool,
        commit_interval_s: float,
        rebalance_drain_timeout_s: float,
        passthrough_headers: tuple[str, ...] = (),
        undecodable_batch: Literal["dead_letter", "stop"] = "dead_letter",
        decoder: Decoder | None = None,
        state: StateStore | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` stamps arrivals (wall time, like Kafka timestamps); ``monotonic`` times backoffs."""
        self._consumer = consumer
        self._engine = engine
        self._topic = topic
        self._tracker = tracker
        self._outbox = outbox
        self._admission = admission
        self._metrics = metrics
        self._free_device_bytes = free_device_bytes
        self._budget_s = latency_budget_s
        self._max_event_bytes = max_event_bytes
        self._max_poll_records = max_poll_records
        self._commits_offsets = commits_offsets
        self._commit_interval_s = commit_interval_s
        self._drain_timeout_s = rebalance_drain_timeout_s
        self._passthrough = frozenset(name.lower() for name in (*TRACE_CONTEXT_HEADERS, *passthrough_headers))
        self._undecodable_batch = undecodable_batch
        self._decode: Decoder = decoder or (lambda value: decode(value, max_bytes=max_event_bytes))
        self._clock = clock
        self._monotonic = monotonic
        self._cpu = {"decode": 0.0, "pan_scan": 0.0, "featurize": 0.0, "state": 0.0}
        self._state = state
        self._warned_key = False
        self._rewind_lock = threading.Lock()
        self._rewind_cause: str | None = None
        self._rewinds_requested = 0
        self._rewinds_done = 0  # requests up to this count have been carried out (sought back, new epoch)
        self._rewinds_in_a_row = 0
        self._resume_at = 0.0
        self._seek_on_assign: dict[TopicPartition, int] = {}
        self._next_commit = 0.0
        self._next_lag = 0.0
        self._paused_seconds_reported = 0.0
        self._commit_in_flight = False
        self._lag: dict[TopicPartition, int] = {}
        self._epoch_metadata: tuple[int, Any] | None = None
        self._stopping = threading.Event()
        self.last_progress = time.monotonic()
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.ever_assigned = threading.Event()
        self.listener = _RebalanceListener(self)

    # -- called from other threads ------------------------------------------------------------

    def request_rewind(self, cause: str) -> None:
        """Ask the poll loop to replay uncommitted work from the first unacknowledged offset.

        The first cause asked for wins, except that a fence (:data:`FENCED_REWIND`: replay from the
        broker's committed offsets) wins over any other. :meth:`rewind_pending` is True from this call
        until the poll loop has carried the rewind out.
        """
        with self._rewind_lock:
            self._rewinds_requested += 1
            self._set_cause(cause)

    def _set_cause(self, cause: str) -> None:
        """Record ``cause`` unless one is recorded already; a fence wins over any other. Hold ``_rewind_lock``."""
        if self._rewind_cause is None or cause == FENCED_REWIND:
            self._rewind_cause = cause

    def rewind_pending(self) -> bool:
        """Whether a rewind was asked for and not yet carried out (sought back, a new epoch begun).

        The publisher publishes nothing meanwhile: whatever it holds was consumed before the rewind
        and will be consumed again. (Publishing it could commit outcomes the rewind then replays: a
        fence's rewind reads the broker's committed offsets, and a transaction committing between
        that read and the seek would make its outcomes duplicates.) Read this *before* the tracker's
        epoch: a rewind is marked done only after its new epoch began.
        """
        with self._rewind_lock:
            return self._rewinds_requested != self._rewinds_done

    def group_metadata_for(self, epoch: int) -> Any | None:
        """The consumer-group generation the records of ``epoch`` were consumed under.

        Exactly-once transactions commit offsets with *this* metadata, never the consumer's current
        one: a worker that was frozen, evicted and has just rejoined must not commit offsets it
        consumed in its old generation under its new one. With the old generation the broker fences
        the commit (KIP-447) and the transaction aborts. None when ``epoch`` is no longer current.
        """
        pinned = self._epoch_metadata
        if pinned is None or pinned[0] != epoch:
            return None
        return pinned[1]

    def set_drain_timeout(self, seconds: float) -> None:
        self._drain_timeout_s = seconds

    def stop_consuming(self) -> None:
        """Stop taking new records (shutdown); the loop keeps polling and committing while draining."""
        self._stopping.set()

    # -- the loop -----------------------------------------------------------------------------

    def subscribe(self) -> None:
        self._consumer.subscribe([self._topic], listener=self.listener)

    def iteration(self) -> None:
        """One pass of the poll loop (the worker calls this until shutdown completes)."""
        cpu_started = time.thread_time()
        now = self._monotonic()
        self._maybe_rewind(now)  # first: its backoff must hold this very poll
        self._apply_backpressure(now)
        room = self._admission.room(self._tracker.pending())
        try:
            polled = self._consumer.poll(
                timeout_ms=_POLL_TIMEOUT_MS, max_records=max(1, min(self._max_poll_records, room)), update_offsets=True
            )
        except UNDECODABLE_ERRORS as exc:
            self._skip_undecodable(exc)
            polled = {}
        for tp, records in polled.items():
            for record in records:
                self._take(tp, record)
        if self._commits_offsets and (now >= self._next_commit):
            self.commit_in_background()
            self._next_commit = now + self._commit_interval_s
        if now >= self._next_lag:
            self._update_lag()
            self._next_lag = now + _LAG_INTERVAL_S
        if self._state is not None:
            state_started = time.thread_time()
            self._state.tick()  # a failed restore surfaces here; idle accounts are swept a chunk at a time
            self._cpu["state"] += time.thread_time() - state_started
        self._metrics.in_flight.set(self._tracker.pending())
        self._metrics.last_progress.set(time.time())
        self.last_progress = time.monotonic()
        self._account_cpu(time.thread_time() - cpu_started)

    def _account_cpu(self, total: float) -> None:
        """This iteration's CPU time: decode, PAN scan and featurize as measured, the rest is the poll's."""
        costs = self._metrics.costs
        sections = self._cpu
        for stage, seconds in sections.items():
            costs.add(stage, seconds)
        costs.add("poll", max(0.0, total - sum(sections.values())))
        self._cpu = dict.fromkeys(sections, 0.0)

    def _take(self, tp: TopicPartition, record: Any) -> None:
        arrived = self._clock()
        epoch = self._tracker.track(tp, record.offset)
        self._metrics.consumed.inc()
        stamped = record.timestamp is not None and record.timestamp >= 0
        timestamp_ms = record.timestamp if stamped else int(arrived * 1000)
        delay = arrived - timestamp_ms / 1000.0
        self._metrics.poll_delay.observe(max(0.0, delay))
        late = delay >= self._budget_s
        if late:
            self._metrics.late_events.inc()
        passthrough = self._passthrough
        # Baggage and custom headers are free text too: they pass through redacted.
        headers = tuple(
            (name, redact_text(value.decode("utf-8", "replace")).encode())
            for name, value in record.headers or ()
            if name.lower() in passthrough and value
        )
        consumed = ConsumedRecord(
            tp=tp,
            offset=record.offset,
            timestamp_ms=timestamp_ms,
            key=record.key,
            epoch=epoch,
            arrived_s=arrived,
            late=late,
            headers=headers,
            value=record.value,
        )
        started = time.thread_time()
        decoded = self._decode(record.value)
        decoded_at = time.thread_time()
        self._cpu["decode"] += decoded_at - started
        if isinstance(decoded, DecodeError):
            consumed.error_kind, consumed.error = decoded.kind, decoded.message
            log.info("dead-lettering record", where=consumed.where(), error_type=decoded.kind.value)
        else:
            for field in identifier_fields_with_pan(decoded):
                self._metrics.pan_masked.labels(field).inc()
            scanned_at = time.thread_time()
            self._cpu["pan_scan"] += scanned_at - decoded_at
            try:
                self._featurize(tp, record.offset, decoded, consumed, scanned_at)
            except Exception as exc:  # a featurizer bug must cost one record, never the partition
                consumed.error_kind = ErrorKind.FEATURIZE_FAILED
                consumed.error = f"featurize failed: {type(exc).__name__}"
                log.warning("featurize failed", where=consumed.where(), error=type(exc).__name__)
        self._outbox.put(consumed)

    @property
    def restoring(self) -> int:
        """Partitions held while their account state is restored (0 without state)."""
        return len(self._state.restoring()) if self._state is not None else 0

    def _featurize(
        self, tp: TopicPartition, offset: int, event: TransactionEvent, consumed: ConsumedRecord, started: float
    ) -> None:
        """Token ids for ``event``; with behavioural state, against its account's history *before* it,
        which the event is then applied to (in offset order: the next event of the account sees it)."""
        partition = self._state.partition(tp) if self._state is not None else None
        if partition is None or self._state is None:
            consumed.features = self._engine.featurize(event)
            consumed.event = event
            self._cpu["featurize"] += time.thread_time() - started
            return
        if consumed.key != event.account_id.encode():
            # The state of an account is only whole if all its events come to one partition.
            self._metrics.state_unkeyed.inc()
        if consumed.key != event.account_id.encode() and not self._warned_key:
            self._warned_key = True
            log.warning(
                "an input record is not keyed by its account_id: account state needs every event of an "
                "account on one partition (key the input topic by account_id)",
                where=consumed.where(),
            )
        key = self._state.key(event.account_id)
        reflected, history = partition.history(key)
        read_at = time.thread_time()
        consumed.features = self._engine.featurize(event, history)
        featurized_at = time.thread_time()
        consumed.state_update = partition.apply(key, history, event, offset, reflected)
        consumed.event = event
        self._cpu["featurize"] += featurized_at - read_at
        self._cpu["state"] += read_at - started + time.thread_time() - featurized_at

    def _skip_undecodable(self, exc: BaseException) -> None:
        """A record batch poll() could not decode: dead-letter its offsets and go past it, or stop.

        With every codec installed this means a corrupt batch; it must not crash-loop the worker (a
        restart would meet it again) nor block its partition. Each offset gets a dead letter that
        carries its coordinates and the reason; there is no payload to keep.
        """
        position = undecodable_position(self._consumer, exc)
        if position is None:
            raise exc
        tp, first, last = position
        where = f"{tp.topic}[{tp.partition}]@{first}" + (f"-{last}" if last > first else "")
        reason = f"{type(exc).__name__}: {exc}"
        if self._undecodable_batch == "stop":
            raise UndecodableInputError(
                f"the record batch at {where} cannot be decoded ({reason}); set "
                "RISKSTREAM_CONSUMER__UNDECODABLE_BATCH=dead_letter to dead-letter it and go on"
            ) from exc
        arrived = self._clock()
        for offset in range(first, last + 1):
            epoch = self._tracker.track(tp, offset)
            self._metrics.consumed.inc()
            self._outbox.put(
                ConsumedRecord(
                    tp=tp,
                    offset=offset,
                    timestamp_ms=int(arrived * 1000),
                    key=None,
                    epoch=epoch,
                    arrived_s=arrived,
                    late=False,
                    error_kind=ErrorKind.UNDECODABLE_BATCH,
                    error=f"record batch cannot be decoded: {reason}",
                )
            )
        self._consumer.seek(tp, last + 1)
        log.warning("dead-lettering an undecodable record batch", where=where, error=type(exc).__name__)

    # -- backpressure -------------------------------------------------------------------------

    def _apply_backpressure(self, now: float) -> None:
        state = self._admission.evaluate(
            in_flight=self._tracker.pending(), free_bytes=self._free_device_bytes(), now=now
        )
        assignment = self._consumer.assignment()
        hold = state.paused or self._stopping.is_set() or now < self._resume_at
        # A partition whose account state is still being restored is held whatever the load.
        restoring = set(self._state.restoring()) if self._state is not None else set()
        self._metrics.state_restoring.set(len(restoring))
        paused = self._consumer.paused()
        to_pause = [tp for tp in assignment if (hold or tp in restoring) and tp not in paused]
        if to_pause:
            self._consumer.pause(*to_pause)
        to_resume = [] if hold else [tp for tp in paused if tp not in restoring]
        if to_resume:
            self._consumer.resume(*to_resume)
        if state.changed:
            if state.paused:
                self._metrics.pauses.labels(state.reason or "unknown").inc()
                log.info("backpressure: pausing consumption", reason=state.reason, in_flight=self._tracker.pending())
            else:
                log.info("backpressure: resuming consumption", in_flight=self._tracker.pending())
        self._metrics.paused_partitions.set(len(self._consumer.paused()))
        total = self._admission.total_paused_seconds(now)
        self._metrics.paused_seconds.inc(max(0.0, total - self._paused_seconds_reported))
        self._paused_seconds_reported = total

    # -- rewind -------------------------------------------------------------------------------

    def _maybe_rewind(self, now: float) -> None:
        with self._rewind_lock:
            cause, self._rewind_cause = self._rewind_cause, None
            requested = self._rewinds_requested
        if cause is None:
            if now >= self._resume_at:
                self._rewinds_in_a_row = 0
            return
        try:
            self._rewind(cause, now)
        except BaseException:
            with self._rewind_lock:  # not carried out: the next iteration tries again
                self._set_cause(cause)
            raise
        with self._rewind_lock:
            self._rewinds_done = requested  # (a request made meanwhile stays pending: it runs next)

    def _rewind(self, cause: str, now: float) -> None:
        self.commit()  # keep what is contiguously done, so the replay is as short as possible
        points = self._tracker.replay_points()
        if cause == FENCED_REWIND:
            # The last transaction's outcome is unknown: replay from what the broker has committed
            # (read_committed: the offset fetch waits for pending transactional offsets, KIP-447).
            for tp in self._consumer.assignment():
                committed = self._consumer.committed(tp)
                if committed is not None:
                    points[tp] = committed
        epoch = self._tracker.reset()
        if self._state is not None:
            self._state.rollback()  # the replay starts again from the committed account states
        if self._epoch_metadata is not None:  # same generation, new epoch
            self._epoch_metadata = (epoch, self._epoch_metadata[1])
        assignment = self._consumer.assignment()
        for tp, offset in points.items():
            if tp in assignment:
                self._consumer.seek(tp, offset)
        backoff = _REWIND_BACKOFF_S[min(self._rewinds_in_a_row, len(_REWIND_BACKOFF_S) - 1)]
        self._rewinds_in_a_row += 1
        self._resume_at = now + backoff
        self._metrics.rewinds.labels(cause).inc()
        log.warning(
            "replaying uncommitted work",
            cause=cause,
            partitions=len(points),
            # Where each partition replays from: the first thing to check after a duplicate or a gap.
            from_offsets={f"{tp.topic}[{tp.partition}]": offset for tp, offset in sorted(points.items())},
            resume_in_s=backoff,
        )

    # -- commits ------------------------------------------------------------------------------

    def _committable(self) -> dict[TopicPartition, int]:
        assignment = self._consumer.assignment()
        for tp in assignment:
            with contextlib.suppress(kafka_errors.KafkaError):
                position = self._consumer.position(tp, timeout_ms=0)
                if position is not None:
                    self._tracker.advance_idle(tp, position)
        return {tp: o for tp, o in self._tracker.committable().items() if tp in assignment}

    def commit(self, *, retry_until: float | None = None) -> bool:
        """At-least-once: commit every partition's contiguous done watermark, synchronously
        (shutdown and replays, where the next step depends on it). A no-op when the publish step
        commits instead (exactly-once).

        ``retry_until`` (a ``time.monotonic()`` deadline; the final commit at shutdown): a failed
        commit is retried until then — after the last one nothing else would commit what was
        published. A periodic commit still in flight is followed by one more commit, so that its
        older offsets cannot be the last word.
        """
        if not self._commits_offsets:
            return True
        offsets = self._committable()
        if not offsets:
            return True
        backoff = 0.1
        while True:
            overtaken = self._commit_in_flight
            started = time.perf_counter()
            try:
                self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
                if overtaken:
                    self._consumer.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()})
            except kafka_errors.KafkaError as exc:
                if retry_until is None or time.monotonic() + backoff >= retry_until:
                    log.warning("offset commit failed; will retry", error=type(exc).__name__)
                    return False
                log.warning("offset commit failed; retrying", error=type(exc).__name__, retry_in_s=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._committed(offsets, started)
            return True

    def commit_in_background(self) -> None:
        """The periodic commit: asynchronous, so the poll loop never waits a broker round trip.

        A failed or superseded commit is simply retried on the next interval (watermarks only
        move forward); one commit is in flight at a time.
        """
        if self._commit_in_flight:
            return
        offsets = self._committable()
        if not offsets:
            return
        started = time.perf_counter()
        self._commit_in_flight = True

        def done(_offsets: Any, response: Any) -> None:
            self._commit_in_flight = False
            if isinstance(response, BaseException):
                log.warning("offset commit failed; will retry", error=type(response).__name__)
            else:
                self._committed(offsets, started)

        try:
            self._consumer.commit_async({tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}, done)
        except kafka_errors.KafkaError as exc:
            self._commit_in_flight = False
            log.warning("offset commit failed; will retry", error=type(exc).__name__)

    def _committed(self, offsets: dict[TopicPartition, int], started: float) -> None:
        if self._state is not None:
            self._state.commit(offsets)
        self._metrics.commit_latency.observe(time.perf_counter() - started)
        self._metrics.commits.inc()
        self._tracker.mark_committed(offsets)

    def _update_lag(self) -> None:
        """Records behind the end of each assigned partition (from the last fetch's high watermark)."""
        lag: dict[TopicPartition, int] = {}
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = self._consumer.position(tp, timeout_ms=0)
            except kafka_errors.KafkaError:
                continue
            if position is not None:
                lag[tp] = max(0, highwater - position)
                self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag[tp])
        for tp in self._lag.keys() - lag.keys():  # no longer ours: stop reporting it
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        self._lag = lag

    @property
    def total_lag(self) -> int:
        return sum(self._lag.values())

    # -- rebalance (runs on kafka-python's I/O thread) ----------------------------------------

    def on_revoked(self, revoked: set[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        """Drain in-flight work, then return what to commit before the partitions go.

        Waits (bounded) until every consumed record is published; work still in flight after that
        is abandoned uncommitted (a new epoch drops it everywhere) and its partitions are sought
        back to the first unacknowledged offset if this worker keeps them.
        """
        started = time.monotonic()
        drained = self._tracker.wait_drained(self._drain_timeout_s)
        offsets = self._tracker.committable() if self._commits_offsets else {}
        self._seek_on_assign = self._tracker.replay_points()
        self._tracker.reset()
        if self._state is not None:
            # The next owner (this worker again, perhaps) restores them from the changelog.
            self._state.rollback()
            self._state.revoke(revoked)
        if revoked:
            self._metrics.rebalances.inc()
        log.info(
            "partitions revoked",
            partitions=len(revoked),
            drained=drained,
            abandoned=len(self._seek_on_assign),
            drain_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items() if tp in revoked}

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        for tp, offset in self._seek_on_assign.items():
            if tp in assigned:
                self._consumer.seek(tp, offset)
        self._seek_on_assign = {}
        self._epoch_metadata = (self._tracker.epoch, self._consumer.group_metadata())
        if self._state is not None and assigned:
            # Paused before this poll fetches anything for them: held until their state is restored.
            self._consumer.pause(*assigned)
            self._state.assign(assigned)
        self.assigned = frozenset(assigned)
        self.ever_assigned.set()
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    def on_lost(self, lost: set[TopicPartition]) -> None:
        self._epoch_metadata = None
        self._tracker.reset()
        if self._state is not None:
            self._state.rollback()
            self._state.revoke(lost)
        self._seek_on_assign = {}
        self.assigned = frozenset()
        log.warning("partitions lost (evicted from the group); in-flight work abandoned", partitions=len(lost))


class _RebalanceListener(AsyncConsumerRebalanceListener):
    def __init__(self, source: Source) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        offsets = self._source.on_revoked(set(revoked))
        if offsets:
            try:
                await self._source._consumer.commit_async(offsets)
            except kafka_errors.KafkaError as exc:
                log.warning(
                    "commit on revoke failed; the new owner replays from the previous commit", error=type(exc).__name__
                )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._source.on_assigned(set(assigned))

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._source.on_lost(set(lost))
