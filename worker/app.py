"""The worker: wires source -> scoring -> publisher and runs them until shutdown.

Threads: the poll loop (the only user of the consumer), the scoring stage, the publisher, the
health server, and the main thread, which only supervises and handles signals. Bounded queues
connect the stages; the bound is enforced by admission control (the poll loop never takes more
than ``max_in_flight`` records, so the queues never hold more).

Shutdown (SIGTERM/SIGINT): stop taking records, let in-flight work publish and commit within
``drain_timeout_s``, final commit, close. A second signal exits at once without committing —
at-least-once then replays the uncommitted tail, exactly-once aborts the open transaction.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import kafka.errors as kafka_errors
import structlog
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from worker.admission import AdmissionController
from worker.batcher import BatchPolicy, LatencyBudgetBatcher, PublishLatency, ServiceTimeEstimator
from worker.decoding import Decoder, decoder_for
from worker.engine import LoadedEngine, MemorySampler, ModelIdentity, load_engine
from worker.errors import EXIT_ABORTED, EXIT_FAILED, EXIT_FENCED, EXIT_OK, ConfigError, FencedError, WorkerError
from worker.guarantee import guarantee_for
from worker.health import HealthServer
from worker.kafka_clients import build_consumer, build_restore_consumer, leave_group_on_close
from worker.memory import MemoryWatch, PressureWindow
from worker.metrics import WorkerMetrics
from worker.offsets import OffsetTracker
from worker.preflight import TopicLayout, changelog_topic, preflight
from worker.publisher import OutcomeWriter, PublishContext, Publisher
from worker.records import ConsumedRecord, Outbox
from worker.scaling import ScalingReporter
from worker.scoring import ScoringStage
from worker.settings import Settings
from worker.source import Source
from worker.stall import StallWatch
from worker.state import StateStore, store_directory

log = structlog.get_logger("riskstream.worker")


_SUPERVISE_S = 0.2
_SCALING_INTERVAL_S = 5.0


def tune_garbage_collection() -> None:
    """Keep the garbage collector off the latency tail.

    With torch, transformers and pydantic loaded, a full collection walks millions of long-lived
    objects and can stall every thread for tens of milliseconds, which showed up directly as
    p99 event-to-score latency. Objects alive after warm-up are frozen (never scanned again),
    and young collections run less often (the stream allocates short-lived objects quickly).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


