"""Checkpoint directories: save, validate and load, offline.

A servable directory holds what ``transformers`` writes (``config.json``, ``model.safetensors`` or a
sharded ``model.safetensors.index.json``, ``tokenizer.json`` + tokenizer config) and
``riskstream.json``: the feature spec, the positive label, the decision thresholds, the model's name
and version, the shipped quantization per device and the training record. Any Hugging Face
sequence-classification checkpoint with such a ``riskstream.json`` can be served.

A model that reads account history (a ``sequence`` preset) says so in ``riskstream.json``:
``format_version`` 2 and a ``history`` section (:class:`inference.sequence.HistorySpec`: rows
read, encoding, ids per event, positions, and the account-state format, ring capacity and TTL it
was trained against). Stateless models keep writing format version 1, so a reader that predates
history models still reads them — and refuses a history model instead of serving it without its
history.

Loading never touches the network (``local_files_only=True``) and fails with a
:class:`~inference.errors.CheckpointError` that says what is wrong: the directory is missing, files
are missing (partial copy), a file is corrupt (unparsable JSON, truncated or altered weights — the
SHA-256 recorded at save time is checked), or the parts do not fit together (vocabulary vs config,
missing tensors).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from inference.errors import CheckpointError
from inference.features import PAD_TOKEN, SPECIAL_TOKENS, SUMMARY_TOKEN, UNK_TOKEN, FeatureSpec, Featurizer
from inference.model import quiet_loss_lookup, serving_module
from inference.sequence import HistorySpec, SequenceFeaturizer
from schemas import Decision

METADATA_FILE: Final = "riskstream.json"
METADATA_FORMAT: Final = "riskstream-model"
METADATA_FORMAT_VERSION: Final = 1
#: The format version of a history model's ``riskstream.json`` (one that reads account history): a
#: reader that predates history models must refuse it rather than serve it without history.
HISTORY_METADATA_FORMAT_VERSION: Final = 2
WEIGHTS_FILE: Final = "model.safetensors"
WEIGHTS_INDEX_FILE: Final = "model.safetensors.index.json"
REQUIRED_FILES: Final = ("config.json", "tokenizer.json", METADATA_FILE)


@dataclass(frozen=True)
class DecisionThresholds:
    """Score cut-offs: ``score >= decline`` declines, ``score >= review`` goes to review."""

    review: float
    decline: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.review <= self.decline <= 1.0):
            raise ValueError(f"thresholds must satisfy 0 <= review <= decline <= 1 (got {self.review}, {self.decline})")

    def decide(self, score: float) -> Decision:
        """The decision for one score (NaN, i.e. unscored, is never approved: it goes to review)."""
        if score >= self.decline:
            return Decision.DECLINE
        if score >= self.review or score != score:
            return Decision.REVIEW
        return Decision.APPROVE


@dataclass(frozen=True)
class RiskMetadata:
    """The contents of ``riskstream.json``."""

    name: str
    version: str
    feature_spec: FeatureSpec
    thresholds: DecisionThresholds
    positive_label: str = "fraud"
    default_quantization: Mapping[str, str] = field(default_factory=lambda: {"cpu": "int8", "cuda": "bf16"})
    weights_sha256: str | None = None
    training: Mapping[str, Any] = field(default_factory=dict)
    #: How the thresholds were last set by policy (``riskstream thresholds``) and what they replaced.
    threshold_policy: Mapping[str, Any] = field(default_factory=dict)
    #: What account history the model reads (None: a stateless model, scored one event at a time).
    history: HistorySpec | None = None

    @property
    def reads_history(self) -> bool:
        return self.history is not None

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": METADATA_FORMAT,
            "format_version": METADATA_FORMAT_VERSION if self.history is None else HISTORY_METADATA_FORMAT_VERSION,
            "name": self.name,
            "version": self.version,
            "positive_label": self.positive_label,
            "thresholds": {"review": self.thresholds.review, "decline": self.thresholds.decline},
            "default_quantization": dict(self.default_quantization),
            "weights_sha256": self.weights_sha256,
            "feature_spec": self.feature_spec.to_json(),
            "training": dict(self.training),
        }
        if self.threshold_policy:
            data["threshold_policy"] = dict(self.threshold_policy)
        if self.history is not None:
            data["history"] = self.history.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RiskMetadata:
        """Parse ``riskstream.json``; ``ValueError``/``KeyError``/``TypeError`` when malformed."""
        version = data.get("format_version")
        if data.get("format") != METADATA_FORMAT or version not in (
            METADATA_FORMAT_VERSION,
            HISTORY_METADATA_FORMAT_VERSION,
        ):
            raise ValueError(
                f"not a {METADATA_FORMAT} v{METADATA_FORMAT_VERSION} or v{HISTORY_METADATA_FORMAT_VERSION} file "
                f"(format={data.get('format')!r}, format_version={version!r})"
            )
        if (version == HISTORY_METADATA_FORMAT_VERSION) != ("history" in data):
            raise ValueError(
                f"format_version {version} {'needs' if 'history' not in data else 'cannot have'} a history"
            )
        thresholds = data["thresholds"]
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            positive_label=str(data.get("positive_label", "fraud")),
            thresholds=DecisionThresholds(review=float(thresholds["review"]), decline=float(thresholds["decline"])),
            default_quantization={str(k): str(v) for k, v in data.get("default_quantization", {}).items()},
            weights_sha256=data.get("weights_sha256"),
            feature_spec=FeatureSpec.from_json(data["feature_spec"]),
            training=dict(data.get("training", {})),
            threshold_policy=dict(data.get("threshold_policy", {})),
            history=HistorySpec.from_json(data["history"]) if "history" in data else None,
        )


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A validated checkpoint: the fp32 model in eval mode on CPU, its metadata and featurizer.

    ``model`` is the ``transformers`` classifier (what is saved); ``module`` what maps a batch of
    ids to logits — the classifier itself, or for a ``rows``-encoded history model the classifier
    inside :class:`inference.model.RowPooledClassifier`. ``featurizer`` is a
    :class:`~inference.sequence.SequenceFeaturizer` for a history model.
    """

    path: Path
    model: PreTrainedModel
    metadata: RiskMetadata
    featurizer: Featurizer | SequenceFeaturizer
    positive_index: int
    module: nn.Module


