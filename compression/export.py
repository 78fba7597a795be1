"""`oberta export`: a trained PyTorch encoder to a served model directory (ONNX + tokenizer + card).

The exporter is TorchScript-based (``dynamo=False``) at opset 14 with eager attention: that graph keeps
DeepSparse on its fast path (newer opsets' LayerNormalization and SDPA attention push ops off it).
The attention mask is rewritten to its [batch, 1, 1, key] form (service/runtime/graph/attention_mask.py); a served
model's graph then loses the attention heads and feed-forward neurons that structured pruning zeroed
(compression/compaction.py).
Every export is checked: its outputs carry the task's names and shapes with dynamic batch and sequence axes, and
match the PyTorch model's on the tracing batch and on a batch of another size and length.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compression.compaction import compact_file
from compression.tasks import task_for
from service.runtime.card import ModelCard, save_card
from service.runtime.errors import ConfigError, ExportCheckFailed
from service.runtime.graph.attention_mask import simplify_attention_mask_file
from service.runtime.tasks import DEFAULT_TASK

log = logging.getLogger(__name__)
OPSET = 14
PARITY_ATOL = 1e-4
ONNX_FILE = "model.onnx"
TRACING_TEXTS = ("a gorgeous, witty, seductive movie.", "it is a dull and lifeless film with no point at all.")
CHECK_TEXTS = ("fine.", "the cast is good, but the story drags on without ever finding its heart.", "dull.")
"""The second parity batch: another batch size than the tracing batch (and it is padded to another length)."""


class _NamedOutputs(torch.nn.Module):
    """Wraps a Hugging Face model so the exported graph has named tensor inputs and the task's outputs."""

    def __init__(self, model: PreTrainedModel, input_names: list[str], output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.input_names = input_names
        self.output_names = output_names

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(**dict(zip(self.input_names, tensors, strict=True)))
        return tuple(getattr(outputs, name) for name in self.output_names)


def model_input_names(model: PreTrainedModel) -> list[str]:
    """ONNX inputs for an architecture: RoBERTa-style models take no token_type_ids."""
    names = ["input_ids", "attention_mask"]
    if getattr(model.config, "type_vocab_size", 0) > 1:
        names.append("token_type_ids")
    return names


def sample_inputs(
    tokenizer: PreTrainedTokenizerBase, input_names: list[str], texts: tuple[str, ...] = TRACING_TEXTS,
    length: int | None = None,
) -> dict[str, np.ndarray]:
    """A padded batch of real tokenized text (to the longest text, or to ``length``), for tracing and checks."""
    padding: dict[str, Any] = {"padding": True} if length is None else {
        "padding": "max_length", "max_length": length, "truncation": True
    }
    encoded = tokenizer(list(texts), return_tensors="np", **padding)
    batch = {name: np.asarray(encoded[name], dtype=np.int64) for name in input_names if name in encoded}
    if "token_type_ids" in input_names and "token_type_ids" not in batch:
        batch["token_type_ids"] = np.zeros_like(batch["input_ids"])
    return batch


def export_onnx(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: Path, task: str = DEFAULT_TASK
) -> list[str]:
    """Write the model as ONNX with dynamic batch and sequence axes and the task's outputs; returns the input names.

    Outputs: `logits` [batch, labels] (text classification), `start_logits` and `end_logits` [batch, sequence]
    (question answering), `logits` [batch, sequence, labels] (token classification).
    """
    model = model.eval()
    spec = task_for(task)
    input_names = model_input_names(model)
    batch = sample_inputs(tokenizer, input_names)
    args = tuple(torch.from_numpy(batch[name]) for name in input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    for name in spec.output_names:
        axes[name] = {0: "batch", 1: "sequence"} if spec.per_token else {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(
            _NamedOutputs(model, input_names, spec.output_names).eval(),  # the exporter restores this mode after
            args,
            str(path),
            input_names=input_names,
            output_names=list(spec.output_names),
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    simplify_attention_mask_file(path)
    return input_names


def check_outputs(onnx_path: Path, output_names: tuple[str, ...], per_token: bool) -> None:
    """Raise ExportCheckFailed unless the graph's outputs are the task's, in order, each [batch, labels] (or
    [batch, sequence, ...] for per-token tasks) with the batch (and sequence) axes left dynamic."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = tuple(output.name for output in session.get_outputs())
    if names != output_names:
        raise ExportCheckFailed(f"{onnx_path.name}: outputs are named {list(names)}, the task's are "
                                f"{list(output_names)}")
    expected = "[batch, sequence, ...]" if per_token else "[batch, labels]"
    for output in session.get_outputs():
        shape = list(output.shape)
        dynamic = shape[:2] if per_token else shape[:1]
        fits = len(shape) >= 2 if per_token else len(shape) == 2
        if not fits or any(isinstance(dim, int) for dim in dynamic):
            raise ExportCheckFailed(f"{onnx_path.name}: output {output.name} has shape {shape}, expected {expected} "
                                    "with dynamic batch" + (" and sequence axes" if per_token else " axis"))


def check_parity(
    model: PreTrainedModel, onnx_path: Path, inputs: dict[str, np.ndarray], output_names: tuple[str, ...] = ("logits",),
    atol: float = PARITY_ATOL,
) -> float:
    """Max absolute difference between ONNX Runtime's and PyTorch's outputs on a batch; raises ExportCheckFailed if
    ONNX Runtime cannot run the batch, an output's shape differs from PyTorch's, or the difference is above atol."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = "x".join(str(n) for n in inputs["input_ids"].shape)
    try:
        onnx_outputs = session.run(None, inputs)
    except Exception as exc:  # ONNX Runtime raises its own unexported error types
        raise ExportCheckFailed(f"{onnx_path.name} cannot run a {shape} batch: {exc}") from exc
    with torch.no_grad():
        outputs = model.eval()(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    difference = 0.0
    for ours, name in zip(onnx_outputs, output_names, strict=True):
        theirs = getattr(outputs, name).numpy()
        if ours.shape != theirs.shape:
            raise ExportCheckFailed(f"{onnx_path.name}: output {name} has shape {list(ours.shape)} on a {shape} "
                                    f"batch, PyTorch's has {list(theirs.shape)}")
        difference = max(difference, float(np.abs(ours - theirs).max()))
    if difference > atol:
        raise ExportCheckFailed(f"{onnx_path.name} differs from PyTorch by {difference:.2e} on a {shape} batch "
                                f"(tolerance {atol:.0e})")
    return difference


def check_export(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, onnx_path: Path, input_names: list[str],
    task: str = DEFAULT_TASK,
) -> float:
    """Check an exported graph's outputs (names, shapes, dynamic axes) and its parity with PyTorch on the tracing
    batch and on a batch of another size and sequence length; returns the largest difference."""
    spec = task_for(task)
    check_outputs(onnx_path, spec.output_names, spec.per_token)
    tracing = sample_inputs(tokenizer, input_names)
    other = sample_inputs(tokenizer, input_names, CHECK_TEXTS, length=tracing["input_ids"].shape[1] + 3)
    return max(check_parity(model, onnx_path, batch, spec.output_names) for batch in (tracing, other))


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, output_dir: Path) -> None:
    """Save the tokenizer files; the server needs tokenizer.json (a fast tokenizer).

    tokenizer.json is written without padding or truncation: transformers leaves there whatever the last call
    asked for (the export checks pad to a fixed length), and a client tokenizing with the file (token-id requests)
    must get a text's own ids.
    """
    tokenizer.save_pretrained(str(output_dir))
    path = output_dir / "tokenizer.json"
    if not path.is_file():
        raise ConfigError("the tokenizer has no fast (tokenizer.json) form; the server cannot load it")
    plain = Tokenizer.from_file(str(path))
    plain.no_padding()
    plain.no_truncation()
    plain.save(str(path))


def export_model_dir(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | Path,
    name: str,
    max_length: int,
    metrics: dict[str, Any] | None = None,
    build: dict[str, Any] | None = None,
    task: str = DEFAULT_TASK,
    task_settings: dict[str, Any] | None = None,
) -> ModelCard:
    """Export an FP32 model directory for the task: model.onnx, tokenizer files and model.yaml."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = output_dir / ONNX_FILE
    input_names = export_onnx(model, tokenizer, onnx_path, task)
    config = model.config
    shapes = compact_file(onnx_path, config.hidden_size // config.num_attention_heads)
    log.info("heads per layer %s, feed-forward neurons per layer %s", shapes.heads, shapes.neurons)
    difference = check_export(model, tokenizer, onnx_path, input_names, task)
    log.info("exported %s; max |ONNX - PyTorch| = %.2e", onnx_path, difference)
    save_tokenizer(tokenizer, output_dir)
    spec = task_for(task).spec
    id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    labels = [id2label[i] for i in range(int(model.config.num_labels or len(id2label)))] if spec.has_labels else []
    card = ModelCard(
        name=name,
        task=task,
        labels=labels,
        max_length=max_length,
        architecture=str(model.config.model_type),
        inputs=input_names,
        files={"onnxruntime": ONNX_FILE, "deepsparse": ONNX_FILE},
        precision="fp32",
        metrics=metrics or {},
        build={**(build or {}), "onnx_parity_max_abs_diff": difference, "opset": OPSET,
               "layer_shapes": {"heads": shapes.heads, "neurons": shapes.neurons}},
        task_settings=task_settings or {},
    )
    save_card(card, output_dir)
    return card
