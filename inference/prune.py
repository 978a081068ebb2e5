"""Structured pruning of a DeepSeek-V3 checkpoint (``riskstream prune``).

Whole units are removed, never masked: attention heads, FFN neurons (of the dense MLPs, the shared
expert and each routed expert) and routed experts. The result is a smaller, ordinary Hugging Face
checkpoint — ``config.json`` says the new sizes (``num_attention_heads``, ``intermediate_size``,
``moe_intermediate_size``, ``n_routed_experts``) and ``from_pretrained`` loads it without any
riskstream code.

Importance is measured on calibration rows (the training set's, sampled), not read off the
weights alone:

- **head** *h* of a layer: the mean L2 norm of its contribution to the attention output,
  ``‖W_o[:, h] · o_h‖`` over all positions (MLA heads share the compressed KV latent; each head's
  rows of ``q_proj``/``q_b_proj`` and ``kv_b_proj`` and its columns of ``o_proj`` go together);
- **FFN neuron** *i* of an MLP block: ``mean |act(gate_i)·up_i| * ‖W_down[:, i]‖``; for a routed
  expert, over the tokens routed to it;
- **routed expert** *e*: the routing weight it received, summed over tokens (an expert the router
  never picks has importance 0).

FFN widths are rounded to a multiple of 8 (``FFN_MULTIPLE``). Every layer keeps the same number
of units (one config describes all layers), each layer its own most important ones. A short
recovery fine-tune follows (``recovery_epochs``), by default distilled from the unpruned model
(:class:`inference.train.SoftTargets`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from transformers import DeepseekV3Config, PreTrainedModel

from inference.checkpoint import load_checkpoint
from inference.cpu import default_threads
from inference.data import DEFAULT_LABEL_FIELD
from inference.dataset import (
    DEFAULT_HOLDOUT_FRACTION,
    DEFAULT_MAX_BAD_FRACTION,
    DEFAULT_VALIDATION_FRACTION,
    SplitMode,
)
from inference.distill import DEFAULT_TEMPERATURE, check_teacher_fits, teacher_logits
from inference.features import DEFAULT_MIN_COUNT
from inference.model import PRESETS, build_model
from inference.train import SoftTargets, TrainProgress, TrainResult, prepare_training_file, train_prepared
from schemas.mapping import EventMapping

DEFAULT_CALIBRATION_ROWS = 4096
DEFAULT_RECOVERY_EPOCHS = 1
#: FFN widths stay a multiple of this: transformers' grouped-GEMM experts (its default) need rows
#: of 16 bytes (8 bf16 values; a width of 14 fp32 values failed), and GPU kernels like it too.
FFN_MULTIPLE = 8
#: The recovery fine-tune's learning rate as a share of the preset's.
RECOVERY_LR_FACTOR = 0.3


@dataclass(frozen=True)
class PruneFractions:
    """The share of each kind of unit to remove (0 keeps all; below 1)."""

    heads: float = 0.0
    ffn: float = 0.0
    experts: float = 0.0

    def __post_init__(self) -> None:
        for name in ("heads", "ffn", "experts"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"--{name} must be within [0, 1): the share of {name} to remove (got {value})")


def kept(total: int, fraction: float, minimum: int = 1, multiple: int = 1) -> int:
    """How many of ``total`` units stay when ``fraction`` of them go (at least ``minimum``), rounded
    to a multiple of ``multiple`` when ``total`` is one."""
    count = total - math.floor(total * fraction + 0.5)
    if multiple > 1 and total % multiple == 0:
        count = max(multiple, math.floor(count / multiple + 0.5) * multiple)
    return min(total, max(minimum, count))


@dataclass
class Importance:
    """Measured importance per layer (see the module docstring)."""

    heads: dict[int, torch.Tensor] = field(default_factory=dict)
    #: Dense MLP or shared expert, keyed by the module's name in the model: (intermediate,).
    ffn: dict[str, torch.Tensor] = field(default_factory=dict)
    #: Routed experts per layer: (experts, moe_intermediate).
    expert_ffn: dict[int, torch.Tensor] = field(default_factory=dict)
    experts: dict[int, torch.Tensor] = field(default_factory=dict)


def _layers(model: PreTrainedModel) -> list[Any]:
    return list(cast("Any", model).model.layers)


def measure_importance(
    net: nn.Module, model: PreTrainedModel, inputs: npt.NDArray[np.integer], *, batch: int = 512
) -> Importance:
    """Run ``net`` (the serving module over ``model``) on ``inputs`` and measure every unit."""
    config = model.config
    heads, v_dim = config.num_attention_heads, config.v_head_dim
    importance = Importance()
    handles: list[Any] = []

    def on_heads(layer: int, o_proj: nn.Linear) -> Callable[..., None]:
        weight = o_proj.weight.detach().view(o_proj.out_features, heads, v_dim)

        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, heads, v_dim)
            contribution = torch.einsum("thv,dhv->thd", x, weight).norm(dim=-1).sum(dim=0)
            importance.heads[layer] = importance.heads.get(layer, 0) + contribution

        return hook

    def on_ffn(name: str, down: nn.Linear) -> Callable[..., None]:
        norms = down.weight.detach().norm(dim=0)

        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, down.in_features)
            importance.ffn[name] = importance.ffn.get(name, 0) + x.abs().sum(dim=0) * norms

        return hook

    def on_experts(layer: int, experts: Any) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            hidden, index, weights = (arg.detach() for arg in args[:3])
            count = experts.num_experts
            mass = torch.zeros(count).index_add_(0, index.reshape(-1), weights.reshape(-1).float())
            importance.experts[layer] = importance.experts.get(layer, 0) + mass
            gate_up, down = experts.gate_up_proj.detach(), experts.down_proj.detach()
            neurons = torch.zeros(count, down.shape[-1])
            for expert in range(count):
                tokens = (index == expert).any(dim=-1).nonzero().flatten()
                if len(tokens):
                    gate, up = nn.functional.linear(hidden[tokens], gate_up[expert]).chunk(2, dim=-1)
                    active = (experts.act_fn(gate) * up).abs().sum(dim=0)
                    neurons[expert] = active * down[expert].norm(dim=0)
            importance.expert_ffn[layer] = importance.expert_ffn.get(layer, 0) + neurons

        return hook

    for number, layer in enumerate(_layers(model)):
        attention = layer.self_attn
        handles.append(attention.o_proj.register_forward_pre_hook(on_heads(number, attention.o_proj)))
        mlp = layer.mlp
        dense = [("mlp", mlp)] if hasattr(mlp, "down_proj") else [("mlp.shared_experts", mlp.shared_experts)]
        for suffix, block in dense:
            name = f"model.layers.{number}.{suffix}"
            handles.append(block.down_proj.register_forward_pre_hook(on_ffn(name, block.down_proj)))
        if hasattr(mlp, "experts"):
            handles.append(mlp.experts.register_forward_pre_hook(on_experts(number, mlp.experts)))
    try:
        net.eval()
        with torch.inference_mode():
            for start in range(0, len(inputs), batch):
                net(input_ids=torch.from_numpy(inputs[start : start + batch].astype(np.int64, copy=False)))
    finally:
        for handle in handles:
            handle.remove()
    return importance


def _top(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest scores, in their original order (ties: the lower index)."""
    order = torch.argsort(-scores.double(), stable=True)
    return torch.sort(order[:count]).values


