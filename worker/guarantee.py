"""The delivery guarantee, in one place: :class:`AtLeastOnce` and :class:`ExactlyOnce`.

Each is the publisher of its guarantee and says, in its docstring, the steps of one publish step in
the order that makes the guarantee hold. Each also owns what differs between the two anywhere else:

=========================  =============================================  ============================================
                           :class:`AtLeastOnce`                           :class:`ExactlyOnce`
=========================  =============================================  ============================================
producer                   idempotent, ``acks=all``, one request in       the same, transactional (``transactional_id``
                           flight per broker                              = prefix-group-worker), ``init_transactions``
consumer                   ``read_committed`` (a setting)                 ``read_committed`` (required)
"done" for an offset       its outcome is acknowledged by the broker      its outcome's transaction committed
commit                     the poll loop, the contiguous done watermark   inside the transaction, with the group
                           (``source_commits``)                           metadata of the consuming generation
on revoke                  drain, commit the watermark, abandon the rest  drain; what did not commit is abandoned
after a failed publish     rewind to the first unacknowledged offset      abort, new producer, rewind to the last commit
shutdown                   drain, final commit of the watermark           drain (each step already committed)
zombie                     duplicates at worst                            fenced by producer epoch or generation: exit 3
account state (changelog)  written and acknowledged before any outcome    in the same transaction as the scores and
                           of the step counts as done                     the offsets
=========================  =============================================  ============================================

In both, nothing is published from the moment a rewind is asked for until the poll loop has carried
it out (sought back, a new epoch begun): what the publisher holds meanwhile is consumed again, and
publishing it could commit outcomes the replay then repeats (``Publisher._live``).

The worker chooses once, at construction (:func:`guarantee_for`); nothing else branches on it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import kafka.errors as kafka_errors
import structlog
from kafka import KafkaProducer
from kafka.structs import OffsetAndMetadata, TopicPartition

from worker.errors import FencedError
from worker.kafka_clients import (
    build_producer,
    fence_instead_of_bumping_epoch,
    halt_on_failure,
    producer_config,
    register_io_waits_without_formatting_a_miss,
)
from worker.publisher import Outgoing, PublishContext, Publisher
from worker.records import ScoredBatch
from worker.settings import Settings
from worker.source import FENCED_REWIND
from worker.state import ChangelogRecord

log = structlog.get_logger("riskstream.publisher")

_ACK_TIMEOUT_S = 30.0
_TXN_REQUEST_TIMEOUT_S = 30.0  # AddOffsetsToTxn + TxnOffsetCommit, or EndTxn: then the step fails
# (or sooner: the producer's transaction_timeout_ms, after which the coordinator may abort the transaction)
_TXN_WAIT_SLICE_MS = 100
_ABORT_PROBE_TIMEOUT_MS = 10_000
_FENCED = (kafka_errors.ProducerFencedError, kafka_errors.InvalidProducerEpochError)
_STEPS_IN_FLIGHT = 4  # at-least-once steps sent and not yet counted


class _Step:
    """An at-least-once publish step on its way: what it sent, and when its last future completed."""

    __slots__ = ("_lock", "_open", "_wake", "acked_at", "deadline", "epoch", "failure", "sent", "sent_at", "state_sent")

    def __init__(self, epoch: int, sent_at: float, deadline: float, wake: Callable[[], None]) -> None:
        self.epoch, self.sent_at, self.deadline = epoch, sent_at, deadline
        self.state_sent: list[tuple[ChangelogRecord, Any]] = []
        self.sent: list[tuple[Outgoing, Any]] = []
        self.failure: BaseException | None = None  # a send that failed at once
        self.acked_at: float | None = None
        self._wake = wake
        self._lock = threading.Lock()
        self._open = 1

    def watch(self, futures: Iterable[Any]) -> None:
        """Wake the publisher once every one of ``futures`` has completed (acknowledged or failed)."""
        pending = list(futures)
        with self._lock:
            self._open += len(pending)  # the 1 it started with is held until every callback is added
        for future in pending:
            future.add_both(self._completed)
        self._completed(None)

    def _completed(self, _result: Any) -> None:
        with self._lock:
            self._open -= 1
            last = self._open == 0
            if last:
                self.acked_at = time.time()
        if last:
            self._wake()

    def acknowledged(self) -> bool:
        return self._open == 0


class AtLeastOnce(Publisher):
    """At-least-once: an offset is committed only after every outcome up to it is acknowledged.

    One publish step, in order:

    1. take every scored batch of the current epoch (a batch of an older epoch was abandoned by a
       rebalance or a rewind and is dropped: its records are being replayed);
    2. if a step failed, wait until every step sent on that producer is counted, then abort it and
       start a new one (nothing queued in the old one may reach the broker after the failure);
    3. send the step's account states to the changelog (:mod:`worker.state`), then each batch's
       scores and dead letters; stop at the first send that comes back failed (an
       already failed future, or an errback that halts the producer's sender before it drains the
       next batch of the partition);
    4. once its last acknowledgement is in (the producer's I/O thread wakes the publisher), count the
       step, the changelog's acknowledgements first: if any account state was not written, no
       outcome of the step counts; otherwise each acknowledged record marks its input offset done in
       the offset tracker;
    5. on a failure: ask the poll loop to rewind (replay from the first unacknowledged offset) and
       mark this epoch stale, so nothing published after the failed record can overtake its replay.

    Steps are pipelined: up to ``_STEPS_IN_FLIGHT`` are sent before the oldest is counted. That keeps
    per-key order through failures because every step goes through one producer, and a producer after
    a failure delivers nothing sent after the failed record: the sender is halted (one request in
    flight per broker, so nothing queued behind the failed batch was on the wire), later sends on it
    fail at once, and a send that failed at once stops this step and every later one until the
    producer is replaced. So a failure in step N fails every later record of steps N+1.. as it fails
    the rest of step N; a failure of a stale epoch asks for no second rewind. Counting happens in the
    publisher thread, oldest step first, so the changelog-first rule and the done watermark are as if
    the steps had waited for each other. The commit itself is the poll loop's (``source_commits``):
    every interval, on a rewind, on revoke and at shutdown it commits the contiguous done watermark of
    each partition (:class:`~worker.offsets.OffsetTracker`), never past an unacknowledged record.
    """

    name = "at_least_once"
    source_commits = True

    @staticmethod
    def producer_settings(settings: Settings) -> dict[str, Any]:
        """Idempotent producer (``kafka_clients.producer_config``); nothing transactional."""
        return {}

    @classmethod
    def open_producer(cls, settings: Settings) -> KafkaProducer:
        return build_producer(settings)

    def __init__(self, context: PublishContext) -> None:
        super().__init__(context)
        self._needs_new_producer: BaseException | None = None  # why the current producer must go
        self._in_flight: deque[_Step] = deque()  # sent steps not yet counted, oldest first

    def _publish(self, batch: ScoredBatch) -> None:
        batches = self._gather(batch)
        self._settle(wait=False)
        if self._needs_new_producer is not None or self._fatal_error() is not None:
            self._settle(wait=True)  # a failure: every step on this producer resolves before it goes
        elif len(self._in_flight) >= _STEPS_IN_FLIGHT:
            self._settle(wait=True, leave=_STEPS_IN_FLIGHT - 1)
        # Filtered after settling: a failure found there makes these batches stale.
        epoch, live = self._live(batches)
        if not live:
            return
        cause = self._needs_new_producer or self._fatal_error()
        if cause is not None:
            self._settle(wait=True)
            self._replace_producer(cause)
            self._needs_new_producer = None
        self._in_flight.append(self._send_step(live, epoch))

    def _idle(self) -> None:
        self._settle(wait=False)

    def _send_step(self, live: list[ScoredBatch], epoch: int) -> _Step:
        """Send a step's changelog records, then its outcomes; stop at the first send that failed."""
        costs = self._metrics.costs
        with costs.measure("encode"):
            now = datetime.now(UTC)
            items = [item for b in live for item in self._writer.write(b, now)]
            changelog = self._changelog(live)
        halt = halt_on_failure(self._producer)
        step = _Step(epoch, time.time(), time.monotonic() + _ACK_TIMEOUT_S, self._wake)
        produce_started = time.thread_time()
        # The changelog records go first; an outcome counts as done only once they are all written.
        for change in changelog:
            future, failure = self._send(change.topic, change.value, change.key, change.headers, change.partition, halt)
            if failure is not None:
                step.failure = failure
                self._failed(failure, None, epoch)
                break
            step.state_sent.append((change, future))
        for item in items if step.failure is None else ():
            future, failure = self._send(item.topic, item.value, item.key, item.headers, item.partition, halt)
            if failure is not None:
                step.failure = failure
                self._failed(failure, item, epoch)
                break
            step.sent.append((item, future))
        if step.failure is not None:
            # Nothing more may be sent on this producer: the next step starts on a fresh one.
            self._needs_new_producer = step.failure
        step.watch(future for _, future in (*step.state_sent, *step.sent))
        costs.add("produce", time.thread_time() - produce_started)
        return step

    def _wake(self) -> None:
        """A step's last acknowledgement came in (in the producer's I/O thread): wake the publisher."""
        self._outbox.put(None)

    def _settle(self, *, wait: bool, leave: int = 0) -> None:
        """Count the acknowledged steps, oldest first; with ``wait``, until at most ``leave`` remain."""
        while self._in_flight:
            step = self._in_flight[0]
            due = step.acknowledged() or time.monotonic() >= step.deadline  # past it: counted as failed
            if not due and not (wait and len(self._in_flight) > leave):
                return
            self._in_flight.popleft()
            self._finish(step)

    def _finish(self, step: _Step) -> None:
        """Wait for a step's acknowledgements, the changelog's first; if any account state was not
        written, no outcome of the step counts; otherwise each acknowledged record marks its input
        offset done."""
        acks_started = time.thread_time()
        epoch, failure, deadline = step.epoch, step.failure, step.deadline
        state_written = True
        for change, future in step.state_sent:
            try:
                metadata = future.get(timeout=max(0.001, deadline - time.monotonic()))
            except kafka_errors.KafkaError as exc:
                state_written = False
                if failure is None:
                    failure = exc
                    self._failed(exc, None, epoch)
                continue
            if self._state is not None:
                self._state.written(change, metadata.offset)
        sent = step.sent if state_written else []  # a state write failed: no outcome of this step counts
        now = step.acked_at or time.time()
        for item, future in sent:
            try:
                future.get(timeout=max(0.001, deadline - time.monotonic()))
            except kafka_errors.KafkaError as exc:
                if failure is None:  # records of one batch share one exception: report the first only
                    failure = exc
                    self._failed(exc, item, epoch)
                continue
            self._settled(item, epoch, now)
        self._metrics.costs.add("acks", time.thread_time() - acks_started)
        if failure is not None:
            # Whatever is still queued in this producer was sent after the failed record: it must
            # never be delivered. The next step starts on a fresh producer.
            self._needs_new_producer = failure
        elif sent:
            elapsed = now - step.sent_at
            self._metrics.publish.observe(elapsed)
            self._publish_latency.observe(elapsed)

    def _send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Any, partition: int | None, halt: Any
    ) -> tuple[Any, BaseException | None]:
        """Send one record; (its future, None), or (None, the failure) when it failed at once."""
        try:
            future = self._producer.send(topic, value=value, key=key, headers=headers, partition=partition)
        except kafka_errors.KafkaError as exc:
            return None, exc
        # kafka-python hands back an already failed future when the topic's metadata cannot be had
        # (not authorized, for one) instead of raising. Sending on past it would let a later record
        # of the same key through once the topic is writable again.
        if future.is_done and future.failed():
            return None, future.exception
        future.add_errback(halt)
        return future, None

    def _failed(self, exc: BaseException, item: Outgoing | None, epoch: int) -> None:
        if epoch < self._stale_below:
            return  # a later step of an epoch whose replay is already asked for (it replays this too)
        self._stale_below = epoch + 1
        log.warning(
            "publish failed; replaying from the first unacknowledged record",
            error=type(exc).__name__,
            where=item.source.where() if item else None,
            topic=item.topic if item else None,
        )
        self._request_rewind("publish_failed")


