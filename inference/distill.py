"""Knowledge distillation: a large teacher's scores teach a small student (``riskstream distill``).

The student is trained exactly as ``riskstream train --data`` trains a preset (same split, same
featurization, same early stopping on validation AUC, same thresholds), with one change: the loss
adds the teacher's temperature-softened scores on each training row (:class:`SoftTargets`,
Hinton et al. 2015). The teacher must read the same account history as the student (rows and
encoding) and have been trained on the same file with the same split options and seed — so both
see the same featurization, row for row; anything else is refused with a message saying what
differs. The result is an ordinary checkpoint; its training record names the teacher, the
temperature and alpha.

Transfer data (``transfer``): a second file of events in the same format — labels, if any, are
not read — featurized with the teacher's featurizer (for a history model every event in time order
against its account's earlier events in that file) and scored by the teacher. Its rows join the
training rows with the teacher's scores only: the distillation term covers them, the label term
does not. This is how a teacher passes on what it knows about events nobody labelled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer

from inference.checkpoint import LoadedCheckpoint, load_checkpoint
from inference.cpu import default_threads
from inference.data import DEFAULT_LABEL_FIELD, BadRows, DataError, RecordReader
from inference.dataset import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_MAX_BAD_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    PreparedData,
    SplitMode,
)
from inference.features import DEFAULT_MIN_COUNT
from inference.history import replay
from inference.metrics import roc_auc
from inference.model import get_preset
from inference.sequence import SequenceFeaturizer
from inference.train import (
    EVAL_BATCH,
    SoftTargets,
    TrainProgress,
    TrainResult,
    history_spec_of,
    prepare_training_file,
    train_prepared,
)
from schemas.mapping import EventMapping

DEFAULT_TEMPERATURE = 2.0
DEFAULT_ALPHA = 0.5


def teacher_logits(teacher: LoadedCheckpoint, inputs: npt.NDArray[np.integer]) -> torch.Tensor:
    """The teacher's fp32 logits (n, 2), positive class at index 1, for token ids ``inputs``."""
    module = teacher.module.eval()
    out = torch.empty((len(inputs), 2), dtype=torch.float32)
    with torch.inference_mode():
        for start in range(0, len(inputs), EVAL_BATCH):
            batch = torch.from_numpy(inputs[start : start + EVAL_BATCH].astype(np.int64, copy=False))
            logits = module(input_ids=batch).logits.float()
            if teacher.positive_index != 1:
                logits = logits[:, [1 - teacher.positive_index, teacher.positive_index]]
            out[start : start + len(batch)] = logits
    return out


def check_teacher_fits(teacher: LoadedCheckpoint, prepared: PreparedData) -> None:
    """Refuse a teacher whose featurization differs from the prepared data's (``ValueError``)."""
    if teacher.metadata.history != prepared.history:
        raise ValueError(
            f"the teacher reads history {teacher.metadata.history} but the student {prepared.history}: "
            "distil into a student preset with the teacher's history rows and encoding"
        )
    vocabulary = Tokenizer.from_file(str(teacher.path / "tokenizer.json")).get_vocab()
    if teacher.metadata.feature_spec != prepared.spec or vocabulary != prepared.tokenizer.get_vocab():
        raise ValueError(
            "the teacher's featurization differs from this data's: train the teacher on the same --data with the "
            "same --split, --holdout-fraction, --validation-fraction, --min-count and --seed"
        )


def featurize_transfer(
    teacher: LoadedCheckpoint,
    path: Path,
    *,
    mapping: EventMapping | None,
    max_bad_fraction: float,
) -> npt.NDArray[np.int32]:
    """Token ids of every good event in ``path`` (labels not read), in time order."""
    reader = RecordReader(Path(path), mapping=mapping, labels=False)
    expected = reader.row_estimate()
    bad = BadRows(limit=int(max_bad_fraction * expected) if max_bad_fraction < 1.0 else None)
    events = [event for chunk in reader.chunks(bad) for event in chunk.events]
    if not events:
        raise DataError(f"{path}: no usable events for transfer")
    events.sort(key=lambda event: event.event_time)
    featurizer = teacher.featurizer
    if isinstance(featurizer, SequenceFeaturizer):
        rows = replay(events, featurizer.featurize)
    else:
        rows = [featurizer.featurize(event) for event in events]
    return np.stack(rows).astype(np.int32)


def distill_on_data(
    out_dir: Path,
    data: Path,
    teacher_dir: Path,
    *,
    student_preset: str,
    temperature: float = DEFAULT_TEMPERATURE,
    alpha: float = DEFAULT_ALPHA,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    split: SplitMode = "time",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    min_count: int = DEFAULT_MIN_COUNT,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    seed: int = 0,
    threads: int | None = None,
    max_epochs: int | None = None,
    transfer: Path | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Train ``student_preset`` on ``data`` from the labels and ``teacher_dir``'s scores (and on
    ``transfer``'s events from the teacher's scores alone)."""
    recipe = get_preset(student_preset)
    SoftTargets(torch.empty(0, 2), temperature, alpha, {})  # bad values fail before the file is read
    teacher = load_checkpoint(Path(teacher_dir))
    if teacher.metadata.history != history_spec_of(recipe):
        raise ValueError(
            f"the teacher reads history {teacher.metadata.history} but preset {recipe.name!r} reads "
            f"{history_spec_of(recipe)}: choose a student preset with the teacher's history rows and encoding"
        )
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
    check_teacher_fits(teacher, prepared)
    threads = threads if threads is not None else default_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x_train = prepared.inputs["train"]
        extra = (
            featurize_transfer(teacher, transfer, mapping=mapping, max_bad_fraction=max_bad_fraction)
            if transfer is not None
            else np.empty((0, x_train.shape[1]), dtype=np.int32)
        )
        if len(extra):
            x_train = np.concatenate([x_train, extra.astype(x_train.dtype)])
            labels = np.concatenate([prepared.labels["train"], np.zeros(len(extra), dtype=np.int64)])
            prepared = replace(
                prepared, inputs={**prepared.inputs, "train": x_train}, labels={**prepared.labels, "train": labels}
            )
        logits = teacher_logits(teacher, x_train)
        teacher_validation = roc_auc(
            prepared.labels["validation"],
            torch.softmax(teacher_logits(teacher, prepared.inputs["validation"]), dim=-1)[:, 1].numpy(),
        )
    finally:
        torch.set_num_threads(previous)
    record: dict[str, Any] = {
        "teacher": {
            "name": teacher.metadata.name,
            "version": teacher.metadata.version,
            "parameters": sum(parameter.numel() for parameter in teacher.model.parameters()),
            "validation_auc": round(float(teacher_validation), 6),
        },
        "temperature": temperature,
        "alpha": alpha,
        "transfer_events": len(extra),
    }
    if transfer is not None:
        record["transfer"] = Path(transfer).name
    soft = SoftTargets(logits, temperature, alpha, record, unlabelled=len(extra))
    return train_prepared(
        out_dir,
        prepared,
        preset=student_preset,
        seed=seed,
        threads=threads,
        max_epochs=max_epochs,
        on_progress=on_progress,
        soft_targets=soft,
        name=f"riskstream-deepseek-v3-{recipe.name}-distilled",
    )
