"""Fault-injection harness: a fed stream, worker processes, an output monitor, and a verdict.

Modelled on Kafka's own transaction system tests (copiers killed after a share of progress,
hard broker bounces, read_committed verification of set equality and zero duplicates) and on
Jepsen's checks (lost writes, duplicates, per-key order).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition

from tests.worker.harness import Topics
from worker.tools.kit import WorkerProcess
from worker.tools.produce import send_paced, synthetic_events
from worker.tools.state_check import StateReport, check_state
from worker.tools.verify import VerifyReport, committed_behind, outcome_counts, verify


@dataclass
class Row:
    fault: str
    guarantee: str
    events: int
    lost: int
    duplicates: int
    recovery_s: float | None
    note: str = ""

    def cells(self) -> list[str]:
        recovery = "-" if self.recovery_s is None else f"{self.recovery_s:.1f}"
        return [self.fault, self.guarantee, str(self.events), str(self.lost), str(self.duplicates), recovery, self.note]


ROWS: list[Row] = []
SCENARIOS: list[Scenario] = []  # cleaned up after each test, whatever happened
HEADER = ["fault", "guarantee", "events", "lost", "duplicates", "max recovery (s)", "note"]


def render_table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Cluster:
    """Where the scenario runs: bootstrap plus kafka-python security kwargs."""

    bootstrap_servers: str
    client_config: dict[str, Any] = field(default_factory=dict)
    local: Any = None  # the LocalKafka, when the scenario may kill and restart it

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap_servers, **self.client_config, **overrides}

    def worker_kafka_settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers}
        if self.client_config.get("security_protocol") == "SASL_SSL":
            settings |= {
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": self.client_config["sasl_mechanism"],
                "sasl_username": self.client_config["sasl_plain_username"],
                "sasl_password": str(self.client_config["sasl_plain_password"]),
                "ssl_cafile": self.client_config["ssl_cafile"],
            }
        return settings


class OutputMonitor(threading.Thread):
    """Samples the end offsets of the output topics (read_committed: what readers can see)."""

    def __init__(self, cluster: Cluster, topics: list[str], partitions: int) -> None:
        super().__init__(daemon=True, name="output-monitor")
        self._cluster = cluster
        self._tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        self._halt = threading.Event()
        self.samples: list[tuple[float, int]] = []

    def run(self) -> None:
        consumer: KafkaConsumer | None = None
        while not self._halt.wait(0.2):
            try:
                if consumer is None:
                    consumer = KafkaConsumer(
                        **self._cluster.config(group_id=None, isolation_level="read_committed", request_timeout_ms=3000)
                    )
                ends = consumer.end_offsets(self._tps)
                self.samples.append((time.monotonic(), sum(ends.values())))
            except Exception:  # the broker may be down on purpose; sample again later
                if consumer is not None:
                    with contextlib.suppress(Exception):
                        consumer.close(autocommit=False)
                consumer = None
        if consumer is not None:
            consumer.close(autocommit=False)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    @property
    def total(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def resumed(self, since: float, baseline: int, *, timeout_s: float = 240.0, min_increase: int = 20) -> float:
        """Seconds from ``since`` until output grew past ``baseline``; waits for it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, total in list(self.samples):
                if at >= since and total > baseline + min_increase:
                    return at - since
            time.sleep(0.1)
        raise AssertionError(f"no progress within {timeout_s}s of the fault")


class Feeder(threading.Thread):
    """Open-loop producer of synthetic events (with a share of poison) at a fixed rate."""

    def __init__(self, cluster: Cluster, topic: str, count: int, rate: float, poison_rate: float, seed: int) -> None:
        super().__init__(daemon=True, name="feeder")
        self._cluster = cluster
        self._topic = topic
        self.count = count
        self._rate = rate
        self._poison_rate = poison_rate
        self._seed = seed
        self.sent = 0
        self.poison: dict[str, int] = {}
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def stop(self) -> None:
        """Stop sending (a failed scenario's feeder must not outlive its topics into the next test)."""
        self._halt.set()

    def run(self) -> None:
        producer = KafkaProducer(**self._cluster.config(acks="all", linger_ms=5, retries=2**31 - 1))
        try:
            events = synthetic_events(self.count, seed=self._seed, poison_rate=self._poison_rate)

            def count(n: int) -> None:
                self.sent += n

            report = send_paced(
                producer,
                self._topic,
                events,
                count=self.count,
                rate=self._rate,
                on_progress=count,
                should_stop=self._halt.is_set,
            )
            self.sent = report.sent
            self.poison = report.poison
        except BaseException as exc:
            self.error = exc
        finally:
            try:
                producer.close(timeout=30)
            except BaseException as exc:  # recorded, never raised in the thread
                self.error = self.error or exc


