"""What the tools (demo, bench) and the tests share, once: worker processes, read_committed readers,
an outcome collector, and a handle on a broker to run against.

* :class:`WorkerProcess` — ``riskstream worker`` as a real OS process, configured through
  ``RISKSTREAM_*`` variables, with its probes and metrics at hand.
* :func:`read_committed_consumer` — a group-less ``read_committed`` consumer assigned to every partition
  of some topics, from their beginning or their end.
* :class:`OutcomeCollector` — scores and dead letters read back, first outcome per event (at-least-once
  replays counted as duplicates), with their latencies.
* :func:`broker_for` — the configured cluster, or a local broker started for the duration of a block;
  :func:`ensure_topics` creates what is missing.

The paced sender (the load generator's open loop) is :mod:`worker.tools.produce`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from worker.errors import WorkerError
from worker.kafka_clients import build_admin
from worker.settings import Settings

BOOTSTRAP_ENV = "RISKSTREAM_KAFKA__BOOTSTRAP_SERVERS"
BROKER_START_TIMEOUT_S = 300.0  # the first start downloads the broker jars with Maven


class ToolError(WorkerError):
    """A tool cannot do what it was asked; the message says what to do."""


# -- worker processes -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(values: dict[str, Any], prefix: str = "RISKSTREAM_") -> dict[str, str]:
    """Nested settings -> ``RISKSTREAM_SECTION__KEY`` environment variables (lists comma-joined)."""
    env: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key.upper()}"
        if isinstance(value, dict):
            env.update(settings_env(value, f"{name}__"))
        elif isinstance(value, list | tuple):
            env[name] = ",".join(str(item) for item in value)
        elif value is not None:
            env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class WorkerProcess:
    """One ``riskstream worker`` process; its combined output goes to ``log_path``.

    ``settings`` are nested like :class:`~worker.settings.Settings` and win over the environment. With
    ``inherit_settings`` the caller's own ``RISKSTREAM_*`` variables pass through (a tool run by a user);
    without, the process sees only ``settings`` (a test). The metrics and probe port is always a free
    local one, and logs are JSON lines.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        log_path: Path,
        *,
        config_file: Path | None = None,
        inherit_settings: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        observability = {
            **settings.get("observability", {}),
            "metrics_port": self.port,
            "metrics_host": "127.0.0.1",
            "log_format": "json",
        }
        env = {k: v for k, v in os.environ.items() if inherit_settings or not k.startswith("RISKSTREAM_")}
        env.update(settings_env({**settings, "observability": observability}))
        env["PYTHONWARNINGS"] = "ignore"
        env.update(extra_env or {})
        self.log_path = log_path
        self._log = log_path.open("ab")
        config = ["--config", str(config_file)] if config_file is not None else []
        # Our own interpreter and module with arguments we built: nothing here comes from a shell.
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "worker", "worker", *config], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def ready(self, *, assigned: bool = False) -> bool:
        """Whether ``/readyz`` passes (and, with ``assigned``, the worker holds partitions)."""
        try:
            status, body = self.get("/readyz")
        except OSError:
            return False
        return status == 200 and (not assigned or "partitions assigned" in body)

    def wait_ready(self, timeout_s: float = 120.0, *, assigned: bool = False) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready(assigned=assigned):
            if self.process.poll() is not None:
                raise ToolError(f"worker exited with {self.process.returncode}: {self.tail()}")
            if time.monotonic() > deadline:
                raise ToolError(f"worker not ready after {timeout_s:.0f}s: {self.tail()}")
            time.sleep(0.2)

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every sample named ``name`` on ``/metrics``: (labels, value)."""
        from prometheus_client.parser import text_string_to_metric_families

        _, text = self.get("/metrics")
        return [
            (dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def metric(self, name: str) -> float:
        """Sum of every sample of a metric (all label sets); 0 when absent."""
        return sum(value for _, value in self.samples(name))

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout_s)

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (drain and exit), then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._log.close()
        return self.process.returncode

    def wait_for_log(self, *needles: str, timeout_s: float = 60.0) -> str:
        """Wait until the log holds one of ``needles``; returns the one found."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            for needle in needles:
                if needle in text:
                    return needle
            time.sleep(0.2)
        raise ToolError(f"none of {needles} logged within {timeout_s}s: {self.tail()}")

    def tail(self, lines: int = 30) -> str:
        if not self._log.closed:
            self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


