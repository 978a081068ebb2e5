"""``riskstream demo``: the whole mission in one command, on a laptop.

What it does, in order (each step shows progress):

1. The model: ``--model DIR``, else the configured model directory (by default
   ``~/.cache/riskstream/models/default``), trained there with the ``default`` preset if missing.
2. Kafka: the configured cluster (``RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS`` or ``[kafka]`` in
   ``--config``); when none is configured, a local Apache Kafka broker started with
   ``ops/kafka/kafka_local.py`` (instance ``demo``) and stopped again at the end, also on Ctrl-C.
3. The topics from the settings (``transactions``, ``risk-scores``, ``transactions.dlq``), created
   with ``DEMO_PARTITIONS`` partitions when missing.
4. A synthetic stream at ``--rate`` events/s for ``--duration`` seconds (labelled fraud, a few
   deliberately invalid records), a :class:`~worker.app.Worker` in this process, and a consumer of
   the scores and dead letters that feeds a live panel and the final summary.

Latency on the panel is event time (the producer's CreateTime, which the load generator writes
into ``event_time``) to the score record's Kafka timestamp, as a downstream reader sees it.

The helpers above the demo itself (broker, model, topics, paced load) are shared with ``riskstream bench``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import random
import signal
import sys
import threading
import time
import tomllib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.errors import WorkerError
from worker.kafka_clients import build_admin, connection_config
from worker.produce import OutgoingEvent, ProduceReport, load_producer_config, outgoing_events, send_paced
from worker.settings import Settings, load_settings

BOOTSTRAP_ENV = "RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS"
KAFKA_LAUNCHER = Path(__file__).resolve().parent.parent / "ops" / "kafka" / "kafka_local.py"
DEMO_PARTITIONS = 4
BROKER_START_TIMEOUT_S = 300.0  # the first start downloads the broker jars with Maven
_REFRESH_PER_S = 4
_WINDOW_S = 5.0  # the live panel's rates and percentiles cover this many recent seconds
_DRAIN_WAIT_S = 30.0  # after the last event is sent, how long to wait for its outcome
_ASSIGN_WAIT_S = 60.0

T = TypeVar("T")


class DemoError(WorkerError):
    """The demo cannot run; the message says what to do."""


# -- shared with `riskstream bench` --------------------------------------------------------------


def bootstrap_configured(config_file: Path | None) -> bool:
    """True when the user named a Kafka cluster: the environment variable or ``[kafka]`` in the file."""
    if BOOTSTRAP_ENV in os.environ:
        return True
    if config_file is None or not config_file.is_file():
        return False
    try:
        data = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False  # load_settings reports the unreadable file
    kafka = data.get("kafka")
    return isinstance(kafka, dict) and "bootstrap_servers" in kafka


def load_kafka_launcher() -> ModuleType:
    """``ops/kafka/kafka_local.py`` imported by path (it is a script in the repository, not a package)."""
    name = "riskstream_ops_kafka_local"
    module = sys.modules.get(name)
    if module is not None:
        return module
    if not KAFKA_LAUNCHER.is_file():
        raise DemoError(
            f"no Kafka broker configured and the local launcher {KAFKA_LAUNCHER} is missing "
            f"(an installed package, not a clone?): set {BOOTSTRAP_ENV} to a broker's host:port"
        )
    spec = importlib.util.spec_from_file_location(name, KAFKA_LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def kafka_for(settings: Settings, *, configured: bool, instance: str, console: Console) -> Iterator[Settings]:
    """The settings, pointing at a broker that runs for the duration of the block.

    When ``configured`` the settings' cluster is used as it is. Otherwise the local launcher starts
    (or reuses) the broker instance ``instance`` on free ports; a broker started here is stopped
    when the block ends, however it ends.
    """
    if configured:
        yield settings
        return
    launcher = load_kafka_launcher()
    local = launcher.LocalKafka(name=instance, port=0)
    started_here = not local.is_running()
    try:
        with console.status(f"starting a local Kafka broker ({instance}); the first start downloads its jars"):
            bootstrap = local.start(timeout=BROKER_START_TIMEOUT_S)
    except launcher.KafkaLocalError as exc:
        raise DemoError(f"the local Kafka broker did not start: {exc}; or set {BOOTSTRAP_ENV}") from exc
    console.print(f"[green]✓[/green] Kafka {launcher.KAFKA_VERSION} at {bootstrap} (local instance {instance!r})")
    try:
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap, "security_protocol": "PLAINTEXT"})
        yield settings.model_copy(update={"kafka": kafka})
    finally:
        if started_here:
            with console.status("stopping the local Kafka broker"):
                local.stop()


def ensure_model(model: Path | None, default_dir: Path, console: Console) -> Path:
    """The checkpoint to serve: ``model`` if given (it must exist), else ``default_dir``, trained
    there with the ``default`` preset when it holds no model yet."""
    if model is not None:
        if not (model / "riskstream.json").is_file():
            raise DemoError(f"{model} is not a riskstream model directory (no riskstream.json)")
        return model
    if (default_dir / "riskstream.json").is_file():
        return default_dir
    from inference.train import TrainProgress, train

    console.print(f"No model at {default_dir} yet: training the default model (about a minute, once).")
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("train default: generating data", total=None, info="")

        def show(update: TrainProgress) -> None:
            if update.phase == "data":
                return
            info = f"holdout AUC {update.holdout_auc:.4f}" if update.holdout_auc is not None else ""
            if not info and update.loss is not None:
                info = f"loss {update.loss:.4f}"
            progress.update(
                task, description=f"train default: epoch {update.epoch}/{update.epochs} {update.phase}",
                total=update.steps, completed=update.step, info=info,
            )  # fmt: skip

        result = train(default_dir, preset="default", on_progress=show)
    console.print(f"[green]✓[/green] trained {result.metadata.name}: holdout AUC {result.holdout_auc:.4f}")
    return default_dir


def paced(items: Iterable[T], rate: float) -> Iterator[T]:
    """Hand on ``items`` at ``rate`` per second on a fixed schedule from the first (open loop).

    The wait comes *before* each item is handed on, so a stage that stamps items as it pulls them
    (``outgoing_events`` re-stamping ``event_time``) stamps the moment of sending. Use it with
    ``send_paced(..., rate=None)``: ``send_paced`` itself waits after pulling the next item, so
    with its own pacing ``event_time`` runs ahead of the CreateTime by up to ``1 / rate``.
    """
    started = time.perf_counter()
    for index, item in enumerate(items):
        delay = started + index / rate - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay)
        yield item


def measuring_producer_config() -> dict[str, Any]:
    """``riskstream produce``'s producer options without linger: a load generator that measures
    event-to-score latency must not add a batching delay of its own (under load, records still
    batch while a request is in flight)."""
    return {**load_producer_config(), "linger_ms": 0}


def ensure_topics(settings: Settings, topics: dict[str, dict[str, str]], partitions: int) -> list[str]:
    """Create the topics that do not exist yet (name -> topic configs); returns the ones created."""
    from kafka.errors import TopicAlreadyExistsError

    admin = build_admin(settings)
    try:
        existing = set(admin.list_topics())
        missing = {name: configs for name, configs in topics.items() if name not in existing}
        if missing:
            specs = {
                name: {"num_partitions": partitions, "replication_factor": -1, "configs": dict(configs)}
                for name, configs in missing.items()
            }
            with contextlib.suppress(TopicAlreadyExistsError):  # created meanwhile by someone else: fine
                admin.create_topics(specs, wait_for_metadata=True)
        return sorted(missing)
    finally:
        admin.close()


# -- the demo ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 30.0
    rate: float = 500.0
    fraud_rate: float = 0.01
    poison_rate: float = 0.002
    """A few deliberately invalid records, to show the dead-letter path."""
    model: Path | None = None
    config: Path | None = None
    seed: int | None = None
    """Generator seed (default: a new one per run, so transaction ids never repeat across runs)."""

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.rate <= 0:
            raise ValueError("duration and rate must be positive")
        if not (0 <= self.fraud_rate <= 1 and 0 <= self.poison_rate <= 1):
            raise ValueError("fraud and poison rates must be within [0, 1]")


@dataclass
class DemoSummary:
    """What the run did; ``ok`` when every event sent ended as a score or a dead letter."""

    sent: int = 0
    poison_sent: int = 0
    scored: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    budget_ms: float = 50.0
    labelled_fraud: int = 0
    flagged: int = 0
    flagged_fraud: int = 0
    declined: int = 0
    worker_exit_code: int | None = None
    producing_s: float = 0.0

    @property
    def accounted(self) -> int:
        return self.scored + self.dead_letters

    @property
    def ok(self) -> bool:
        return self.worker_exit_code == 0 and self.accounted >= self.sent

    @property
    def budget_misses(self) -> int:
        return sum(1 for latency in self.latencies_ms if latency > self.budget_ms)

    def percentile(self, q: float) -> float:
        return _percentile(self.latencies_ms, q)


def _percentile(values: list[float] | np.ndarray, q: float) -> float:
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values), q, method="inverted_cdf"))


def _millis(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000.0


class _Labels:
    """Transaction id -> labelled fraud, written by the producer thread as each event is sent."""

    def __init__(self) -> None:
        self.fraud: dict[str, bool] = {}
        self.sent = 0
        self.fraud_sent = 0

    def on_sent(self, item: OutgoingEvent) -> None:
        self.sent += 1
        if item.transaction_id is not None:
            self.fraud[item.transaction_id] = bool(item.is_fraud)
            self.fraud_sent += bool(item.is_fraud)


class _Tally:
    """Scores and dead letters read back from Kafka (first outcome per event; duplicates counted)."""

    def __init__(self, budget_ms: float) -> None:
        self.budget_ms = budget_ms
        self.decisions: dict[str, str] = {}
        self.dead: set[tuple[int, int]] = set()
        self.duplicates = 0
        self.flagged = 0
        self.misses = 0
        self.latencies_ms: list[float] = []
        self.recent: deque[tuple[float, float, int]] = deque()  # (seen at, latency ms, batch size)

    def add_score(self, value: bytes, timestamp_ms: int, now: float) -> None:
        score = json.loads(value)
        transaction_id = score["transaction_id"]
        if transaction_id in self.decisions:
            self.duplicates += 1  # at-least-once replay: the first outcome counts
            return
        self.decisions[transaction_id] = score["decision"]
        self.flagged += score["decision"] != "approve"
        latency = max(0.0, timestamp_ms - _millis(score["event_time"]))
        self.latencies_ms.append(latency)
        self.misses += latency > self.budget_ms
        self.recent.append((now, latency, int(score["batch_size"])))

    def add_dead_letter(self, value: bytes) -> None:
        source = json.loads(value).get("source", {})
        self.dead.add((int(source.get("partition", -1)), int(source.get("offset", -1))))

    def window(self, now: float) -> list[tuple[float, float, int]]:
        while self.recent and self.recent[0][0] < now - _WINDOW_S:
            self.recent.popleft()
        return list(self.recent)


def _consumer_at_end(settings: Settings, topics: list[str]) -> KafkaConsumer:
    """A group-less read_committed consumer of ``topics``, positioned at their current ends."""
    consumer = KafkaConsumer(
        **connection_config(settings.kafka), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", fetch_max_wait_ms=20, max_poll_records=2000,
    )  # fmt: skip
    partitions = [
        TopicPartition(topic, p) for topic in topics for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)  # resolve the end now, before the first event is produced
    return consumer


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoSummary:
    """Run the demo (see the module docstring) and return its summary.

    Raises ``WorkerError`` (``ConfigError``, ``DemoError``, ``ModelUnavailableError``) with a message
    the user can act on. Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` after everything this
    function started (worker, producer, local broker) has been stopped.
    """
    console = console or Console()
    settings = load_settings(options.config)
    model_dir = ensure_model(options.model, settings.model.dir, console)
    settings = settings.model_copy(
        update={
            "model": settings.model.model_copy(update={"dir": model_dir}),
            # A free local port, so the demo never collides with a worker already running here.
            "observability": settings.observability.model_copy(update={"metrics_port": 0, "metrics_host": "127.0.0.1"}),
        }
    )
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with kafka_for(settings, configured=bootstrap_configured(options.config), instance="demo",
                       console=console) as settings:  # fmt: skip
            return _run(settings, options, console)
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)


def _run(settings: Settings, options: DemoOptions, console: Console) -> DemoSummary:
    from inference.synthetic import generate
    from worker.app import Worker
    from worker.engine import load_engine
    from worker.logs import configure_logging

    topics = settings.topics
    created = ensure_topics(
        settings,
        {topics.input: {}, topics.scores: {"message.timestamp.type": "LogAppendTime"},
         topics.dead_letters: {"message.timestamp.type": "LogAppendTime"}},
        DEMO_PARTITIONS,
    )  # fmt: skip
    if created:
        console.print(f"[green]✓[/green] created topics {', '.join(created)} ({DEMO_PARTITIONS} partitions)")
    with console.status(f"loading and warming up {settings.model.dir}"):
        loaded = load_engine(settings)
    info = loaded.engine.info
    console.print(f"[green]✓[/green] model {info.name} {info.version} ({info.quantization} on {info.device})")

    budget_ms = settings.batching.latency_budget_ms
    count = max(1, round(options.rate * options.duration_s))
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 30)
    labels = _Labels()
    tally = _Tally(budget_ms)
    stop_producing = threading.Event()
    produced: list[ProduceReport] = []
    failures: list[BaseException] = []
    consumer = _consumer_at_end(settings, [topics.scores, topics.dead_letters])
    producer = KafkaProducer(**connection_config(settings.kafka), **measuring_producer_config())
    worker = Worker(settings, loaded)
    worker_thread = threading.Thread(target=worker.run, name="demo-worker", daemon=True)

    def produce() -> None:
        try:
            items = generate(count, seed=seed, fraud_rate=options.fraud_rate)
            events = outgoing_events(
                paced(((item.event, item.is_fraud) for item in items), options.rate),
                poison_rate=options.poison_rate, seed=seed, max_event_bytes=settings.max_event_bytes,
            )  # fmt: skip
            report = send_paced(
                producer, topics.input, events, count=count, rate=None, on_sent=labels.on_sent,
                should_stop=stop_producing.is_set,
            )  # fmt: skip
            produced.append(report)
        except BaseException as exc:  # surfaced on the main thread
            failures.append(exc)

    producer_thread = threading.Thread(target=produce, name="demo-producer", daemon=True)
    live = Live(console=console, refresh_per_second=_REFRESH_PER_S, transient=False)
    try:
        with live:
            # Inside Live, so that warnings print above the panel instead of through it.
            configure_logging("warning", settings.observability.log_format)
            worker_thread.start()
            if not worker.ready.wait(_ASSIGN_WAIT_S) or worker.source is None:
                raise DemoError("the worker did not start")
            live.update(Panel("waiting for the worker to join its consumer group ...", title="riskstream demo"))
            if not worker.source.ever_assigned.wait(_ASSIGN_WAIT_S):
                raise DemoError(f"the worker got no partitions of {topics.input} within {_ASSIGN_WAIT_S:.0f}s")
            started = time.monotonic()
            producer_thread.start()
            produced_at: float | None = None
            next_refresh = 0.0
            while True:
                now = time.monotonic()
                for tp, records in consumer.poll(timeout_ms=100).items():
                    seen = time.monotonic()
                    for record in records:
                        if tp.topic == topics.scores:
                            tally.add_score(record.value, record.timestamp, seen)
                        else:
                            tally.add_dead_letter(record.value)
                if failures:
                    raise DemoError(f"producing failed: {failures[0]}")
                if worker.exit_code is not None or not worker_thread.is_alive():
                    raise DemoError(f"the worker stopped (exit code {worker.exit_code}); see the log above")
                if produced_at is None and not producer_thread.is_alive():
                    produced_at = now
                if now >= next_refresh:
                    live.update(_panel(worker, tally, labels, options, info, budget_ms, now - started, count))
                    next_refresh = now + 1 / _REFRESH_PER_S
                sent = produced[0].sent if produced else count
                if produced_at is not None and len(tally.decisions) + len(tally.dead) >= sent:
                    break
                if produced_at is not None and now - produced_at > _DRAIN_WAIT_S:
                    break
            live.update(_panel(worker, tally, labels, options, info, budget_ms, time.monotonic() - started, count))
    finally:
        stop_producing.set()
        if producer_thread.ident is not None:
            producer_thread.join(timeout=10)
        with console.status("stopping the worker (drain and commit)"):
            worker.request_stop()
            if worker_thread.ident is not None:
                worker_thread.join(timeout=settings.drain_timeout_s + 15)
        producer.close(timeout=5)
        consumer.close(autocommit=False)

    report = produced[0] if produced else ProduceReport()
    summary = _summarise(tally, labels, report, budget_ms, worker.exit_code)
    console.line()  # off a terminal, Live leaves its last frame without a line break
    console.print(_summary_table(summary, info))
    return summary


def _summarise(
    tally: _Tally, labels: _Labels, report: ProduceReport, budget_ms: float, exit_code: int | None
) -> DemoSummary:
    ours = {tid: decision for tid, decision in tally.decisions.items() if tid in labels.fraud}
    flagged = {tid for tid, decision in ours.items() if decision != "approve"}
    fraud = {tid for tid, is_fraud in labels.fraud.items() if is_fraud}
    return DemoSummary(
        sent=report.sent,
        poison_sent=sum(report.poison.values()),
        scored=len(ours),
        dead_letters=len(tally.dead),
        duplicates=tally.duplicates,
        latencies_ms=tally.latencies_ms,
        budget_ms=budget_ms,
        labelled_fraud=len(fraud),
        flagged=len(flagged),
        flagged_fraud=len(flagged & fraud),
        declined=sum(1 for decision in ours.values() if decision == "decline"),
        worker_exit_code=exit_code,
        producing_s=report.seconds,
    )


def _gauge(worker: Any, name: str) -> float:
    value = worker.metrics.registry.get_sample_value(name)
    return float(value) if value is not None else 0.0


def _panel(
    worker: Any, tally: _Tally, labels: _Labels, options: DemoOptions, info: Any, budget_ms: float,
    elapsed: float, count: int,
) -> Panel:  # fmt: skip
    now = time.monotonic()
    recent = tally.window(now)
    span = min(_WINDOW_S, max(elapsed, 1e-3))
    latencies = [latency for _, latency, _ in recent]
    batches = [size for _, _, size in recent]
    scored = len(tally.decisions)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("elapsed", f"{elapsed:5.1f} s of {options.duration_s:.0f} s")
    table.add_row("produced", f"{labels.sent:,} of {count:,} events at {options.rate:,.0f}/s offered")
    table.add_row("scored", f"{scored:,} events, {len(recent) / span:,.0f}/s now")
    table.add_row(
        "event → score",
        f"p50 {_percentile(latencies, 50):5.1f} ms   p99 {_percentile(latencies, 99):5.1f} ms   "
        f"(last {_WINDOW_S:.0f} s; budget {budget_ms:.0f} ms, {tally.misses:,} misses so far)",
    )
    table.add_row("batch size", f"mean {np.mean(batches) if batches else 0:.1f}   max {max(batches, default=0)}")
    table.add_row(
        "backpressure",
        f"{_gauge(worker, 'riskstream_in_flight_events'):.0f} in flight, "
        f"{_gauge(worker, 'riskstream_paused_partitions'):.0f} paused partitions",
    )
    table.add_row("dead letters", f"{len(tally.dead):,} (invalid input, by design {options.poison_rate:.1%})")
    table.add_row("fraud", f"{tally.flagged:,} flagged (review or decline) · {labels.fraud_sent:,} labelled fraud sent")
    title = f"riskstream demo · {info.name} ({info.quantization} on {info.device})"
    port = worker.health.port if worker.health is not None else None
    subtitle = f"metrics: http://127.0.0.1:{port}/metrics" if port else None
    return Panel(table, title=title, subtitle=subtitle)


def _summary_table(summary: DemoSummary, info: Any) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rate = summary.sent / summary.producing_s if summary.producing_s > 0 else 0.0
    table.add_row("events in", f"{summary.sent:,} in {summary.producing_s:.1f} s ({rate:,.0f}/s)")
    table.add_row(
        "outcomes", f"{summary.scored:,} scores + {summary.dead_letters:,} dead letters "
        f"({summary.poison_sent:,} invalid records sent); {summary.duplicates:,} duplicate deliveries",
    )  # fmt: skip
    missing = max(0, summary.sent - summary.accounted)
    table.add_row("missing", f"{missing:,}" if missing else "none: every event has its outcome")
    table.add_row(
        "event → score",
        f"p50 {summary.percentile(50):.1f} ms · p95 {summary.percentile(95):.1f} ms · "
        f"p99 {summary.percentile(99):.1f} ms · max {summary.percentile(100):.1f} ms",
    )
    share = summary.budget_misses / len(summary.latencies_ms) if summary.latencies_ms else 0.0
    table.add_row("budget misses", f"{summary.budget_misses:,} over {summary.budget_ms:.0f} ms ({share:.2%})")
    recall = summary.flagged_fraud / summary.labelled_fraud if summary.labelled_fraud else math.nan
    table.add_row(
        "fraud",
        f"{summary.flagged:,} flagged ({summary.declined:,} declined) · {summary.labelled_fraud:,} labelled fraud, "
        f"{summary.flagged_fraud:,} of them flagged ({recall:.0%})",
    )
    table.add_row("worker", "stopped cleanly" if summary.worker_exit_code == 0 else f"exit {summary.worker_exit_code}")
    style = "green" if summary.ok else "red"
    return Panel(table, title=f"[{style}]summary[/{style}] · {info.name}", border_style=style)
