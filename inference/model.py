"""Model presets: small DeepSeek-V3-architecture sequence classifiers and how they are trained.

On the 2-core development CPU the cost of such a model is per token and per op rather than per
parameter, so the shipped ``default`` preset is two dense MLA layers (4 heads, kv_lora_rank 32, no
q compression) at hidden size 128 over the 16 field tokens: 0.32M parameters, trained in well under
a minute on two quiet cores.

MoE was measured, not assumed: ``default-moe`` (second layer a DeepSeekMoE block, 4 routed experts,
top-2, one shared expert) reached the same holdout quality (AUC 0.984 vs 0.985 on 20,000 fresh
events) but scored 15-35% fewer events per second in the same run: the HF MoE block dispatches
experts in a Python loop, and its expert weights are 3-D parameters that dynamic int8 does not
quantize. The dense layers stay the default; the preset remains for re-measuring.

``base`` (hidden 256, four layers, q_lora_rank 128) is Linear-dominated: it is where int8 dynamic
quantization clearly pays off on CPU, and exists for that report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn
from transformers import DeepseekV3Config, DeepseekV3ForSequenceClassification, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from inference.features import PAD_TOKEN
from inference.sequence import AGGREGATE_FIELDS, ROW_FIELDS, HistorySpec

LABELS = ("legit", "fraud")
POSITIVE_LABEL = "fraud"


@dataclass(frozen=True)
class Preset:
    """Architecture and training recipe of one model size."""

    name: str
    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    kv_lora_rank: int
    q_lora_rank: int | None
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    # Mixture of experts from layer ``first_moe_layer`` on (None: all layers dense).
    first_moe_layer: int | None = None
    routed_experts: int = 4
    experts_per_token: int = 2
    moe_intermediate_size: int = 128
    # History: None for a stateless model; else the ring rows of account history it reads
    # (:class:`inference.sequence.HistorySpec`) and how its ids become positions.
    history_rows: int | None = None
    history_encoding: str = "flat"
    # Training recipe.
    train_events: int = 30_000
    holdout_events: int = 15_000
    train_fraud_rate: float = 0.04
    max_epochs: int = 3
    patience: int = 1
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 0.01

    @property
    def reads_history(self) -> bool:
        return self.history_rows is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="tiny",
            hidden_size=32,
            num_layers=1,
            intermediate_size=64,
            num_heads=2,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=8,
            train_events=8_000,
            holdout_events=4_000,
            max_epochs=2,
            learning_rate=5e-3,
        ),
        Preset(
            name="default",
            hidden_size=128,
            num_layers=2,
            intermediate_size=256,
            num_heads=4,
            kv_lora_rank=32,
            q_lora_rank=None,
            qk_nope_head_dim=16,
            qk_rope_head_dim=16,
            v_head_dim=32,
        ),
        Preset(
            name="default-moe",
            hidden_size=128,
            num_layers=2,
            intermediate_size=256,
            num_heads=4,
            kv_lora_rank=32,
            q_lora_rank=None,
            qk_nope_head_dim=16,
            qk_rope_head_dim=16,
            v_head_dim=32,
            first_moe_layer=1,
            routed_experts=4,
            experts_per_token=2,
            moe_intermediate_size=128,
        ),
        Preset(
            name="base",
            hidden_size=256,
            num_layers=4,
            intermediate_size=768,
            num_heads=8,
            kv_lora_rank=64,
            q_lora_rank=128,
            qk_nope_head_dim=32,
            qk_rope_head_dim=16,
            v_head_dim=32,
            max_epochs=2,
            learning_rate=1.5e-3,
        ),
        *(
            Preset(
                name=name,
                hidden_size=128,
                num_layers=2,
                intermediate_size=256,
                num_heads=4,
                kv_lora_rank=32,
                q_lora_rank=None,
                qk_nope_head_dim=16,
                qk_rope_head_dim=16,
                v_head_dim=32,
                history_rows=rows,
                history_encoding=encoding,
                train_events=80_000,
                holdout_events=30_000,
                max_epochs=4,
            )
            for name, rows, encoding in (
                ("sequence", 16, "rows"),  # measured better and 4x cheaper to train than flat: docs/state.md
                ("sequence-flat", 8, "flat"),
                ("sequence-rows", 16, "rows"),
            )
        ),
        # The teacher for distillation (``riskstream distill``): the history world's rows encoding
        # at 11.6M parameters — MLA with q compression, DeepSeekMoE from layer 1 (16 routed experts,
        # top-2, one shared). About 5x the training cost per step of ``sequence`` on CPU.
        Preset(
            name="large",
            hidden_size=256,
            num_layers=4,
            intermediate_size=768,
            num_heads=8,
            kv_lora_rank=64,
            q_lora_rank=128,
            qk_nope_head_dim=32,
            qk_rope_head_dim=16,
            v_head_dim=32,
            first_moe_layer=1,
            routed_experts=16,
            experts_per_token=2,
            moe_intermediate_size=256,
            history_rows=16,
            history_encoding="rows",
            train_events=80_000,
            holdout_events=30_000,
            max_epochs=3,
            learning_rate=1e-3,
        ),
        # A student a quarter the width of ``sequence`` and one layer (0.13M parameters): what a
        # teacher's knowledge is distilled into when CPU cost per event matters most.
        Preset(
            name="small-sequence",
            hidden_size=64,
            num_layers=1,
            intermediate_size=128,
            num_heads=2,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            history_rows=16,
            history_encoding="rows",
            train_events=80_000,
            holdout_events=30_000,
            max_epochs=4,
        ),
        # The smallest rows-encoding student (16K parameters): where a teacher has the most to teach.
        Preset(
            name="micro-sequence",
            hidden_size=32,
            num_layers=1,
            intermediate_size=64,
            num_heads=2,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=8,
            history_rows=16,
            history_encoding="rows",
            train_events=80_000,
            holdout_events=30_000,
            max_epochs=4,
            learning_rate=5e-3,
        ),
        Preset(
            name="tiny-sequence",
            hidden_size=32,
            num_layers=1,
            intermediate_size=64,
            num_heads=2,
            kv_lora_rank=16,
            q_lora_rank=None,
            qk_nope_head_dim=8,
            qk_rope_head_dim=8,
            v_head_dim=8,
            history_rows=4,
            train_events=8_000,
            holdout_events=4_000,
            max_epochs=2,
            learning_rate=5e-3,
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def build_config(preset: Preset, *, vocab_size: int, sequence_length: int, pad_token_id: int) -> DeepseekV3Config:
    """A ``DeepseekV3Config`` for a two-class sequence classifier over fixed-length field tokens."""
    moe_from = preset.first_moe_layer if preset.first_moe_layer is not None else preset.num_layers
    # Generic PreTrainedConfig fields, not in DeepseekV3Config's own signature.
    classifier: dict[str, Any] = {
        "num_labels": len(LABELS),
        "id2label": dict(enumerate(LABELS)),
        "label2id": {label: index for index, label in enumerate(LABELS)},
    }
    return DeepseekV3Config(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        intermediate_size=preset.intermediate_size,
        moe_intermediate_size=preset.moe_intermediate_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_heads,
        kv_lora_rank=preset.kv_lora_rank,
        q_lora_rank=preset.q_lora_rank,
        qk_nope_head_dim=preset.qk_nope_head_dim,
        qk_rope_head_dim=preset.qk_rope_head_dim,
        v_head_dim=preset.v_head_dim,
        first_k_dense_replace=moe_from,
        n_routed_experts=preset.routed_experts,
        num_experts_per_tok=preset.experts_per_token,
        n_shared_experts=1,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=1.0,
        max_position_embeddings=sequence_length,
        num_mtp_layers=0,
        pad_token_id=pad_token_id,
        bos_token_id=None,
        eos_token_id=None,
        use_cache=False,
        tie_word_embeddings=False,
        **classifier,
    )


def build_model(config: DeepseekV3Config) -> DeepseekV3ForSequenceClassification:
    """A freshly initialised classifier (weights follow the global torch seed)."""
    model = DeepseekV3ForSequenceClassification(config)
    quiet_loss_lookup(model)
    return model


class RowPooledClassifier(nn.Module):
    """The hierarchical (field-then-row) encoding of a history model's ids (``rows`` in
    :mod:`inference.sequence`): the field embeddings of each row — every history row, the
    aggregates, the current event — are summed into one position, and the DeepSeek-V3 layers attend
    over those ``rows + 3`` positions (the last is ``[SUM]``, which the classifier reads).

    A sum of per-field embeddings is a linear map of the row's one-hot fields (the row encoder of
    TabBERT-style models, without its per-row attention); the transformer then models the sequence
    of rows. The wrapped classifier is a plain ``DeepseekV3ForSequenceClassification`` whose
    ``max_position_embeddings`` is the number of positions; only it is saved.
    """

    def __init__(self, classifier: PreTrainedModel, *, rows: int, row_fields: int, aggregate_fields: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.rows = rows
        self.row_fields = row_fields
        self.aggregate_fields = aggregate_fields

    def forward(self, input_ids: torch.Tensor) -> SequenceClassifierOutput:
        embedded = self.classifier.get_input_embeddings()(input_ids)
        batch = embedded.shape[0]
        history_end = self.rows * self.row_fields
        aggregate_end = history_end + self.aggregate_fields
        parts = [
            embedded[:, history_end:aggregate_end].sum(dim=1, keepdim=True),
            embedded[:, aggregate_end:-1].sum(dim=1, keepdim=True),
            embedded[:, -1:],
        ]
        if self.rows:
            rows = embedded[:, :history_end].reshape(batch, self.rows, self.row_fields, embedded.shape[-1])
            parts.insert(0, rows.sum(dim=2))
        backbone = cast("nn.Module", self.classifier.model)
        head = cast("nn.Module", self.classifier.score)
        hidden = backbone(inputs_embeds=torch.cat(parts, dim=1)).last_hidden_state
        return SequenceClassifierOutput(logits=head(hidden[:, -1]))


def serving_module(model: PreTrainedModel, history: HistorySpec | None) -> nn.Module:
    """What turns a batch of ids into logits: the classifier itself, or for the ``rows`` encoding
    the classifier wrapped in :class:`RowPooledClassifier` (sharing its parameters)."""
    if history is None or history.encoding == "flat":
        return model
    return RowPooledClassifier(
        model, rows=history.rows, row_fields=len(ROW_FIELDS), aggregate_fields=len(AGGREGATE_FIELDS)
    )


def classifier_of(module: nn.Module) -> PreTrainedModel:
    """The ``transformers`` classifier inside a :func:`serving_module` (what a checkpoint saves)."""
    inner = module.classifier if isinstance(module, RowPooledClassifier) else module
    if not isinstance(inner, PreTrainedModel):
        raise TypeError(f"not a transformers classifier: {type(inner).__name__}")
    return inner


def quiet_loss_lookup(model: nn.Module) -> None:
    """Name the loss transformers would use, so that looking it up does not warn on every start.

    transformers 5 warns "loss_type=None was set in the config but it is unrecognized" whenever the
    ``loss_function`` of a model without a known loss type is read, and graph tracing reads it on the
    inner ``DeepseekV3Model``. riskstream computes its own training loss and serves without labels;
    this only silences the lookup.
    """
    for module in model.modules():
        if hasattr(type(module), "loss_function") and getattr(module, "loss_type", None) is None:
            setattr(module, "loss_type", "ForSequenceClassification")  # noqa: B010 - nn.Module's typed __setattr__


__all__ = [
    "LABELS",
    "PAD_TOKEN",
    "POSITIVE_LABEL",
    "PRESETS",
    "Preset",
    "RowPooledClassifier",
    "build_config",
    "build_model",
    "classifier_of",
    "get_preset",
    "serving_module",
]
