"""The worker's promises, against the real broker and the real (tiny, trained) model.

Every test counts every record with :func:`worker.tools.verify.verify`.
"""

from __future__ import annotations

import resource
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.worker.harness import (
    Topics,
    make_topics,
    produce_events,
    running_worker,
    wait_committed,
    wait_until,
    worker_settings,
)
from worker.engine import LoadedEngine
from worker.tools.kit import WorkerProcess
from worker.tools.verify import VerifyReport, committed_behind, outcome_counts, verify

pytestmark = pytest.mark.slow
GUARANTEES = ["at_least_once", "exactly_once"]


def check(kafka: Any, topics: Topics, *, group: bool = True) -> VerifyReport:
    return verify(
        kafka.config(),
        input_topic=topics.input,
        scores_topic=topics.scores,
        dead_letter_topic=topics.dead_letters,
        group_id=topics.group if group else None,
    )


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_20k_events_with_poison_each_end_as_exactly_one_outcome(
    kafka: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    engine: LoadedEngine,
    guarantee: str,
) -> None:
    topics = make_topics(topic_factory, 4)
    sent = produce_events(producer_factory(), topics.input, 20_000, poison_rate=0.01, seed=11)
    settings = worker_settings(kafka.bootstrap_servers, topics, guarantee=guarantee)
    with running_worker(settings, engine):
        wait_committed(kafka.config(), topics, timeout_s=240)
    report = check(kafka, topics)
    assert report.inputs == sent == 20_000
    assert report.lost == [] and report.duplicates == 0, report.summary()
    assert report.order_violations == [], report.order_violations[:5]
    assert report.committed_behind == {}
    assert 150 <= report.dead_letters <= 260, report.dead_letter_reasons  # ~1% poison, four kinds
    assert set(report.dead_letter_reasons) == {"malformed_json", "schema_invalid", "too_large", "pan_detected"}
    assert report.pans_found == 0


