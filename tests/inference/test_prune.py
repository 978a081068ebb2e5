"""Structured pruning: the pruned model is a smaller, valid checkpoint, and removing units that
contribute nothing leaves every score unchanged (which checks each weight slice is the right one)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from inference.model import build_config, build_model, get_preset
from inference.prune import Importance, PruneFractions, describe, kept, measure_importance, prune_model

VOCAB = 64
POSITIONS = 10


def _moe_model(q_lora: int | None = 16) -> torch.nn.Module:
    """A two-layer model: a dense MLP layer, then a DeepSeekMoE layer (4 routed experts, top-2)."""
    preset = replace(
        get_preset("default-moe"),
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=24,
        num_heads=4,
        kv_lora_rank=16,
        q_lora_rank=q_lora,
        qk_nope_head_dim=8,
        qk_rope_head_dim=8,
        v_head_dim=8,
    )
    torch.manual_seed(3)
    model = build_model(build_config(preset, vocab_size=VOCAB, sequence_length=POSITIONS, pad_token_id=0)).eval()
    with torch.no_grad():  # HF initialises the router to zeros: give it something to choose by
        for layer in model.model.layers[1:]:
            layer.mlp.gate.weight.normal_(0.0, 0.5)
            layer.mlp.experts.gate_up_proj.normal_(0.0, 0.1)
            layer.mlp.experts.down_proj.normal_(0.0, 0.1)
    return model


def _ids(rows: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, VOCAB, size=(rows, POSITIONS))


def _logits(model: torch.nn.Module, ids: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=torch.from_numpy(ids)).logits


def test_kept_rounds_and_keeps_a_minimum() -> None:
    assert kept(8, 0.0) == 8 and kept(8, 0.5) == 4 and kept(8, 0.3) == 6 and kept(8, 0.99) == 1
    assert kept(4, 0.9, minimum=2) == 2
    assert kept(48, 0.5, multiple=8) == 24 and kept(24, 0.4, multiple=8) == 16 and kept(24, 0.9, multiple=8) == 8
    with pytest.raises(ValueError, match="heads"):
        PruneFractions(heads=1.0)


@pytest.mark.parametrize("q_lora", [None, 16])
def test_pruning_nothing_changes_nothing(q_lora: int | None) -> None:
    model = _moe_model(q_lora)
    ids = _ids()
    pruned = prune_model(model, measure_importance(model, model, ids), PruneFractions())
    assert describe(pruned) == describe(model)
    assert torch.equal(_logits(pruned, ids), _logits(model, ids))


@pytest.mark.parametrize("q_lora", [None, 16])
def test_removing_units_that_contribute_nothing_keeps_every_score(q_lora: int | None) -> None:
    model = _moe_model(q_lora)
    v = model.config.v_head_dim
    with torch.no_grad():
        for layer in model.model.layers:
            attention = layer.self_attn
            attention.o_proj.weight[:, 1 * v : 2 * v] = 0  # head 1 of 4 says nothing
            attention.o_proj.weight[:, 3 * v : 4 * v] = 0  # nor head 3
        model.model.layers[0].mlp.down_proj.weight[:, ::2] = 0  # half the dense neurons
        moe = model.model.layers[1].mlp
        moe.shared_experts.down_proj.weight[:, 1::2] = 0
        moe.experts.down_proj[:, :, ::2] = 0  # half of each routed expert's neurons
        moe.gate.e_score_correction_bias[[0, 2]] = -1e4  # experts 0 and 2 are never chosen
    ids = _ids(seed=1)
    importance = measure_importance(model, model, ids)
    assert float(importance.experts[1][0]) == 0.0 and float(importance.experts[1][2]) == 0.0
    assert float(importance.heads[0][1]) == 0.0 and float(importance.heads[1][3]) == 0.0
    pruned = prune_model(model, importance, PruneFractions(heads=0.5, ffn=0.5, experts=0.5))
    shape = describe(pruned)
    assert shape["num_attention_heads"] == 2 and shape["intermediate_size"] == 24
    assert shape["moe_intermediate_size"] == 16 and shape["n_routed_experts"] == 2  # 12 rounded to 8s
    assert shape["parameters"] < describe(model)["parameters"] * 0.75
    other = _ids(seed=2)  # not the calibration rows
    assert torch.allclose(_logits(pruned, other), _logits(model, other), atol=1e-5)


def test_a_pruned_model_saves_and_loads_with_plain_transformers(tmp_path: Path) -> None:
    model = _moe_model()
    ids = _ids()
    pruned = prune_model(model, measure_importance(model, model, ids), PruneFractions(heads=0.25, ffn=0.4, experts=0.5))
    pruned.save_pretrained(tmp_path)
    loaded, info = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, local_files_only=True, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["mismatched_keys"] and not info["unexpected_keys"]
    assert loaded.config.num_attention_heads == 3 and loaded.config.n_routed_experts == 2
    assert torch.allclose(_logits(loaded.eval(), ids), _logits(pruned, ids), atol=1e-6)


def test_importance_is_measured_not_read_off_the_weights() -> None:
    model = _moe_model()
    a = measure_importance(model, model, _ids(seed=4))
    b = measure_importance(model, model, _ids(seed=5))
    assert isinstance(a, Importance)
    assert not torch.equal(a.heads[0], b.heads[0])  # other inputs, other measurements
    assert set(a.ffn) == {"model.layers.0.mlp", "model.layers.1.mlp.shared_experts"}
    assert a.expert_ffn[1].shape == (4, 24)