def _heads_slice(weight: torch.Tensor, heads: int, keep: torch.Tensor, dim: int) -> torch.Tensor:
    """``weight`` with only the heads ``keep`` along ``dim`` (rows: 0, columns: 1)."""
    if dim == 0:
        return weight.view(heads, -1, weight.shape[1])[keep].reshape(-1, weight.shape[1]).clone()
    return weight.view(weight.shape[0], heads, -1)[:, keep].reshape(weight.shape[0], -1).clone()


def prune_model(model: PreTrainedModel, importance: Importance, fractions: PruneFractions) -> PreTrainedModel:
    """A new, smaller model of the same class holding ``model``'s most important units."""
    config = model.config
    layers = _layers(model)
    moe_layers = [number for number, layer in enumerate(layers) if hasattr(layer.mlp, "experts")]
    heads = config.num_attention_heads
    keep_heads = kept(heads, fractions.heads)
    keep_ffn = kept(config.intermediate_size, fractions.ffn, multiple=FFN_MULTIPLE)
    keep_moe_ffn = kept(config.moe_intermediate_size, fractions.ffn, multiple=FFN_MULTIPLE)
    top_k = config.num_experts_per_tok
    keep_experts = kept(config.n_routed_experts, fractions.experts, minimum=max(2, top_k))
    new_config = copy.deepcopy(config)
    new_config.num_attention_heads = keep_heads
    new_config.num_key_value_heads = keep_heads
    new_config.intermediate_size = keep_ffn
    if moe_layers:
        new_config.moe_intermediate_size = keep_moe_ffn
        new_config.n_routed_experts = keep_experts
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}

    for number in range(len(layers)):
        prefix = f"model.layers.{number}."
        chosen = _top(importance.heads[number], keep_heads)
        q_name = prefix + ("self_attn.q_proj.weight" if config.q_lora_rank is None else "self_attn.q_b_proj.weight")
        for name in (q_name, prefix + "self_attn.kv_b_proj.weight"):
            state[name] = _heads_slice(state[name], heads, chosen, 0)
        state[prefix + "self_attn.o_proj.weight"] = _heads_slice(
            state[prefix + "self_attn.o_proj.weight"], heads, chosen, 1
        )
        block = "mlp." if number not in moe_layers else "mlp.shared_experts."
        size = keep_ffn if number not in moe_layers else keep_moe_ffn
        neurons = _top(importance.ffn[prefix + block.rstrip(".")], size)
        for part in ("gate_proj", "up_proj"):
            state[prefix + block + part + ".weight"] = state[prefix + block + part + ".weight"][neurons].clone()
        state[prefix + block + "down_proj.weight"] = state[prefix + block + "down_proj.weight"][:, neurons].clone()
        if number in moe_layers:
            experts = _top(importance.experts[number], keep_experts)
            for name in ("mlp.gate.weight", "mlp.gate.e_score_correction_bias"):
                state[prefix + name] = state[prefix + name][experts].clone()
            gate_up = state[prefix + "mlp.experts.gate_up_proj"]
            down = state[prefix + "mlp.experts.down_proj"]
            inner = config.moe_intermediate_size
            new_gate_up, new_down = [], []
            for expert in experts.tolist():
                cells = _top(importance.expert_ffn[number][expert], keep_moe_ffn)
                new_gate_up.append(torch.cat([gate_up[expert][cells], gate_up[expert][inner + cells]]))
                new_down.append(down[expert][:, cells])
            state[prefix + "mlp.experts.gate_up_proj"] = torch.stack(new_gate_up)
            state[prefix + "mlp.experts.down_proj"] = torch.stack(new_down)

    pruned = build_model(cast("DeepseekV3Config", new_config))
    pruned.load_state_dict(state, strict=True)
    return pruned.eval()


