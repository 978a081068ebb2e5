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
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import transformers
from torch import nn

from inference.checkpoint import DecisionThresholds, RiskMetadata, save_checkpoint
from inference.cpu import default_threads
from inference.features import PAD_TOKEN, Featurizer, build_feature_spec, build_tokenizer
from inference.metrics import average_precision, choose_thresholds, roc_auc
from inference.model import POSITIVE_LABEL, build_config, build_model, get_preset
from inference.quantize import DEFAULT_QUANTIZATION
from inference.synthetic import generate

HOLDOUT_FRAUD_RATE = 0.01
# An epoch must improve holdout AUC by this much to count: smaller gains are within the noise of a
# few hundred holdout frauds and not worth another epoch of the training budget.
MIN_AUC_IMPROVEMENT = 5e-4
EVAL_BATCH = 1024


@dataclass(frozen=True)
class TrainProgress:
    """A progress report: ``phase`` is "data", "train" or "evaluate"."""

    phase: str
    epoch: int
    epochs: int
    step: int
    steps: int
    loss: float | None = None
    holdout_auc: float | None = None


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


def predict_scores(model: nn.Module, inputs: npt.NDArray[np.int64], positive_index: int = 1) -> npt.NDArray[np.float32]:
    """Fraud probabilities of ``inputs`` (n, seq) with a plain fp32 model, in batches."""
    model.eval()
    scores = np.empty(len(inputs), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(inputs), EVAL_BATCH):
            batch = torch.from_numpy(inputs[start : start + EVAL_BATCH])
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
        train_items = list(generate(train_count, seed=2 * seed, fraud_rate=recipe.train_fraud_rate))
        holdout_items = list(generate(holdout_count, seed=2 * seed + 1, fraud_rate=HOLDOUT_FRAUD_RATE))
        spec = build_feature_spec(item.event for item in train_items)
        tokenizer = build_tokenizer(spec)
        vocabulary = tokenizer.get_vocab()
        featurizer = Featurizer(spec, vocabulary)
        x_train = featurizer.featurize_batch(item.event for item in train_items)
        y_train = np.array([item.is_fraud for item in train_items], dtype=np.int64)
        x_holdout = featurizer.featurize_batch(item.event for item in holdout_items)
        y_holdout = np.array([item.is_fraud for item in holdout_items], dtype=np.int64)
        if y_train.sum() == 0 or y_holdout.sum() == 0:
            raise ValueError("too few events: the training or holdout set has no fraud; use more events")

        config = build_config(
            recipe, vocab_size=len(vocabulary), sequence_length=spec.sequence_length, pad_token_id=vocabulary[PAD_TOKEN]
        )
        model = build_model(config)
        model.train()
        positives = float(y_train.sum())
        fraud_weight = math.sqrt((len(y_train) - positives) / positives)
        loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, fraud_weight]))
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
        steps_per_epoch = math.ceil(len(x_train) / recipe.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(steps_per_epoch * epochs))
        shuffler = np.random.default_rng(seed)
        inputs = torch.from_numpy(x_train)
        targets = torch.from_numpy(y_train)

        best_auc = -1.0
        best_epoch = 0
        best_state: dict[str, torch.Tensor] = {}
        history: list[dict[str, float]] = []
        for epoch in range(1, epochs + 1):
            model.train()
            order = torch.from_numpy(shuffler.permutation(len(x_train)))
            running = 0.0
            for step in range(steps_per_epoch):
                index = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
                logits = model(input_ids=inputs[index]).logits
                loss = loss_fn(logits, targets[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                running += loss.detach().item()
                if step % 20 == 0 or step == steps_per_epoch - 1:
                    report(TrainProgress("train", epoch, epochs, step + 1, steps_per_epoch, loss=running / (step + 1)))
            report(TrainProgress("evaluate", epoch, epochs, steps_per_epoch, steps_per_epoch))
            auc = roc_auc(y_holdout, predict_scores(model, x_holdout))
            history.append({"epoch": epoch, "loss": running / steps_per_epoch, "holdout_auc": auc})
            report(TrainProgress("evaluate", epoch, epochs, steps_per_epoch, steps_per_epoch, holdout_auc=auc))
            if auc > best_auc + MIN_AUC_IMPROVEMENT or epoch == 1:
                best_auc, best_epoch = auc, epoch
                best_state = copy.deepcopy(model.state_dict())
            elif epoch - best_epoch >= recipe.patience:
                break
        model.load_state_dict(best_state)
        model.eval()
        holdout_scores = predict_scores(model, x_holdout)

    auc = roc_auc(y_holdout, holdout_scores)
    ap = average_precision(y_holdout, holdout_scores)
    choice = choose_thresholds(y_holdout, holdout_scores)
    seconds = time.perf_counter() - started
    training: dict[str, Any] = {
        "preset": recipe.to_json(),
        "seed": seed,
        "train_events": train_count,
        "train_fraud_rate": recipe.train_fraud_rate,
        "train_fraud_events": int(positives),
        "fraud_class_weight": fraud_weight,
        "holdout_events": holdout_count,
        "holdout_fraud_rate": HOLDOUT_FRAUD_RATE,
        "holdout_fraud_events": int(y_holdout.sum()),
        "holdout_auc": auc,
        "holdout_ap": ap,
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "history": history,
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
    )
    written = save_checkpoint(out_dir, model, tokenizer, metadata)
    return TrainResult(out_dir=Path(out_dir), metadata=written, seconds=seconds)
