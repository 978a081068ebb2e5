"""The inference stage: its own thread, between the poll loop and the publisher.

It pulls consumed records from the input queue into the latency-budget batcher, closes batches
by the batcher's rules, runs the engine, and hands each scored batch to the publisher queue.
Records from an abandoned epoch (rebalance, rewind) are dropped here before they cost inference.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np
import structlog

from worker.batcher import LatencyBudgetBatcher, ServiceTimeEstimator
from worker.engine import ScoringEngine
from worker.metrics import WorkerMetrics
from worker.records import ConsumedRecord, Outbox, ScoredBatch

log = structlog.get_logger("riskstream.scoring")

_IDLE_WAIT_S = 0.05


class ScoringStage:
    def __init__(
        self,
        *,
        engine: ScoringEngine,
        batcher: LatencyBudgetBatcher[ConsumedRecord],
        service_time: ServiceTimeEstimator,
        inbox: queue.SimpleQueue[ConsumedRecord],
        outbox: Outbox,
        current_epoch: Callable[[], int],
        batch_cap: Callable[[], int],
        metrics: WorkerMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._batcher = batcher
        self._service_time = service_time
        self._inbox = inbox
        self._outbox = outbox
        self._current_epoch = current_epoch
        self._batch_cap = batch_cap
        self._metrics = metrics
        self._clock = clock
        self._stop = threading.Event()
        self._inference_cpu = 0.0
        self.batches = 0
        self.thread = threading.Thread(target=self._run, name="riskstream-scoring", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Finish the batch in hand and exit; records still queued are the poll loop's to drain first."""
        self._stop.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._step()
        except BaseException as exc:  # surfaced by the worker's supervisor, which stops the process
            self.failure = exc
            log.exception("scoring stage failed")

    def _wait_time(self, now: float, cap: int) -> float:
        if len(self._batcher) == 0:
            return _IDLE_WAIT_S
        close_at = self._batcher.close_at(cap)
        if close_at is None:
            return _IDLE_WAIT_S
        return min(_IDLE_WAIT_S, max(0.0, close_at - now))

    def _step(self) -> None:
        started = time.thread_time()
        self._inference_cpu = 0.0
        try:
            self._take_and_score()
        finally:
            costs = self._metrics.costs
            costs.add("inference", self._inference_cpu)
            costs.add("batching", max(0.0, time.thread_time() - started - self._inference_cpu))

    def _take_and_score(self) -> None:
        cap = self._batch_cap()
        try:
            first = self._inbox.get(timeout=self._wait_time(self._clock(), cap))
        except queue.Empty:
            first = None
        if first is not None:
            self._admit(first)
            # Take everything already waiting: it costs nothing and fills the batch.
            while self._batcher.scoreable_count < cap:
                try:
                    self._admit(self._inbox.get_nowait())
                except queue.Empty:
                    break
        if self._batcher.should_close(self._clock(), cap, input_idle=self._inbox.empty()):
            self._score(self._batcher.take(cap))

    def _admit(self, record: ConsumedRecord) -> None:
        if record.epoch == self._current_epoch():  # else abandoned by a rebalance or rewind: replayed
            self._batcher.add(record)

    def _score(self, records: list[ConsumedRecord]) -> None:
        epoch = self._current_epoch()
        live = [r for r in records if r.epoch == epoch]
        if not live:
            return
        scoreable = [i for i, r in enumerate(live) if r.scoreable]
        started = self._clock()
        scores = np.full(len(live), np.nan, dtype=np.float32)
        failures: dict[int, str] = {}
        inference_s = 0.0
        if scoreable:
            oldest_arrival = min(live[i].arrived_s for i in scoreable)
            t0, cpu0 = time.perf_counter(), time.thread_time()
            result = self._engine.score([live[i].features for i in scoreable])
            inference_s = time.perf_counter() - t0
            self._inference_cpu += time.thread_time() - cpu0
            self._service_time.observe(len(scoreable), inference_s)
            splits = int(getattr(result, "oom_splits", 0))
            if splits:
                self._metrics.oom_splits.inc(splits)
                log.warning("device out of memory: batch split and retried", size=len(scoreable), splits=splits)
            scores[scoreable] = result.scores
            for local_index, reason in result.failures.items():
                failures[scoreable[local_index]] = reason
            self._metrics.batch_size.observe(len(scoreable))
            self._metrics.inference.observe(inference_s)
            self._metrics.batch_wait.observe(max(0.0, started - oldest_arrival))
            wait_s = max(0.0, started - oldest_arrival)
        else:
            wait_s = 0.0
        self.batches += 1
        log.info(
            "batch",
            size=len(scoreable),
            dead_letters=len(live) - len(scoreable) + len(failures),
            late=sum(1 for r in live if r.late),
            wait_ms=round(wait_s * 1000, 2),
            inference_ms=round(inference_s * 1000, 2),
            offsets=_offset_ranges(live),
        )
        self._outbox.put(
            ScoredBatch(
                records=live,
                scores=scores,
                failures=failures,
                batch_size=len(scoreable),
                wait_s=wait_s,
                inference_s=inference_s,
                epoch=epoch,
            )
        )


def _offset_ranges(records: list[ConsumedRecord]) -> dict[str, str]:
    """``{"topic[partition]": "first-last"}`` for a batch: where it came from, in one field."""
    ranges: dict[str, list[int]] = {}
    for record in records:
        key = f"{record.tp.topic}[{record.tp.partition}]"
        bounds = ranges.setdefault(key, [record.offset, record.offset])
        bounds[0] = min(bounds[0], record.offset)
        bounds[1] = max(bounds[1], record.offset)
    return {key: f"{first}-{last}" for key, (first, last) in ranges.items()}
