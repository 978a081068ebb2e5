"""Train a risk model on the synthetic generator and save a servable checkpoint.

Recipe (what ``riskstream train`` does):

1. Generate ``events`` training events with fraud enriched to the preset's ``train_fraud_rate``
   (default 4%: oversampling by drawing more fraud from the generator, not by repeating rows) and
   an independent holdout at the natural 1% fraud rate (a different generator seed: other
   accounts, other merchants).
2. Learn the categorical vocabularies from the training events; build the tokenizer.
3. Train ``DeepseekV3ForSequenceClassification`` with AdamW, linear warm-up and cosine decay,
   class-weighted cross-entropy (fraud weighted by the square root of the remaining imbalance),
   gradient clipping; evaluate holdout AUC after every epoch and stop after ``patience`` epochs
   without an improvement of at least ``MIN_AUC_IMPROVEMENT``, keeping the best weights.
4. Choose the review/decline thresholds on the holdout; save config, safetensors weights,
   ``tokenizer.json`` and ``riskstream.json``.

On a bank's own labelled history (``riskstream train --data``, :func:`train_on_data`) steps 1-2 are
:func:`inference.dataset.prepare_file` instead: a time (and/or account) split, validation = the
latest 10% of the training period, featurization fitted on the training rows, two bounded passes
over the file; no oversampling (the class weight covers the imbalance). Early stopping and the
initial thresholds use the validation set; the holdout is scored once, at the end.

Determinism: the same seed, preset, event count, library versions and thread count give the same
weights (deterministic algorithms are enforced while training; floating-point reductions on CPU
depend on the thread count, which is therefore recorded in the training record).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
import transformers
from torch import nn
from transformers import PreTrainedModel

from inference.checkpoint import DecisionThresholds, RiskMetadata, save_checkpoint
from inference.cpu import default_threads
from inference.data import DEFAULT_LABEL_FIELD, RecordReader
from inference.dataset import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_MAX_BAD_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    PreparedData,
    SplitMode,
    prepare_file,
)
from inference.features import DEFAULT_MIN_COUNT, PAD_TOKEN, Featurizer, build_feature_spec, build_tokenizer
from inference.history import replay
from inference.metrics import average_precision, choose_thresholds, operating_point, roc_auc
from inference.model import POSITIVE_LABEL, Preset, build_config, build_model, get_preset, serving_module
from inference.quantize import DEFAULT_QUANTIZATION
from inference.sequence import Encoding, HistorySpec, SequenceFeaturizer, history_tokens
from inference.synthetic import generate
from inference.synthetic_history import generate_histories
from schemas.mapping import EventMapping

HOLDOUT_FRAUD_RATE = 0.01
# An epoch must improve holdout AUC by this much to count: smaller gains are within the noise of a
# few hundred holdout frauds and not worth another epoch of the training budget.
MIN_AUC_IMPROVEMENT = 5e-4
EVAL_BATCH = 1024


@dataclass(frozen=True)
class TrainProgress:
    """A progress report: ``phase`` is "data", "read", "featurize", "train" or "evaluate".

    For "read" and "featurize" (the passes over a data file) ``step``/``steps`` count rows.
    """

    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None
    holdout_auc: float | None = None
    #: Which set ``holdout_auc`` was measured on: "holdout" (synthetic) or "validation" (own data).
    evaluated_on: str = "holdout"


@dataclass(frozen=True)
class TrainResult:
    out_dir: Path
    metadata: RiskMetadata
    seconds: float

    @property
    def holdout_auc(self) -> float:
        return float(self.metadata.training["holdout_auc"])

    @property
    def holdout_ap(self) -> float:
        return float(self.metadata.training["holdout_ap"])


@contextlib.contextmanager
def _training_mode(threads: int) -> Iterator[None]:
    """Deterministic algorithms and the thread count for the duration of training only."""
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


def predict_scores(
    model: nn.Module, inputs: npt.NDArray[np.integer], positive_index: int = 1
) -> npt.NDArray[np.float32]:
    """Fraud probabilities of token ids ``inputs`` (n, seq; any integer dtype) with a plain fp32 model."""
    model.eval()
    scores = np.empty(len(inputs), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(inputs), EVAL_BATCH):
            batch = torch.from_numpy(inputs[start : start + EVAL_BATCH].astype(np.int64, copy=False))
            logits = model(input_ids=batch).logits.float()
            scores[start : start + len(batch)] = torch.softmax(logits, dim=-1)[:, positive_index].numpy()
    return scores


def _lr_lambda(total_steps: int) -> Callable[[int], float]:
    warmup = max(1, total_steps // 20)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass(frozen=True)
class SoftTargets:
    """What a teacher says about the training rows (:mod:`inference.distill`): its logits, row for
    row, and how much the student listens. The loss is ``alpha`` x the temperature-softened KL
    divergence to the teacher (times ``temperature``\u00b2, Hinton et al. 2015) + ``1 - alpha`` x the
    class-weighted cross-entropy to the labels."""

    logits: torch.Tensor
    temperature: float
    alpha: float
    record: dict[str, Any]
    #: The last ``unlabelled`` training rows are transfer data: the teacher's scores only (their
    #: label placeholders are never read), so only the distillation term covers them.
    unlabelled: int = 0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError("the distillation temperature must be > 0")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError("alpha (the weight of the teacher's scores) must be within [0, 1]")

    def loss(self, student: torch.Tensor, index: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        soft = nn.functional.kl_div(
            nn.functional.log_softmax(student / t, dim=-1),
            nn.functional.log_softmax(self.logits[index] / t, dim=-1),
            log_target=True,
            reduction="batchmean",
        )
        return self.alpha * soft * t * t + (1.0 - self.alpha) * hard


@dataclass(frozen=True)
class _FittedModel:
    model: PreTrainedModel
    """The classifier (what is saved)."""
    net: nn.Module
    """What maps ids to logits (:func:`inference.model.serving_module`): the classifier, or it wrapped."""
    history: list[dict[str, float]]
    best_epoch: int
    fraud_weight: float


def history_spec_of(recipe: Preset) -> HistorySpec | None:
    """The account history a preset's model reads (None for a stateless preset)."""
    if recipe.history_rows is None:
        return None
    return HistorySpec(rows=recipe.history_rows, encoding=cast("Encoding", recipe.history_encoding))


