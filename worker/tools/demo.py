"""``riskstream demo``: the whole mission in one command, on a laptop.

What it does, in order (each step shows progress):

1. The model: ``--model DIR``, else the configured model directory (by default
   ``~/.cache/riskstream/models/default``), trained there with the ``default`` preset if missing.
2. Kafka: the configured cluster (``RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS`` or ``[kafka]`` in
   ``--config``); when none is configured, a local Apache Kafka broker (``worker.tools.kafka_local``,
   instance ``demo``) started and stopped again at the end, also on Ctrl-C.
3. The topics from the settings (``transactions``, ``risk-scores``, ``transactions.dlq``), created
   with ``DEMO_PARTITIONS`` partitions when missing.
4. A ``riskstream worker`` as its own process (as in production: it shares no interpreter lock with
   the load), a synthetic stream at ``--rate`` events/s for ``--duration`` seconds (labelled fraud, a
   few deliberately invalid records) from this process, and a consumer of the scores and dead
   letters that feeds a live panel and the final summary.

Latency on the panel is event time (the load generator stamps ``event_time`` as it sends) to the
score record's Kafka timestamp, as a downstream reader sees it. The summary also gives it without
the first ``WARM_UP_S`` seconds, when the worker's caches and the broker's connections are still
warming. The worker's log and this process's library warnings go to files named in the summary.
"""

from __future__ import annotations

import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from kafka import KafkaProducer
from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.app import model_reads_history
from worker.kafka_clients import connection_config
from worker.preflight import changelog_topic
from worker.settings import Settings, load_settings
from worker.tools.kit import (
    OutcomeCollector,
    ToolError,
    WorkerProcess,
    bootstrap_configured,
    broker_for,
    ensure_topics,
    read_committed_consumer,
)
from worker.tools.produce import OutgoingEvent, ProduceReport, load_producer_config, send_paced, synthetic_events

DEMO_PARTITIONS = 4
WARM_UP_S = 5.0
_REFRESH_PER_S = 4
_WINDOW_S = 5.0  # the live panel's rates and percentiles cover this many recent seconds
_DRAIN_WAIT_S = 30.0  # after the last event is sent, how long to wait for its outcome
_READY_WAIT_S = 180.0


class DemoError(ToolError):
    """The demo cannot run; the message says what to do."""


def ensure_model(model: Path | None, default_dir: Path, console: Console, preset: str = "default") -> Path:
    """The checkpoint to serve: ``model`` if given (it must exist), else ``default_dir`` (for another
    ``preset``: its sibling of that name, e.g. ``models/sequence``), trained there with ``preset`` when
    it holds no model yet."""
    if preset != "default":
        default_dir = default_dir.parent / preset
    if model is not None:
        if not (model / "riskstream.json").is_file():
            raise DemoError(f"{model} is not a riskstream model directory (no riskstream.json)")
        return model
    if (default_dir / "riskstream.json").is_file():
        return default_dir
    from inference.train import TrainProgress, train

    console.print(f"No model at {default_dir} yet: training the {preset} model (a minute or a few, once).")
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"train {preset}: generating data", total=None, info="")

        def show(update: TrainProgress) -> None:
            if update.phase == "data":
                return
            info = f"holdout AUC {update.holdout_auc:.4f}" if update.holdout_auc is not None else ""
            if not info and update.loss is not None:
                info = f"loss {update.loss:.4f}"
            progress.update(
                task,
                description=f"train {preset}: epoch {update.epoch}/{update.epochs} {update.phase}",
                total=update.steps,
                completed=update.step,
                info=info,
            )

        result = train(default_dir, preset=preset, on_progress=show)
    console.print(f"[green]✓[/green] trained {result.metadata.name}: holdout AUC {result.holdout_auc:.4f}")
    return default_dir


def demo_log_dir() -> Path:
    """A fresh directory for this run's logs, under the user's cache."""
    from worker.tools.kafka_local import cache_root

    directory = cache_root() / "demo" / datetime.now().strftime("%Y%m%d-%H%M%S")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 30.0
    rate: float = 500.0
    fraud_rate: float = 0.01
    poison_rate: float = 0.002
    """A few deliberately invalid records, to show the dead-letter path."""
    model: Path | None = None
    preset: str = "default"
    """Without ``model``: the preset of the cached model (``sequence``: a model that reads account
    history, so the worker keeps state and the panel shows it)."""
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
    latencies_after_warm_up_ms: list[float] = field(default_factory=list)
    budget_ms: float = 50.0
    labelled_fraud: int = 0
    flagged: int = 0
    flagged_fraud: int = 0
    declined: int = 0
    worker_exit_code: int | None = None
    producing_s: float = 0.0
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def accounted(self) -> int:
        return self.scored + self.dead_letters

    @property
    def ok(self) -> bool:
        return self.worker_exit_code == 0 and self.accounted >= self.sent

    def misses(self, latencies: list[float]) -> int:
        return sum(1 for latency in latencies if latency > self.budget_ms)

    def percentile(self, q: float, latencies: list[float] | None = None) -> float:
        return _percentile(self.latencies_ms if latencies is None else latencies, q)