def _committed(kafka: Any, topics: Topics) -> dict[int, int]:
    """Committed offset per input partition (0 where nothing is committed yet)."""
    behind = committed_behind(kafka.config(), topics.group, topics.input)
    ends = {}
    for partition, (committed, _end) in behind.items():
        ends[partition] = committed or 0
    return ends


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_sigkill_mid_run_then_restart(
    kafka: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    serving_model: Path,
    tmp_path: Path,
    guarantee: str,
) -> None:
    topics = make_topics(topic_factory, 4)
    total = 12_000
    producer = producer_factory()
    feeder = threading.Thread(
        target=produce_events,
        args=(producer, topics.input, total),
        kwargs={"rate": 1500, "seed": 5, "poison_rate": 0.01},
    )
    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "worker_id": "crashy",
        "guarantee": guarantee,
        "model": {"dir": str(serving_model), "device": "cpu"},
        "consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "commit_interval_ms": 500},
    }
    first = WorkerProcess(settings, tmp_path / "first.log")
    try:
        first.wait_ready()
        feeder.start()
        wait_until(lambda: first.metric("riskstream_events_consumed_total") >= total * 0.3, 120, "30% progress")
        first.kill()  # SIGKILL: no drain, no commit, maybe an open transaction
    finally:
        first.stop()
    committed_at_kill = _committed(kafka, topics)
    second = WorkerProcess(settings, tmp_path / "second.log")
    try:
        second.wait_ready()
        feeder.join(120)
        wait_committed(kafka.config(), topics, timeout_s=240)
    finally:
        second.stop()
    report = check(kafka, topics)
    assert report.inputs == total
    assert report.lost == [], report.summary()
    assert report.order_violations == [], report.order_violations[:5]
    assert report.committed_behind == {}
    if guarantee == "exactly_once":
        assert report.duplicates == 0, report.summary()
    else:
        # Duplicates only inside the window that was consumed but not committed when the worker died.
        counts = outcome_counts(kafka.config(), [topics.scores, topics.dead_letters])
        duplicated = [coordinate for coordinate, n in counts.items() if n > 1]
        outside = [(p, o) for p, o in duplicated if o < committed_at_kill.get(p, 0)]
        assert outside == [], outside[:5]


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_sigterm_under_load_drains_commits_and_exits_zero(
    kafka: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    serving_model: Path,
    tmp_path: Path,
    guarantee: str,
) -> None:
    topics = make_topics(topic_factory, 4)
    total = 8_000
    producer = producer_factory()
    feeder = threading.Thread(
        target=produce_events, args=(producer, topics.input, total), kwargs={"rate": 1500, "seed": 9}
    )
    settings = {
        "kafka": {"bootstrap_servers": kafka.bootstrap_servers},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "worker_id": "graceful",
        "guarantee": guarantee,
        "drain_timeout_s": 20,
        "model": {"dir": str(serving_model), "device": "cpu"},
        "consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        feeder.start()
        wait_until(lambda: worker.metric("riskstream_events_consumed_total") >= total * 0.4, 120, "40% progress")
        started = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait(60)
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    assert code == 0, worker.tail()
    assert elapsed < 20 + 5, f"took {elapsed:.1f}s to drain"
    # Committed = processed: every record with an outcome is committed, and nothing past the commit
    # has an outcome (no published-but-uncommitted work to replay).
    committed = _committed(kafka, topics)
    report = check(kafka, topics, group=False)
    published = {}
    for partition, offset in outcome_counts(kafka.config(), [topics.scores, topics.dead_letters]):
        published[partition] = max(published.get(partition, -1), offset)
    for partition, last in published.items():
        assert committed.get(partition, 0) == last + 1, (partition, committed, published)
    assert report.duplicates == 0
    # After a restart nothing is reprocessed: the run completes with zero duplicates, zero losses.
    feeder.join(120)
    worker = WorkerProcess(settings, tmp_path / "restart.log")
    try:
        worker.wait_ready()
        wait_committed(kafka.config(), topics, timeout_s=240)
    finally:
        worker.stop()
    report = check(kafka, topics)
    assert report.inputs == total and report.lost == [] and report.duplicates == 0, report.summary()


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_a_second_worker_joins_and_later_leaves_without_losses(
    kafka: Any,
    topic_factory: Callable[..., str],
    producer_factory: Callable[..., Any],
    engine: LoadedEngine,
    guarantee: str,
) -> None:
    topics = make_topics(topic_factory, 4)
    total = 12_000
    producer = producer_factory()
    feeder = threading.Thread(
        target=produce_events, args=(producer, topics.input, total), kwargs={"rate": 1200, "seed": 13}
    )
    first = worker_settings(kafka.bootstrap_servers, topics, guarantee=guarantee)
    second = worker_settings(kafka.bootstrap_servers, topics, guarantee=guarantee)
    with running_worker(first, engine) as w1:
        feeder.start()
        wait_until(lambda: w1.metrics.consumed._value.get() >= total * 0.2, 60, "20% progress")
        with running_worker(second, engine) as w2:
            wait_until(lambda: w2.metrics.consumed._value.get() >= 500, 60, "the second worker to take work")
        feeder.join(120)
        wait_committed(kafka.config(), topics, timeout_s=240)
    report = check(kafka, topics)
    assert report.inputs == total
    assert report.lost == [], report.summary()
    assert report.order_violations == [], report.order_violations[:5]
    if guarantee == "exactly_once":
        assert report.duplicates == 0, report.summary()


def test_backpressure_pauses_on_memory_pressure_and_resumes(
    kafka: Any, topic_factory: Callable[..., str], producer_factory: Callable[..., Any], engine: LoadedEngine
) -> None:
    topics = make_topics(topic_factory, 4)
    pressure = threading.Event()

    def sample() -> tuple[int, int]:
        free, total = engine.sample_memory()
        return (0, total) if pressure.is_set() else (free, total)

    loaded = LoadedEngine(engine.engine, sample, engine.cap_for_free_bytes, engine.service_times)
    settings = worker_settings(
        kafka.bootstrap_servers, topics, backpressure={"max_in_flight": 512, "probe_interval_ms": 20}
    )
    producer = producer_factory()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with running_worker(settings, loaded) as worker:
        produce_events(producer, topics.input, 2000, seed=21)
        wait_committed(kafka.config(), topics, timeout_s=120)
        pressure.set()
        assert worker.consumer is not None
        wait_until(lambda: worker.metrics.paused_partitions._value.get() == 4, 30, "all partitions paused")
        consumed_when_paused = worker.metrics.consumed._value.get()
        rebalances = worker.metrics.rebalances._value.get()
        produce_events(producer, topics.input, 6000, seed=22)
        # While paused: the member keeps polling (stays in the group) and takes nothing new.
        time.sleep(3)
        assert worker.metrics.consumed._value.get() <= consumed_when_paused + 1000  # at most what was prefetched
        assert worker.metrics.rebalances._value.get() == rebalances
        assert worker.source is not None and len(worker.source.assigned) == 4
        assert worker.metrics.pauses.labels("memory")._value.get() >= 1
        pressure.clear()
        wait_until(lambda: worker.metrics.paused_partitions._value.get() == 0, 30, "partitions resumed")
        wait_committed(kafka.config(), topics, timeout_s=120)
        assert worker.metrics.rebalances._value.get() == rebalances
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert rss_growth_mb < 512, f"resident memory grew by {rss_growth_mb:.0f} MB"
    report = check(kafka, topics)
    assert report.inputs == 8000 and report.lost == [] and report.duplicates == 0, report.summary()
