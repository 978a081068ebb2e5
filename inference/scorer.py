"""The batched scorer: one model, pinned to one device for its lifetime.

What the worker may rely on:

* :meth:`Scorer.featurize` is pure, thread-safe and cheap (a few microseconds; a few tens for a
  history model): call it from any thread. Everything else is called from one inference thread at
  a time.
* A model that reads account history (:attr:`Scorer.history_spec` is not None) featurizes an event
  against its account's :class:`~inference.history.AccountHistory` *before* the event is observed
  into it (:func:`inference.history.replay` is the reference loop); without a history it treats the
  account as cold. A stateless model ignores the history.
* :meth:`Scorer.score` returns one float32 score per input, in input order. Batches are padded to
  a power-of-two bucket (static shapes: one set of kernels per bucket, no re-planning) by repeating
  the first row, so padding never widens the activation range that dynamic int8 quantizes over; a
  score does not depend on the bucket it was computed in (fp32: within 1e-5). Batches larger than
  the largest bucket are scored in chunks.
* Device out-of-memory never escapes :meth:`score`: the cached allocator memory is released, the
  batch is split in halves and retried, down to single events; an event that still cannot be
  scored gets NaN and a reason in ``failures`` (``"out_of_memory: ..."``). ``oom_splits`` counts the
  splits so the caller can lower its batch cap. Any other failure of the model raises
  :class:`~inference.errors.ScoringError`.
* Inputs are copied into buffers allocated once at load time (pinned host memory and a device
  buffer with non-blocking copies on CUDA): no per-batch allocation of input tensors.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from inference.buckets import bucket_for, bucket_sizes
from inference.checkpoint import DecisionThresholds, LoadedCheckpoint, RiskMetadata, load_checkpoint
from inference.cpu import default_threads
from inference.errors import DeviceError, ScoringError
from inference.features import Features
from inference.history import AccountHistory
from inference.quantize import DEFAULT_QUANTIZATION, ModelBytes, measure_bytes, quantize_model
from inference.sequence import HistorySpec, SequenceFeaturizer
from inference.synthetic import generate
from schemas import TransactionEvent

logger = logging.getLogger(__name__)

_WARMUP_EVENTS = 64
_GRAPH_TOLERANCE = 1e-5
_MAX_REASON_CHARS = 200


@dataclass(frozen=True)
class ModelInfo:
    """What a score was computed with: ``name``, ``version``, ``quantization``, ``device``."""

    name: str
    version: str
    quantization: str
    device: str


@dataclass(frozen=True)
class FaultInjection:
    """Faults for reliability tests.

    ``oom_probability``: each forward attempt of a batch of at least ``oom_min_batch`` real events
    raises a genuine ``torch.OutOfMemoryError`` with this probability (seeded by ``seed``).
    (A slow model is the worker's fault to inject: ``worker.engine.SlowedEngine``.)
    """

    oom_probability: float = 0.0
    oom_min_batch: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.oom_probability <= 1.0:
            raise ValueError("oom_probability must be within [0, 1]")
        if self.oom_min_batch < 1:
            raise ValueError("oom_min_batch must be >= 1")


@dataclass(frozen=True)
class BatchScores:
    """Scores of one :meth:`Scorer.score` call.

    ``scores[i]`` belongs to input ``i``; it is NaN exactly for the indices in ``failures``.
    """

    scores: npt.NDArray[np.float32]
    failures: Mapping[int, str] = field(default_factory=dict)
    oom_splits: int = 0


@dataclass(frozen=True)
class BucketWarmup:
    """Warm-up measurements of one bucket: median batch latency and memory per event.

    ``bytes_per_item`` is the measured peak of device memory allocated during the forward pass on
    CUDA; on CPU (no allocator statistics) it is the sum of every module output's size, an upper
    bound of the activation memory.
    """

    batch_size: int
    p50_latency_s: float
    bytes_per_item: int
    runs: int


@dataclass(frozen=True)
class WarmupReport:
    buckets: tuple[BucketWarmup, ...]
    seconds: float
    memory_measured: bool

    def for_bucket(self, batch_size: int) -> BucketWarmup:
        for bucket in self.buckets:
            if bucket.batch_size == batch_size:
                return bucket
        raise KeyError(batch_size)

    def to_json(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "memory_measured": self.memory_measured,
            "buckets": [
                {
                    "batch_size": b.batch_size,
                    "p50_latency_s": b.p50_latency_s,
                    "bytes_per_item": b.bytes_per_item,
                    "runs": b.runs,
                }
                for b in self.buckets
            ],
        }


def parse_device(device: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` (= ``cuda:0``) or ``"cuda:N"``, checked against the hardware."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"invalid device {device!r}: use 'cpu' or 'cuda:N'") from exc
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise DeviceError(f"unsupported device {device!r}: use 'cpu' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise DeviceError(f"{device}: CUDA is not available on this machine")
    index = resolved.index or 0
    if index >= torch.cuda.device_count():
        raise DeviceError(f"{device}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device("cuda", index)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    # The CPU allocator reports exhaustion as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)


class Scorer:
    """A quantized classifier pinned to one device. Build it with :meth:`load`."""

    def __init__(
        self,
        checkpoint: LoadedCheckpoint,
        *,
        device: torch.device,
        quantization: str,
        threads: int | None,
        max_batch: int,
        faults: FaultInjection | None,
        graphs: bool = True,
    ) -> None:
        self._device = device
        self._path = checkpoint.path
        self._metadata = checkpoint.metadata
        self._featurizer = checkpoint.featurizer
        self._positive_index = checkpoint.positive_index
        self._buckets = bucket_sizes(max_batch)
        self._faults = faults
        self._use_graphs = graphs
        self._graphs: dict[int, torch.jit.ScriptModule] = {}
        self._fault_rng = random.Random(faults.seed) if faults is not None else None
        self._lock = threading.Lock()  # score() is single-threaded by contract; the lock makes misuse safe
        self._configure_device(threads)
        self.threads = torch.get_num_threads()
        # Only the served copy is kept: the fp32 original is released with ``checkpoint``.
        self._model: nn.Module = quantize_model(checkpoint.module, quantization, device)
        metadata = checkpoint.metadata
        self._info = ModelInfo(
            name=metadata.name, version=metadata.version, quantization=quantization, device=str(device)
        )
        sequence_length = self._featurizer.sequence_length
        largest = self._buckets[-1]
        pin = device.type == "cuda"
        self._host_inputs = torch.zeros((largest, sequence_length), dtype=torch.long, pin_memory=pin)
        self._device_inputs = (
            torch.zeros((largest, sequence_length), dtype=torch.long, device=device) if pin else self._host_inputs
        )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        *,
        device: str = "cpu",
        quantization: str | None = None,
        threads: int | None = None,
        max_batch: int = 256,
        faults: FaultInjection | None = None,
        graphs: bool = True,
    ) -> Scorer:
        """Load ``model_dir`` (offline) onto ``device`` in variant ``quantization``.

        ``quantization=None`` serves the checkpoint's default for the device type (``riskstream.json``
        ``default_quantization``), else ``DEFAULT_QUANTIZATION``. ``threads`` sets torch's intra-op
        thread count (process-wide); None means, on CPU, one per available core minus one left for
        the caller's other threads (:func:`inference.cpu.default_threads`: 1 on a 2-core machine).
        ``max_batch`` is rounded down to a power of two: the largest bucket.

        Raises ``CheckpointError``, ``DeviceError`` or ``QuantizationError``.
        """
        resolved = parse_device(device)
        checkpoint = load_checkpoint(Path(model_dir))
        if quantization is None:
            quantization = checkpoint.metadata.default_quantization.get(
                resolved.type, DEFAULT_QUANTIZATION[resolved.type]
            )
        return cls(
            checkpoint,
            device=resolved,
            quantization=quantization,
            threads=threads,
            max_batch=max_batch,
            faults=faults,
            graphs=graphs,
        )

    def _configure_device(self, threads: int | None) -> None:
        if threads is not None and threads < 1:
            raise ValueError("threads must be >= 1")
        if self._device.type == "cpu":
            torch.set_num_threads(threads if threads is not None else default_threads())
        elif threads is not None:
            torch.set_num_threads(threads)
        if self._device.type == "cuda":
            torch.cuda.set_device(self._device)
            # Fixed input shapes per bucket: let cuDNN pick the fastest kernels once; TF32 tensor
            # cores for the fp32 variant (scores move by ~1e-4, far below decision granularity).
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def thresholds(self) -> DecisionThresholds:
        return self._metadata.thresholds

    @property
    def buckets(self) -> tuple[int, ...]:
        return self._buckets

    @property
    def sequence_length(self) -> int:
        return self._featurizer.sequence_length

    @property
    def device(self) -> str:
        return str(self._device)

    @property
    def model_dir(self) -> Path:
        return self._path

    @property
    def metadata(self) -> RiskMetadata:
        """The checkpoint's ``riskstream.json``: thresholds, feature spec, training record."""
        return self._metadata

    def model_bytes(self) -> ModelBytes:
        """Bytes of the served model's Linear weights and of the whole model."""
        return measure_bytes(self._model)

    @property
    def history_spec(self) -> HistorySpec | None:
        """What account history the model reads (rows, state format, capacity, TTL); None if stateless."""
        return self._metadata.history

    @property
    def reads_history(self) -> bool:
        return self._metadata.history is not None

    @property
    def sequence_featurizer(self) -> SequenceFeaturizer | None:
        """The history featurizer of a history model (to featurize from parts, as evaluation does)."""
        featurizer = self._featurizer
        return featurizer if isinstance(featurizer, SequenceFeaturizer) else None

    def featurize(self, event: TransactionEvent, history: AccountHistory | None = None) -> Features:
        """Token ids for ``event`` (against its account's ``history`` for a history model: the state
        *before* this event; None reads as a cold account). Thread-safe; never changes ``history``.
        Raises ``FeaturizeError``."""
        featurizer = self._featurizer
        if isinstance(featurizer, SequenceFeaturizer):
            return featurizer.featurize(event, history)
        return featurizer.featurize(event)

    def bucket_for(self, count: int) -> int:
        """The smallest bucket holding ``count`` events (the largest bucket if none does)."""
        return bucket_for(count, self._buckets[-1])

    def score(self, batch: Sequence[Features]) -> BatchScores:
        """Score featurized events, in input order. See the module docstring for guarantees."""
        count = len(batch)
        scores = np.full(count, np.nan, dtype=np.float32)
        if count == 0:
            return BatchScores(scores=scores)
        rows = self._stack(batch)
        failures: dict[int, str] = {}
        splits = 0
        largest = self._buckets[-1]
        with self._lock:
            for start in range(0, count, largest):
                splits += self._score_range(rows, start, min(count, start + largest), scores, failures)
        return BatchScores(scores=scores, failures=failures, oom_splits=splits)

    def _stack(self, batch: Sequence[Features]) -> npt.NDArray[np.int64]:
        try:
            rows = np.stack([np.asarray(item, dtype=np.int64) for item in batch])
        except ValueError as exc:
            raise ValueError(f"features of one batch must all have shape ({self.sequence_length},)") from exc
        if rows.ndim != 2 or rows.shape[1] != self.sequence_length:
            raise ValueError(f"features must have shape ({self.sequence_length},), got {rows.shape[1:]}")
        return rows

    def _score_range(
        self,
        rows: npt.NDArray[np.int64],
        start: int,
        stop: int,
        scores: npt.NDArray[np.float32],
        failures: dict[int, str],
    ) -> int:
        """Score ``rows[start:stop]`` into ``scores``, halving on OOM. Returns the number of splits."""
        splits = 0
        pending = [(start, stop, False)]
        while pending:
            low, high, retried = pending.pop()
            try:
                scores[low:high] = self._forward(rows[low:high])
            except Exception as exc:
                if not _is_out_of_memory(exc):
                    raise ScoringError(f"forward pass failed: {exc.__class__.__name__}: {exc}") from exc
                self._release_cached_memory()
                if high - low > 1:
                    middle = (low + high) // 2
                    # Upper half pushed first so the lower half runs next: scores fill in order.
                    pending.append((middle, high, False))
                    pending.append((low, middle, False))
                    splits += 1
                elif not retried:
                    pending.append((low, high, True))  # one retry after freeing the cache
                else:
                    failures[low] = f"out_of_memory: {str(exc).splitlines()[0][:_MAX_REASON_CHARS]}"
        return splits

    def _release_cached_memory(self) -> None:
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _maybe_inject_faults(self, count: int) -> None:
        faults = self._faults
        if faults is None or self._fault_rng is None:
            return
        eligible = count >= faults.oom_min_batch and faults.oom_probability > 0.0
        if eligible and self._fault_rng.random() < faults.oom_probability:
            raise torch.OutOfMemoryError(f"injected out-of-memory on a batch of {count}")

    def _forward(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        count = len(rows)
        self._maybe_inject_faults(count)
        bucket = self.bucket_for(count)
        host = self._host_inputs[:bucket]
        host[:count].copy_(torch.from_numpy(rows))
        if bucket > count:
            host[count:] = host[0]
        inputs = host
        if self._device_inputs is not self._host_inputs:
            inputs = self._device_inputs[:bucket]
            inputs.copy_(host, non_blocking=True)
        with torch.inference_mode():
            graph = self._graphs.get(bucket)
            logits = graph(inputs) if graph is not None else self._model(input_ids=inputs).logits
            probabilities = torch.softmax(logits[:count].float(), dim=-1)[:, self._positive_index]
            # .cpu() synchronises with the device, so the pinned input buffer is free for the next batch.
            return probabilities.cpu().numpy().astype(np.float32, copy=True)

    def warm_up(self, *, max_seconds_per_bucket: float = 0.5, min_runs: int = 3) -> WarmupReport:
        """Run every bucket a few times; measure median latency and memory per event.

        Inputs are realistic (featurized synthetic events), so kernels, caches and the allocator are
        primed for real traffic. Takes about ``len(buckets) * max_seconds_per_bucket`` at most.
        """
        started = time.perf_counter()
        sample = np.stack([self.featurize(item.event) for item in generate(_WARMUP_EVENTS, seed=7)])
        reports = []
        with self._lock:
            for bucket in self._buckets:
                rows = np.resize(sample, (bucket, self.sequence_length))
                self._plain_forward(rows)  # first run: kernel selection, allocator growth
                bytes_per_item = self._bytes_per_item(rows)
                if self._use_graphs:
                    self._build_graph(bucket, rows)
                timings: list[float] = []
                deadline = time.perf_counter() + max_seconds_per_bucket
                while len(timings) < min_runs or (time.perf_counter() < deadline and len(timings) < 50):
                    began = time.perf_counter()
                    self._plain_forward(rows)
                    timings.append(time.perf_counter() - began)
                reports.append(
                    BucketWarmup(
                        batch_size=bucket,
                        p50_latency_s=float(np.median(timings)),
                        bytes_per_item=bytes_per_item,
                        runs=len(timings),
                    )
                )
        return WarmupReport(
            buckets=tuple(reports), seconds=time.perf_counter() - started, memory_measured=self._device.type == "cuda"
        )

    @property
    def graph_buckets(self) -> tuple[int, ...]:
        """Buckets that run as a traced graph (built by :meth:`warm_up`)."""
        return tuple(sorted(self._graphs))

    def _build_graph(self, bucket: int, rows: npt.NDArray[np.int64]) -> None:
        """Trace the model for one bucket's fixed input shape, and keep it only if it scores the
        warm-up rows exactly as the eager model does.

        Every event is the same number of tokens and every batch is padded to its bucket, so each
        bucket has one static shape and no data-dependent control flow: a traced graph runs the
        whole forward pass in C++, without the per-operator Python overhead that dominates small
        batches (about 3x faster at 1-16 events on CPU, identical scores). torch marks
        ``torch.jit.trace`` deprecated in favour of ``torch.compile``/``torch.export``; compiling
        takes tens of seconds per shape here, too slow for a worker start, so tracing stays until
        the replacement is as quick. Without it (or if it fails) the bucket runs eagerly.
        """
        example = torch.from_numpy(np.ascontiguousarray(rows)).to(self._device)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message=r".*torch\.jit\.trace.* is deprecated", category=FutureWarning
                )
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
                with torch.inference_mode():
                    graph = torch.jit.trace(_Logits(self._model).eval(), (example,), strict=False, check_trace=False)
                    expected = self._model(input_ids=example).logits
                    traced = graph(example)
        except Exception as exc:  # tracing is an optimisation: never a reason not to serve
            logger.warning("bucket %d runs eagerly: tracing failed (%s)", bucket, type(exc).__name__)
            return
        difference = float((expected.float() - traced.float()).abs().max())
        if difference > _GRAPH_TOLERANCE:
            logger.warning("bucket %d runs eagerly: traced scores differ by %.2e", bucket, difference)
            return
        self._graphs[bucket] = graph

    def _plain_forward(self, rows: npt.NDArray[np.int64]) -> None:
        """A forward pass without fault injection (warm-up measures the model, not the faults)."""
        faults, self._faults = self._faults, None
        try:
            self._forward(rows)
        finally:
            self._faults = faults

    def _bytes_per_item(self, rows: npt.NDArray[np.int64]) -> int:
        count = len(rows)
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
            baseline = torch.cuda.memory_allocated(self._device)
            torch.cuda.reset_peak_memory_stats(self._device)
            self._plain_forward(rows)
            peak = torch.cuda.max_memory_allocated(self._device)
            return max(1, math.ceil((peak - baseline) / count))
        total = 0

        def add_output(module: nn.Module, args: Any, output: Any) -> None:
            nonlocal total
            total += _output_bytes(output)

        handles = [module.register_forward_hook(add_output) for module in self._model.modules()]
        try:
            self._plain_forward(rows)
        finally:
            for handle in handles:
                handle.remove()
        return max(1, math.ceil(total / count))


class _Logits(nn.Module):
    """The classifier reduced to ``input_ids -> logits`` (a plain tensor function to trace)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids=input_ids).logits
        return logits


def _output_bytes(output: Any) -> int:
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, Mapping):
        return sum(_output_bytes(value) for value in output.values())
    if isinstance(output, (tuple, list)):
        return sum(_output_bytes(value) for value in output)
    return 0
