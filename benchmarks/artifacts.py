"""Model artifacts for the engine benchmark: dense FP32, dense INT8 and sparse INT8 ONNX files of one shape.

Random weights are enough for speed (dense kernels do not care about values; sparse ones care only about
where the zeros are), so the bert-base shape is built from a random initialisation and magnitude-pruned to the
same sparsity and quantized with the recipes' default per-engine settings, as the shipped models are (their
recipes' ``keep_fp32`` choice for ONNX Runtime is specific to trained weights and is not copied).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, PreTrainedModel

from compression.base_models import DEFAULT_BASE_MODEL, resolve_base_model
from compression.export import export_onnx
from compression.pruning.pruner import Pruner, find_layers
from compression.quantize import quantize_for_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    """An encoder architecture to benchmark."""

    name: str
    layers: int
    hidden: int
    heads: int
    intermediate: int


SHAPES = {
    "minilm": Shape("minilm", 6, 384, 12, 1536),
    "bert-base": Shape("bert-base", 12, 768, 12, 3072),
}


@dataclass
class Artifacts:
    """ONNX files of one shape, keyed by what they hold, plus the PyTorch dense model."""

    shape: Shape
    torch_model: PreTrainedModel
    files: dict[str, Path]


def random_model(shape: Shape, seed: int = 0) -> PreTrainedModel:
    """A randomly initialised BERT classifier of the given shape (eager attention, for export)."""
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
        intermediate_size=shape.intermediate,
    )
    config.num_labels = 2
    config._attn_implementation = "eager"
    return BertForSequenceClassification(config).eval()


def calibration_batches(count: int = 4, batch: int = 8, length: int = 64, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Random token batches for static quantization of random-weight models."""
    rng = np.random.default_rng(seed)
    return [
        {
            "input_ids": rng.integers(1000, 30000, (batch, length), dtype=np.int64),
            "attention_mask": np.ones((batch, length), dtype=np.int64),
            "token_type_ids": np.zeros((batch, length), dtype=np.int64),
        }
        for _ in range(count)
    ]


def build_artifacts(
    shape: Shape, sparsity: float, workdir: Path, sparse_files: dict[str, Path] | None = None
) -> Artifacts:
    """Dense FP32, dense INT8 (ONNX Runtime graph), and sparse INT8 (both engines' graphs) of one shape.

    ``sparse_files`` (engine -> ONNX path, e.g. a shipped model's) replaces the random sparse model.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL))
    calibration = calibration_batches()
    model = random_model(shape)
    files = {"dense-fp32": workdir / "dense-fp32.onnx"}
    export_onnx(model, tokenizer, files["dense-fp32"])
    files["dense-int8"] = quantize_for_engine(files["dense-fp32"], workdir / "dense-int8.onnx", "onnxruntime",
                                              calibration)
    if sparse_files is not None:
        files.update({f"sparse-int8-{engine}": path for engine, path in sparse_files.items()})
        return Artifacts(shape, model, files)
    sparse = random_model(shape, seed=1)
    Pruner(find_layers(sparse), scorer="magnitude", scope="per-layer").prune(sparsity)
    export_onnx(sparse, tokenizer, workdir / "sparse-fp32.onnx")
    for engine in ("deepsparse", "onnxruntime"):
        files[f"sparse-int8-{engine}"] = quantize_for_engine(
            workdir / "sparse-fp32.onnx", workdir / f"sparse-int8-{engine}.onnx", engine, calibration
        )
    log.info("built %s artifacts in %s", shape.name, workdir)
    return Artifacts(shape, model, files)
