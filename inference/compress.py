"""The compression report (``riskstream compress report``): quality against cost for a set of
checkpoints — a teacher, students, pruned and quantized ones — on the same labelled events.

Every model is scored on the same events (one featurization per distinct feature spec and history;
for a history model each event against its account's earlier events, as ``evaluate`` does). Cost is
measured in one run with the models interleaved round by round, so a shared, noisy CPU slows them
alike: events/s per bucket (the best bucket reported) and the p99 latency of one batch of 32.
Size: parameters, bytes on disk, bytes of Linear weights as served (int8 counts its scales) and of
every weight. A PNG plots AUC against events/s and marks the Pareto front (no other model is both
better and faster).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from inference.data import DEFAULT_LABEL_FIELD
from inference.dataset import DEFAULT_MAX_BAD_FRACTION
from inference.evaluate import (
    EvaluationData,
    HoldoutAccounts,
    _score_all,
    load_evaluation_data,
    synthetic_evaluation_data,
)
from inference.metrics import average_precision, operating_table, roc_auc
from inference.scorer import Scorer
from schemas.mapping import EventMapping

DEFAULT_BUCKETS = (1, 32, 64, 256)
LATENCY_BUCKET = 32
ALERT_RATES = (0.01, 0.02)


@dataclass(frozen=True)
class Entry:
    """One row of the report: a label, a checkpoint and the variant to serve it in."""

    label: str
    model_dir: Path
    variant: str = "fp32"

    @classmethod
    def parse(cls, text: str) -> Entry:
        """``LABEL=DIR`` or ``LABEL=DIR@VARIANT`` (fp32 unless a variant is given)."""
        label, sep, rest = text.partition("=")
        if not sep or not label or not rest:
            raise ValueError(f"expected LABEL=DIR[@VARIANT], got {text!r}")
        path, _, variant = rest.rpartition("@") if "@" in rest else (rest, "", "fp32")
        return cls(label=label, model_dir=Path(path), variant=variant or "fp32")


def _files_bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir() if path.is_file())


def paired_auc_intervals(
    labels: npt.NDArray[np.int64],
    scores: dict[str, npt.NDArray[np.float32]],
    reference: str,
    resamples: int,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """95% bootstrap intervals of each model's AUC and of its difference to ``reference``'s.

    Paired: every resample of the events is scored by every model, so the difference's interval is
    far narrower than the two AUCs' intervals suggest (the models err on many of the same events).
    """
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {label: [] for label in scores}
    positives = int(labels.sum())
    for _ in range(resamples):
        index = rng.integers(0, len(labels), len(labels))
        sample = labels[index]
        if sample.sum() in (0, len(sample)) or positives == 0:
            continue
        for label, scored in scores.items():
            values[label].append(roc_auc(sample, scored[index]))
    base = np.array(values[reference])
    result: dict[str, dict[str, Any]] = {}
    for label, measured in values.items():
        auc = np.array(measured)
        diff = auc - base
        result[label] = {
            "auc_ci95": [round(float(np.percentile(auc, 2.5)), 6), round(float(np.percentile(auc, 97.5)), 6)],
            f"auc_diff_vs_{reference}_ci95": [
                round(float(np.percentile(diff, 2.5)), 6),
                round(float(np.percentile(diff, 97.5)), 6),
            ],
        }
    return result


def pareto_front(points: dict[str, tuple[float, float]]) -> set[str]:
    """Labels no other point beats on both axes (higher is better on both)."""
    front = set()
    for label, (x, y) in points.items():
        if not any(ox >= x and oy >= y and (ox, oy) != (x, y) for other, (ox, oy) in points.items() if other != label):
            front.add(label)
    return front


def compression_report(
    entries: Sequence[Entry],
    *,
    data: Path | None = None,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    since: datetime | None = None,
    accounts: HoldoutAccounts | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    events: int = 20_000,
    seed: int = 1_000_003,
    device: str = "cpu",
    threads: int | None = None,
    buckets: Sequence[int] = DEFAULT_BUCKETS,
    seconds: float = 1.0,
    latency_runs: int = 200,
    bootstrap: int = 200,
    reference: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score, time and size every entry; the report as a JSON-ready dict.

    ``bootstrap`` resamples (0: none) give each AUC a 95% interval and the interval of its
    difference to ``reference``'s (default: the first entry), paired on the same resampled events.
    """
    if not entries:
        raise ValueError("name at least one LABEL=DIR")
    if len({entry.label for entry in entries}) != len(entries):
        raise ValueError("labels must be distinct")
    reference = reference or entries[0].label
    if reference not in {entry.label for entry in entries}:
        raise ValueError(f"the reference {reference!r} is not one of the labels")
    report = on_progress or (lambda message: None)
    started = time.perf_counter()
    largest = max(max(buckets), LATENCY_BUCKET)
    scorers: dict[str, Scorer] = {}
    datasets: dict[str, EvaluationData] = {}
    rows: dict[str, Any] = {}
    features_of: dict[str, Any] = {}
    scored: dict[str, npt.NDArray[np.float32]] = {}
    labels: npt.NDArray[np.int64] | None = None
    for entry in entries:
        report(f"{entry.label}: loading {entry.model_dir}")
        scorer = Scorer.load(
            entry.model_dir, device=device, quantization=entry.variant, threads=threads, max_batch=largest
        )
        scorers[entry.label] = scorer
        key = json.dumps([scorer.metadata.feature_spec.to_json(), str(scorer.history_spec)], sort_keys=True)
        if key not in datasets:
            report(f"{entry.label}: featurizing the events")
            datasets[key] = (
                synthetic_evaluation_data(scorer, events, seed)
                if data is None
                else load_evaluation_data(
                    scorer,
                    data,
                    mapping=mapping,
                    label_field=label_field,
                    since=since,
                    accounts=accounts,
                    max_bad_fraction=max_bad_fraction,
                )
            )
        prepared = datasets[key]
        if rows and prepared.events != next(iter(rows.values()))["events"]:
            raise ValueError(f"{entry.label} sees {prepared.events} events, the others another number")
        report(f"{entry.label}: scoring {prepared.events:,} events")
        scores = _score_all(scorer, prepared.features)
        scored[entry.label] = scores
        if labels is not None and not np.array_equal(labels, prepared.labels):
            raise ValueError(f"{entry.label} sees the events in another order or with other labels")
        labels = prepared.labels
        at_1pct, at_2pct = operating_table(
            prepared.labels, scores, values=prepared.amounts_usd, alert_rates=ALERT_RATES
        )
        alone = np.array([scorer.score([row]).scores[0] for row in prepared.features[:64]])
        sizes = scorer.model_bytes()
        config = json.loads((entry.model_dir / "config.json").read_text())
        rows[entry.label] = {
            "model": str(entry.model_dir),
            "name": scorer.info.name,
            "version": scorer.info.version,
            "variant": entry.variant,
            "events": prepared.events,
            "fraud_events": int(prepared.labels.sum()),
            "auc": round(roc_auc(prepared.labels, scores), 6),
            "average_precision": round(average_precision(prepared.labels, scores), 6),
            "recall_at_1pct": round(at_1pct.recall, 4),
            "recall_at_2pct": round(at_2pct.recall, 4),
            "max_score_diff_across_buckets": float(np.max(np.abs(alone - scores[: len(alone)]))),
            "parameters": checkpoint_parameters(entry.model_dir),
            "bytes_on_disk": _files_bytes(entry.model_dir),
            "linear_weight_bytes": sizes.linear_weight_bytes,
            "model_bytes": sizes.model_bytes,
            "shape": _shape(config),
        }
        features_of[entry.label] = list(prepared.features[:largest])
    report("throughput")
    rates = _interleaved_throughput(scorers, features_of, buckets, seconds)
    report("latency")
    latencies = _interleaved_latency(scorers, features_of, latency_runs)
    for label, row in rows.items():
        best = max(rates[label], key=lambda size: rates[label][size])
        row["throughput_events_per_s"] = {str(size): round(rate, 1) for size, rate in rates[label].items()}
        row["best_bucket"] = best
        row["best_events_per_s"] = round(rates[label][best], 1)
        row[f"p99_ms_at_{LATENCY_BUCKET}"] = round(latencies[label] * 1000, 3)
    if bootstrap and labels is not None:
        report(f"bootstrap: {bootstrap} resamples")
        for label, interval in paired_auc_intervals(labels, scored, reference, bootstrap).items():
            rows[label].update(interval)
    front = pareto_front({label: (row["best_events_per_s"], row["auc"]) for label, row in rows.items()})
    for label, row in rows.items():
        row["pareto"] = label in front
    return {
        "device": device,
        "threads": torch.get_num_threads(),
        "source": str(data) if data is not None else f"synthetic events, seed {seed}",
        "since": since.isoformat() if since is not None else None,
        "buckets": list(buckets),
        "seconds_per_bucket": seconds,
        "latency_runs": latency_runs,
        "bootstrap_resamples": bootstrap,
        "reference": reference,
        "models": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _shape(config: dict[str, Any]) -> dict[str, Any]:
    """The sizes the report compares (routed experts 0 for a model without MoE layers)."""
    moe = config.get("first_k_dense_replace", 0) < config.get("num_hidden_layers", 0)
    return {
        "hidden_size": config.get("hidden_size"),
        "layers": config.get("num_hidden_layers"),
        "heads": config.get("num_attention_heads"),
        "intermediate_size": config.get("intermediate_size"),
        "moe_intermediate_size": config.get("moe_intermediate_size") if moe else None,
        "routed_experts": config.get("n_routed_experts") if moe else 0,
    }


def checkpoint_parameters(model_dir: Path) -> int:
    """Parameters stored in a checkpoint's safetensors file(s), counted from their headers."""
    from safetensors import safe_open

    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(path), "pt") as weights:
            for name in weights.keys():  # noqa: SIM118 - safe_open is not a mapping
                total += int(np.prod(weights.get_slice(name).get_shape()))
    return total


