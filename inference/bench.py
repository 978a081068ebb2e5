"""Engine benchmark: events/s and batch latency per bucket and quantization variant.

Variants are compared side by side in one process: every variant is loaded first, then the
measurement runs in ``rounds`` rounds, each visiting every (bucket, variant) pair for
``seconds_per_point / rounds`` — so a burst of load from another process on a shared machine hits
all variants alike instead of skewing one of them. Inputs are featurized synthetic events (the same
ones for every variant; for a model that reads account history, a stretch of the history world,
each event featurized against its account's earlier ones). Numbers are printed, never asserted:
performance is measured here, not tested.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from inference.features import Features
from inference.history import replay
from inference.scorer import Scorer
from inference.synthetic import generate
from inference.synthetic_history import generate_histories

DEFAULT_BENCH_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class BenchPoint:
    """One (variant, bucket) measurement.

    ``events_per_s`` is events scored over time spent (every stall included);
    ``events_per_s_at_p50`` is ``batch_size / p50 latency``, the steady-state rate that stalls caused
    by other processes on a shared machine do not drag down. Both are reported; neither is asserted.
    """

    variant: str
    batch_size: int
    events_per_s: float
    p50_batch_ms: float
    p95_batch_ms: float
    batches: int

    @property
    def events_per_s_at_p50(self) -> float:
        return self.batch_size / (self.p50_batch_ms / 1e3)

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "batch_size": self.batch_size,
            "events_per_s": round(self.events_per_s, 1),
            "events_per_s_at_p50": round(self.events_per_s_at_p50, 1),
            "p50_batch_ms": round(self.p50_batch_ms, 3),
            "p95_batch_ms": round(self.p95_batch_ms, 3),
            "batches": self.batches,
        }


@dataclass(frozen=True)
class EngineBenchReport:
    model: str
    version: str
    device: str
    threads: int
    points: tuple[BenchPoint, ...]

    def best(self, variant: str) -> BenchPoint:
        """The bucket with the highest throughput for ``variant``."""
        return max((p for p in self.points if p.variant == variant), key=lambda p: p.events_per_s)

    @property
    def variants(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(point.variant for point in self.points))

    def speedup(self, variant: str, baseline: str = "fp32") -> float | None:
        """Best-bucket throughput of ``variant`` over ``baseline``'s, or None without a baseline."""
        if baseline not in self.variants:
            return None
        return self.best(variant).events_per_s / self.best(baseline).events_per_s

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "device": self.device,
            "threads": self.threads,
            "points": [point.to_json() for point in self.points],
            "best": {
                variant: {
                    "batch_size": self.best(variant).batch_size,
                    "events_per_s": round(self.best(variant).events_per_s, 1),
                    "speedup_vs_fp32": None if (s := self.speedup(variant)) is None else round(s, 3),
                }
                for variant in self.variants
            },
        }


def run_engine_bench(
    model_dir: Path,
    *,
    variants: Sequence[str],
    buckets: Sequence[int] | None = None,
    seconds_per_point: float = 1.0,
    threads: int | None = None,
    device: str = "cpu",
    rounds: int = 3,
    on_point: Callable[[str, int], None] | None = None,
) -> EngineBenchReport:
    """Measure every (variant, bucket) pair; see the module docstring for the method."""
    sizes = tuple(sorted(set(buckets or DEFAULT_BENCH_BUCKETS)))
    if not variants:
        raise ValueError("at least one variant is needed")
    if min(sizes) < 1:
        raise ValueError("bucket sizes must be >= 1")
    max_batch = 1 << (max(sizes) - 1).bit_length()
    scorers = {
        variant: Scorer.load(model_dir, device=device, quantization=variant, threads=threads, max_batch=max_batch)
        for variant in variants
    }
    first = next(iter(scorers.values()))
    features: list[Features]
    if first.reads_history:
        # Realistic history inputs: a stretch of the history world, each event against its account's past.
        events = [item.event for item in generate_histories(max(sizes), seed=11, fraud_rate=0.05)]
        features = replay(events, first.featurize)
    else:
        events = [item.event for item in generate(max(sizes), seed=11, fraud_rate=0.05)]
        features = [first.featurize(event) for event in events]
    timings: dict[tuple[str, int], list[float]] = {(v, b): [] for v in variants for b in sizes}
    for scorer in scorers.values():
        for size in sizes:
            scorer.score(features[:size])  # untimed: first-call kernel selection per shape
    slice_s = seconds_per_point / max(1, rounds)
    for _ in range(max(1, rounds)):
        for size in sizes:
            batch = features[:size]
            for variant, scorer in scorers.items():
                if on_point is not None:
                    on_point(variant, size)
                deadline = time.perf_counter() + slice_s
                samples = timings[(variant, size)]
                while True:
                    began = time.perf_counter()
                    scorer.score(batch)
                    ended = time.perf_counter()
                    samples.append(ended - began)
                    if ended >= deadline:
                        break
    points = []
    for (variant, size), samples in timings.items():
        array = np.array(samples)
        points.append(
            BenchPoint(
                variant=variant,
                batch_size=size,
                events_per_s=size * len(array) / float(array.sum()),
                p50_batch_ms=float(np.percentile(array, 50)) * 1e3,
                p95_batch_ms=float(np.percentile(array, 95)) * 1e3,
                batches=len(array),
            )
        )
    return EngineBenchReport(
        model=first.info.name,
        version=first.info.version,
        device=first.device,
        threads=torch.get_num_threads(),
        points=tuple(points),
    )


def print_engine_bench(report: EngineBenchReport, *, as_json: bool = False, console: Console | None = None) -> None:
    """A table per variant and bucket (or the report as JSON)."""
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    out = console or Console()
    table = Table(title=f"{report.model} {report.version} on {report.device} ({report.threads} threads)")
    table.add_column("variant")
    table.add_column("batch", justify="right")
    table.add_column("events/s", justify="right")
    table.add_column("events/s at p50", justify="right")
    table.add_column("p50 batch ms", justify="right")
    table.add_column("p95 batch ms", justify="right")
    table.add_column("vs fp32", justify="right")
    baseline = {p.batch_size: p.events_per_s for p in report.points if p.variant == "fp32"}
    for point in sorted(report.points, key=lambda p: (report.variants.index(p.variant), p.batch_size)):
        ratio = f"{point.events_per_s / baseline[point.batch_size]:.2f}x" if point.batch_size in baseline else "-"
        table.add_row(
            point.variant,
            str(point.batch_size),
            f"{point.events_per_s:,.0f}",
            f"{point.events_per_s_at_p50:,.0f}",
            f"{point.p50_batch_ms:.2f}",
            f"{point.p95_batch_ms:.2f}",
            ratio,
        )
    out.print(table)
    for variant in report.variants:
        best = report.best(variant)
        speedup = report.speedup(variant)
        extra = f" ({speedup:.2f}x fp32 best)" if speedup is not None and variant != "fp32" else ""
        out.print(f"best {variant}: {best.events_per_s:,.0f} events/s at batch {best.batch_size}{extra}")