def _percentile(values: list[float] | np.ndarray, q: float) -> float:
    if len(values) == 0:
        return math.nan
    return float(np.percentile(np.asarray(values), q, method="inverted_cdf"))


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


def run_demo(options: DemoOptions, console: Console | None = None) -> DemoSummary:
    """Run the demo (see the module docstring) and return its summary.

    Raises ``WorkerError`` (``ConfigError``, ``DemoError``, ...) with a message the user can act on.
    Ctrl-C and SIGTERM raise ``KeyboardInterrupt`` after everything this function started (worker,
    producer, local broker) has been stopped.
    """
    console = console or Console()
    settings = load_settings(options.config)
    model_dir = ensure_model(options.model, settings.model.dir, console, options.preset)
    logs = demo_log_dir()
    # This process's own library warnings (kafka-python's retries) go to a file, not over the panel.
    library_log = logs / "demo.log"
    handler = logging.FileHandler(library_log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger("kafka").setLevel(logging.WARNING)
    previous_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        configured = bootstrap_configured(options.config)
        with broker_for(settings, configured=configured, instance="demo", status=console.status) as settings:
            if not configured:
                from worker.tools.kafka_local import KAFKA_VERSION

                bootstrap = settings.kafka.bootstrap_servers
                console.print(f"[green]✓[/green] Kafka {KAFKA_VERSION} at {bootstrap} (local instance demo)")
            return _run(settings, options, model_dir, console, {"worker": logs / "worker.log", "demo": library_log})
    finally:
        signal.signal(signal.SIGTERM, previous_sigterm)
        logging.getLogger().removeHandler(handler)
        handler.close()


def _run(
    settings: Settings, options: DemoOptions, model_dir: Path, console: Console, logs: dict[str, Path]
) -> DemoSummary:
    topics = settings.topics
    appended = {"message.timestamp.type": "LogAppendTime"}
    wanted: dict[str, dict[str, str]] = {topics.input: {}, topics.scores: appended, topics.dead_letters: appended}
    if model_reads_history(model_dir):  # the worker keeps account state: its compacted changelog
        wanted[changelog_topic(settings)] = {"cleanup.policy": "compact"}
    created = ensure_topics(settings, wanted, DEMO_PARTITIONS)
    if created:
        console.print(f"[green]✓[/green] created topics {', '.join(created)} ({DEMO_PARTITIONS} partitions)")

    overrides: dict[str, Any] = {
        "kafka": {"bootstrap_servers": settings.kafka.bootstrap_servers},
        "model": {"dir": model_dir},
    }
    if settings.kafka.security_protocol == "PLAINTEXT":
        overrides["kafka"]["security_protocol"] = "PLAINTEXT"
    worker = WorkerProcess(overrides, logs["worker"], config_file=options.config, inherit_settings=True)
    budget_ms = settings.batching.latency_budget_ms
    count = max(1, round(options.rate * options.duration_s))
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(1 << 30)
    labels = _Labels()
    collector = OutcomeCollector(topics.scores)
    stop_producing = threading.Event()
    produced: list[ProduceReport] = []
    failures: list[BaseException] = []
    producer: KafkaProducer | None = None
    consumer = None
    info: dict[str, str] = {}
    started = time.monotonic()
    started_wall_ms = time.time() * 1000.0

    def produce() -> None:
        assert producer is not None
        try:
            events = synthetic_events(
                count,
                seed=seed,
                fraud_rate=options.fraud_rate,
                poison_rate=options.poison_rate,
                max_event_bytes=settings.max_event_bytes,
            )
            report = send_paced(
                producer,
                topics.input,
                events,
                count=count,
                rate=options.rate,
                on_sent=labels.on_sent,
                should_stop=stop_producing.is_set,
            )
            produced.append(report)
        except BaseException as exc:  # surfaced on the main thread
            failures.append(exc)

    producer_thread = threading.Thread(target=produce, name="demo-producer", daemon=True)
    try:
        with console.status(f"starting a worker process: loading and warming up {model_dir}"):
            try:
                worker.wait_ready(_READY_WAIT_S, assigned=True)
            except ToolError as exc:
                raise DemoError(f"the worker did not start (log: {logs['worker']}): {exc}") from None
        info = next(iter(labels_ for labels_, _ in worker.samples("riskstream_model_info")), {})
        console.print(
            f"[green]✓[/green] worker pid {worker.process.pid}: model {info.get('name', '?')} {info.get('version', '')}"
            f" ({info.get('quantization', '?')} on {info.get('device', '?')}), metrics http://127.0.0.1:{worker.port}/metrics"
        )
        consumer = read_committed_consumer(
            connection_config(settings.kafka), [topics.scores, topics.dead_letters], at="end"
        )
        # The stream is sent as a bank's producer sends it: linger 5 ms, the default of the Java client
        # since Kafka 4.0 and of librdkafka. Each event_time is stamped before its linger, so the
        # linger counts against the budget. Without linger kafka-python sends one request per event
        # at 500/s, and its sender thread alone took about 0.1 core more of this 2-core machine
        # (and the worker 0.15 more, fetching one-record batches) on 2026-12-02.
        producer = KafkaProducer(**connection_config(settings.kafka), **load_producer_config())
        started = time.monotonic()
        started_wall_ms = time.time() * 1000.0
        producer_thread.start()
        gauges: dict[str, float] = {}
        produced_at: float | None = None
        next_refresh = 0.0
        with Live(console=console, refresh_per_second=_REFRESH_PER_S, transient=False) as live:
            while True:
                now = time.monotonic()
                collector.poll(consumer, timeout_ms=100)
                if failures:
                    raise DemoError(f"producing failed: {failures[0]}")
                if worker.process.poll() is not None:
                    raise DemoError(f"the worker stopped (exit code {worker.process.returncode}); see {logs['worker']}")
                if produced_at is None and not producer_thread.is_alive():
                    produced_at = now
                if now >= next_refresh:
                    gauges = _gauges(worker, gauges)
                    live.update(
                        _panel(collector, labels, options, info, budget_ms, now - started, count, gauges, worker.port)
                    )
                    next_refresh = now + 1 / _REFRESH_PER_S
                sent = produced[0].sent if produced else count
                if produced_at is not None and collector.outcomes >= sent:
                    break
                if produced_at is not None and now - produced_at > _DRAIN_WAIT_S:
                    break
            live.update(
                _panel(
                    collector, labels, options, info, budget_ms, time.monotonic() - started, count, gauges, worker.port
                )
            )
    finally:
        stop_producing.set()
        if producer_thread.ident is not None:
            producer_thread.join(timeout=10)
        with console.status("stopping the worker (drain and commit)"):
            exit_code = worker.stop(timeout_s=settings.drain_timeout_s + 15)
        if producer is not None:
            producer.close(timeout=5)
        if consumer is not None:
            consumer.close(autocommit=False)

    report = produced[0] if produced else ProduceReport()
    summary = _summarise(collector, labels, report, budget_ms, exit_code, started_wall_ms + WARM_UP_S * 1000, logs)
    console.line()  # off a terminal, Live leaves its last frame without a line break
    console.print(_summary_table(summary, info.get("name", "model")))
    return summary


def _gauges(worker: WorkerProcess, previous: dict[str, float]) -> dict[str, float]:
    try:
        gauges = {
            "in_flight": worker.metric("riskstream_in_flight_events"),
            "paused": worker.metric("riskstream_paused_partitions"),
        }
        accounts = worker.samples("riskstream_state_accounts")
        if accounts:  # a model that reads history: the worker keeps account state
            gauges["accounts"] = sum(value for _labels, value in accounts)
            gauges["restored"] = worker.metric("riskstream_state_restored_records_total")
            gauges["restoring"] = worker.metric("riskstream_state_restoring_partitions")
            gauges["changelog"] = worker.metric("riskstream_state_changelog_records_total")
        return gauges
    except OSError:
        return previous


def _summarise(
    collector: OutcomeCollector,
    labels: _Labels,
    report: ProduceReport,
    budget_ms: float,
    exit_code: int | None,
    warm_from_ms: float,
    logs: dict[str, Path],
) -> DemoSummary:
    ours = {tid: outcome for tid, outcome in collector.scores.items() if tid in labels.fraud}
    flagged = {tid for tid, outcome in ours.items() if outcome.decision != "approve"}
    fraud = {tid for tid, is_fraud in labels.fraud.items() if is_fraud}
    return DemoSummary(
        sent=report.sent,
        poison_sent=sum(report.poison.values()),
        scored=len(ours),
        dead_letters=len(collector.dead_letters),
        duplicates=collector.duplicates,
        latencies_ms=[outcome.latency_ms for outcome in ours.values()],
        latencies_after_warm_up_ms=[o.latency_ms for o in ours.values() if o.event_ms >= warm_from_ms],
        budget_ms=budget_ms,
        labelled_fraud=len(fraud),
        flagged=len(flagged),
        flagged_fraud=len(flagged & fraud),
        declined=sum(1 for outcome in ours.values() if outcome.decision == "decline"),
        worker_exit_code=exit_code,
        producing_s=report.seconds,
        logs=logs,
    )


def _panel(
    collector: OutcomeCollector,
    labels: _Labels,
    options: DemoOptions,
    info: dict[str, str],
    budget_ms: float,
    elapsed: float,
    count: int,
    gauges: dict[str, float],
    port: int,
) -> Panel:
    now_ms = time.time() * 1000.0
    recent = [o for o in collector.scores.values() if o.read_ms >= now_ms - _WINDOW_S * 1000]
    span = min(_WINDOW_S, max(elapsed, 1e-3))
    latencies = [o.latency_ms for o in recent]
    batches = [o.batch_size for o in recent]
    misses = sum(1 for o in collector.scores.values() if o.latency_ms > budget_ms)
    flagged = sum(1 for o in collector.scores.values() if o.decision != "approve")
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("elapsed", f"{elapsed:5.1f} s of {options.duration_s:.0f} s")
    table.add_row("produced", f"{labels.sent:,} of {count:,} events at {options.rate:,.0f}/s offered")
    table.add_row("scored", f"{len(collector.scores):,} events, {len(recent) / span:,.0f}/s now")
    table.add_row(
        "event → score",
        f"p50 {_percentile(latencies, 50):5.1f} ms   p99 {_percentile(latencies, 99):5.1f} ms   "
        f"(last {_WINDOW_S:.0f} s; budget {budget_ms:.0f} ms, {misses:,} misses so far)",
    )
    table.add_row("batch size", f"mean {np.mean(batches) if batches else 0:.1f}   max {max(batches, default=0)}")
    table.add_row(
        "backpressure", f"{gauges.get('in_flight', 0):.0f} in flight, {gauges.get('paused', 0):.0f} paused partitions"
    )
    if "accounts" in gauges:
        table.add_row(
            "account state",
            f"{gauges['accounts']:,.0f} accounts tracked · {gauges.get('changelog', 0):,.0f} changelog writes · "
            f"{gauges.get('restored', 0):,.0f} records restored · {gauges.get('restoring', 0):.0f} restoring",
        )
    table.add_row(
        "dead letters", f"{len(collector.dead_letters):,} (invalid input, by design {options.poison_rate:.1%})"
    )
    table.add_row("fraud", f"{flagged:,} flagged (review or decline) · {labels.fraud_sent:,} labelled fraud sent")
    title = (
        f"riskstream demo · {info.get('name', 'model')} ({info.get('quantization', '?')} on {info.get('device', '?')})"
    )
    return Panel(table, title=title, subtitle=f"worker metrics: http://127.0.0.1:{port}/metrics")


def _summary_table(summary: DemoSummary, model_name: str) -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rate = summary.sent / summary.producing_s if summary.producing_s > 0 else 0.0
    table.add_row("events in", f"{summary.sent:,} in {summary.producing_s:.1f} s ({rate:,.0f}/s)")
    table.add_row(
        "outcomes",
        f"{summary.scored:,} scores + {summary.dead_letters:,} dead letters "
        f"({summary.poison_sent:,} invalid records sent); {summary.duplicates:,} duplicate deliveries",
    )
    missing = max(0, summary.sent - summary.accounted)
    table.add_row("missing", f"{missing:,}" if missing else "none: every event has its outcome")
    table.add_row(
        "event → score",
        f"p50 {summary.percentile(50):.1f} ms · p95 {summary.percentile(95):.1f} ms · "
        f"p99 {summary.percentile(99):.1f} ms · max {summary.percentile(100):.1f} ms",
    )
    for label, latencies in (
        ("budget misses", summary.latencies_ms),
        (f"after {WARM_UP_S:.0f} s", summary.latencies_after_warm_up_ms),
    ):
        misses = summary.misses(latencies)
        share = misses / len(latencies) if latencies else 0.0
        verdict = (
            "" if label == "budget misses" else ("  within budget" if share <= 0.01 else "  [red]OVER BUDGET[/red]")
        )
        table.add_row(
            label,
            f"{misses:,} of {len(latencies):,} over {summary.budget_ms:.0f} ms ({share:.2%}); "
            f"p99 {summary.percentile(99, latencies):.1f} ms{verdict}",
        )
    recall = summary.flagged_fraud / summary.labelled_fraud if summary.labelled_fraud else math.nan
    table.add_row(
        "fraud",
        f"{summary.flagged:,} flagged ({summary.declined:,} declined) · {summary.labelled_fraud:,} labelled fraud, "
        f"{summary.flagged_fraud:,} of them flagged ({recall:.0%})",
    )
    table.add_row("worker", "stopped cleanly" if summary.worker_exit_code == 0 else f"exit {summary.worker_exit_code}")
    for name, path in summary.logs.items():
        table.add_row(f"{name} log", str(path))
    style = "green" if summary.ok else "red"
    return Panel(table, title=f"[{style}]summary[/{style}] · {model_name}", border_style=style)
