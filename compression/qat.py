"""Quantization-aware training: the encoder's Linear layers compute with fake-quantized INT8 weights and inputs.

What is simulated is what the INT8 files compute (compression/quantize.py):
- weights: one scale per output channel, symmetric, integers in [-127, 127], as in the DeepSparse file with
  ``per_channel`` and ONNX Runtime's dynamic per-channel form. A zero weight stays zero, so pruning masks survive.
- inputs: one UINT8 scale and zero point per tensor over a range that includes 0 (ONNX Runtime's quantizer's rule),
  the range tracked as a moving average of each training batch's minimum and maximum and held in evaluation. These
  ranges replace calibration for the same tensors in the DeepSparse file; ONNX Runtime's dynamic form measures its
  own at run time.

Gradients pass straight through the rounding (and stop where an input is clipped). The attention's own products
(Q·Kᵀ, softmax·V) and the embeddings are not simulated: they keep calibrated ranges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

INT8_LIMIT = 127
UINT8_MAX = 255
ACTIVATION_RANGES = "activation_ranges.json"
"""The file, next to a QAT model or in its checkpoints, that holds each layer's input range."""


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """The weight rounded to symmetric INT8 with one scale per output channel (row), in float."""
    scale = weight.detach().float().abs().amax(dim=1).clamp(min=1e-12) / INT8_LIMIT
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight.float(), scale, zero, 0, -INT8_LIMIT, INT8_LIMIT)


def uint8_scale_zero(low: float, high: float) -> tuple[float, int]:
    """Scale and zero point of UINT8 over [low, high] widened to include 0, as ONNX Runtime's quantizer makes them."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / UINT8_MAX if high > low else 1.0
    return scale, min(UINT8_MAX, max(0, round(-low / scale)))


@dataclass
class ActivationRange:
    """A layer input's range: a moving average of the batches' minimum and maximum (the first batch sets it)."""

    low: float = 0.0
    high: float = 0.0
    batches: int = 0

    def observe(self, values: torch.Tensor, averaging_constant: float) -> None:
        """Move the range towards this batch's minimum and maximum."""
        extremes = torch.aminmax(values)
        low, high = float(extremes.min), float(extremes.max)
        if self.batches == 0:
            self.low, self.high = low, high
        else:
            self.low += averaging_constant * (low - self.low)
            self.high += averaging_constant * (high - self.high)
        self.batches += 1


class FakeQuantization:
    """Fake-quantized forwards for named Linear layers of a model, the ranges of their inputs, and their removal.

    ``attach`` replaces each layer's forward (its parameters, and so the saved weights, stay as they are);
    ``detach`` restores the plain forward, e.g. before the ONNX export.
    """

    def __init__(self, layers: dict[str, nn.Linear], averaging_constant: float = 0.01) -> None:
        self.layers = layers
        self.averaging_constant = averaging_constant
        self.ranges = {name: ActivationRange() for name in layers}

    def attach(self) -> None:
        """Make every layer compute with fake-quantized weights and inputs."""
        for name, layer in self.layers.items():
            layer.forward = partial(self._forward, name, layer)  # type: ignore[method-assign]

    def detach(self) -> None:
        """Give every layer its plain forward back."""
        for layer in self.layers.values():
            layer.__dict__.pop("forward", None)

    def _forward(self, name: str, layer: nn.Linear, inputs: torch.Tensor) -> torch.Tensor:
        observed = self.ranges[name]
        if layer.training or observed.batches == 0:
            observed.observe(inputs.detach(), self.averaging_constant)
        scale, zero = uint8_scale_zero(observed.low, observed.high)
        quantized = torch.fake_quantize_per_tensor_affine(inputs.float(), scale, zero, 0, UINT8_MAX)
        return F.linear(quantized, fake_quantize_weight(layer.weight), layer.bias)

    def observed_ranges(self) -> dict[str, tuple[float, float]]:
        """Each observed layer's input range as (low, high)."""
        return {name: (r.low, r.high) for name, r in self.ranges.items() if r.batches}

    def save(self, folder: Path) -> None:
        """Write the ranges (with how many batches each has seen) into folder."""
        state = {name: [r.low, r.high, r.batches] for name, r in self.ranges.items()}
        (folder / ACTIVATION_RANGES).write_text(json.dumps(state, indent=1))

    def restore(self, folder: Path) -> None:
        """Read back the ranges a checkpoint saved (for a resumed run)."""
        state = json.loads((folder / ACTIVATION_RANGES).read_text())
        for name, (low, high, batches) in state.items():
            if name in self.ranges:
                self.ranges[name] = ActivationRange(low, high, batches)


def load_activation_ranges(folder: Path) -> dict[str, tuple[float, float]]:
    """The observed input ranges saved in folder (see `FakeQuantization.save`)."""
    state = json.loads((folder / ACTIVATION_RANGES).read_text())
    return {name: (low, high) for name, (low, high, batches) in state.items() if batches}