def _interleaved_throughput(
    scorers: dict[str, Scorer], features: dict[str, list[Any]], buckets: Sequence[int], seconds: float
) -> dict[str, dict[int, float]]:
    """Events/s per scorer and bucket, the scorers interleaved round by round (as ``evaluate``
    measures its variants), each on its own featurized rows."""
    rates: dict[str, dict[int, float]] = {label: {} for label in scorers}
    for size in buckets:
        for label, measured in _throughput_per_scorer(scorers, features, size, seconds).items():
            rates[label][size] = measured
    return rates


def _throughput_per_scorer(
    scorers: dict[str, Scorer], features: dict[str, list[Any]], size: int, seconds: float, rounds: int = 2
) -> dict[str, float]:
    counts = dict.fromkeys(scorers, 0)
    elapsed = dict.fromkeys(scorers, 0.0)
    for label, scorer in scorers.items():
        scorer.score(features[label][:size])
    for _ in range(rounds):
        for label, scorer in scorers.items():
            batch = features[label][:size]
            began = time.perf_counter()
            deadline = began + seconds / rounds
            while True:
                scorer.score(batch)
                counts[label] += size
                now = time.perf_counter()
                if now >= deadline:
                    break
            elapsed[label] += now - began
    return {label: counts[label] / elapsed[label] for label in scorers}


