"""Evaluate a checkpoint's quantization variants on fresh synthetic events or on labelled data.

The events are fresh synthetic ones by default, or a labelled file (``--data``, read in chunks
through :class:`~inference.data.RecordReader`, optionally only events at or after ``--since``).
For each variant: AUC and average precision; the operating table (:func:`inference.metrics.operating_table`:
the threshold that flags 0.1%, 0.5%, 1%, 2% and 5% of events, and the checkpoint's review and decline
thresholds, each with precision, recall by count and by value — fraud amount caught, in USD at the
checkpoint's reference rates — and alerts per 10,000); the largest score difference from fp32,
agreement of decisions (approve/review/decline at the checkpoint's thresholds) with fp32, bytes of
the quantized Linear weights and of the whole model, the largest score difference between scoring
an event alone and inside a full batch (bucket invariance), and scorer throughput at each measured
bucket with the best one reported. Synthetic events come from a generator seed that training never
uses (training uses seeds ``2*s`` and ``2*s + 1`` for small ``s``), at the natural 1% fraud rate.
Also counted: events whose MCC, merchant country or IP country is outside the model's vocabulary
(they get the field's unknown token) and whose currency has no reference rate (its amount is
bucketed as if in USD). ``plots_dir`` writes ROC, precision-recall and score-histogram PNGs.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from inference.data import DEFAULT_LABEL_FIELD, BadRows, DataError, RecordReader
from inference.dataset import DEFAULT_MAX_BAD_FRACTION, account_hash, in_holdout_accounts
from inference.errors import FeaturizeError
from inference.features import FeatureSpec
from inference.history import TransactionRecord, record_of, replay
from inference.metrics import DEFAULT_ALERT_RATES, OperatingPoint, average_precision, operating_table, roc_auc
from inference.scorer import Scorer
from inference.sequence import RECORD_DTYPE, SequenceFeaturizer, replay_arrays
from inference.synthetic import generate
from inference.synthetic_history import generate_histories
from schemas import TransactionEvent
from schemas.mapping import EventMapping

DEFAULT_EVAL_SEED = 1_000_003
THROUGHPUT_BUCKETS = (64, 128, 256, 512, 1024)
#: Fields whose values outside the model's vocabulary are counted (the currency: no reference rate).
UNKNOWN_FIELDS = ("mcc", "merchant_country", "ip_country", "currency")
_UNKNOWN_EXAMPLES = 5


@dataclass
class UnknownValues:
    """Events per field whose value the model has no token (or, for the currency, no rate) for.

    Codes are kept for the most frequent unknowns: MCCs and ISO codes, validated by the wire
    schema, are not personal data.
    """

    counts: Counter[str] = field(default_factory=Counter)
    values: dict[str, Counter[str]] = field(default_factory=lambda: {name: Counter() for name in UNKNOWN_FIELDS})

    def add(self, events: Iterable[TransactionEvent], spec: FeatureSpec) -> None:
        known = {
            "mcc": frozenset(spec.field_spec("mcc").values),
            "merchant_country": frozenset(spec.field_spec("mctry").values),
            "ip_country": frozenset(spec.field_spec("ipctry").values),
            "currency": frozenset(spec.usd_per_unit),
        }
        for event in events:
            observed = {
                "mcc": event.merchant.mcc,
                "merchant_country": event.merchant.country,
                "ip_country": event.ip_country or "none",
                "currency": event.currency,
            }
            for name, value in observed.items():
                if value not in known[name]:
                    self.counts[name] += 1
                    self.values[name][value] += 1

    def to_json(self, events: int) -> dict[str, Any]:
        return {
            name: {
                "events": self.counts[name],
                "share": round(self.counts[name] / events, 6) if events else 0.0,
                "top": dict(self.values[name].most_common(_UNKNOWN_EXAMPLES)),
            }
            for name in UNKNOWN_FIELDS
        }


@dataclass(frozen=True)
class EvaluationData:
    """Featurized labelled events: token ids, labels, USD amounts, and what was unknown or bad."""

    features: npt.NDArray[np.int32]
    labels: npt.NDArray[np.int64]
    amounts_usd: npt.NDArray[np.float64]
    unknown: UnknownValues
    bad_rows: BadRows
    source: dict[str, Any]

    @property
    def events(self) -> int:
        return len(self.labels)


class _Collector:
    """Grows featurized rows chunk by chunk into preallocated arrays (token ids as int32: half the
    memory of the int64 the model takes; the scorer widens each batch as it copies it)."""

    def __init__(self, capacity: int, sequence_length: int) -> None:
        self.size = 0
        self.features = np.empty((max(1, capacity), sequence_length), dtype=np.int32)
        self.labels = np.empty(max(1, capacity), dtype=np.int64)
        self.amounts = np.empty(max(1, capacity), dtype=np.float64)

    def add(self, rows: npt.NDArray[np.int64], labels: Sequence[int], amounts: Sequence[float]) -> None:
        count = len(rows)
        if self.size + count > len(self.labels):
            capacity = max(self.size + count, 2 * len(self.labels))
            self.features = np.concatenate(
                (self.features[: self.size], np.empty((capacity - self.size, self.features.shape[1]), dtype=np.int32))
            )
            self.labels = np.concatenate((self.labels[: self.size], np.empty(capacity - self.size, dtype=np.int64)))
            self.amounts = np.concatenate((self.amounts[: self.size], np.empty(capacity - self.size)))
        self.features[self.size : self.size + count] = rows
        self.labels[self.size : self.size + count] = labels
        self.amounts[self.size : self.size + count] = amounts
        self.size += count


def _amount_usd(event: TransactionEvent, spec: FeatureSpec) -> float:
    return float(event.amount) * spec.usd_per_unit.get(event.currency, 1.0)


def _featurize(
    scorer: Scorer,
    events: Sequence[TransactionEvent],
    labels: Sequence[int],
    rows: Sequence[int],
    collector: _Collector,
    bad: BadRows,
    unknown: UnknownValues,
) -> None:
    spec = scorer.metadata.feature_spec
    features: list[Any] = []
    kept_labels: list[int] = []
    amounts: list[float] = []
    kept: list[TransactionEvent] = []
    for event, label, row in zip(events, labels, rows, strict=True):
        try:
            features.append(scorer.featurize(event))
        except FeaturizeError:
            from schemas.mapping import Problem, RecordError

            bad.add(row, RecordError("<event>", Problem.INVALID, detail="cannot be featurized"))
            continue
        kept.append(event)
        kept_labels.append(label)
        amounts.append(_amount_usd(event, spec))
    if features:
        collector.add(np.stack(features), kept_labels, amounts)
        unknown.add(kept, spec)


@dataclass(frozen=True)
class HoldoutAccounts:
    """Only the accounts that a ``--split account`` or ``time+account`` training run with this
    ``fraction`` (``--holdout-fraction``) and ``seed`` (``--seed``) held out."""

    fraction: float
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError("the holdout account fraction must be between 0 and 1")

    def hashes(self, events: Sequence[TransactionEvent]) -> npt.NDArray[np.uint64]:
        return np.fromiter((account_hash(event.account_id, self.seed) for event in events), np.uint64, len(events))

    def to_json(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "seed": self.seed}


@dataclass
class _HistoryRows:
    """What replaying a history model needs of every row of the accounts evaluated: the stateless
    ids, the history record, the account, the time; and the label, USD amount and whether it is scored."""

    event_ids: list[npt.NDArray[np.int32]] = field(default_factory=list)
    records: list[npt.NDArray[np.void]] = field(default_factory=list)
    accounts: list[npt.NDArray[np.uint64]] = field(default_factory=list)
    times: list[npt.NDArray[np.float64]] = field(default_factory=list)
    labels: list[npt.NDArray[np.int64]] = field(default_factory=list)
    amounts: list[npt.NDArray[np.float64]] = field(default_factory=list)
    scored: list[npt.NDArray[np.bool_]] = field(default_factory=list)

    def add(
        self,
        featurizer: SequenceFeaturizer,
        events: Sequence[TransactionEvent],
        labels: Sequence[int],
        rows: Sequence[int],
        scored: Sequence[bool],
        bad: BadRows,
        unknown: UnknownValues,
    ) -> None:
        good: list[int] = []
        ids: list[list[int]] = []
        records: list[TransactionRecord] = []
        for index, (event, row) in enumerate(zip(events, rows, strict=True)):
            try:
                event_ids = featurizer.event_featurizer.featurize(event)
                record = record_of(event)
            except (FeaturizeError, ValueError):
                # Dead-lettered by the worker: such an event never reaches an account's history either.
                from schemas.mapping import Problem, RecordError

                bad.add(row, RecordError("<event>", Problem.INVALID, detail="cannot be featurized"))
                continue
            good.append(index)
            ids.append(event_ids.tolist())
            records.append(record)
        if not good:
            return
        kept = [events[index] for index in good]
        self.event_ids.append(np.array(ids, dtype=np.int32))
        self.records.append(np.array(records, dtype=RECORD_DTYPE))
        self.accounts.append(np.fromiter((account_hash(event.account_id, 0) for event in kept), np.uint64, len(kept)))
        self.times.append(np.fromiter((event.event_time.timestamp() for event in kept), np.float64, len(kept)))
        self.labels.append(np.array([labels[index] for index in good], dtype=np.int64))
        self.amounts.append(np.array([_amount_usd(event, featurizer.spec) for event in kept], dtype=np.float64))
        chosen = np.array([scored[index] for index in good], dtype=bool)
        self.scored.append(chosen)
        unknown.add([event for event, keep in zip(kept, chosen.tolist(), strict=True) if keep], featurizer.spec)

    def replay(
        self, featurizer: SequenceFeaturizer
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Features, labels and amounts of the scored rows, in row order."""
        if not self.records:
            empty = np.empty((0, featurizer.sequence_length), dtype=np.int32)
            return empty, np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        scored = np.concatenate(self.scored)
        features = replay_arrays(
            featurizer,
            np.concatenate(self.event_ids),
            np.concatenate(self.records),
            np.concatenate(self.accounts),
            np.concatenate(self.times),
            scored,
            dtype=np.int32,
        )
        return (
            features.astype(np.int32, copy=False),
            np.concatenate(self.labels)[scored],
            np.concatenate(self.amounts)[scored],
        )


