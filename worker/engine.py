"""The small interface the worker needs from a scoring engine (implemented by ``inference.Scorer``).

Keeping it a Protocol lets tests and benchmarks drive the stream with a fake engine, and keeps
model logic out of the worker package.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from schemas import Decision, TransactionEvent
from worker.errors import ModelUnavailableError
from worker.settings import Settings

if TYPE_CHECKING:  # the worker imports torch only when it loads a model
    from inference.history import AccountHistory
    from inference.sequence import HistorySpec

MemorySampler = Callable[[], tuple[int, int]]
"""Returns (free_bytes, total_bytes) of the scoring device."""


class ModelIdentity(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def quantization(self) -> str: ...
    @property
    def device(self) -> str: ...


class Thresholds(Protocol):
    def decide(self, score: float) -> Decision: ...


class BatchResult(Protocol):
    @property
    def scores(self) -> npt.NDArray[np.float32]: ...
    @property
    def failures(self) -> Mapping[int, str]: ...


class ScoringEngine(Protocol):
    @property
    def info(self) -> ModelIdentity: ...
    @property
    def thresholds(self) -> Thresholds: ...
    @property
    def buckets(self) -> tuple[int, ...]: ...

    @property
    def history_spec(self) -> HistorySpec | None:
        """What account history the model reads (:mod:`worker.state` keeps it); None if stateless."""
        ...

    def featurize(self, event: TransactionEvent, history: AccountHistory | None = None) -> Any:
        """Thread-safe; runs on the poll thread. ``history``: the account's state *before* the event
        (a history model; None reads as a cold account). Never changes it. May raise for an event it
        cannot featurize."""
        ...

    def score(self, batch: Sequence[Any]) -> BatchResult:
        """Scores in input order; per-item failures instead of exceptions (e.g. out of memory)."""
        ...


@dataclass(frozen=True)
class LoadedEngine:
    """A warmed-up scoring engine and what the worker needs to know about its device."""

    engine: ScoringEngine
    sample_memory: MemorySampler
    cap_for_free_bytes: Callable[[int], int]
    """Largest batch that fits in this much free device memory (minus the headroom)."""
    service_times: dict[int, float]
    """Warm-up seconds per batch, per bucket: the batcher's first estimates."""


class SlowedEngine:
    """Fault injection: adds a delay to every batch during a time window (a model slower than
    ``max.poll.interval.ms`` for a while)."""

    def __init__(self, inner: ScoringEngine, *, delay_s: float, for_s: float, clock: Any = time.monotonic) -> None:
        self._inner = inner
        self._delay_s = delay_s
        self._until = clock() + for_s if for_s > 0 else float("inf")
        self._clock = clock

    @property
    def info(self) -> ModelIdentity:
        return self._inner.info

    @property
    def thresholds(self) -> Thresholds:
        return self._inner.thresholds

    @property
    def buckets(self) -> tuple[int, ...]:
        return self._inner.buckets

    @property
    def history_spec(self) -> HistorySpec | None:
        return self._inner.history_spec

    def featurize(self, event: TransactionEvent, history: AccountHistory | None = None) -> Any:
        return self._inner.featurize(event, history)

    def score(self, batch: Sequence[Any]) -> BatchResult:
        if self._clock() < self._until:
            time.sleep(self._delay_s)
        return self._inner.score(batch)


def resolve_device(device: str) -> str:
    """``auto`` is the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


def load_engine(settings: Settings) -> LoadedEngine:
    """Load the checkpoint onto its device, warm it up, and describe it to the worker.

    Raises ``ModelUnavailableError`` with an actionable message when the model cannot be served.
    """
    from inference import FaultInjection, InferenceError, MemoryProbe, Scorer, recommended_max_batch

    model = settings.model
    faults = settings.faults
    device = resolve_device(model.device)
    if not model.dir.exists():
        raise ModelUnavailableError(
            f"no model at {model.dir}: train one with `riskstream train --out {model.dir}` or set RISKSTREAM_MODEL__DIR"
        )
    try:
        scorer = Scorer.load(
            model.dir,
            device=device,
            quantization=model.quantization,
            threads=model.threads,
            max_batch=settings.batching.max_batch,
            graphs=model.graphs,
            faults=FaultInjection(oom_probability=faults.oom_probability, seed=faults.seed)
            if faults.oom_probability > 0
            else None,
        )
        report = scorer.warm_up()
        probe = MemoryProbe.for_device(scorer.device)
    except InferenceError as exc:
        raise ModelUnavailableError(f"cannot serve {model.dir} on {device}: {exc}") from exc
    bytes_per_item = max((bucket.bytes_per_item for bucket in report.buckets), default=0)
    headroom = int(settings.backpressure.memory_headroom)
    buckets = scorer.buckets
    configured_max = settings.batching.max_batch

    def cap_for_free_bytes(free: int) -> int:
        return recommended_max_batch(free, headroom, bytes_per_item, buckets, configured_max)

    def sample_memory() -> tuple[int, int]:
        sample = probe.sample()
        return sample.free_bytes, sample.total_bytes

    engine: ScoringEngine = scorer
    if faults.model_delay_ms > 0:
        engine = SlowedEngine(scorer, delay_s=faults.model_delay_ms / 1000, for_s=faults.model_delay_for_s)
    return LoadedEngine(
        engine=engine,
        sample_memory=sample_memory,
        cap_for_free_bytes=cap_for_free_bytes,
        service_times={bucket.batch_size: bucket.p50_latency_s for bucket in report.buckets},
    )
