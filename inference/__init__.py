"""The model side of riskstream: featurizer, DeepSeek-architecture classifier, quantized scorer.

Knows nothing of Kafka. The worker uses :class:`Scorer` (load, featurize, warm up, score), the
:class:`MemoryProbe` with :func:`recommended_max_batch`, the per-account state
:class:`AccountHistory` (for a model that reads history: :attr:`Scorer.history_spec`), and the
synthetic generators (:func:`generate`, :func:`generate_histories`) for load generation and demos.
Names are imported lazily, so that ``from inference import generate`` (or ``AccountHistory``) does
not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

# torchao (imported by transformers when installed) registers enums with torch's pytree and torch
# logs a deprecation line for each on every start; it is not ours to fix and only adds noise.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)

if TYPE_CHECKING:
    from inference.bench import EngineBenchReport, print_engine_bench, run_engine_bench
    from inference.checkpoint import DecisionThresholds, RiskMetadata, load_checkpoint
    from inference.data import BadRows, DataError, RecordReader, read_labelled
    from inference.errors import (
        CheckpointError,
        DeviceError,
        FeaturizeError,
        InferenceError,
        QuantizationError,
        ScoringError,
    )
    from inference.evaluate import EvaluationReport, evaluate
    from inference.features import Features
    from inference.history import AccountHistory, HistoryFormatError, replay
    from inference.memory import MemoryProbe, MemorySample, recommended_max_batch
    from inference.scorer import BatchScores, BucketWarmup, FaultInjection, ModelInfo, Scorer, WarmupReport
    from inference.sequence import HistorySpec
    from inference.synthetic import LabelledEvent, generate, read_jsonl, write_jsonl
    from inference.synthetic_history import generate_histories
    from inference.thresholds import ThresholdTargets, set_thresholds
    from inference.train import TrainResult, train, train_on_data

_EXPORTS = {
    "EngineBenchReport": "inference.bench",
    "print_engine_bench": "inference.bench",
    "run_engine_bench": "inference.bench",
    "DecisionThresholds": "inference.checkpoint",
    "RiskMetadata": "inference.checkpoint",
    "load_checkpoint": "inference.checkpoint",
    "BadRows": "inference.data",
    "DataError": "inference.data",
    "RecordReader": "inference.data",
    "read_labelled": "inference.data",
    "CheckpointError": "inference.errors",
    "DeviceError": "inference.errors",
    "FeaturizeError": "inference.errors",
    "InferenceError": "inference.errors",
    "QuantizationError": "inference.errors",
    "ScoringError": "inference.errors",
    "EvaluationReport": "inference.evaluate",
    "evaluate": "inference.evaluate",
    "Features": "inference.features",
    "AccountHistory": "inference.history",
    "HistoryFormatError": "inference.history",
    "replay": "inference.history",
    "MemoryProbe": "inference.memory",
    "MemorySample": "inference.memory",
    "recommended_max_batch": "inference.memory",
    "BatchScores": "inference.scorer",
    "BucketWarmup": "inference.scorer",
    "FaultInjection": "inference.scorer",
    "ModelInfo": "inference.scorer",
    "Scorer": "inference.scorer",
    "WarmupReport": "inference.scorer",
    "HistorySpec": "inference.sequence",
    "LabelledEvent": "inference.synthetic",
    "generate": "inference.synthetic",
    "read_jsonl": "inference.synthetic",
    "write_jsonl": "inference.synthetic",
    "generate_histories": "inference.synthetic_history",
    "ThresholdTargets": "inference.thresholds",
    "set_thresholds": "inference.thresholds",
    "TrainResult": "inference.train",
    "train": "inference.train",
    "train_on_data": "inference.train",
}

__all__ = [
    "AccountHistory",
    "BadRows",
    "BatchScores",
    "BucketWarmup",
    "CheckpointError",
    "DataError",
    "DecisionThresholds",
    "DeviceError",
    "EngineBenchReport",
    "EvaluationReport",
    "FaultInjection",
    "Features",
    "FeaturizeError",
    "HistoryFormatError",
    "HistorySpec",
    "InferenceError",
    "LabelledEvent",
    "MemoryProbe",
    "MemorySample",
    "ModelInfo",
    "QuantizationError",
    "RecordReader",
    "RiskMetadata",
    "Scorer",
    "ScoringError",
    "ThresholdTargets",
    "TrainResult",
    "WarmupReport",
    "evaluate",
    "generate",
    "generate_histories",
    "load_checkpoint",
    "print_engine_bench",
    "read_jsonl",
    "read_labelled",
    "recommended_max_batch",
    "replay",
    "run_engine_bench",
    "set_thresholds",
    "train",
    "train_on_data",
    "write_jsonl",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