def fast_tokenizer(tokenizer: Tokenizer, sequence_length: int) -> PreTrainedTokenizerFast:
    """Wrap a ``tokenizers`` tokenizer as the ``transformers`` tokenizer saved with checkpoints."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        cls_token=SUMMARY_TOKEN,
        model_max_length=sequence_length,
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """Hide transformers' per-file progress bars (a load takes milliseconds; bars only clutter logs)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _staging_dir(out_dir: Path) -> Iterator[Path]:
    """A sibling temporary directory that replaces ``out_dir`` on success, so no reader ever
    sees a half-written checkpoint."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / METADATA_FILE).is_file():
        raise CheckpointError(f"{out_dir} exists and is not a riskstream model directory; refusing to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        if out_dir.exists():
            retired = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out_dir, retired)
            os.replace(staging, out_dir)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def save_checkpoint(
    out_dir: Path,
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    metadata: RiskMetadata,
) -> RiskMetadata:
    """Write a complete checkpoint directory atomically; returns the metadata as written.

    ``weights_sha256`` is filled in, and an empty ``version`` becomes ``<UTC date>-<weights hash>``
    (e.g. ``2026.11.28-3fa9c2d1``). ``model`` must be the fp32 (unquantized) model.
    """
    with _staging_dir(Path(out_dir)) as staging, _quiet_progress_bars():
        model.save_pretrained(staging)
        length = metadata.feature_spec.sequence_length if metadata.history is None else metadata.history.ids_per_event
        fast_tokenizer(tokenizer, length).save_pretrained(staging)
        weights = staging / WEIGHTS_FILE
        digest = sha256_of(weights) if weights.is_file() else None
        written = RiskMetadata(
            name=metadata.name,
            version=metadata.version or f"{datetime.now(UTC):%Y.%m.%d}-{(digest or uuid.uuid4().hex)[:8]}",
            feature_spec=metadata.feature_spec,
            thresholds=metadata.thresholds,
            positive_label=metadata.positive_label,
            default_quantization=metadata.default_quantization,
            weights_sha256=digest,
            training=metadata.training,
            threshold_policy=metadata.threshold_policy,
            history=metadata.history,
        )
        (staging / METADATA_FILE).write_text(json.dumps(written.to_json(), indent=2) + "\n", encoding="utf-8")
    return written


def write_metadata(model_dir: Path, metadata: RiskMetadata) -> None:
    """Replace only ``riskstream.json`` of an existing checkpoint, atomically (a reader sees the old
    file or the new one, never a mix). The weights and their recorded SHA-256 must not change."""
    model_dir = Path(model_dir)
    current = read_metadata(model_dir)
    if metadata.weights_sha256 != current.weights_sha256:
        raise CheckpointError(f"{model_dir}: new metadata must keep the weights' SHA-256")
    staging = model_dir / f".{METADATA_FILE}.{uuid.uuid4().hex[:8]}"
    try:
        staging.write_text(json.dumps(metadata.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(staging, model_dir / METADATA_FILE)
    finally:
        staging.unlink(missing_ok=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt: {exc.__class__.__name__}: {exc}") from exc


def read_metadata(model_dir: Path) -> RiskMetadata:
    """Only ``riskstream.json`` of ``model_dir``, validated."""
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        raise CheckpointError(f"{model_dir} has no {METADATA_FILE}")
    try:
        return RiskMetadata.from_json(_read_json(path))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is invalid: {exc.__class__.__name__}: {exc}") from exc


def _check_files(model_dir: Path) -> list[Path]:
    """The weight files of ``model_dir``; ``CheckpointError`` when anything required is absent."""
    if not model_dir.exists():
        raise CheckpointError(f"model directory {model_dir} does not exist")
    if not model_dir.is_dir():
        raise CheckpointError(f"model path {model_dir} is not a directory")
    missing = [name for name in REQUIRED_FILES if not (model_dir / name).is_file()]
    index = model_dir / WEIGHTS_INDEX_FILE
    single = model_dir / WEIGHTS_FILE
    weight_files: list[Path] = []
    if single.is_file():
        weight_files = [single]
    elif index.is_file():
        index_data = _read_json(index)
        try:
            shards = sorted(set(index_data["weight_map"].values()))
        except (KeyError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"{index} is corrupt: no weight_map") from exc
        weight_files = [model_dir / shard for shard in shards]
        missing.extend(str(path.name) for path in weight_files if not path.is_file())
    else:
        missing.append(WEIGHTS_FILE)
    if missing:
        raise CheckpointError(
            f"{model_dir} is an incomplete model directory: missing {', '.join(missing)} "
            "(a partial copy, or not a riskstream/Hugging Face checkpoint)"
        )
    return weight_files


def _check_weights(weight_files: list[Path], expected_sha256: str | None) -> None:
    for path in weight_files:
        try:
            with safe_open(str(path), framework="pt") as weights:
                weights.keys()
        except Exception as exc:  # safetensors raises its own error types for a bad header
            raise CheckpointError(f"{path} is corrupt or truncated: {exc}") from exc
    if expected_sha256 is not None and len(weight_files) == 1:
        actual = sha256_of(weight_files[0])
        if actual != expected_sha256:
            raise CheckpointError(
                f"{weight_files[0]} does not match the SHA-256 recorded in {METADATA_FILE} "
                f"(expected {expected_sha256[:12]}..., found {actual[:12]}...): "
                "the weights are corrupt or were replaced"
            )


def load_checkpoint(model_dir: Path) -> LoadedCheckpoint:
    """Load and validate a model directory, offline. The model is fp32, on CPU, in eval mode."""
    model_dir = Path(model_dir)
    weight_files = _check_files(model_dir)
    metadata = read_metadata(model_dir)
    _check_weights(weight_files, metadata.weights_sha256)
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{model_dir / 'config.json'} is invalid: {exc}") from exc
    label2id = {str(label).lower(): int(index) for label, index in (config.label2id or {}).items()}
    positive_index = label2id.get(metadata.positive_label.lower())
    if positive_index is None or not 0 <= positive_index < config.num_labels:
        raise CheckpointError(
            f"{model_dir}: positive label {metadata.positive_label!r} is not one of the model's labels "
            f"{sorted(label2id)}"
        )
    try:
        tokenizer = PreTrainedTokenizerFast.from_pretrained(model_dir, local_files_only=True)
    except Exception as exc:  # the Rust tokenizer raises its own exception type for a bad file
        raise CheckpointError(f"{model_dir / 'tokenizer.json'} cannot be loaded: {exc}") from exc
    vocabulary = tokenizer.get_vocab()
    featurizer: Featurizer | SequenceFeaturizer
    try:
        if metadata.history is None:
            featurizer = Featurizer(metadata.feature_spec, vocabulary)
        else:
            featurizer = SequenceFeaturizer(metadata.feature_spec, metadata.history, vocabulary)
    except ValueError as exc:
        raise CheckpointError(f"{model_dir}: tokenizer and feature spec disagree: {exc}") from exc
    if max(vocabulary.values()) >= config.vocab_size:
        raise CheckpointError(
            f"{model_dir}: tokenizer has ids up to {max(vocabulary.values())} but the model's vocab_size is "
            f"{config.vocab_size}"
        )
    if any(token not in vocabulary for token in SPECIAL_TOKENS):
        raise CheckpointError(f"{model_dir}: tokenizer lacks the special tokens {list(SPECIAL_TOKENS)}")
    try:
        with _quiet_progress_bars():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                model_dir, local_files_only=True, output_loading_info=True, dtype=torch.float32
            )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{model_dir}: the model cannot be loaded: {exc}") from exc
    problems = [
        f"{kind}: {', '.join(sorted(map(str, info.get(kind) or ())))[:200]}"
        for kind in ("missing_keys", "mismatched_keys")
        if info.get(kind)
    ]
    if problems:
        raise CheckpointError(f"{model_dir}: weights do not match the config ({'; '.join(problems)})")
    history = metadata.history
    positions = metadata.feature_spec.sequence_length if history is None else history.positions
    if getattr(config, "max_position_embeddings", positions) < positions:
        raise CheckpointError(
            f"{model_dir}: the model takes {config.max_position_embeddings} positions but its featurizer "
            f"makes {positions}"
        )
    quiet_loss_lookup(model)
    model.eval()
    return LoadedCheckpoint(
        path=model_dir,
        model=model,
        metadata=metadata,
        featurizer=featurizer,
        positive_index=positive_index,
        module=serving_module(model, history).eval(),
    )
