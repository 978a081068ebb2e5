"""Helpers to run workers against the real broker and wait for them, shared by worker tests."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import kafka.errors as kafka_errors
from kafka import KafkaProducer

from worker.app import LoadedEngine, Worker
from worker.settings import Settings, load_settings
from worker.tools.produce import send_paced, synthetic_events
from worker.tools.verify import committed_behind


@dataclass(frozen=True)
class Topics:
    input: str
    scores: str
    dead_letters: str
    group: str


def make_topics(topic_factory: Callable[..., str], partitions: int, cluster: Any = None) -> Topics:
    return Topics(
        input=topic_factory(partitions, prefix="tx", cluster=cluster),
        scores=topic_factory(partitions, prefix="scores", cluster=cluster),
        dead_letters=topic_factory(partitions, prefix="dlq", cluster=cluster),
        group=f"riskstream-test-{uuid.uuid4().hex[:10]}",
    )


def worker_settings(bootstrap: str, topics: Topics, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {"input": topics.input, "scores": topics.scores, "dead_letters": topics.dead_letters},
        "group_id": topics.group,
        "worker_id": f"w-{uuid.uuid4().hex[:8]}",
        "observability": {"metrics_port": 0, "metrics_host": "127.0.0.1"},
        "consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return load_settings(**base)


def produce_events(
    producer: KafkaProducer,
    topic: str,
    count: int,
    *,
    poison_rate: float = 0.0,
    seed: int = 0,
    rate: float | None = None,
) -> int:
    events = synthetic_events(count, seed=seed, poison_rate=poison_rate)
    return send_paced(producer, topic, events, count=count, rate=rate).sent


@contextmanager
def running_worker(settings: Settings, loaded: LoadedEngine) -> Iterator[Worker]:
    worker = Worker(settings, loaded)
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        assert worker.ready.wait(60), "worker did not start"
        yield worker
    finally:
        worker.request_stop()
        thread.join(90)
        assert not thread.is_alive(), "worker did not stop"


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def wait_committed(config: dict[str, Any], topics: Topics, timeout_s: float = 120.0) -> None:
    """Until the group's committed offsets reach the input's end offsets on every partition."""

    def caught_up() -> bool:
        try:
            return not committed_behind(config, topics.group, topics.input)
        except kafka_errors.KafkaError as exc:
            if not exc.retriable:
                raise
            return False  # e.g. NotCoordinatorError while a fresh broker loads its offsets topic: ask again

    wait_until(caught_up, timeout_s, "commits to reach the end")