def _interleaved_latency(scorers: dict[str, Scorer], features: dict[str, list[Any]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {label: [] for label in scorers}
    for label, scorer in scorers.items():
        scorer.score(features[label][:LATENCY_BUCKET])
    for _ in range(runs):
        for label, scorer in scorers.items():
            batch = features[label][:LATENCY_BUCKET]
            began = time.perf_counter()
            scorer.score(batch)
            times[label].append(time.perf_counter() - began)
    return {label: float(np.percentile(values, 99)) for label, values in times.items()}


def write_pareto_plot(result: dict[str, Any], path: Path) -> Path:
    """AUC against best events/s (log scale), the Pareto front joined and every point labelled."""
    from inference.plots import _figure, require_matplotlib

    require_matplotlib()
    figure = _figure(7.0, 4.8)
    axes = figure.add_subplot(1, 1, 1)
    rows = result["models"]
    front = sorted(
        ((row["best_events_per_s"], row["auc"]) for row in rows.values() if row["pareto"]), key=lambda point: point[0]
    )
    for label, row in rows.items():
        axes.scatter(row["best_events_per_s"], row["auc"], color="tab:red" if row["pareto"] else "tab:gray", zorder=3)
        axes.annotate(
            f"{label} ({row['parameters'] / 1e6:.2f}M)",
            (row["best_events_per_s"], row["auc"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
        )
    if len(front) > 1:
        axes.plot([x for x, _ in front], [y for _, y in front], color="tab:red", linewidth=1, zorder=2)
    axes.set_xscale("log")
    axes.margins(x=0.3, y=0.15)
    axes.set_xlabel(f"events/s at the best bucket ({result['device']}, {result['threads']} thread(s))")
    axes.set_ylabel("AUC")
    axes.set_title("quality against cost (red: Pareto front)")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
