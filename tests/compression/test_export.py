"""ONNX export of BERT and RoBERTa classifiers, checked against PyTorch on two shapes and for the task's outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tokenizers import Tokenizer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from compression.export import (
    CHECK_TEXTS,
    OPSET,
    check_export,
    check_parity,
    export_model_dir,
    export_onnx,
    sample_inputs,
    save_tokenizer,
)
from service.runtime.card import load_card
from service.runtime.errors import ConfigError, ExportCheckFailed
from tests.tiny_models import tiny_classifier, tiny_tokenizer

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


@pytest.mark.parametrize(("arch", "inputs"), [
    ("bert", ["input_ids", "attention_mask", "token_type_ids"]),
    ("roberta", ["input_ids", "attention_mask"]),
])
def test_export_writes_a_model_dir_matching_pytorch(tmp_path: Path, arch: str, inputs: list[str]) -> None:
    model, tokenizer = tiny_classifier(arch, num_labels=3), tiny_tokenizer(arch)
    card = export_model_dir(model, tokenizer, tmp_path / arch, name=f"tiny-{arch}", max_length=64,
                            metrics={"accuracy": 0.5})
    assert load_card(tmp_path / arch) == card
    assert card.inputs == inputs and card.architecture == arch and len(card.labels) == 3
    graph = onnx.load(str(tmp_path / arch / "model.onnx"))
    assert graph.opset_import[0].version == OPSET
    assert {i.name for i in graph.graph.input} == set(inputs)
    served = Tokenizer.from_file(str(tmp_path / arch / "tokenizer.json"))
    session = ort.InferenceSession(str(tmp_path / arch / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch, pair in ((1, None), (3, "the plot"), (5, None)):
        texts = ["a good film about love in paris"] * batch
        encodings = [served.encode(t, pair) if pair else served.encode(t) for t in texts]
        feed = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
        if "token_type_ids" in inputs:
            feed["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
        logits = session.run(None, feed)[0]
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
        np.testing.assert_allclose(logits, expected, atol=1e-4)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Path]:
    model, tokenizer = tiny_classifier("bert"), tiny_tokenizer("bert")
    path = tmp_path_factory.mktemp("exported") / "model.onnx"
    export_onnx(model, tokenizer, path)
    return model, tokenizer, path


def _edited(source: Path, target: Path, edit: Callable[[onnx.GraphProto], None]) -> Path:
    model = onnx.load(str(source))
    edit(model.graph)
    onnx.save(model, str(target))
    return target


def test_the_check_passes_a_good_export_on_two_shapes(exported: tuple[Any, Any, Path]) -> None:
    model, tokenizer, path = exported
    assert check_export(model, tokenizer, path, INPUTS) < 1e-4
    tracing = sample_inputs(tokenizer, INPUTS)["input_ids"].shape
    other = sample_inputs(tokenizer, INPUTS, CHECK_TEXTS, length=tracing[1] + 3)["input_ids"].shape
    assert other[0] != tracing[0] and other[1] != tracing[1]


def test_an_output_not_named_as_the_task_says_is_refused(exported: tuple[Any, Any, Path], tmp_path: Path) -> None:
    model, tokenizer, path = exported

    def rename(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            node.output[:] = ["scores" if name == "logits" else name for name in node.output]
        graph.output[0].name = "scores"

    renamed = _edited(path, tmp_path / "renamed.onnx", rename)
    with pytest.raises(ExportCheckFailed, match=r"outputs are named \['scores'\], the task's are \['logits'\]"):
        check_export(model, tokenizer, renamed, INPUTS)


def test_an_output_with_a_fixed_batch_axis_is_refused(exported: tuple[Any, Any, Path], tmp_path: Path) -> None:
    model, tokenizer, path = exported

    def fix_batch(graph: onnx.GraphProto) -> None:
        graph.output[0].type.tensor_type.shape.dim[0].dim_value = 2

    fixed = _edited(path, tmp_path / "fixed.onnx", fix_batch)
    with pytest.raises(ExportCheckFailed, match=r"output logits has shape \[2, 2\], expected \[batch, labels\]"):
        check_export(model, tokenizer, fixed, INPUTS)
    with pytest.raises(ExportCheckFailed, match="expected"):
        check_export(model, tokenizer, path, INPUTS, task="token-classification")  # [batch, labels] is not per token


def test_a_graph_with_a_fixed_sequence_axis_fails_parity_on_the_second_shape(tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier("bert"), tiny_tokenizer("bert")
    path = tmp_path / "fixed-sequence.onnx"
    batch = sample_inputs(tokenizer, INPUTS)
    axes = {name: {0: "batch"} for name in [*INPUTS, "logits"]}
    with torch.no_grad():
        torch.onnx.export(model.eval(), tuple(torch.from_numpy(batch[n]) for n in INPUTS), str(path),
                          input_names=INPUTS, output_names=["logits"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)
    assert check_parity(model, path, batch) < 1e-4  # the tracing batch alone passes
    with pytest.raises(ExportCheckFailed, match="cannot run a 3x"):
        check_export(model, tokenizer, path, INPUTS)


def test_a_tokenizer_without_a_fast_form_is_refused(tmp_path: Path) -> None:
    class SlowOnly:
        def save_pretrained(self, path: str) -> None:
            Path(path, "vocab.txt").write_text("[PAD]\n")

    with pytest.raises(ConfigError, match=r"tokenizer\.json"):
        save_tokenizer(SlowOnly(), tmp_path)  # type: ignore[arg-type]