def load_evaluation_data(
    scorer: Scorer,
    data: Path,
    *,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    since: datetime | None = None,
    accounts: HoldoutAccounts | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    on_progress: Callable[[int, int], None] | None = None,
) -> EvaluationData:
    """Read and featurize a labelled file with ``scorer``'s featurizer, chunk by chunk.

    ``since`` (timezone-aware) scores only events at or after it, e.g. the holdout period that
    ``train`` reported; ``accounts`` only the accounts a training split held out. For a model that
    reads account history, every row of the evaluated accounts — before ``since`` too — is replayed
    through its account's history in time order, exactly as training built them: an event is scored
    against its account's earlier events and never a later one. Raises ``DataError`` past
    ``max_bad_fraction`` bad rows or without both classes.
    """
    if since is not None and since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    reader = RecordReader(Path(data), mapping=mapping, label_field=label_field)
    expected = reader.row_estimate()
    bad = BadRows(limit=int(max_bad_fraction * expected) if max_bad_fraction < 1.0 else None)
    featurizer = scorer.sequence_featurizer
    collector = _Collector(expected if featurizer is None else 1, scorer.sequence_length)
    history_rows = _HistoryRows()
    unknown = UnknownValues()
    done = 0
    skipped = 0
    other_accounts = 0
    progress = on_progress or (lambda done, total: None)

    def advance(rows: int) -> None:
        nonlocal done
        done += rows
        progress(done, expected)

    for chunk in reader.chunks(bad, on_rows=advance):
        events, labels, rows = chunk.events, chunk.labels, chunk.rows
        if accounts is not None:
            mine = in_holdout_accounts(accounts.hashes(events), accounts.fraction).tolist()
            other_accounts += len(events) - sum(mine)
            keep = [index for index, wanted in enumerate(mine) if wanted]
            events, labels, rows = [events[i] for i in keep], [labels[i] for i in keep], [rows[i] for i in keep]
        scored = [since is None or event.event_time >= since for event in events]
        skipped += len(events) - sum(scored)
        if featurizer is not None:
            history_rows.add(featurizer, events, labels, rows, scored, bad, unknown)
            continue
        keep = [index for index, wanted in enumerate(scored) if wanted]
        events, labels, rows = [events[i] for i in keep], [labels[i] for i in keep], [rows[i] for i in keep]
        _featurize(scorer, events, labels, rows, collector, bad, unknown)
    if featurizer is not None:
        features, labels_array, amounts = history_rows.replay(featurizer)
    else:
        features = collector.features[: collector.size]
        labels_array = collector.labels[: collector.size]
        amounts = collector.amounts[: collector.size]
    total = len(labels_array) + bad.count + skipped + other_accounts
    if total and bad.count > max_bad_fraction * total:
        raise DataError(
            f"{reader.path}: {bad.count / total:.2%} of the rows are bad (limit {max_bad_fraction:.2%}); "
            f"{bad.summary()}"
        )
    if labels_array.size == 0 or labels_array.all() or not labels_array.any():
        raise DataError(
            f"{reader.path}: evaluation needs both fraud and legitimate events "
            f"({labels_array.size} events, {int(labels_array.sum())} fraud)"
        )
    source: dict[str, Any] = {
        "file": reader.path.name,
        "format": reader.format,
        "label": reader.label_source,
        "rows_read": total,
        "since": since.isoformat() if since else None,
        "skipped_before_since": skipped,
    }
    if accounts is not None:
        source["holdout_accounts"] = accounts.to_json()
        source["skipped_other_accounts"] = other_accounts
    if featurizer is not None:
        source["history"] = "each account's rows replayed in time order"
    return EvaluationData(
        features=features,
        labels=labels_array,
        amounts_usd=amounts,
        unknown=unknown,
        bad_rows=bad,
        source=source,
    )


