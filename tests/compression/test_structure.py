"""The student's shape: layers kept from the teacher, heads and neurons removed by second-order scores, and the
export's graph without them, computing what the PyTorch model computes, on both engines' forms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from compression.attention_fusion import fuse_attention
from compression.embedding_model import load_embedding_model, model_settings
from compression.export import export_model_dir, sample_inputs
from compression.quantize import quantize_for_engine
from compression.structure import encoder_layers, keep_layers, layer_linears, prune_structures, remove_input_groups
from service.runtime.card import load_card
from tests.tiny_models import (
    WORDS,
    make_tiny_encoder_base,
    tiny_classifier,
    tiny_subword_tokenizer,
    tiny_tokenizer,
)

TEXTS = tuple(" ".join(WORDS[i : i + 6]) for i in range(0, 30, 3))


def _batches(arch: str = "bert") -> list[dict[str, torch.Tensor]]:
    tokenizer = tiny_tokenizer(arch)
    return [dict(tokenizer(list(TEXTS[i : i + 4]), padding=True, return_tensors="pt")) for i in range(0, 8, 4)]


def test_a_student_keeps_the_chosen_layers_of_its_teacher_in_order() -> None:
    model = tiny_classifier("bert")
    second = {k: v.clone() for k, v in encoder_layers(model)[1].state_dict().items()}
    keep_layers(model, [1])
    assert model.config.num_hidden_layers == 1 and len(encoder_layers(model)) == 1
    assert all(torch.equal(v, second[k]) for k, v in encoder_layers(model)[0].state_dict().items())
    assert model(**_batches()[0]).logits.shape == (4, 2)
    with pytest.raises(ValueError, match="distinct indices below 1"):
        keep_layers(model, [0, 0])


def test_removing_a_redundant_input_costs_nothing_after_the_correction() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, generator=generator, dtype=torch.float64)
    x[:, 3] = x[:, 0] + x[:, 1]  # the fourth input is the sum of the first two: one of the three can go
    weight = torch.randn(5, 4, generator=generator, dtype=torch.float64)
    original = weight.clone()
    removed = remove_input_groups(weight, x.T @ x, group=1, keep=3, damp=1e-10)
    assert removed[0] in (0, 1, 3)
    assert torch.allclose(x @ weight.T, x @ original.T, atol=1e-6)
    assert torch.all(weight[:, removed[0]] == 0)


def test_heads_and_neurons_are_removed_as_whole_structures() -> None:
    model = tiny_classifier("bert")
    removed = prune_structures(model, _batches(), heads=1, neurons=40)
    head_size = 16
    for linears, heads in zip((layer_linears(layer) for layer in encoder_layers(model)), removed.heads, strict=True):
        (head,) = heads
        rows = slice(head * head_size, (head + 1) * head_size)
        assert torch.all(linears.attention_output.weight[:, rows] == 0)
        assert linears.attention_output.weight.abs().sum() > 0
        for projection in (linears.query, linears.key, linears.value):
            assert torch.all(projection.weight[rows] == 0) and torch.all(projection.bias[rows] == 0)
        dead = (linears.output.weight == 0).all(dim=0)
        assert int(dead.sum()) == 64 - 40 and torch.all(linears.intermediate.weight[dead] == 0)
    assert removed.neurons == [24, 24]


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """A tiny classifier with 1 of 2 heads and 40 of 64 neurons left, exported as a served model directory."""
    model = tiny_classifier("bert")
    prune_structures(model, _batches(), heads=1, neurons=40)
    output = tmp_path_factory.mktemp("shrunk") / "model"
    export_model_dir(model, tiny_tokenizer("bert"), output, "shrunk", 32)  # checks parity with PyTorch
    return model, output


def test_the_export_drops_dead_heads_and_neurons_and_computes_the_same(
    shrunk: tuple[torch.nn.Module, Path],
) -> None:
    _, output = shrunk
    graph = onnx.load(str(output / "model.onnx")).graph
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}
    assert shapes["/oberta/compact/layer.0/query/weight"] == (32, 16)
    assert shapes["/oberta/compact/layer.0/attention_output/weight"] == (16, 32)
    assert shapes["/oberta/compact/layer.1/intermediate/weight"] == (32, 40)
    assert shapes["/oberta/compact/layer.1/output/weight"] == (40, 32)
    assert max(np.prod(s) for n, s in shapes.items() if "encoder" in n and "LayerNorm" not in n) < 64 * 32
    assert load_card(output).build["layer_shapes"] == {"heads": [1, 1], "neurons": [40, 40]}


def test_a_compacted_graph_fuses_and_quantizes_with_its_own_head_count(
    shrunk: tuple[torch.nn.Module, Path], tmp_path: Path
) -> None:
    model, output = shrunk
    exported = onnx.load(str(output / "model.onnx"))
    assert fuse_attention(exported).fused == 2
    heads = [a.i for n in exported.graph.node if n.op_type == "Attention" for a in n.attribute if a.name == "num_heads"]
    assert heads == [1, 1]
    int8 = quantize_for_engine(output / "model.onnx", tmp_path / "int8.onnx", "onnxruntime", [])
    assert Counter(n.op_type for n in onnx.load(str(int8)).graph.node)["QAttention"] == 2
    names = ["input_ids", "attention_mask", "token_type_ids"]
    batch = sample_inputs(tiny_tokenizer("bert"), names, TEXTS)
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    got = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, batch)[0]
    np.testing.assert_allclose(got, expected, atol=0.05)


def test_mpnet_loses_neurons_in_its_graph_and_keeps_its_heads(tmp_path: Path) -> None:
    model = load_embedding_model(str(make_tiny_encoder_base(tmp_path / "base", arch="mpnet")))
    tokenizer = tiny_subword_tokenizer()
    batches = [dict(tokenizer(["the king of france", "who lived in versailles"], padding=True, return_tensors="pt"))]
    prune_structures(model, batches, heads=None, neurons=48)
    card = export_model_dir(model, tokenizer, tmp_path / "embed", "embed", 32, task="sentence-embedding",
                            task_settings=model_settings(model).model_dump())
    assert card.build["layer_shapes"] == {"heads": [], "neurons": [48, 48]}
    graph = onnx.load(str(tmp_path / "embed" / "model.onnx")).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert weights["/oberta/compact/layer.0/output/weight"].shape == (48, 32)
