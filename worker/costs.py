"""Where the CPU goes: CPU seconds per pipeline stage, from per-thread CPU clocks.

Each stage thread times its own sections with ``time.thread_time()`` (CPU time of the calling
thread only: waiting, sleeping and other threads do not count) and adds them to
``riskstream_stage_cpu_seconds_total{stage}``. kafka-python's own I/O threads (the consumer's
network thread, the producer's sender) are read from ``/proc/self/task/<tid>/stat`` at each scrape.
Divided by the events consumed over the same window, these are the "µs per event per stage" that
``riskstream bench`` reports.

Stages:

=================  ===========================================================================
``poll``           the poll loop's own work around ``KafkaConsumer.poll``: fetched-record parsing
                   (kafka-python does it on the calling thread), backpressure, commits, lag
``decode``         size checks, JSON parsing and schema validation (``schemas.decode``)
``pan_scan``       looking for card numbers in identifier fields (the free-text scan is in decode)
``featurize``      event -> token ids
``state``          reading an account's history and applying the event to it (behavioural state)
``batching``       the scoring thread's own work around the model: taking records, closing batches
``inference``      the model's forward passes (``ScoringEngine.score``)
``encode``         scores and dead letters -> wire records (``OutcomeWriter``)
``produce``        ``KafkaProducer.send`` calls (record accumulation on the publisher thread)
``acks``           waiting for and settling acknowledgements (offset tracker, metrics)
``commit``         transaction control (exactly-once) on the publisher thread
``network_io``     kafka-python's network thread (``kafka-io-<client_id>``: socket reads and writes,
                   the consumer's fetches and heartbeats)
``producer_io``    kafka-python's producer sender thread (``<client_id>-network-thread``: record
                   batches, compression, produce requests)
=================  ===========================================================================
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

STAGES = (
    "poll",
    "decode",
    "pan_scan",
    "featurize",
    "state",
    "batching",
    "inference",
    "encode",
    "produce",
    "acks",
    "commit",
    "network_io",
    "producer_io",
)
# kafka-python 3 names its network selector threads ``kafka-io-<client_id>`` (kafka/net/selector.py)
# and the producer's sender ``<client_id>-network-thread`` (kafka/producer/sender.py).
_IO_THREADS = {"network_io": "kafka-io-", "producer_io": "-network-thread"}
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class StageCosts:
    """Accumulates CPU seconds per stage; thread-safe (each add is one lock-free float add per stage)."""

    def __init__(self) -> None:
        self._seconds = dict.fromkeys(STAGES, 0.0)
        self._lock = threading.Lock()

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self._seconds[stage] += seconds

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """CPU time of the calling thread inside the block, added to ``stage``."""
        started = time.thread_time()
        try:
            yield
        finally:
            self.add(stage, time.thread_time() - started)

    def snapshot(self) -> dict[str, float]:
        """CPU seconds per stage so far, kafka-python's I/O threads included."""
        with self._lock:
            seconds = dict(self._seconds)
        seconds.update(io_thread_seconds())
        return seconds


def io_thread_seconds() -> dict[str, float]:
    """CPU seconds of kafka-python's I/O threads in this process (summed per kind; 0 when absent)."""
    totals = dict.fromkeys(_IO_THREADS, 0.0)
    for thread in threading.enumerate():
        stage = io_stage(thread.name)
        if stage is not None and thread.native_id is not None:
            totals[stage] += _thread_cpu_seconds(thread.native_id)
    return totals


def io_stage(thread_name: str) -> str | None:
    """The stage a kafka-python I/O thread's CPU counts to, by the thread's name; None for others."""
    if thread_name.startswith(_IO_THREADS["network_io"]):
        return "network_io"
    if thread_name.endswith(_IO_THREADS["producer_io"]):
        return "producer_io"
    return None


def _thread_cpu_seconds(tid: int) -> float:
    return stat_cpu_seconds(f"/proc/self/task/{tid}/stat") or 0.0


def stat_cpu_seconds(path: str) -> float | None:
    """User + system CPU seconds from a ``/proc/.../stat`` file; None when it cannot be read (gone)."""
    try:
        with open(path, encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command: state is field 3 of the line, utime and stime fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


class StageCostCollector(Collector):
    """Exposes a :class:`StageCosts` as ``riskstream_stage_cpu_seconds_total{stage}``."""

    def __init__(self, costs: StageCosts) -> None:
        self._costs = costs

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "riskstream_stage_cpu_seconds",
            "CPU seconds spent per pipeline stage (per-thread CPU clocks).",
            labels=["stage"],
        )
        for stage, seconds in self._costs.snapshot().items():
            family.add_metric([stage], seconds)
        yield family


def register(costs: StageCosts, registry: CollectorRegistry) -> None:
    registry.register(StageCostCollector(costs))
