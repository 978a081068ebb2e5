"""Evaluate a checkpoint's quantization variants on fresh synthetic events.

For each variant: holdout AUC and average precision, the largest score difference from fp32,
agreement of decisions (approve/review/decline at the checkpoint's thresholds) with fp32, bytes of
the quantized Linear weights and of the whole model, the largest score difference between scoring
an event alone and inside a full batch (bucket invariance), and scorer throughput at each measured
bucket with the best one reported. The events come from a generator seed that training never uses
(training uses seeds ``2*s`` and ``2*s + 1`` for small ``s``), at the natural 1% fraud rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from inference.metrics import average_precision, roc_auc
from inference.scorer import Scorer
from inference.synthetic import generate

DEFAULT_EVAL_SEED = 1_000_003
THROUGHPUT_BUCKETS = (64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class VariantResult:
    quantization: str
    auc: float
    average_precision: float
    max_abs_diff_vs_fp32: float | None
    decision_agreement_vs_fp32: float | None
    max_bucket_diff: float
    linear_weight_bytes: int
    linear_weight_ratio: float
    model_bytes: int
    throughput: dict[int, float]

    @property
    def best_bucket(self) -> int:
        return max(self.throughput, key=lambda size: self.throughput[size])

    def to_json(self) -> dict[str, Any]:
        return {
            "auc": round(self.auc, 6),
            "average_precision": round(self.average_precision, 6),
            "max_abs_score_diff_vs_fp32": self.max_abs_diff_vs_fp32,
            "decision_agreement_vs_fp32": self.decision_agreement_vs_fp32,
            "max_score_diff_across_buckets": self.max_bucket_diff,
            "linear_weight_bytes": self.linear_weight_bytes,
            "linear_weight_ratio_vs_fp32": round(self.linear_weight_ratio, 4),
            "model_bytes": self.model_bytes,
            "throughput_events_per_s": {str(size): round(rate, 1) for size, rate in self.throughput.items()},
            "best_bucket": self.best_bucket,
            "best_events_per_s": round(self.throughput[self.best_bucket], 1),
        }


@dataclass(frozen=True)
class EvaluationReport:
    model: str
    version: str
    device: str
    threads: int
    events: int
    fraud_events: int
    seed: int
    thresholds: dict[str, float]
    variants: tuple[VariantResult, ...]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        fp32 = next((v for v in self.variants if v.quantization == "fp32"), None)
        summary: dict[str, Any] = {}
        if fp32 is not None:
            for variant in self.variants:
                summary[variant.quantization] = {
                    "auc_delta_vs_fp32": round(variant.auc - fp32.auc, 6),
                    "best_throughput_speedup_vs_fp32": round(
                        variant.throughput[variant.best_bucket] / fp32.throughput[fp32.best_bucket], 3
                    ),
                }
        return {
            "model": self.model,
            "version": self.version,
            "device": self.device,
            "threads": self.threads,
            "events": self.events,
            "fraud_events": self.fraud_events,
            "seed": self.seed,
            "thresholds": self.thresholds,
            "variants": {variant.quantization: variant.to_json() for variant in self.variants},
            "summary_vs_fp32": summary,
            "seconds": round(self.seconds, 1),
        }


def _throughput(
    scorers: dict[str, Scorer], features: Sequence[Any], sizes: Sequence[int], seconds: float, rounds: int = 2
) -> dict[str, dict[int, float]]:
    """Events/s per variant and bucket, variants interleaved round by round (fair on a shared CPU)."""
    counts = {(name, size): 0 for name in scorers for size in sizes}
    elapsed = {(name, size): 0.0 for name in scorers for size in sizes}
    for scorer in scorers.values():
        for size in sizes:
            scorer.score(features[:size])  # first call per shape is not representative
    for _ in range(rounds):
        for size in sizes:
            batch = features[:size]
            for name, scorer in scorers.items():
                began = time.perf_counter()
                deadline = began + seconds / rounds
                while True:
                    scorer.score(batch)
                    counts[(name, size)] += size
                    now = time.perf_counter()
                    if now >= deadline:
                        break
                elapsed[(name, size)] += now - began
    return {name: {size: counts[(name, size)] / elapsed[(name, size)] for size in sizes} for name in scorers}


def evaluate(
    model_dir: Path,
    *,
    events: int = 20_000,
    seed: int = DEFAULT_EVAL_SEED,
    variants: Sequence[str] = ("fp32", "int8", "bf16"),
    device: str = "cpu",
    threads: int | None = None,
    throughput_seconds: float = 0.5,
    throughput_buckets: Sequence[int] = THROUGHPUT_BUCKETS,
    on_progress: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Score ``events`` fresh synthetic events with every variant and compare them (see module doc)."""
    if events < 100:
        raise ValueError("evaluate needs at least 100 events")
    if not variants:
        raise ValueError("at least one variant is needed")
    report = on_progress or (lambda message: None)
    started = time.perf_counter()
    report("generating events")
    items = list(generate(events, seed=seed, fraud_rate=0.01))
    labels = np.array([item.is_fraud for item in items], dtype=np.int64)
    max_batch = max(throughput_buckets)
    ordered = sorted(variants, key=lambda name: name != "fp32")  # fp32 first: the reference
    reference: npt.NDArray[np.float32] | None = None
    reference_decisions: list[str] | None = None
    measured: list[VariantResult] = []
    scorers: dict[str, Scorer] = {}
    features: list[Any] = []
    for variant in ordered:
        report(f"{variant}: loading")
        scorer = Scorer.load(model_dir, device=device, quantization=variant, threads=threads, max_batch=max_batch)
        scorers[variant] = scorer
        features = [scorer.featurize(item.event) for item in items]
        report(f"{variant}: scoring {events} events")
        batch = scorer.score(features)
        if batch.failures:
            raise RuntimeError(f"{len(batch.failures)} events could not be scored with {variant}")
        scores = batch.scores
        decisions = [scorer.thresholds.decide(float(score)).value for score in scores]
        if variant == "fp32":
            reference, reference_decisions = scores, decisions
        alone = np.array([scorer.score([row]).scores[0] for row in features[:64]])
        model_bytes = scorer.model_bytes()
        measured.append(
            VariantResult(
                quantization=variant,
                auc=roc_auc(labels, scores),
                average_precision=average_precision(labels, scores),
                max_abs_diff_vs_fp32=None if reference is None else float(np.max(np.abs(scores - reference))),
                decision_agreement_vs_fp32=(
                    None
                    if reference_decisions is None
                    else float(np.mean([a == b for a, b in zip(decisions, reference_decisions, strict=True)]))
                ),
                max_bucket_diff=float(np.max(np.abs(alone - scores[:64]))),
                linear_weight_bytes=model_bytes.linear_weight_bytes,
                linear_weight_ratio=model_bytes.linear_weight_ratio,
                model_bytes=model_bytes.model_bytes,
                throughput={},  # measured below, all variants interleaved
            )
        )
    report("throughput")
    rates = _throughput(scorers, features, throughput_buckets, throughput_seconds)
    results = tuple(replace(result, throughput=rates[result.quantization]) for result in measured)
    scorer = scorers[ordered[0]]
    return EvaluationReport(
        model=scorer.info.name,
        version=scorer.info.version,
        device=scorer.device,
        threads=torch.get_num_threads(),
        events=events,
        fraud_events=int(labels.sum()),
        seed=seed,
        thresholds={"review": scorer.thresholds.review, "decline": scorer.thresholds.decline},
        variants=results,
        seconds=time.perf_counter() - started,
    )
