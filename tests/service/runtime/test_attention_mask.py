"""The attention-mask rewrite: same outputs on padded batches, idempotent, and applied where files are loaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from compression import export
from service.runtime.engines.base import EngineOptions
from service.runtime.engines.deepsparse_engine import DeepSparseEngine, deepsparse_support
from service.runtime.graph.attention_mask import simplify_attention_mask
from tests.tiny_models import tiny_classifier, tiny_tokenizer

DEEPSPARSE_USABLE, DEEPSPARSE_REASON = deepsparse_support()


def _raw_export(tmp_path: Path, arch: str, monkeypatch: pytest.MonkeyPatch) -> tuple[torch.nn.Module, Path]:
    """An export as transformers writes it, without the rewrite."""
    monkeypatch.setattr(export, "simplify_attention_mask_file", lambda path: False)
    model, path = tiny_classifier(arch), tmp_path / f"{arch}-raw.onnx"
    export.export_onnx(model, tiny_tokenizer(arch), path)
    return model, path


def _padded_batch(names: list[str]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.ones((3, 12), dtype=np.int64)
    mask[1, 7:] = 0
    mask[2, 2:] = 0
    batch = {"input_ids": rng.integers(5, 40, (3, 12)).astype(np.int64), "attention_mask": mask,
             "token_type_ids": np.zeros((3, 12), dtype=np.int64)}
    return {name: batch[name] for name in names}


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_rewrite_keeps_outputs_on_padded_batches(tmp_path: Path, arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, raw = _raw_export(tmp_path, arch, monkeypatch)
    graph = onnx.load(str(raw))
    assert any(node.op_type == "Range" for node in graph.graph.node)
    assert simplify_attention_mask(graph)
    assert not any(node.op_type == "Range" for node in graph.graph.node)
    assert not simplify_attention_mask(graph), "a second pass finds nothing to do"
    onnx.checker.check_model(graph)
    lean = tmp_path / f"{arch}-lean.onnx"
    onnx.save(graph, str(lean))
    feed = _padded_batch([i.name for i in graph.graph.input])
    before = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    after = ort.InferenceSession(str(lean), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_array_equal(after, before)
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    np.testing.assert_allclose(after, expected, atol=1e-5)


def test_export_writes_the_lean_mask(tmp_path: Path) -> None:
    path, model = tmp_path / "model.onnx", tiny_classifier("bert")
    export.export_onnx(model, tiny_tokenizer("bert"), path)
    assert not model.training, "export leaves the model in eval mode"
    graph = onnx.load(str(path))
    assert any(node.name == "/oberta/attention_mask/Where" for node in graph.graph.node)
    assert not simplify_attention_mask(graph)


def test_a_graph_without_the_mask_pattern_is_left_alone() -> None:
    graph = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["attention_mask"], ["out"])], "g",
        [onnx.helper.make_tensor_value_info("attention_mask", onnx.TensorProto.INT64, [1, 4])],
        [onnx.helper.make_tensor_value_info("out", onnx.TensorProto.INT64, [1, 4])],
    ))
    before = graph.SerializeToString()
    assert not simplify_attention_mask(graph)
    assert graph.SerializeToString() == before


@pytest.mark.skipif(not DEEPSPARSE_USABLE, reason=DEEPSPARSE_REASON)
def test_deepsparse_engine_rewrites_older_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, raw = _raw_export(tmp_path, "bert", monkeypatch)
    original = raw.read_bytes()
    engine = DeepSparseEngine(raw, EngineOptions(max_length=12, threads=1, sequence_buckets=(12,),
                                                 batch_buckets=(3,)))
    assert raw.read_bytes() == original, "the served file itself is never modified"
    feed = _padded_batch(["input_ids", "attention_mask", "token_type_ids"])
    expected = ort.InferenceSession(str(raw), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(engine.run(feed)[0], expected, atol=1e-4)
    assert engine.info()["fraction_of_supported_ops"] == pytest.approx(1.0)