def describe(model: PreTrainedModel) -> dict[str, Any]:
    """The sizes pruning changes, and the parameter count (MoE sizes None without MoE layers)."""
    config = model.config
    moe = any(hasattr(layer.mlp, "experts") for layer in _layers(model))
    return {
        "num_attention_heads": config.num_attention_heads,
        "intermediate_size": config.intermediate_size,
        "moe_intermediate_size": config.moe_intermediate_size if moe else None,
        "n_routed_experts": config.n_routed_experts if moe else None,
        "num_experts_per_tok": config.num_experts_per_tok if moe else None,
        "parameters": sum(parameter.numel() for parameter in model.parameters()),
    }


def prune_on_data(
    model_dir: Path,
    out_dir: Path,
    data: Path,
    fractions: PruneFractions,
    *,
    recovery_epochs: int = DEFAULT_RECOVERY_EPOCHS,
    distill_alpha: float = 0.5,
    temperature: float = DEFAULT_TEMPERATURE,
    calibration_rows: int = DEFAULT_CALIBRATION_ROWS,
    mapping: EventMapping | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    split: SplitMode = "time",
    holdout_fraction: float = DEFAULT_HOLDOUT_FRACTION,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    min_count: int = DEFAULT_MIN_COUNT,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    seed: int = 0,
    threads: int | None = None,
    on_progress: Callable[[TrainProgress], None] | None = None,
) -> TrainResult:
    """Prune ``model_dir`` by importance measured on ``data``'s training rows, fine-tune it for
    ``recovery_epochs`` (0: none; then only the thresholds are re-chosen on validation), save to
    ``out_dir``. ``data`` and the split options must be those the model was trained with."""
    if recovery_epochs < 0:
        raise ValueError("recovery epochs must be >= 0")
    original = load_checkpoint(Path(model_dir))
    recipe_name = str(original.metadata.training.get("preset", {}).get("name", ""))
    if recipe_name not in PRESETS:
        raise ValueError(f"{model_dir} was not trained from a riskstream preset (preset {recipe_name!r})")
    prepared = prepare_training_file(
        data,
        history=original.metadata.history,
        mapping=mapping,
        label_field=label_field,
        split=split,
        holdout_fraction=holdout_fraction,
        validation_fraction=validation_fraction,
        seed=seed,
        min_count=min_count,
        max_bad_fraction=max_bad_fraction,
        epochs=recovery_epochs,
        on_progress=on_progress,
    )
    check_teacher_fits(original, prepared)
    threads = threads if threads is not None else default_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        train_rows = prepared.inputs["train"]
        sample = np.random.default_rng(seed).permutation(len(train_rows))[:calibration_rows]
        importance = measure_importance(original.module, original.model, train_rows[np.sort(sample)])
        pruned = prune_model(original.model, importance, fractions)
        soft = None
        if recovery_epochs and distill_alpha > 0:
            soft = SoftTargets(
                teacher_logits(original, train_rows),
                temperature,
                distill_alpha,
                {"teacher": {"name": original.metadata.name, "version": original.metadata.version, "unpruned": True}},
            )
    finally:
        torch.set_num_threads(previous)
    record = {
        "pruning": {
            "from": {"name": original.metadata.name, "version": original.metadata.version, **describe(original.model)},
            "fractions": {"heads": fractions.heads, "ffn": fractions.ffn, "experts": fractions.experts},
            "calibration_rows": len(sample),
            "recovery_epochs": recovery_epochs,
            **describe(pruned),
        }
    }
    recipe = PRESETS[recipe_name]
    return train_prepared(
        out_dir,
        prepared,
        preset=recipe_name,
        seed=seed,
        threads=threads,
        max_epochs=recovery_epochs,
        on_progress=on_progress,
        soft_targets=soft,
        initial=pruned,
        learning_rate=recipe.learning_rate * RECOVERY_LR_FACTOR,
        record=record,
        name=f"{original.metadata.name}-pruned",
    )