class Worker:
    def __init__(
        self,
        settings: Settings,
        loaded: LoadedEngine | None = None,
        *,
        registry: CollectorRegistry | None = None,
        consumer: KafkaConsumer | None = None,
        on_listening: Callable[[int], None] | None = None,
    ) -> None:
        """``on_listening(port)`` is told the metrics and probe port once it is open."""
        self.settings = settings
        self.metrics = WorkerMetrics(registry)
        self._loaded = loaded
        self._consumer = consumer
        self._on_listening = on_listening
        self._stop = threading.Event()
        self._poll_shutdown = threading.Event()
        self._signals = 0
        self._pipeline_started = False
        self._started_at = time.monotonic()
        self.tracker = OffsetTracker()
        self.source: Source | None = None
        self.health: HealthServer | None = None
        self._poll_thread: threading.Thread | None = None
        self._poll_failure: BaseException | None = None
        self._leave_group_on_close = False
        self._commit_deadline: float | None = None  # the final commit's retries end here
        self._decoder: Decoder | None = None
        self.ready = threading.Event()
        self.exit_code: int | None = None

    @property
    def consumer(self) -> KafkaConsumer | None:
        """The worker's consumer, once running (for inspection: its poll thread is its only user)."""
        return self._consumer

    # -- control ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin a graceful shutdown (idempotent; safe from any thread)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals > 1:
                log.warning("second signal: exiting now without committing", signal=signal.Signals(signum).name)
                os._exit(EXIT_ABORTED)
            if not self._pipeline_started:
                # Still checking, loading or warming up: nothing has been consumed, nothing to drain.
                # Exit right here: raising from a signal handler could unwind inside any library call
                # (a thread start, an import) and end the process with a traceback instead.
                log.info("signal received during start-up: exiting", signal=signal.Signals(signum).name)
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
                os._exit(EXIT_OK)
            log.info("signal received: draining", signal=signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # -- probes -------------------------------------------------------------------------------

    def _healthy(self) -> tuple[bool, str]:
        source = self.source
        if source is None:
            # Loading and warming up the model: alive (a startup probe bounds how long this may take).
            return True, "starting: loading the model"
        stalled_for = time.monotonic() - source.last_progress
        if stalled_for > self.settings.observability.stall_after_s:
            return False, f"poll loop stalled for {stalled_for:.1f}s"
        return True, "ok"

    def _ready(self) -> tuple[bool, str]:
        if self._stop.is_set():
            return False, "shutting down"
        if not self.ready.is_set() or self.source is None:
            return False, "starting: loading and warming up the model"
        restoring = self.source.restoring
        if restoring:
            return False, f"restoring: account state of {restoring} partitions"
        assigned = len(self.source.assigned)
        return True, f"ready: {assigned} partitions assigned" if assigned else "ready: awaiting assignment"

    # -- run ----------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until shutdown; returns the process exit code. Loads the model first when the worker
        was built without one, with the probes already answering (not ready while it warms up)."""
        s = self.settings
        self.health = HealthServer(
            host=s.observability.metrics_host,
            port=s.observability.metrics_port,
            registry=self.metrics.registry,
            healthy=self._healthy,
            ready=self._ready,
        )
        self.health.start()
        log.info("metrics and probes listening", host=s.observability.metrics_host, port=self.health.port)
        if self._on_listening is not None:
            self._on_listening(self.health.port)
        try:
            # Checks that fail fast (the mapping, credentials, TLS, topics) run before the model is loaded.
            self._decoder = decoder_for(s)
            layout = preflight(s, state=state_wanted(s))
            if self._loaded is None:
                self._loaded = load_engine(s)
            return self._run(self._loaded, layout)
        finally:
            gc.unfreeze()  # hand the frozen objects back, so interpreter shutdown can free them
            self.health.stop()

    def _run(self, loaded: LoadedEngine, layout: TopicLayout) -> int:
        pipeline = build_pipeline(
            self.settings,
            loaded,
            layout,
            metrics=self.metrics,
            tracker=self.tracker,
            consumer=self._consumer,
            decoder=self._decoder,
        )
        self._consumer, self.source = pipeline.consumer, pipeline.source
        self._start(pipeline)
        code = self._supervise(pipeline)
        self._shutdown(pipeline, graceful=code == EXIT_OK)
        self.exit_code = code
        return code

    def _start(self, pipeline: Pipeline) -> None:
        self._pipeline_started = True  # from here a signal drains instead of exiting at once
        s, info = self.settings, pipeline.info
        tune_garbage_collection()
        pipeline.source.subscribe()
        pipeline.scoring.start()
        pipeline.publisher.start()
        self._poll_thread = threading.Thread(
            target=self._poll_loop, args=(pipeline,), name="riskstream-poll", daemon=True
        )
        self._poll_thread.start()
        self.ready.set()
        log.info(
            "worker started",
            worker_id=s.worker_id,
            guarantee=pipeline.publisher.name,
            model=info.name,
            quantization=info.quantization,
            device=info.device,
            budget_ms=s.batching.latency_budget_ms,
        )

    def _supervise(self, pipeline: Pipeline) -> int:
        """Until a stop is requested or a stage fails: the exit code to stop with."""
        next_scaling = 0.0
        while not self._stop.wait(_SUPERVISE_S):
            if time.monotonic() >= next_scaling:
                pipeline.scaling.update()
                next_scaling = time.monotonic() + _SCALING_INTERVAL_S
            publisher = pipeline.publisher
            if isinstance(publisher.failure, FencedError):
                return EXIT_FENCED
            stages = (
                ("publisher", publisher.failure),
                ("scoring", pipeline.scoring.failure),
                ("poll loop", self._poll_failure),
            )
            for name, failure in stages:
                if isinstance(failure, WorkerError):  # a known cause, already logged in one line
                    return failure.exit_code
                if failure is not None:
                    log.error("stage failed; stopping", stage=name, error=type(failure).__name__)
                    return EXIT_FAILED
        return EXIT_OK

    def _poll_loop(self, pipeline: Pipeline) -> None:
        source, consumer = pipeline.source, pipeline.consumer
        try:
            while not self._poll_shutdown.is_set():
                source.iteration()
        except kafka_errors.FencedInstanceIdError:
            self._poll_failure = FencedError("FencedInstanceIdError")
            log.error(
                "fenced: another worker joined the group with this worker id (group.instance.id); "
                "every worker needs its own RISKSTREAM_WORKER_ID",
                worker_id=self.settings.worker_id,
            )
        except WorkerError as exc:
            self._poll_failure = exc
            log.error(str(exc), error=type(exc).__name__)
        except BaseException as exc:
            self._poll_failure = exc
            log.exception("poll loop failed")
        finally:
            if self._poll_failure is None:
                # at-least-once: the final watermark, retried until the drain deadline; exactly-once: a no-op
                source.commit(retry_until=self._commit_deadline)
            source.set_drain_timeout(0.0)  # already drained (or abandoning): close must not wait again
            if self._leave_group_on_close:
                leave_group_on_close(consumer)
            try:
                consumer.close(autocommit=False)
            except Exception as exc:  # closing is best effort; the broker expires the member anyway
                log.warning("consumer close failed", error=type(exc).__name__)

    def _shutdown(self, pipeline: Pipeline, *, graceful: bool) -> None:
        """Stop taking records; drain (graceful) within ``drain_timeout_s``; stop and close every stage."""
        source, scoring, publisher = pipeline.source, pipeline.scoring, pipeline.publisher
        deadline = time.monotonic() + self.settings.drain_timeout_s
        source.stop_consuming()
        drained = False
        if graceful:
            drained = self.tracker.wait_drained(max(0.0, deadline - time.monotonic()))
            left = self.tracker.pending()
            if drained:
                log.info("drained: all consumed events published")
            else:
                log.warning("drain timed out: uncommitted events will be replayed by the next owner", left=left)
        # After a graceful drain a static member leaves at once (rollouts and scale-downs hand its
        # partitions over now, not after the session timeout); after a failure it stays, so that a
        # restart under the same worker id reclaims them without a rebalance.
        self._leave_group_on_close = graceful
        self._commit_deadline = max(deadline, time.monotonic() + 2.0)
        self._poll_shutdown.set()
        if self._poll_thread is not None:
            self._poll_thread.join(timeout=max(1.0, deadline - time.monotonic()))
        scoring.stop()
        publisher.stop()
        scoring.thread.join(timeout=5.0)
        publisher.thread.join(timeout=5.0)
        publisher.close(max(1.0, deadline - time.monotonic()))
        if pipeline.state is not None:
            pipeline.state.close()  # what was committed is in the local stores
        log.info("worker stopped", drained=drained, in_flight=self.tracker.pending())


# -- the composition root ----------------------------------------------------------------------------


def stall_watch_for(settings: Settings) -> Callable[[], bool]:
    """Exactly-once's zombie test (:mod:`worker.stall`): did this process stand still for more than
    half the shorter of its session and transaction timeouts, within the sum of the two?"""
    consumer_s = settings.consumer.session_timeout_ms / 1000
    transaction_s = settings.transaction_timeout_ms / 1000
    watch = StallWatch(threshold_s=max(0.5, min(consumer_s, transaction_s) / 2))
    watch.start()
    window_s = consumer_s + transaction_s
    return lambda: watch.stalled_within(window_s)


@dataclass(frozen=True)
class Pipeline:
    """One worker's stages, wired; :func:`build_pipeline` makes it, :class:`Worker` runs it."""

    info: ModelIdentity
    consumer: KafkaConsumer
    tracker: OffsetTracker
    source: Source
    scoring: ScoringStage
    publisher: Publisher
    scaling: ScalingReporter
    state: StateStore | None = None


def build_pipeline(
    settings: Settings,
    loaded: LoadedEngine,
    layout: TopicLayout,
    *,
    metrics: WorkerMetrics,
    tracker: OffsetTracker | None = None,
    consumer: KafkaConsumer | None = None,
    decoder: Decoder | None = None,
) -> Pipeline:
    """Wire the stages for ``settings``: the one place that knows how they fit together.

    poll loop (``Source``) --inbox--> scoring stage --outbox--> publisher (the delivery guarantee);
    the offset tracker is shared by all three; admission control and the memory watch feed the poll
    loop and the batch cap; the publish latency feeds the batcher's budget.
    """
    s = settings
    guarantee = guarantee_for(s)
    engine = loaded.engine
    info = engine.info
    metrics.model_info.labels(info.name, info.version, info.quantization, info.device).set(1)
    tracker = tracker if tracker is not None else OffsetTracker()
    consumer = consumer if consumer is not None else build_consumer(s)
    state = build_state(s, loaded, metrics)
    budget_s = s.batching.latency_budget_ms / 1000
    inbox: queue.SimpleQueue[ConsumedRecord] = queue.SimpleQueue()
    outbox: Outbox = queue.SimpleQueue()

    sampler: MemorySampler = loaded.sample_memory
    if s.faults.memory_pressure_for_s > 0:
        sampler = PressureWindow(
            sampler, start_s=s.faults.memory_pressure_after_s, duration_s=s.faults.memory_pressure_for_s
        )
    memory = MemoryWatch(
        sample=sampler,
        interval_s=s.backpressure.probe_interval_ms / 1000,
        cap_for_free_bytes=lambda free: min(s.batching.max_batch, loaded.cap_for_free_bytes(free)),
        metrics=metrics,
    )
    source = Source(
        consumer=consumer,
        engine=engine,
        topic=s.topics.input,
        tracker=tracker,
        outbox=inbox,
        admission=AdmissionController(
            high_water=s.backpressure.max_in_flight,
            low_water=s.backpressure.low_water,
            headroom_bytes=int(s.backpressure.memory_headroom),
        ),
        metrics=metrics,
        free_device_bytes=memory.free_bytes,
        latency_budget_s=budget_s,
        max_event_bytes=s.max_event_bytes,
        max_poll_records=s.consumer.max_poll_records,
        commits_offsets=guarantee.source_commits,
        commit_interval_s=s.consumer.commit_interval_ms / 1000,
        rebalance_drain_timeout_s=s.consumer.rebalance_drain_timeout_ms / 1000,
        passthrough_headers=s.producer.passthrough_headers,
        undecodable_batch=s.consumer.undecodable_batch,
        decoder=decoder if decoder is not None else decoder_for(s),
        state=state,
    )
    service_time = ServiceTimeEstimator(loaded.service_times)
    publish_latency = PublishLatency()
    batcher: LatencyBudgetBatcher[ConsumedRecord] = LatencyBudgetBatcher(
        BatchPolicy(
            latency_budget_s=budget_s,
            max_linger_s=s.batching.max_linger_ms / 1000,
            safety_margin_s=s.batching.safety_margin_ms / 1000,
        ),
        service_time,
        publish_latency,
    )
    scoring = ScoringStage(
        engine=engine,
        batcher=batcher,
        service_time=service_time,
        inbox=inbox,
        outbox=outbox,
        current_epoch=lambda: tracker.epoch,
        batch_cap=memory.batch_cap,
        metrics=metrics,
    )
    outputs = {s.topics.scores: layout.scores_partitions, s.topics.dead_letters: layout.dead_letter_partitions}
    writer = OutcomeWriter(
        engine=engine,
        scores_topic=s.topics.scores,
        dead_letter_topic=s.topics.dead_letters,
        worker_id=s.worker_id,
        co_partitioned={topic: n for topic, n in outputs.items() if layout.co_partitioned(n)},
    )
    publisher = guarantee(
        PublishContext(
            producer_factory=lambda: guarantee.open_producer(s),
            writer=writer,
            outbox=outbox,
            tracker=tracker,
            metrics=metrics,
            latency_budget_s=budget_s,
            request_rewind=source.request_rewind,
            rewind_pending=source.rewind_pending,
            publish_latency=publish_latency,
            group_metadata=source.group_metadata_for,
            state=state,
            stalled=stall_watch_for(s) if not guarantee.source_commits else PublishContext.stalled,
        )
    )
    scaling = ScalingReporter(
        metrics=metrics,
        lag=lambda: source.total_lag,
        service_time=service_time.estimate,
        buckets=lambda: tuple(b for b in engine.buckets if b <= memory.batch_cap()),
        latency_budget_s=budget_s,
    )
    return Pipeline(info, consumer, tracker, source, scoring, publisher, scaling, state)


def model_reads_history(model_dir: Path) -> bool:
    """Whether the checkpoint's ``riskstream.json`` has a ``history`` section (read without torch)."""
    try:
        metadata = json.loads((model_dir / "riskstream.json").read_text())
    except (OSError, ValueError):
        return False  # no readable checkpoint: loading the model says what is wrong
    return isinstance(metadata, dict) and metadata.get("history") is not None


def state_wanted(settings: Settings) -> bool:
    """Whether this worker keeps account state (``state.enabled``; auto: when the model reads history)."""
    mode = settings.state.enabled
    if mode == "off":
        return False
    reads = model_reads_history(settings.model.dir)
    if mode == "on" and not reads:
        raise ConfigError(
            f"RISKSTREAM_STATE__ENABLED=on, but the model at {settings.model.dir} does not read account "
            "history: serve a sequence model, or set it to auto"
        )
    return reads


def build_state(settings: Settings, loaded: LoadedEngine, metrics: WorkerMetrics) -> StateStore | None:
    """The account state of a model that reads history (None for a stateless model, or when turned off)."""
    spec = loaded.engine.history_spec
    if spec is None:
        return None
    s = settings
    if s.state.enabled == "off":
        log.warning("state is off: the history model scores every account as a new one (cold)")
        return None
    return StateStore(
        changelog_topic=changelog_topic(s),
        directory=store_directory(s.state.dir, s.group_id),
        capacity=spec.capacity,
        ttl_s=spec.ttl_s,
        key_secret=s.state.key_secret.get_secret_value().encode(),
        consumer_factory=lambda: build_restore_consumer(s),
        metrics=metrics,
        cache_accounts=s.state.cache_accounts,
        map_size=int(s.state.max_partition_bytes),
        state_format=spec.state_version,
        expire_interval_s=s.state.expire_interval_s,
    )