# -- reading topics -------------------------------------------------------------------------------


def read_committed_consumer(
    config: dict[str, Any], topics: Iterable[str], *, at: str = "beginning", **overrides: Any
) -> KafkaConsumer:
    """A group-less ``read_committed`` consumer assigned to every partition of ``topics``, positioned
    at their beginning or (``at="end"``) their current end, resolved before it returns."""
    consumer = KafkaConsumer(
        **config,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **{"fetch_max_wait_ms": 20, "max_poll_records": 5000, **overrides},
    )
    partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
    consumer.assign(partitions)
    if at == "end":
        consumer.seek_to_end(*partitions)
    else:
        consumer.seek_to_beginning(*partitions)
    for tp in partitions:
        consumer.position(tp)
    return consumer


@dataclass(frozen=True, slots=True)
class Outcome:
    """A score as a downstream reader sees it: when its event happened and when its score was written."""

    transaction_id: str
    decision: str
    event_ms: float
    written_ms: float
    """The score record's Kafka timestamp (``LogAppendTime`` on the demo's and bench's topics)."""
    read_ms: float
    batch_size: int

    @property
    def latency_ms(self) -> float:
        return max(0.0, self.written_ms - self.event_ms)


@dataclass
class OutcomeCollector:
    """Scores and dead letters read back; the first outcome of an event counts, later ones are duplicates."""

    scores_topic: str
    scores: dict[str, Outcome] = field(default_factory=dict)
    dead_letters: set[tuple[int, int]] = field(default_factory=set)
    duplicates: int = 0

    def add(self, record: Any, read_ms: float) -> None:
        body = json.loads(record.value)
        if record.topic != self.scores_topic:
            coordinate = (int(body["source"]["partition"]), int(body["source"]["offset"]))
            if coordinate in self.dead_letters:
                self.duplicates += 1
            self.dead_letters.add(coordinate)
            return
        transaction_id = body["transaction_id"]
        if transaction_id in self.scores:
            self.duplicates += 1  # an at-least-once replay: the first outcome counts
            return
        event_ms = datetime.fromisoformat(body["event_time"]).timestamp() * 1000.0
        # A relay's output is the input event itself: no decision, no batch.
        self.scores[transaction_id] = Outcome(
            transaction_id,
            str(body.get("decision", "")),
            event_ms,
            float(record.timestamp),
            read_ms,
            int(body.get("batch_size", 1)),
        )

    def poll(self, consumer: KafkaConsumer, timeout_ms: int = 100) -> int:
        """Read what ``consumer`` has; returns the number of records read."""
        polled = consumer.poll(timeout_ms=timeout_ms)
        read_ms = time.time() * 1000.0
        count = 0
        for records in polled.values():
            for record in records:
                self.add(record, read_ms)
                count += 1
        return count

    @property
    def outcomes(self) -> int:
        return len(self.scores) + len(self.dead_letters)


# -- a broker to run against ----------------------------------------------------------------------


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


@contextlib.contextmanager
def broker_for(settings: Settings, *, configured: bool, instance: str, status: Any = None) -> Iterator[Settings]:
    """The settings, pointing at a broker that runs for the duration of the block.

    When ``configured`` the settings' cluster is used as it is. Otherwise the local launcher starts (or
    reuses) the broker instance ``instance`` on free ports; a broker started here is stopped when the
    block ends, however it ends. ``status(text)`` (optional) is a context manager that shows progress.
    """
    if configured:
        yield settings
        return
    from worker.tools.kafka_local import KafkaLocalError, LocalKafka

    show = status if status is not None else (lambda _text: contextlib.nullcontext())
    local = LocalKafka(name=instance, port=0)
    started_here = not local.is_running()
    try:
        with show(f"starting a local Kafka broker ({instance}); the first start downloads its jars"):
            bootstrap = local.start(timeout=BROKER_START_TIMEOUT_S)
    except KafkaLocalError as exc:
        raise ToolError(f"the local Kafka broker did not start: {exc}; or set {BOOTSTRAP_ENV}") from exc
    try:
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": bootstrap, "security_protocol": "PLAINTEXT"})
        yield settings.model_copy(update={"kafka": kafka})
    finally:
        if started_here:
            with show("stopping the local Kafka broker"):
                local.stop()


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
