"""The ONNX Runtime form: our attention fusion computes what the exported attention computed (padding included) for
BERT and RoBERTa, leaves MPNet's biased attention alone, and the fused-dynamic INT8 file runs QAttention close to
the FP32 model; the recipe keeps DeepSparse's file static."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from compression.attention_fusion import fuse_attention
from compression.embedding_model import load_embedding_model
from compression.evaluate import SERVED_BATCH, onnx_rows
from compression.export import export_onnx, sample_inputs
from compression.quantize import quantize_for_engine
from compression.recipe import EngineQuantization, QuantizationRecipe
from service.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
from tests.tiny_models import WORDS, make_tiny_encoder_base, tiny_classifier, tiny_subword_tokenizer, tiny_tokenizer

TEXTS = ("a gorgeous witty movie", "dull", "it is a dull and lifeless film with no point at all")


def _run(path: Path, batch: dict[str, np.ndarray]) -> np.ndarray:
    """The file's first output as served (INT8 products exact also on a CPU without VNNI)."""
    return OnnxRuntimeEngine(path).run(batch)[0]


@pytest.mark.parametrize("arch", ["bert", "roberta"])
def test_fused_attention_computes_the_exported_attention_with_padding(arch: str, tmp_path: Path) -> None:
    model, tokenizer = tiny_classifier(arch), tiny_tokenizer(arch)
    exported = tmp_path / "model.onnx"
    names = export_onnx(model, tokenizer, exported)
    graph = onnx.load(str(exported))
    report = fuse_attention(graph)
    fused = tmp_path / "fused.onnx"
    onnx.save(graph, str(fused))

    assert (report.fused, report.unmatched) == (2, 0)  # one per layer
    ops = Counter(node.op_type for node in graph.graph.node)
    assert ops["Attention"] == 2 and ops["Softmax"] == 0 and ops["Transpose"] == 0
    batch = sample_inputs(tokenizer, names, TEXTS)  # padded: the short texts' keys are masked
    assert (batch["attention_mask"] == 0).any()
    np.testing.assert_allclose(_run(fused, batch), _run(exported, batch), atol=1e-5)


def test_mpnet_attention_with_its_position_bias_is_left_as_it_is(tmp_path: Path) -> None:
    model = load_embedding_model(str(make_tiny_encoder_base(tmp_path / "base", arch="mpnet")))
    exported = tmp_path / "model.onnx"
    export_onnx(model, tiny_subword_tokenizer(), exported, task="sentence-embedding")
    graph = onnx.load(str(exported))
    before = [node.op_type for node in graph.graph.node]
    report = fuse_attention(graph)
    assert (report.fused, report.unmatched) == (0, 2)
    assert [node.op_type for node in graph.graph.node] == before


def _fused_dynamic(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A tiny classifier's exported FP32 file, its fused-dynamic INT8 file and its input names."""
    exported = tmp_path / "model.onnx"
    names = export_onnx(tiny_classifier("bert"), tiny_tokenizer("bert"), exported)
    settings = EngineQuantization.model_validate({"form": "fused-dynamic"})
    int8 = quantize_for_engine(exported, tmp_path / "int8.onnx", "onnxruntime", [], settings=settings)
    return exported, int8, names


def test_the_fused_dynamic_form_runs_int8_attention_close_to_fp32(tmp_path: Path) -> None:
    exported, int8, names = _fused_dynamic(tmp_path)
    tokenizer = tiny_tokenizer("bert")
    ops = Counter(node.op_type for node in onnx.load(str(int8)).graph.node)
    assert ops["QAttention"] == 2 and ops["SkipLayerNormalization"] == 4 and ops["BiasGelu"] == 2
    assert ops["MatMul"] == 0  # every weight product is INT8
    texts = tuple(" ".join(WORDS[i : i + 7]) for i in range(0, 28, 4))
    batch = sample_inputs(tokenizer, names, texts)
    np.testing.assert_allclose(_run(int8, batch), _run(exported, batch), atol=0.05)


def test_deepsparse_keeps_the_static_form() -> None:
    with pytest.raises(ValueError, match=r"deepsparse\.form"):
        QuantizationRecipe.model_validate({"deepsparse": {"form": "fused-dynamic"}})
    assert QuantizationRecipe.model_validate({}).onnxruntime.form == "fused-dynamic"
    with pytest.raises(ValueError, match="keep_fp32: settings of the static form, not of fused-dynamic"):
        QuantizationRecipe.model_validate({"onnxruntime": {"keep_fp32": ["layer"]}})


def test_cards_score_in_served_batches_as_a_dynamic_files_outputs_depend_on_the_batch(tmp_path: Path) -> None:
    _, int8, names = _fused_dynamic(tmp_path)
    tokenizer = tiny_tokenizer("bert")
    texts = [" ".join(WORDS[i % len(WORDS) : i % len(WORDS) + 1 + i % 6]) for i in range(40)]
    alone = _run(int8, sample_inputs(tokenizer, names, texts[:1]))[0]
    batched = _run(int8, sample_inputs(tokenizer, names, texts))[0]
    assert not np.allclose(alone, batched, rtol=0, atol=1e-7)  # activation scales are the whole batch's

    features = [dict(tokenizer(text)) for text in texts]
    rows = onnx_rows(int8, features, names, tokenizer.pad_token_id)
    for start in range(0, len(texts), SERVED_BATCH):
        served = _run(int8, sample_inputs(tokenizer, names, texts[start : start + SERVED_BATCH]))
        np.testing.assert_array_equal(np.stack([row[0] for row in rows[start : start + SERVED_BATCH]]), served)
