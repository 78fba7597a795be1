"""Model artifacts for the engine benchmark: dense FP32, the dense INT8 peers and sparse INT8 files of one shape.

Random weights are enough for speed (dense kernels do not care about values; sparse ones care only about
where the zeros are), so the bert-base shape is built from a random initialisation and magnitude-pruned to the
same sparsity and quantized with the recipes' default per-engine settings, as the shipped models are (their
recipes' ``keep_fp32`` choice for ONNX Runtime is specific to trained weights and is not copied).

The dense INT8 peers are what a user makes from the dense FP32 export in a minute with each runtime's own tools
(peer_ort.py, peer_openvino.py), and the dense model in our own ONNX Runtime form; the OpenVINO one is skipped, with
the reason, when its optional packages are missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, PreTrainedModel

from benchmarks.peer_openvino import openvino_int8, openvino_missing
from benchmarks.peer_ort import PEERS, ort_peer
from compression.base_models import DEFAULT_BASE_MODEL, resolve_base_model
from compression.export import export_onnx, sample_inputs
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


CALIBRATION_TEXTS = (
    "a gorgeous, witty, seductive movie.",
    "it is a dull and lifeless film with no point at all.",
    "the cast is good, but the story drags on without ever finding its heart.",
    "one of the most beautiful films of the year, and one of the saddest.",
    "I laughed, I cried, and I would gladly see it again tomorrow.",
    "the plot makes no sense and the dialogue is worse.",
    "Angela Merkel met Emmanuel Macron in Berlin on Tuesday to discuss the budget.",
    "Shares of Apple rose 3% after the company reported record sales in China.",
    "Who wrote the novel that the film is based on?",
    "The Amazon is the largest rainforest on Earth and spans nine countries.",
    "fine.",
    "a slow, thoughtful and ultimately rewarding drama about two brothers who have not spoken in twenty years.",
    "Please send the quarterly report to the finance team before Friday.",
    "the soundtrack is great but the pacing is a mess.",
    "What time does the museum open on Sundays?",
    "an overlong, overwrought and underwritten thriller.",
)
"""Sentences the OpenVINO peer is calibrated on, tokenized one per batch."""


@dataclass
class Artifacts:
    """Model files of one shape, keyed by what they hold (``model-engine``, or ``dense-fp32``), the PyTorch dense
    model, facts about how each file was made, the peers that could not be built here (with the reason), and the
    candidates: other sparse models measured beside ``sparse-int8``, by name."""

    shape: Shape
    torch_model: PreTrainedModel
    files: dict[str, Path]
    notes: dict[str, dict[str, object]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()


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
    shape: Shape, sparsity: float, workdir: Path, sparse_files: dict[str, Path] | None = None,
    candidates: dict[str, dict[str, Path]] | None = None,
) -> Artifacts:
    """Dense FP32, the dense INT8 peers, and sparse INT8 (both engines' graphs) of one shape.

    ``sparse_files`` (engine -> ONNX path, e.g. a shipped model's) replaces the random sparse model; ``candidates``
    (name -> engine -> ONNX path) adds other sparse models to measure beside it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL))
    model = random_model(shape)
    artifacts = Artifacts(shape, model, {"dense-fp32": workdir / "dense-fp32.onnx"},
                          candidates=tuple(candidates or {}))
    for name, files_of_candidate in (candidates or {}).items():
        artifacts.files.update({f"{name}-{engine}": path for engine, path in files_of_candidate.items()})
    input_names = export_onnx(model, tokenizer, artifacts.files["dense-fp32"])
    add_dense_peers(artifacts, workdir, [sample_inputs(tokenizer, input_names, (text,)) for text in CALIBRATION_TEXTS])
    if sparse_files is not None:
        artifacts.files.update({f"sparse-int8-{engine}": path for engine, path in sparse_files.items()})
        return artifacts
    files = artifacts.files
    calibration = calibration_batches()
    sparse = random_model(shape, seed=1)
    Pruner(find_layers(sparse), scorer="magnitude", scope="per-layer").prune(sparsity)
    export_onnx(sparse, tokenizer, workdir / "sparse-fp32.onnx")
    for engine in ("deepsparse", "onnxruntime"):
        files[f"sparse-int8-{engine}"] = quantize_for_engine(
            workdir / "sparse-fp32.onnx", workdir / f"sparse-int8-{engine}.onnx", engine, calibration
        )
    log.info("built %s artifacts in %s", shape.name, workdir)
    return artifacts


def add_dense_peers(artifacts: Artifacts, workdir: Path, calibration: list[dict[str, np.ndarray]]) -> None:
    """Make the dense INT8 peers of the dense FP32 file (OpenVINO's only where its packages are installed)."""
    shape, fp32 = artifacts.shape, artifacts.files["dense-fp32"]
    for peer in PEERS:
        key = f"dense-int8-{peer}"
        made = ort_peer(peer, fp32, workdir / f"{key}.onnx", shape.heads, shape.hidden)
        artifacts.files[key] = made.path
        artifacts.notes[key] = {"fused": made.fused}
    missing = openvino_missing()
    if missing is not None:
        artifacts.skipped["dense-int8-openvino"] = missing
        return
    artifacts.files["dense-int8-openvino"] = openvino_int8(fp32, workdir / "dense-int8-openvino.xml", calibration)