def _fit_classifier(
    recipe: Preset,
    x_train: npt.NDArray[np.integer],
    y_train: npt.NDArray[np.int64],
    x_eval: npt.NDArray[np.integer],
    y_eval: npt.NDArray[np.int64],
    vocabulary: dict[str, int],
    sequence_length: int,
    *,
    epochs: int,
    seed: int,
    report: Callable[[TrainProgress], None],
    evaluated_on: str = "holdout",
    history_spec: HistorySpec | None = None,
    initial: PreTrainedModel | None = None,
    soft_targets: SoftTargets | None = None,
    learning_rate: float | None = None,
) -> _FittedModel:
    """Train a fresh model of ``recipe`` (initialised from the global torch seed), early-stopping on
    the AUC of ``x_eval``; returns it with the best epoch's weights, in eval mode.

    ``sequence_length`` is the number of positions the transformer sees (for a ``rows``-encoded
    history model fewer than the ids per event).

    ``initial`` continues training a given model instead (a pruned one's recovery fine-tune);
    ``soft_targets`` adds a teacher's scores to the loss; ``learning_rate`` overrides the recipe's."""
    if soft_targets is not None and len(soft_targets.logits) != len(x_train):
        raise ValueError(f"{len(soft_targets.logits)} teacher scores for {len(x_train)} training rows")
    model: PreTrainedModel
    if initial is None:
        config = build_config(
            recipe, vocab_size=len(vocabulary), sequence_length=sequence_length, pad_token_id=vocabulary[PAD_TOKEN]
        )
        model = build_model(config)
    else:
        model = initial
    net = serving_module(model, history_spec)
    net.train()
    labelled = len(x_train) - (soft_targets.unlabelled if soft_targets is not None else 0)
    positives = float(y_train[:labelled].sum())
    fraud_weight = math.sqrt((labelled - positives) / positives)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, fraud_weight]))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=learning_rate or recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    steps_per_epoch = math.ceil(len(x_train) / recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps_per_epoch * epochs))
    shuffler = np.random.default_rng(seed)
    inputs = torch.from_numpy(x_train)  # token ids as stored (int16 for own data): widened per batch
    targets = torch.from_numpy(y_train)
    metric = f"{evaluated_on}_auc"

    if epochs == 0:  # a given model as it is (pruning without recovery): nothing to fit
        net.eval()
        return _FittedModel(model=model, net=net, history=[], best_epoch=0, fraud_weight=fraud_weight)
    best_auc = -1.0
    best_epoch = 0
    best_state: dict[str, torch.Tensor] = {}
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        net.train()
        order = torch.from_numpy(shuffler.permutation(len(x_train)))
        running = 0.0
        for step in range(steps_per_epoch):
            index = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            logits = net(input_ids=inputs[index].long()).logits
            if labelled < len(x_train):  # transfer rows in the batch: labels only where there are labels
                known = index < labelled
                loss = loss_fn(logits[known], targets[index][known]) if bool(known.any()) else logits.sum() * 0.0
            else:
                loss = loss_fn(logits, targets[index])
            if soft_targets is not None:
                loss = soft_targets.loss(logits, index, loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            running += loss.detach().item()
            if step % 20 == 0 or step == steps_per_epoch - 1:
                report(
                    TrainProgress(
                        "train",
                        epoch,
                        epochs,
                        step + 1,
                        steps_per_epoch,
                        loss=running / (step + 1),
                        evaluated_on=evaluated_on,
                    )
                )
        report(TrainProgress("evaluate", epoch, epochs, steps_per_epoch, steps_per_epoch, evaluated_on=evaluated_on))
        auc = roc_auc(y_eval, predict_scores(net, x_eval))
        history.append({"epoch": epoch, "loss": running / steps_per_epoch, metric: auc})
        report(
            TrainProgress(
                "evaluate", epoch, epochs, steps_per_epoch, steps_per_epoch, holdout_auc=auc, evaluated_on=evaluated_on
            )
        )
        if auc > best_auc + MIN_AUC_IMPROVEMENT or epoch == 1:
            best_auc, best_epoch = auc, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= recipe.patience:
            break
    model.load_state_dict(best_state)
    net.eval()
    return _FittedModel(model=model, net=net, history=history, best_epoch=best_epoch, fraud_weight=fraud_weight)


def train(
    out_dir: Path,
    *,
    preset: str = "default",
    events: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    max_epochs: int | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train a model of ``preset`` and save it to ``out_dir`` (replaced atomically if it exists).

    ``threads=None`` uses :func:`inference.cpu.default_threads` (available cores minus one): on a
    2-core machine shared with anything busy, two threads made a training step about 8x slower
    than one (OpenMP barrier stalls), while on an idle machine they were about 1.5x faster.
    """
    recipe = get_preset(preset)
    threads = threads if threads is not None else default_threads()
    train_count = events if events is not None else recipe.train_events
    if train_count < 500:
        raise ValueError("train needs at least 500 events")
    holdout_count = min(recipe.holdout_events, max(2_000, train_count // 2))
    epochs = max_epochs if max_epochs is not None else recipe.max_epochs
    report = on_progress or (lambda progress: None)
    started = time.perf_counter()
    with _training_mode(threads):
        report(TrainProgress("data", 0, epochs, 0, 0))
        torch.manual_seed(seed)
        # Disjoint generator seeds for the two sets: other accounts and merchants in the holdout.
        history = history_spec_of(recipe)
        world = generate if history is None else generate_histories
        train_items = list(world(train_count, seed=2 * seed, fraud_rate=recipe.train_fraud_rate))
        holdout_items = list(world(holdout_count, seed=2 * seed + 1, fraud_rate=HOLDOUT_FRAUD_RATE))
        spec = build_feature_spec(item.event for item in train_items)
        if history is None:
            tokenizer = build_tokenizer(spec)
            featurizer = Featurizer(spec, tokenizer.get_vocab())
            x_train = featurizer.featurize_batch(item.event for item in train_items)
            x_holdout = featurizer.featurize_batch(item.event for item in holdout_items)
        else:
            # Each world's events in time order, each against its account's history so far.
            tokenizer = build_tokenizer(spec, history_tokens(spec))
            sequences = SequenceFeaturizer(spec, history, tokenizer.get_vocab())
            x_train = np.stack(replay([item.event for item in train_items], sequences.featurize))
            x_holdout = np.stack(replay([item.event for item in holdout_items], sequences.featurize))
        vocabulary = tokenizer.get_vocab()
        y_train = np.array([item.is_fraud for item in train_items], dtype=np.int64)
        y_holdout = np.array([item.is_fraud for item in holdout_items], dtype=np.int64)
        if y_train.sum() == 0 or y_holdout.sum() == 0:
            raise ValueError("too few events: the training or holdout set has no fraud; use more events")

        fitted = _fit_classifier(
            recipe,
            x_train,
            y_train,
            x_holdout,
            y_holdout,
            vocabulary,
            spec.sequence_length if history is None else history.positions,
            epochs=epochs,
            seed=seed,
            report=report,
            history_spec=history,
        )
        model = fitted.model
        holdout_scores = predict_scores(fitted.net, x_holdout)

    auc = roc_auc(y_holdout, holdout_scores)
    ap = average_precision(y_holdout, holdout_scores)
    choice = choose_thresholds(y_holdout, holdout_scores)
    seconds = time.perf_counter() - started
    training: dict[str, Any] = {
        "preset": recipe.to_json(),
        "seed": seed,
        "world": "history" if history is not None else "events",
        "train_events": train_count,
        "train_fraud_rate": recipe.train_fraud_rate,
        "train_fraud_events": int(y_train.sum()),
        "fraud_class_weight": fitted.fraud_weight,
        "holdout_events": holdout_count,
        "holdout_fraud_rate": HOLDOUT_FRAUD_RATE,
        "holdout_fraud_events": int(y_holdout.sum()),
        "holdout_auc": auc,
        "holdout_ap": ap,
        "epochs_run": len(fitted.history),
        "best_epoch": fitted.best_epoch,
        "history": fitted.history,
        "thresholds": {
            "review_rate": choice.review_rate,
            "review_recall": choice.review_recall,
            "decline_rate": choice.decline_rate,
            "decline_precision": choice.decline_precision,
        },
        "threads": threads,
        "seconds": seconds,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    metadata = RiskMetadata(
        name=f"riskstream-deepseek-v3-{recipe.name}",
        version="",  # filled in from the date and the weights hash when saved
        feature_spec=spec,
        thresholds=DecisionThresholds(review=choice.review, decline=choice.decline),
        positive_label=POSITIVE_LABEL,
        default_quantization=DEFAULT_QUANTIZATION,
        training=training,
        history=history,
    )
    written = save_checkpoint(out_dir, model, tokenizer, metadata)
    return TrainResult(out_dir=Path(out_dir), metadata=written, seconds=seconds)


def train_prepared(
    out_dir: Path,
    prepared: PreparedData,
    *,
    preset: str = "default",
    seed: int = 0,
    threads: int | None = None,
    max_epochs: int | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
    soft_targets: SoftTargets | None = None,
    initial: PreTrainedModel | None = None,
    learning_rate: float | None = None,
    record: dict[str, Any] | None = None,
    name: str | None = None,
) -> TrainResult:
    """Train on prepared own data (:func:`inference.dataset.prepare_file` or ``prepare_events``).

    Early stopping and the review/decline thresholds use the validation set; the holdout is
    scored once with the final weights and recorded (``holdout_auc``, ``holdout_ap`` and what the
    thresholds do there).

    ``soft_targets`` (distillation), ``initial`` (continue from a given model: pruning's recovery)
    and ``learning_rate`` go to the training loop; ``record`` is merged into the training record
    and ``name`` replaces the checkpoint's ``riskstream-deepseek-v3-<preset>`` name.
    """
    recipe = get_preset(preset)
    threads = threads if threads is not None else default_threads()
    epochs = max_epochs if max_epochs is not None else recipe.max_epochs
    report = on_progress or (lambda progress: None)
    started = time.perf_counter()
    vocabulary = prepared.tokenizer.get_vocab()
    x_train, y_train = prepared.inputs["train"], prepared.labels["train"]
    x_validation, y_validation = prepared.inputs["validation"], prepared.labels["validation"]
    x_holdout, y_holdout = prepared.inputs["holdout"], prepared.labels["holdout"]
    history = prepared.history
    if (history is not None) != recipe.reads_history or (history is not None and history != history_spec_of(recipe)):
        raise ValueError(
            f"preset {recipe.name!r} {'reads' if recipe.reads_history else 'does not read'} account history but "
            f"the data was prepared {'with' if history is not None else 'without'} it"
            + (f" ({history.rows} rows, {history.encoding})" if history is not None else "")
            + ": prepare it for this preset"
        )
    with _training_mode(threads):
        torch.manual_seed(seed)
        fitted = _fit_classifier(
            recipe,
            x_train,
            y_train,
            x_validation,
            y_validation,
            vocabulary,
            prepared.spec.sequence_length if history is None else history.positions,
            epochs=epochs,
            seed=seed,
            report=report,
            evaluated_on="validation",
            history_spec=history,
            initial=initial,
            soft_targets=soft_targets,
            learning_rate=learning_rate,
        )
        model = fitted.model
        validation_scores = predict_scores(fitted.net, x_validation)
        holdout_scores = predict_scores(fitted.net, x_holdout)
    choice = choose_thresholds(y_validation, validation_scores)
    thresholds = DecisionThresholds(review=choice.review, decline=choice.decline)
    on_holdout = {
        name: operating_point(y_holdout, holdout_scores, threshold, name=name).to_json()
        for name, threshold in (("review", thresholds.review), ("decline", thresholds.decline))
    }
    seconds = time.perf_counter() - started
    training: dict[str, Any] = {
        "preset": recipe.to_json(),
        "seed": seed,
        "data": prepared.describe(),
        "train_events": len(y_train) - (soft_targets.unlabelled if soft_targets is not None else 0),
        "train_fraud_events": int(y_train.sum()),
        "fraud_class_weight": fitted.fraud_weight,
        "validation_events": len(y_validation),
        "validation_fraud_events": int(y_validation.sum()),
        "validation_auc": roc_auc(y_validation, validation_scores),
        "holdout_events": len(y_holdout),
        "holdout_fraud_events": int(y_holdout.sum()),
        "holdout_fraud_rate": float(y_holdout.mean()),
        "holdout_auc": roc_auc(y_holdout, holdout_scores),
        "holdout_ap": average_precision(y_holdout, holdout_scores),
        "epochs_run": len(fitted.history),
        "best_epoch": fitted.best_epoch,
        "history": fitted.history,
        "thresholds": {
            "chosen_on": "validation",
            "review_rate": choice.review_rate,
            "review_recall": choice.review_recall,
            "decline_rate": choice.decline_rate,
            "decline_precision": choice.decline_precision,
            "on_holdout": on_holdout,
        },
        "threads": threads,
        "seconds": seconds,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **(record or {}),
    }
    if soft_targets is not None:
        training["distillation"] = soft_targets.record
    metadata = RiskMetadata(
        name=name or f"riskstream-deepseek-v3-{recipe.name}",
        version="",
        feature_spec=prepared.spec,
        thresholds=thresholds,
        positive_label=POSITIVE_LABEL,
        default_quantization=DEFAULT_QUANTIZATION,
        training=training,
        history=history,
    )
    written = save_checkpoint(out_dir, model, prepared.tokenizer, metadata)
    return TrainResult(out_dir=Path(out_dir), metadata=written, seconds=seconds)


def prepare_training_file(
    data: Path,
    *,
    history: HistorySpec | None,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    split: SplitMode = "time",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 0,
    min_count: int = DEFAULT_MIN_COUNT,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    epochs: int = 0,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> PreparedData:
    """Read, split and featurize a labelled file for training (what ``train --data``, ``distill``
    and ``prune`` share): the same file with the same split options and seed gives the same sets,
    row for row, and the same featurization."""
    report = on_progress or (lambda progress: None)
    started = time.perf_counter()

    def data_progress(phase: str, done: int, total: int) -> None:
        report(TrainProgress(phase, 0, epochs, done, total))

    reader = RecordReader(Path(data), mapping=mapping, label_field=label_field)
    prepared = prepare_file(
        reader,
        history=history,
        split=split,
        holdout_fraction=holdout_fraction,
        validation_fraction=validation_fraction,
        seed=seed,
        min_count=min_count,
        max_bad_fraction=max_bad_fraction,
        on_progress=data_progress,
    )
    prepared.source["seconds_to_prepare"] = round(time.perf_counter() - started, 1)
    return prepared


def train_on_data(
    out_dir: Path,
    data: Path,
    *,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    split: SplitMode = "time",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    min_count: int = DEFAULT_MIN_COUNT,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    preset: str = "default",
    seed: int = 0,
    threads: int | None = None,
    max_epochs: int | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train on a labelled file (what ``riskstream train --data`` runs); see :mod:`inference.dataset`.

    Raises :class:`~inference.data.DataError` for a file that cannot be used (bad rows over
    ``max_bad_fraction``, a set without fraud, a header the mapping does not fit).
    """
    recipe = get_preset(preset)  # an unknown preset fails before the file is read
    prepared = prepare_training_file(
        data,
        history=history_spec_of(recipe),
        mapping=mapping,
        label_field=label_field,
        split=split,
        holdout_fraction=holdout_fraction,
        validation_fraction=validation_fraction,
        seed=seed,
        min_count=min_count,
        max_bad_fraction=max_bad_fraction,
        epochs=max_epochs if max_epochs is not None else recipe.max_epochs,
        on_progress=on_progress,
    )
    return train_prepared(
        out_dir, prepared, preset=preset, seed=seed, threads=threads, max_epochs=max_epochs, on_progress=on_progress
    )
