"""The quantize stage: per-engine INT8 files from the exported FP32 graph, calibrated on training features."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from compression.evaluate import batches
from compression.export import ONNX_FILE
from compression.quantize import quantize_model_dir
from compression.recipe import QuantizationRecipe
from compression.stages.prepare import Prepared

FP32_ONNX = "model.fp32.onnx"
CALIBRATION_BATCH_SIZE = 16


def quantize(model_dir: Path, output: Path, prepared: Prepared, quantization: QuantizationRecipe,
             seed: int, activation_ranges: dict[str, tuple[float, float]] | None = None) -> dict[str, str]:
    """Move the FP32 ``model.onnx`` out of model_dir to ``output/model.fp32.onnx`` and write the per-engine INT8
    files in its place; returns the card's ``files``.

    Calibration uses a seeded random sample of the training features, all padded to one length;
    ``activation_ranges`` (from quantization-aware training) replace the calibrated ranges of those layers' inputs.
    """
    fp32_path = output / FP32_ONNX
    shutil.move(str(model_dir / ONNX_FILE), fp32_path)
    train = prepared.train
    sample = random.Random(seed).sample(train, min(quantization.calibration_samples, len(train)))
    length = max(len(f["input_ids"]) for f in sample)  # one shape: the histogram calibrators need it
    calibration = batches(sample, prepared.input_names, CALIBRATION_BATCH_SIZE, prepared.pad_id, length)
    return quantize_model_dir(fp32_path, model_dir, calibration, quantization, activation_ranges)