_TXN_RETRY_BACKOFF_MS = 2
"""Exactly-once: the producer's sender thread's wait before it resends a transactional request."""


class ExactlyOnce(Publisher):
    """Exactly-once: outcomes and consumed offsets commit in one Kafka transaction, or neither does.

    One publish step is one transaction, in order:

    1. take every scored batch of the current epoch, and the consumer-group metadata of the
       generation that consumed it (none: the generation is gone, the batch is dropped and replayed);
    2. ``begin_transaction``;
    3. send the step's account states to the changelog (:mod:`worker.state`), then each batch's
       scores and dead letters;
    4. ``send_offsets_to_transaction`` with one past each input offset and the pinned group metadata
       (KIP-447: the broker fences the commit of a stale generation), while the records are in flight;
    5. wait for every acknowledgement (the commit must never cover an offset whose outcome is not
       written), and check the producer's epoch did not change under the transaction;
    6. ``commit_transaction``; then mark the records done in the offset tracker and fold the account
       states into the local store.

    Any failure aborts: first with the current epoch (a zombie learns here that it is fenced), then by
    starting a new producer, whose ``init_transactions`` aborts whatever the old one left open; the
    poll loop rewinds to the last commit. A fenced producer stops the worker (exit 3) if the process
    stood still lately (:mod:`worker.stall`: another instance may own the transactional id now); if
    it kept running (the coordinator timed out a transaction while the broker was away) it is
    replaced like any failed producer. The poll
    loop never commits (``source_commits`` is False); readers use ``read_committed``, and so does the
    worker's own consumer (the settings require it).
    """

    name = "exactly_once"
    source_commits = False

    @staticmethod
    def producer_settings(settings: Settings) -> dict[str, Any]:
        return {
            "transactional_id": settings.transactional_id,
            "transaction_timeout_ms": settings.transaction_timeout_ms,
            # Right after a commit the coordinator may still be writing markers and answer the next
            # transaction's first request with CONCURRENT_TRANSACTIONS; the default 100 ms backoff
            # before retrying would then dominate exactly-once latency.
            "retry_backoff_ms": 10,
        }

    @classmethod
    def open_producer(cls, settings: Settings) -> KafkaProducer:
        """A transactional producer; ``init_transactions`` fences any earlier incarnation of this worker
        and aborts what it left open."""
        fence_instead_of_bumping_epoch()
        register_io_waits_without_formatting_a_miss()
        producer = KafkaProducer(**producer_config(settings), **cls.producer_settings(settings))
        # The sender thread sleeps retry_backoff_ms before it resends a transactional request. When one
        # transaction follows another at once, the coordinator is still writing the last one's markers
        # and answers the first request of the next with CONCURRENT_TRANSACTIONS for a few ms: a 10 ms
        # sleep made back-to-back one-record transactions take ~30 ms instead of ~12 on the development
        # machine (benchmarks/transaction_loop.py). Only the sender's copy of the setting is lowered:
        # produce retries (the accumulator's) and metadata refreshes (the cluster's) keep the 10 ms above.
        producer._sender.config["retry_backoff_ms"] = _TXN_RETRY_BACKOFF_MS
        producer.init_transactions()
        return producer

    def __init__(self, context: PublishContext) -> None:
        super().__init__(context)
        self._group_metadata = context.group_metadata

    def _publish(self, batch: ScoredBatch) -> None:
        epoch, live = self._live(self._gather(batch))
        metadata = self._group_metadata(epoch)
        if live and metadata is not None:
            self._transact(live, epoch, metadata)

    def _transact(self, batches: list[ScoredBatch], epoch: int, group_metadata: Any) -> None:
        costs = self._metrics.costs
        with costs.measure("encode"):
            now = datetime.now(UTC)
            items = [item for b in batches for item in self._writer.write(b, now)]
            changelog = self._changelog(batches)
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for item in items:
            tp = item.source.tp
            next_offset = item.source.offset + 1
            if tp not in offsets or offsets[tp].offset < next_offset:
                offsets[tp] = OffsetAndMetadata(next_offset, "", -1)
        started = time.perf_counter()
        phase = self._metrics.transaction_phase
        committing = False
        try:
            with costs.measure("commit"):
                self._producer.begin_transaction()
                identity = self._producer_identity()
                self._add_partitions(items, changelog)
            with costs.measure("produce"):
                # The account states join the transaction with the scores and the offsets.
                state_futures = self._send_changelog(changelog)
                futures = [
                    self._producer.send(
                        item.topic, value=item.value, key=item.key, headers=item.headers, partition=item.partition
                    )
                    for item in items
                ]
            sent = time.perf_counter()
            # The offsets join the transaction while its records are still in flight (AddOffsetsToTxn
            # and TxnOffsetCommit overlap the produce request): they only count if the commit below
            # happens, and it happens only after every record is acknowledged.
            with costs.measure("commit"):
                self._transactional_request(
                    "send_offsets", lambda m: m.send_offsets_to_transaction(offsets, group_metadata)
                )
            offsets_added = time.perf_counter()
            # Every record must be acknowledged before the commit: the commit must never cover an
            # offset whose outcome is not written. (kafka-python can recover a failed batch by bumping
            # the producer epoch mid-transaction and then commit without it; the identity check turns
            # that into an abort.)
            with costs.measure("acks"):
                deadline = time.monotonic() + _ACK_TIMEOUT_S
                written = [future.get(timeout=max(0.001, deadline - time.monotonic())) for future in state_futures]
                for future in futures:
                    future.get(timeout=max(0.001, deadline - time.monotonic()))
            acknowledged = time.perf_counter()
            if self._producer_identity() != identity:
                raise kafka_errors.KafkaError("producer epoch changed inside the transaction")
            committing = True  # from here on the outcome may be a commit, whatever is raised
            with costs.measure("commit"):
                self._transactional_request("commit", lambda m: m.begin_commit())
            committed = time.perf_counter()
            phase.labels("send").observe(sent - started)
            phase.labels("add_offsets").observe(offsets_added - sent)
            phase.labels("acks").observe(acknowledged - offsets_added)
            phase.labels("end_txn").observe(committed - acknowledged)
        except kafka_errors.KafkaError as exc:
            self._metrics.transaction_aborts.inc()
            self._stale_below = epoch + 1
            if committing:
                # A failed or timed-out EndTxn may still have committed (a lost response looks the
                # same): replay from what the broker has committed, not from what this process saw.
                self._request_rewind(FENCED_REWIND)
            if not self._recover_if_fatal(exc):
                self._abort(exc)
            self._request_rewind("transaction_aborted")
            return
        if self._state is not None:
            for change, metadata in zip(changelog, written, strict=True):
                self._state.written(change, metadata.offset)
            self._state.commit({tp: committed.offset for tp, committed in offsets.items()})
        elapsed = time.perf_counter() - started
        self._metrics.commit_latency.observe(elapsed)
        self._metrics.publish.observe(elapsed)
        self._metrics.commits.inc()
        self._publish_latency.observe(elapsed)
        with costs.measure("acks"):
            settled_at = time.time()
            for item in items:
                self._settled(item, epoch, settled_at)

    def _add_partitions(self, items: list[Outgoing], changelog: list[ChangelogRecord]) -> None:
        """Register every partition this step writes with the transaction before the first send, so that
        the producer asks the coordinator to add them in one AddPartitionsToTxn request. (Added one send
        at a time, the sender can pick up the first partitions while the rest are still being sent, and a
        second AddPartitionsToTxn then costs one more round trip before any record of the step leaves.)
        Records placed by key hash (no partition yet) are still added by ``send``."""
        manager = self._producer._transaction_manager
        partitions = {(item.topic, item.partition) for item in items if item.partition is not None}
        partitions.update((record.topic, record.partition) for record in changelog if record.partition is not None)
        for topic, partition in sorted(partitions):
            manager.maybe_add_partition_to_transaction(TopicPartition(topic, partition))

    def _transactional_request(self, what: str, begin: Callable[[Any], Any]) -> None:
        """Run one of kafka-python's transactional requests (``begin(transaction_manager)`` enqueues it
        and returns its result) and wait for it, bounded.

        ``KafkaProducer.send_offsets_to_transaction`` and ``commit_transaction`` wait forever, and
        kafka-python 3.0 can lose the request they wait for: when the coordinator's connection
        fails inside the sender's ``await_ready`` (the broker just went away), the sender looks
        the coordinator up again but never re-enqueues the request (``Sender._maybe_send_pending_request``),
        so its result is never completed. Seen in CI: a publisher stuck in
        ``send_offsets_to_transaction`` for minutes after a broker restart, nothing published. Here
        the wait ends when the request completes (its own error is raised), when the producer
        enters its fatal state, or after ``_TXN_REQUEST_TIMEOUT_S`` or the producer's
        ``transaction_timeout_ms``, whichever is shorter (``KafkaTimeoutError``): the step then fails
        like any other, with a new producer and a replay. Giving up sooner is safe: the new producer's
        ``init_transactions`` aborts a transaction left open or waits for a commit the coordinator
        already received, and the replay reads the committed offsets with ``require_stable``
        (``read_committed``), so it starts after a commit that did happen. Waiting past the transaction
        timeout only risks the coordinator aborting the transaction and fencing this producer first.
        """
        manager = self._producer._transaction_manager
        result = begin(manager)
        self._producer._sender.wakeup()
        bound_s = self._transactional_request_bound_s()
        deadline = time.monotonic() + bound_s
        while not result.wait(timeout_ms=_TXN_WAIT_SLICE_MS):  # raises the request's own error
            fatal = self._fatal_error()
            if isinstance(fatal, kafka_errors.KafkaError):
                raise fatal
            if fatal is not None:
                raise kafka_errors.KafkaError(f"fatal producer error: {type(fatal).__name__}") from fatal
            if time.monotonic() >= deadline:
                raise kafka_errors.KafkaTimeoutError(f"{what} did not complete within {bound_s:.0f} s")

    def _transactional_request_bound_s(self) -> float:
        config = getattr(self._producer, "config", None)
        timeout_ms = config.get("transaction_timeout_ms") if isinstance(config, dict) else None
        if isinstance(timeout_ms, (int, float)) and timeout_ms > 0:
            return min(_TXN_REQUEST_TIMEOUT_S, timeout_ms / 1000)
        return _TXN_REQUEST_TIMEOUT_S

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
            return False  # not a zombie: the abort starts a new producer and replays
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

    def _fenced(self, cause: BaseException, exc: BaseException) -> None:
        """The producer epoch moved on: stop if this process may be a zombie; else return (recover).

        If this process stood still lately (SIGSTOP, a frozen VM), another instance may own its
        transactional id now: it may not publish again, and a restart starts from the commits (exit
        3). If it kept running, the coordinator aborted a transaction that outlived
        ``transaction_timeout_ms`` (the broker was away) and bumped the epoch: the caller starts a
        new producer and replays from the last commit, as Kafka Streams does; a stale generation's
        offsets are fenced by the group coordinator (KIP-447) whatever the producer epoch.
        """
        if self._stalled() or self._state is not None:
            # (With account state the local store could not be reconciled with a transaction whose
            # outcome is unknown: a restart restores it from the changelog.)
            log.error(
                "fenced: the producer epoch moved on (another instance owns this transactional id, or its "
                "transaction timed out while this process stood still); stopping without publishing",
                error=type(cause).__name__,
            )
            raise FencedError(type(cause).__name__) from exc
        log.warning(
            "the producer epoch moved on while this process kept running (the coordinator aborted a "
            "transaction that outlived transaction_timeout_ms); starting a new producer and replaying",
            error=type(cause).__name__,
        )
        # Whether the last transaction committed is unknown here (a lost EndTxn response looks the
        # same): the replay starts from the offsets the broker has committed, not from what this
        # process believes (Source: "producer_fenced").
        self._request_rewind(FENCED_REWIND)

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
                log.warning(
                    "new transactional producer failed; retrying", error=type(init_exc).__name__, retry_in_s=backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)


Guarantee = type[AtLeastOnce] | type[ExactlyOnce]


def guarantee_for(settings: Settings) -> Guarantee:
    """The guarantee the settings ask for: the one choice, made once."""
    return ExactlyOnce if settings.guarantee == ExactlyOnce.name else AtLeastOnce
