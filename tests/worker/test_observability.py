"""Operators' view: metrics that add up, probes that mean something, and no card data anywhere."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from schemas.redaction import contains_pan
from tests.worker.harness import (
    make_topics,
    produce_events,
    running_worker,
    wait_committed,
    wait_until,
    worker_settings,
)
from worker.engine import LoadedEngine
from worker.tools.kit import WorkerProcess
from worker.tools.produce import TEST_PAN, send_paced, synthetic_events
from worker.tools.verify import read_topic, verify

pytestmark = pytest.mark.slow


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def samples(text: str) -> dict[str, float]:
    """Metric samples summed over label sets: ``{sample_name: value}``."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def labelled(text: str, name: str, label: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[sample.labels[label]] = sample.value
    return found


def test_metrics_add_up_to_the_records_processed(
    kafka: Any, topic_factory: Callable[..., str], producer_factory: Callable[..., Any], engine: LoadedEngine
) -> None:
    topics = make_topics(topic_factory, 4)
    sent = produce_events(producer_factory(), topics.input, 3000, poison_rate=0.02, seed=31)
    settings = worker_settings(kafka.bootstrap_servers, topics)
    with running_worker(settings, engine) as worker:
        wait_committed(kafka.config(), topics, timeout_s=120)
        assert worker.health is not None
        status, text = get(worker.health.port, "/metrics")
    assert status == 200
    report = verify(
        kafka.config(), input_topic=topics.input, scores_topic=topics.scores, dead_letter_topic=topics.dead_letters
    )
    values = samples(text)
    assert values["riskstream_events_consumed_total"] == sent
    assert values["riskstream_events_scored_total"] == report.scores
    assert values["riskstream_dead_letters_total"] == report.dead_letters
    assert labelled(text, "riskstream_dead_letters_total", "reason") == {
        reason: float(n) for reason, n in report.dead_letter_reasons.items()
    }
    # Every score's latency was observed once; batch sizes add up to the events scored.
    assert values["riskstream_event_to_score_latency_seconds_count"] == report.scores
    assert values["riskstream_batch_size_sum"] == report.scores
    # Produced before the worker started: a backlog, so every score is flagged late, and counted.
    assert report.late == report.scores
    assert report.scores <= values["riskstream_late_events_total"] <= sent
    assert values["riskstream_in_flight_events"] == 0
    assert values["riskstream_commits_total"] >= 1
    assert values["riskstream_model_info"] == 1
    assert 0 < values["riskstream_batch_cap"] <= 256
    assert values["riskstream_device_memory_total_bytes"] > 0


def test_readyz_turns_ready_after_warm_up_and_healthz_fails_when_the_loop_is_stuck(
    kafka: Any, topic_factory: Callable[..., str], serving_model: Path
) -> None:
    topics = make_topics(topic_factory, 2)
    settings = worker_settings(
        kafka.bootstrap_servers,
        topics,
        model={"dir": str(serving_model), "device": "cpu"},
        observability={"metrics_port": 0, "metrics_host": "127.0.0.1", "stall_after_s": 1.0},
    )
    from worker.app import Worker

    worker = Worker(settings)  # loads and warms up the model itself, probes already answering
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: worker.health is not None, 30, "the health server")
        assert worker.health is not None
        port = worker.health.port
        seen_not_ready = get(port, "/readyz")[0] == 503  # while the model loads (may already be over)
        wait_until(lambda: get(port, "/readyz")[0] == 200, 120, "readiness after warm-up")
        assert worker.ready.is_set()
        assert seen_not_ready or worker.ready.is_set()
        assert get(port, "/healthz") == (200, "ok\n")

        # Inject a stuck poll loop: the next iteration blocks until released.
        assert worker.source is not None
        release = threading.Event()
        original = worker.source.iteration
        worker.source.iteration = lambda: release.wait()  # type: ignore[method-assign]
        wait_until(lambda: get(port, "/healthz")[0] == 503, 10, "liveness to fail")
        status, detail = get(port, "/healthz")
        assert status == 503 and "stalled" in detail
        worker.source.iteration = original  # type: ignore[method-assign]
        release.set()
        wait_until(lambda: get(port, "/healthz")[0] == 200, 10, "liveness to recover")
    finally:
        worker.request_stop()
        runner.join(60)
    assert worker.exit_code == 0


def test_no_card_number_reaches_logs_metrics_or_dead_letters(
    kafka: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    serving_model: Path,
    tmp_path: Path,
) -> None:
    topics = make_topics(topic_factory, 2)
    producer = producer_factory()
    # Valid events, and events whose free text carries a full card number (poison kind pan_in_text).
    sent = produce_events(producer, topics.input, 1500, poison_rate=0.2, seed=41)
    events = synthetic_events(300, seed=42, poison_rate=1.0, poison_kinds=("pan_in_text",))
    sent += send_paced(producer, topics.input, events, count=300, rate=None).sent
    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "worker_id": "pan-audit",
        "model": {"dir": str(serving_model), "device": "cpu"},
        "observability": {"log_level": "debug"},
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        wait_committed(kafka.config(), topics, timeout_s=120)
        _, metrics_text = worker.get("/metrics")
    finally:
        worker.stop()
    logs = (tmp_path / "worker.log").read_text(errors="replace")
    assert "pan_detected" in logs  # the records were seen and logged (redacted) ...
    assert not contains_pan(logs)  # ... and no card number made it into any log line
    assert TEST_PAN.replace(" ", "") not in logs.replace(" ", "")
    assert not contains_pan(metrics_text)
    letters = list(read_topic(kafka.config(), topics.dead_letters))
    assert sum(b"pan_detected" in r.value for r in letters) >= 300
    for record in letters:
        assert not contains_pan(record.value.decode(errors="replace"))
        assert not contains_pan((record.key or b"").decode(errors="replace"))
    report = verify(
        kafka.config(), input_topic=topics.input, scores_topic=topics.scores, dead_letter_topic=topics.dead_letters
    )
    assert report.inputs == sent and report.lost == [] and report.pans_found == 0, report.summary()
