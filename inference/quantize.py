"""Quantization variants of a loaded fp32 classifier, and how many bytes each one takes.

Variants (``QUANTIZATIONS``):

``fp32``
    the trained weights as they are.
``int8``
    on CPU: dynamic quantization of every ``nn.Linear`` (int8 weights with per-tensor scales,
    activations quantized per batch at run time, fbgemm/x86 kernels with VNNI) via
    ``torch.ao.quantization.quantize_dynamic`` — the classic recipe. ``torch.ao.quantization`` is
    deprecated; where a future torch has removed it, torchao's dynamic int8 config is used instead
    (same semantics; measured about 0.7x fp32 on CPU for this model size, its per-call overhead
    dominates). On CUDA: torchao int8 weight-only quantization over a bf16 model.
``bf16``
    all weights and activations in bfloat16 (fast on CPUs with AVX512-BF16/AMX and on GPUs).
``fp8``
    CUDA only, compute capability >= 8.9: torchao float8 weight-only over bf16.

``DEFAULT_QUANTIZATION`` is what :meth:`inference.Scorer.load` serves when neither the caller nor
the checkpoint says otherwise.

CPU: ``int8``, chosen by measurement on the 2-core development machine (default model, 20,000 fresh
events, one intra-op thread, variants interleaved in one run): int8 9,200 events/s at its best
bucket (256) vs fp32 5,500 and bf16 8,500; AUC 0.9845 vs fp32 0.9846 (bf16 0.9846); Linear
weights 0.25x fp32. bf16 is close and has two advantages worth knowing: its scores do not depend on
the batch (dynamic int8 computes one activation scale per batch, so an int8 score moves by up to
~0.01 with its batch-mates) and it is closer to fp32 (largest difference 0.014 vs 0.11 for int8 over
20,000 events; decisions agree with fp32 for 99.995% vs 99.98% of events). bf16 is only fast on CPUs
with native bf16 (AVX512-BF16/AMX), int8 on any x86 CPU with VNNI or AVX2; on the Linear-dominated
``base`` preset int8 was 2.2x fp32 at the best bucket. Serve ``bf16`` explicitly where batch
independence matters more than the last few percent of throughput.

CUDA: ``bf16`` (not measured here, no GPU was available): a model this small is bound by kernel
launches on a GPU, and bf16 halves copies and uses tensor cores without the dequantization work of
weight-only int8/fp8. ``riskstream evaluate --device cuda:0`` measures all variants to confirm.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import torch
from torch import nn

from inference.errors import QuantizationError

QUANTIZATIONS: Final = ("fp32", "int8", "bf16", "fp8")
DEFAULT_QUANTIZATION: Final = {"cpu": "int8", "cuda": "bf16"}


def available_quantizations(device: torch.device) -> tuple[str, ...]:
    """The variants that can run on ``device``."""
    if device.type == "cuda":
        capability = torch.cuda.get_device_capability(device)
        return ("fp32", "bf16", "int8", "fp8") if capability >= (8, 9) else ("fp32", "bf16", "int8")
    return ("fp32", "int8", "bf16")


def quantize_model(model: nn.Module, quantization: str, device: torch.device) -> nn.Module:
    """A copy of the fp32 CPU ``model`` in variant ``quantization``, on ``device``, in eval mode.

    Raises ``QuantizationError`` for an unknown variant or one ``device`` cannot run.
    """
    if quantization not in QUANTIZATIONS:
        raise QuantizationError(f"unknown quantization {quantization!r}; choose one of {list(QUANTIZATIONS)}")
    if quantization not in available_quantizations(device):
        raise QuantizationError(
            f"quantization {quantization!r} is not available on {device}; "
            f"available: {list(available_quantizations(device))}"
        )
    served = copy.deepcopy(model).eval()
    if quantization == "fp32":
        return served.to(device)
    if quantization == "bf16":
        return served.to(device=device, dtype=torch.bfloat16)
    if device.type == "cpu":
        return _dynamic_int8_cpu(served)
    return _torchao_cuda(served.to(device=device, dtype=torch.bfloat16), quantization)


def _dynamic_int8_cpu(model: nn.Module) -> nn.Module:
    quantize_dynamic = getattr(getattr(torch, "ao", None), "quantization", None)
    quantize_dynamic = getattr(quantize_dynamic, "quantize_dynamic", None)
    if quantize_dynamic is None:
        return _torchao_int8_dynamic(model)
    with warnings.catch_warnings():
        # torch.ao.quantization announces its own deprecation (torchao is the successor, measured
        # slower on CPU for this model) and that quantized tensor creation is deprecated.
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated", category=UserWarning)
        quantized: nn.Module = quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    return quantized


def _torchao_int8_dynamic(model: nn.Module) -> nn.Module:
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError as exc:
        raise QuantizationError("int8 on CPU needs torch.ao.quantization or torchao; neither is available") from exc
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def _torchao_cuda(model: nn.Module, quantization: str) -> nn.Module:
    try:
        from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_
    except ImportError as exc:
        raise QuantizationError(f"{quantization} on CUDA needs torchao") from exc
    config = Int8WeightOnlyConfig() if quantization == "int8" else Float8WeightOnlyConfig()
    quantize_(model, config)
    return model


@dataclass(frozen=True)
class ModelBytes:
    """Memory taken by a served model's weights.

    ``linear_weight_bytes``: the weights of every Linear layer as stored (int8 values plus their
    scales and zero points, or bf16/fp32 values); ``linear_weight_fp32_bytes``: the same weights in
    fp32; ``model_bytes``: every parameter, buffer and packed weight of the model.
    """

    linear_weight_bytes: int
    linear_weight_fp32_bytes: int
    model_bytes: int

    @property
    def linear_weight_ratio(self) -> float:
        return self.linear_weight_bytes / self.linear_weight_fp32_bytes if self.linear_weight_fp32_bytes else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "linear_weight_bytes": self.linear_weight_bytes,
            "linear_weight_fp32_bytes": self.linear_weight_fp32_bytes,
            "linear_weight_ratio": round(self.linear_weight_ratio, 4),
            "model_bytes": self.model_bytes,
        }


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Storage bytes of a tensor, quantized tensor or torchao tensor subclass (summing its parts)."""
    if tensor.is_quantized:
        total = tensor.numel() * tensor.element_size()
        if tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
            scales = tensor.q_per_channel_scales()
            zero_points = tensor.q_per_channel_zero_points()
            total += scales.numel() * scales.element_size() + zero_points.numel() * zero_points.element_size()
        else:
            total += 16  # one float64 scale and one int64 zero point
        return total
    flatten = getattr(tensor, "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, nn.Parameter):
        names, _ = flatten()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()


def _quantized_linears(model: nn.Module) -> Iterator[tuple[nn.Module, torch.Tensor, torch.Tensor | None]]:
    """(module, weight, bias) of dynamic-quantized Linear modules, whose weights are not parameters."""
    for module in model.modules():
        weight_fn = getattr(module, "weight", None)
        if callable(weight_fn) and hasattr(module, "_packed_params"):
            bias_fn = getattr(module, "bias", None)
            yield module, weight_fn(), bias_fn() if callable(bias_fn) else None


def measure_bytes(model: nn.Module) -> ModelBytes:
    """Bytes of ``model``'s Linear weights and of the whole model, as served."""
    linear = 0
    linear_fp32 = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            linear += tensor_bytes(module.weight)
            linear_fp32 += module.in_features * module.out_features * 4
    packed = 0
    for _, weight, bias in _quantized_linears(model):
        weight_bytes = tensor_bytes(weight)
        linear += weight_bytes
        linear_fp32 += weight.numel() * 4
        packed += weight_bytes + (tensor_bytes(bias) if bias is not None else 0)
    dense = sum(tensor_bytes(p) for p in model.parameters()) + sum(tensor_bytes(b) for b in model.buffers())
    return ModelBytes(linear_weight_bytes=linear, linear_weight_fp32_bytes=linear_fp32, model_bytes=dense + packed)