def synthetic_evaluation_data(scorer: Scorer, events: int, seed: int) -> EvaluationData:
    """``events`` fresh synthetic events at the natural 1% fraud rate, featurized with ``scorer``.

    A model that reads account history gets the history world (:mod:`inference.synthetic_history`),
    each event featurized against its account's earlier events in time order; a stateless model
    the per-event world (:func:`inference.synthetic.generate`)."""
    if scorer.reads_history:
        return _synthetic_history_data(scorer, events, seed)
    items = list(generate(events, seed=seed, fraud_rate=0.01))
    collector = _Collector(events, scorer.sequence_length)
    bad = BadRows()
    unknown = UnknownValues()
    _featurize(
        scorer,
        [item.event for item in items],
        [int(item.is_fraud) for item in items],
        list(range(1, events + 1)),
        collector,
        bad,
        unknown,
    )
    return EvaluationData(
        features=collector.features[: collector.size],
        labels=collector.labels[: collector.size],
        amounts_usd=collector.amounts[: collector.size],
        unknown=unknown,
        bad_rows=bad,
        source={"synthetic": True, "seed": seed},
    )


def _synthetic_history_data(scorer: Scorer, events: int, seed: int) -> EvaluationData:
    items = list(generate_histories(events, seed=seed, fraud_rate=0.01))
    spec = scorer.metadata.feature_spec
    unknown = UnknownValues()
    unknown.add((item.event for item in items), spec)
    features = replay([item.event for item in items], scorer.featurize)
    return EvaluationData(
        features=np.stack(features).astype(np.int32),
        labels=np.array([int(item.is_fraud) for item in items], dtype=np.int64),
        amounts_usd=np.array([_amount_usd(item.event, spec) for item in items], dtype=np.float64),
        unknown=unknown,
        bad_rows=BadRows(),
        source={"synthetic": True, "world": "history", "seed": seed},
    )


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
    operating: tuple[OperatingPoint, ...] = ()

    @property
    def best_bucket(self) -> int:
        return max(self.throughput, key=lambda size: self.throughput[size])

    def to_json(self) -> dict[str, Any]:
        return {
            "auc": round(self.auc, 6),
            "average_precision": round(self.average_precision, 6),
            "operating_table": [point.to_json() for point in self.operating],
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
    seed: int | None
    thresholds: dict[str, float]
    variants: tuple[VariantResult, ...]
    seconds: float
    source: dict[str, Any] = field(default_factory=dict)
    unknown: dict[str, Any] = field(default_factory=dict)
    bad_rows: dict[str, Any] = field(default_factory=dict)
    plots: tuple[str, ...] = ()

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
            "source": self.source,
            "events": self.events,
            "fraud_events": self.fraud_events,
            "seed": self.seed,
            "thresholds": self.thresholds,
            "unknown_values": self.unknown,
            "bad_rows": self.bad_rows,
            "variants": {variant.quantization: variant.to_json() for variant in self.variants},
            "summary_vs_fp32": summary,
            "plots": list(self.plots),
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


def _score_all(scorer: Scorer, features: npt.NDArray[np.int32], chunk: int = 8192) -> npt.NDArray[np.float32]:
    scores = np.empty(len(features), dtype=np.float32)
    for start in range(0, len(features), chunk):
        batch = scorer.score(list(features[start : start + chunk]))
        if batch.failures:
            raise RuntimeError(f"{len(batch.failures)} events could not be scored with {scorer.info.quantization}")
        scores[start : start + chunk] = batch.scores
    return scores


def evaluate(
    model_dir: Path,
    *,
    events: int = 20_000,
    seed: int = DEFAULT_EVAL_SEED,
    data: Path | None = None,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    since: datetime | None = None,
    accounts: HoldoutAccounts | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    alert_rates: tuple[float, ...] = DEFAULT_ALERT_RATES,
    variants: Sequence[str] = ("fp32", "int8", "bf16"),
    device: str = "cpu",
    threads: int | None = None,
    throughput_seconds: float = 0.5,
    throughput_buckets: Sequence[int] = THROUGHPUT_BUCKETS,
    plots_dir: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> EvaluationReport:
    """Score ``events`` fresh synthetic events, or the labelled file ``data``, with every variant."""
    if data is None and events < 100:
        raise ValueError("evaluate needs at least 100 events")
    if not variants:
        raise ValueError("at least one variant is needed")
    if plots_dir is not None:
        from inference.plots import require_matplotlib

        require_matplotlib()  # fail before the slow part, not after it
    report = on_progress or (lambda message: None)
    started = time.perf_counter()
    max_batch = max(throughput_buckets)
    ordered = sorted(variants, key=lambda name: name != "fp32")  # fp32 first: the reference
    reference: npt.NDArray[np.float32] | None = None
    reference_decisions: list[str] | None = None
    measured: list[VariantResult] = []
    scorers: dict[str, Scorer] = {}
    scores_by_variant: dict[str, npt.NDArray[np.float32]] = {}
    prepared: EvaluationData | None = None
    for variant in ordered:
        report(f"{variant}: loading")
        scorer = Scorer.load(model_dir, device=device, quantization=variant, threads=threads, max_batch=max_batch)
        scorers[variant] = scorer
        if prepared is None:  # every variant of one checkpoint shares its featurizer
            if data is None:
                report("generating events")
                prepared = synthetic_evaluation_data(scorer, events, seed)
            else:
                report(f"reading {Path(data).name}")
                prepared = load_evaluation_data(
                    scorer,
                    Path(data),
                    mapping=mapping,
                    label_field=label_field,
                    since=since,
                    accounts=accounts,
                    max_bad_fraction=max_bad_fraction,
                    on_progress=lambda done, total: report(f"reading {Path(data).name}: {done:,}/{total:,} rows"),
                )
        features, labels = prepared.features, prepared.labels
        report(f"{variant}: scoring {len(labels):,} events")
        scores = _score_all(scorer, features)
        scores_by_variant[variant] = scores
        thresholds = scorer.thresholds
        decisions = [thresholds.decide(float(score)).value for score in scores]
        if variant == "fp32":
            reference, reference_decisions = scores, decisions
        sample = features[:64]
        alone = np.array([scorer.score([row]).scores[0] for row in sample])
        model_bytes = scorer.model_bytes()
        named = {"review threshold": thresholds.review, "decline threshold": thresholds.decline}
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
                max_bucket_diff=float(np.max(np.abs(alone - scores[: len(sample)]))),
                linear_weight_bytes=model_bytes.linear_weight_bytes,
                linear_weight_ratio=model_bytes.linear_weight_ratio,
                model_bytes=model_bytes.model_bytes,
                throughput={},  # measured below, all variants interleaved
                operating=tuple(
                    operating_table(
                        labels, scores, values=prepared.amounts_usd, alert_rates=alert_rates, thresholds=named
                    )
                ),
            )
        )
    assert prepared is not None
    report("throughput")
    rates = _throughput(scorers, list(prepared.features[:max_batch]), throughput_buckets, throughput_seconds)
    results = tuple(replace(result, throughput=rates[result.quantization]) for result in measured)
    plots: tuple[str, ...] = ()
    if plots_dir is not None:
        from inference.plots import write_plots

        report("plots")
        plots = tuple(str(path) for path in write_plots(Path(plots_dir), prepared.labels, scores_by_variant))
    scorer = scorers[ordered[0]]
    return EvaluationReport(
        model=scorer.info.name,
        version=scorer.info.version,
        device=scorer.device,
        threads=torch.get_num_threads(),
        events=prepared.events,
        fraud_events=int(prepared.labels.sum()),
        seed=seed if data is None else None,
        thresholds={"review": scorer.thresholds.review, "decline": scorer.thresholds.decline},
        variants=results,
        seconds=time.perf_counter() - started,
        source=prepared.source,
        unknown=prepared.unknown.to_json(prepared.events),
        bad_rows=prepared.bad_rows.to_json(),
        plots=plots,
    )