class Scenario:
    """One fault scenario: topics, a feeder, worker processes, an output monitor, a verdict."""

    def __init__(
        self,
        *,
        cluster: Cluster,
        topic_factory: Callable[..., str],
        tmp_path: Path,
        guarantee: str,
        model_dir: Path,
        events: int,
        rate: float,
        partitions: int = 8,
        poison_rate: float = 0.01,
        seed: int = 0,
        worker_settings: dict[str, Any] | None = None,
        history: bool = False,
    ) -> None:
        """``history``: ``model_dir`` reads account history, so the workers keep state (each worker id
        its own local store, like a pod's volume) and the verdict includes :meth:`check_state`."""
        self.cluster = cluster
        self.history = history
        self.guarantee = guarantee
        self.events = events
        self.partitions = partitions
        self._tmp = tmp_path
        self._model_dir = model_dir
        self._extra = worker_settings or {}
        target = cluster.local if cluster.local is not None else cluster
        self.topics = Topics(
            input=topic_factory(partitions, prefix="tx", cluster=target),
            scores=topic_factory(partitions, prefix="scores", cluster=target),
            dead_letters=topic_factory(partitions, prefix="dlq", cluster=target),
            group=f"riskstream-fault-{uuid.uuid4().hex[:10]}",
        )
        self.feeder = Feeder(cluster, self.topics.input, events, rate, poison_rate, seed)
        self.monitor = OutputMonitor(cluster, [self.topics.scores, self.topics.dead_letters], partitions)
        self.workers: list[WorkerProcess] = []
        self._started = 0
        SCENARIOS.append(self)

    # -- workers --------------------------------------------------------------------------------

    def settings(self, worker_id: str) -> dict[str, Any]:
        base: dict[str, Any] = {
            "kafka": self.cluster.worker_kafka_settings(),
            "topics": {
                "input": self.topics.input,
                "scores": self.topics.scores,
                "dead_letters": self.topics.dead_letters,
            },
            "group_id": self.topics.group,
            "worker_id": worker_id,
            "guarantee": self.guarantee,
            "model": {"dir": str(self._model_dir), "device": "cpu", "threads": 1},
            "consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "commit_interval_ms": 500},
            "state": {"dir": str(self._tmp / f"state-{worker_id}")},
        }
        if self.history:
            # fp32: int8 dynamic quantization scales activations per batch, so a score would depend
            # on which events shared its batch; fp32 scores agree within 1e-5 whatever the batching.
            base["model"]["quantization"] = "fp32"
            base["topics"]["create_missing"] = True  # the compacted changelog, made by the first worker
        for key, value in self._extra.items():
            base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
        return base

    def start_worker(self, worker_id: str, *, wait: bool = True) -> WorkerProcess:
        self._started += 1
        worker = WorkerProcess(self.settings(worker_id), self._tmp / f"{worker_id}-{self._started}.log")
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.process.poll() is None]

    # -- running --------------------------------------------------------------------------------

    def start(self) -> None:
        self.monitor.start()
        self.feeder.start()

    def wait_output(self, fraction: float, timeout_s: float = 240.0) -> None:
        target = int(self.events * fraction)
        deadline = time.monotonic() + timeout_s
        while self.monitor.total < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"output stuck at {self.monitor.total} < {target}: {self._tails()}")
            time.sleep(0.1)

    def finish(self, timeout_s: float = 300.0) -> None:
        """Wait for the feeder, then until every input offset is committed; stop the workers."""
        self.feeder.join(timeout_s)
        assert not self.feeder.is_alive() and self.feeder.error is None, self.feeder.error
        deadline = time.monotonic() + timeout_s
        while committed_behind(self.cluster.config(), self.topics.group, self.topics.input):
            if time.monotonic() > deadline:
                behind = committed_behind(self.cluster.config(), self.topics.group, self.topics.input)
                raise AssertionError(f"commits behind the end: {behind}\n{self._tails()}")
            time.sleep(0.5)

    def stop_all(self) -> list[int]:
        codes = []
        for worker in self.workers:
            worker.stop()
            codes.append(worker.process.returncode)
        self.monitor.stop()
        return codes

    def cleanup(self) -> None:
        """Leave nothing running: stop the feeder, resume frozen workers, stop them, stop the monitor."""
        self.feeder.stop()
        if self.feeder.is_alive():
            self.feeder.join(40)
        for worker in self.workers:
            if worker.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.signal(signal.SIGCONT)
                worker.kill()
            worker.stop()
        if self.monitor.is_alive():
            self.monitor.stop()

    def _tails(self) -> str:
        return "\n".join(f"--- {w.log_path.name}\n{w.tail(15)}" for w in self.workers[-3:])

    # -- verdict --------------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        return verify(
            self.cluster.config(),
            input_topic=self.topics.input,
            scores_topic=self.topics.scores,
            dead_letter_topic=self.topics.dead_letters,
            group_id=self.topics.group,
        )

    def check_state(self) -> StateReport:
        """The changelog and every score against one clean pass over the input (``history`` only)."""
        return check_state(
            self.cluster.config(),
            input_topic=self.topics.input,
            scores_topic=self.topics.scores,
            changelog_topic=f"{self.topics.input}.state",
            model_dir=self._model_dir,
        )

    def committed(self) -> dict[int, int]:
        behind = committed_behind(self.cluster.config(), self.topics.group, self.topics.input)
        return {p: (c or 0) for p, (c, _end) in behind.items()}

    def duplicated_coordinates(self) -> list[tuple[int, int]]:
        counts = outcome_counts(self.cluster.config(), [self.topics.scores, self.topics.dead_letters])
        return [c for c, n in counts.items() if n > 1]

    def record(self, fault: str, report: VerifyReport, recovery_s: float | None, note: str = "") -> Row:
        row = Row(fault, self.guarantee, report.inputs, len(report.lost), report.duplicates, recovery_s, note)
        ROWS.append(row)
        return row

    def assert_sound(self, report: VerifyReport) -> None:
        """What every scenario must satisfy, whatever the fault."""
        assert report.inputs == self.events, report.summary()
        assert report.lost == [], f"lost {len(report.lost)}: {report.lost[:10]}"
        assert report.order_violations == [], report.order_violations[:5]
        assert report.committed_behind == {}, report.committed_behind
        assert report.pans_found == 0, report.pan_locations[:5]
        if self.guarantee == "exactly_once":
            assert report.duplicates == 0, report.summary()
