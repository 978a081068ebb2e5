"""The processes a benchmark runs besides riskstream: the load generator and the two alternatives.

Each runs as its own OS process (``python -m worker.tools.bench load|relay|naive``), so the load
generator, the system under test and the harness's measuring consumer never share an interpreter
lock. Kafka connection and security come from the riskstream settings (environment and
``--config``), exactly as for ``riskstream worker``.

* :func:`generate_load`: open loop, fixed rate, CreateTime stamps; each event's ``event_time`` is
  set as it is sent. Writes a JSON report naming the events of the measurement window.
* :func:`relay`: consume and produce the same bytes with riskstream's own client settings; no
  parsing, no model. The Kafka client's ceiling on this machine.
* :func:`naive`: the per-event loop most teams write first: poll one record, validate it, score a
  batch of one, produce the score and wait for the acknowledgement, commit; then the next.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import kafka.errors as kafka_errors
import structlog
from kafka import KafkaConsumer, KafkaProducer

from worker.kafka_clients import (
    build_consumer,
    build_producer,
    connection_config,
    guard_against_lost_join_results,
    register_io_waits_without_formatting_a_miss,
    skip_the_coordinator_round_trip_when_connected,
)
from worker.settings import Settings
from worker.tools.produce import OutgoingEvent, measuring_producer_config, send_paced, synthetic_events

log = structlog.get_logger("riskstream.bench")

_POLL_MS = 50
_ASSIGNMENT_WAIT_S = 60.0


def _stop_on_sigterm() -> threading.Event:
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    return stop


def _subscribe_and_signal_ready(
    consumer: KafkaConsumer, topic: str, ready_file: Path, stop: threading.Event, max_records: int | None = None
) -> list[Any]:
    """Subscribe to ``topic``, poll until the group assigns partitions, then create ``ready_file``.

    Returns the records polled meanwhile. Subscribes only once the topic's partitions are known:
    a member that joins before its metadata shows the topic gets no partitions until the next
    metadata refresh (minutes away).
    """
    deadline = time.monotonic() + _ASSIGNMENT_WAIT_S
    while not consumer.partitions_for_topic(topic):
        if stop.is_set() or time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} not found")
        time.sleep(0.1)
    consumer.subscribe([topic])
    early: list[Any] = []
    while not consumer.assignment():
        if stop.is_set() or time.monotonic() > deadline:
            raise TimeoutError("no partitions assigned")
        for records in consumer.poll(timeout_ms=_POLL_MS, max_records=max_records).values():
            early.extend(records)
    ready_file.write_text("ready\n")
    return early


# -- load generator -----------------------------------------------------------------------------


def generate_load(
    settings: Settings, *, topic: str, rate: float, warmup_s: float, seconds: float, seed: int, report: Path
) -> None:
    """Send ``rate`` events/s for ``warmup_s`` then ``seconds``; write what was sent to ``report``.

    The events are generated before the clock starts (the generator costs more than sending), and
    serialized as they are sent, which stamps ``event_time`` with the send time. The producer does
    not linger (see :func:`worker.tools.produce.measuring_producer_config`).
    """
    warm_count = round(rate * warmup_s)
    window_count = max(1, round(rate * seconds))
    total = warm_count + window_count
    events = synthetic_events(total, seed=seed, pregenerate=True)
    producer = KafkaProducer(**connection_config(settings.kafka), **measuring_producer_config())
    window_ids: list[str] = []
    window_ms: list[float] = []  # send times of the window's first and last event
    sent = 0

    def on_sent(item: OutgoingEvent) -> None:
        nonlocal sent
        if sent >= warm_count:
            assert item.transaction_id is not None  # no poison in benchmark load
            window_ids.append(item.transaction_id)
            now_ms = time.time() * 1000.0
            if not window_ms:
                window_ms.append(now_ms)
            window_ms[1:] = [now_ms]
        sent += 1

    try:
        # send_paced waits before it takes each event, so outgoing_events stamps it as it is sent.
        outcome = send_paced(producer, topic, events, count=total, rate=rate, on_sent=on_sent)
    finally:
        producer.close(timeout=10)
    start_ms, end_ms = window_ms[0], window_ms[-1]
    span_s = (end_ms - start_ms) / 1000.0
    report.write_text(
        json.dumps(
            {
                "offered_per_s": rate,
                "sent": outcome.sent,
                "window_start_ms": start_ms,
                "window_end_ms": end_ms,
                "generator_per_s": (len(window_ids) - 1) / span_s if span_s > 0 else rate,
                "window_ids": window_ids,
            }
        ),
        encoding="utf-8",
    )


# -- relay ceiling ------------------------------------------------------------------------------


def relay(settings: Settings, *, input_topic: str, output_topic: str, ready_file: Path) -> None:
    """Copy records from ``input_topic`` to ``output_topic`` until SIGTERM, at least once.

    Same consumer and producer settings as ``riskstream worker`` (from ``settings``); offsets are
    committed every ``consumer.commit_interval_ms`` after a flush, so nothing is committed before
    the broker has acknowledged its copy.
    """
    stop = _stop_on_sigterm()
    consumer = build_consumer(settings)
    producer = build_producer(settings)
    commit_every_s = settings.consumer.commit_interval_ms / 1000
    try:
        pending = _subscribe_and_signal_ready(consumer, input_topic, ready_file, stop)
        last_commit = time.monotonic()
        while True:
            for record in pending:
                producer.send(output_topic, key=record.key, value=record.value)
            if stop.is_set():
                break
            # Every record polled so far has been sent: flushed, its offset may be committed.
            if time.monotonic() - last_commit >= commit_every_s:
                producer.flush()
                consumer.commit()
                last_commit = time.monotonic()
            pending = [r for records in consumer.poll(timeout_ms=_POLL_MS).values() for r in records]
        producer.flush()
        consumer.commit()
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)


# -- naive baseline -----------------------------------------------------------------------------


def naive(settings: Settings, *, input_topic: str, output_topic: str, ready_file: Path) -> None:
    """Score one event at a time until SIGTERM: the loop most teams write first, written honestly.

    Per record: ``poll(max_records=1)``, decode and validate, featurize, ``score([features])``,
    build the same ``RiskScore`` riskstream publishes, ``send(...).get()`` (wait for the broker's
    acknowledgement), ``commit()``. Same model, device, quantization and threads as the worker
    (from ``settings.model``), and the same consumer fetch settings. Invalid records are logged and
    skipped (there are none in benchmark load).
    """
    from inference import Scorer
    from schemas import DecodeError, ModelRef, RiskScore, SourceRef, decode
    from worker.engine import resolve_device

    stop = _stop_on_sigterm()
    model = settings.model
    scorer = Scorer.load(
        model.dir,
        device=resolve_device(model.device),
        quantization=model.quantization,
        threads=model.threads,
        max_batch=1,
    )
    info = scorer.info
    model_ref = ModelRef(name=info.name, version=info.version, quantization=info.quantization, device=info.device)
    budget_ms = settings.batching.latency_budget_ms
    guard_against_lost_join_results()  # the same kafka-python fixes the worker runs with
    skip_the_coordinator_round_trip_when_connected()
    register_io_waits_without_formatting_a_miss()
    consumer = KafkaConsumer(
        **connection_config(settings.kafka),
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.consumer.fetch_max_wait_ms,
    )

    def commit() -> None:
        try:
            consumer.commit()
        except (kafka_errors.RebalanceInProgressError, kafka_errors.CommitFailedError) as exc:
            # The group is rebalancing: the next poll rejoins; what was not committed is replayed.
            log.warning("commit failed during a rebalance", error=type(exc).__name__)

    producer = KafkaProducer(**connection_config(settings.kafka), acks="all", linger_ms=0)

    def handle(record: Any) -> None:
        event = decode(record.value, max_bytes=settings.max_event_bytes)
        if isinstance(event, DecodeError):
            log.warning(
                "invalid record skipped",
                where=f"{record.topic}[{record.partition}]@{record.offset}",
                kind=event.kind.value,
            )
            return
        score = float(scorer.score([scorer.featurize(event)]).scores[0])
        now = datetime.now(UTC)
        latency_ms = max(0.0, now.timestamp() * 1000.0 - record.timestamp)
        message = RiskScore(
            transaction_id=event.transaction_id,
            account_id=event.account_id,
            score=round(score, 6),
            decision=scorer.thresholds.decide(score),
            model=model_ref,
            event_time=event.event_time,
            scored_time=now,
            latency_ms=round(latency_ms, 3),
            batch_size=1,
            late=latency_ms > budget_ms,
            worker_id=settings.worker_id,
            source=SourceRef(topic=record.topic, partition=record.partition, offset=record.offset),
        )
        producer.send(output_topic, key=record.key, value=message.model_dump_json().encode()).get(timeout=30)

    try:
        for record in _subscribe_and_signal_ready(consumer, input_topic, ready_file, stop, max_records=1):
            handle(record)
            commit()
        while not stop.is_set():
            for records in consumer.poll(timeout_ms=_POLL_MS, max_records=1).values():
                for record in records:
                    handle(record)
                    commit()
    finally:
        producer.close(timeout=10)
        consumer.close(autocommit=False)
