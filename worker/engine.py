"""The small interface the worker needs from a scoring engine (implemented by ``inference.Scorer``).

Keeping it a Protocol lets tests and benchmarks drive the stream with a fake engine, and keeps
model logic out of the worker package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from schemas import Decision, TransactionEvent


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

    def featurize(self, event: TransactionEvent) -> Any:
        """Thread-safe; runs on the poll thread. May raise for an event it cannot featurize."""
        ...

    def score(self, batch: Sequence[Any]) -> BatchResult:
        """Scores in input order; per-item failures instead of exceptions (e.g. out of memory)."""
        ...

    def warm_up_profile(self) -> tuple[dict[int, float], dict[int, int]]:
        """Warm up; return (seconds per batch, device bytes per item) for each bucket."""
        ...
